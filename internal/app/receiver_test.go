package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

func TestReceiverAnswersEachErrorWithItsStatusAndWritesNothing(t *testing.T) {
	h := newHarness(t)
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()
	good := newBuild(9)
	now := time.Now()

	signed := func(body []byte, key []byte, ts time.Time) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set(manifest.TimestampHeader, fmt.Sprint(ts.Unix()))
			r.Header.Set(manifest.SignatureHeader, manifest.Sign(key, ts, body))
		}
	}
	withField := func(field string, value any) []byte {
		b := newBuild(9)
		raw := strings.Replace(string(b.body()), `"application"`, fmt.Sprintf(`%q:%v,"application"`, field, value), 1)
		return []byte(raw)
	}
	without := func(field string) []byte {
		m := map[string]any{}
		_ = json.Unmarshal(good.body(), &m)
		delete(m, field)
		raw, _ := json.Marshal(m)
		return raw
	}
	huge := append([]byte(`{"application":"`), bytes.Repeat([]byte("a"), receiver.MaxBodyBytes)...)

	cases := []struct {
		name      string
		method    string
		body      []byte
		sign      func(body []byte) func(*http.Request)
		code      int
		errSubstr string
	}{
		{name: "GET", method: http.MethodGet, code: http.StatusMethodNotAllowed, errSubstr: "POST"},
		{name: "PUT", method: http.MethodPut, body: good.body(), code: http.StatusMethodNotAllowed},
		{name: "no signature", body: good.body(), code: http.StatusUnauthorized, errSubstr: receiver.AuthFailedMessage},
		{name: "wrong key", body: good.body(), sign: func(b []byte) func(*http.Request) {
			return signed(b, []byte("another-key-0123456789abcdef"), now)
		}, code: http.StatusUnauthorized, errSubstr: receiver.AuthFailedMessage},
		{name: "stale timestamp", body: good.body(), sign: func(b []byte) func(*http.Request) {
			return signed(b, testKey, now.Add(-6*time.Minute))
		}, code: http.StatusUnauthorized, errSubstr: receiver.AuthFailedMessage},
		{name: "future timestamp", body: good.body(), sign: func(b []byte) func(*http.Request) {
			return signed(b, testKey, now.Add(6*time.Minute))
		}, code: http.StatusUnauthorized, errSubstr: receiver.AuthFailedMessage},
		{name: "body changed after signing", body: good.body(), sign: func(b []byte) func(*http.Request) {
			return signed(newBuild(10).body(), testKey, now)
		}, code: http.StatusUnauthorized},
		{name: "over 1 MiB", body: huge, code: http.StatusRequestEntityTooLarge},
		{name: "invalid JSON", body: []byte(`{"application":`), code: http.StatusBadRequest, errSubstr: "invalid JSON"},
		{name: "missing application", body: without("application"), code: http.StatusBadRequest, errSubstr: `"application"`},
		{name: "missing buildId", body: without("buildId"), code: http.StatusBadRequest, errSubstr: `"buildId"`},
		{name: "missing buildNumber", body: without("buildNumber"), code: http.StatusBadRequest, errSubstr: `"buildNumber"`},
		{name: "missing image", body: without("image"), code: http.StatusBadRequest, errSubstr: `"image"`},
		{name: "malformed image", body: bytes.Replace(good.body(), []byte(good.Image), []byte("Not An Image"), 1),
			code: http.StatusBadRequest, errSubstr: `"image"`},
		{name: "string buildNumber", body: bytes.Replace(good.body(), []byte(`"buildNumber":9`), []byte(`"buildNumber":"9"`), 1),
			code: http.StatusBadRequest, errSubstr: `"buildNumber"`},
		{name: "unknown field", body: withField("buildNumer", 9), code: http.StatusBadRequest, errSubstr: `"buildNumer"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, h.mgr.receiverURL+receiver.ManifestPath, bytes.NewReader(tc.body))
			g.Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Content-Type", "application/json")
			if tc.sign != nil {
				tc.sign(tc.body)(req)
			} else if tc.code != http.StatusUnauthorized && tc.body != nil {
				signed(tc.body, testKey, now)(req)
			}
			r := h.do(req)
			g.Expect(r.Code).To(Equal(tc.code), r.Raw)
			g.Expect(r.Body["error"]).NotTo(BeEmpty(), r.Raw)
			if tc.errSubstr != "" {
				g.Expect(r.Body["error"]).To(ContainSubstring(tc.errSubstr))
			}
			if tc.code == http.StatusUnauthorized {
				g.Expect(r.Raw).NotTo(ContainSubstring("shop-api"), "an unauthenticated caller learns nothing")
			}
		})
	}
	g := h.g
	g.Expect(h.getEnv("prod").Status.LatestBuild).To(BeNil(), "no rejected request wrote anything")
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(BeZero())

	// A second key is accepted alongside the first (rotation).
	keys := [][]byte{testKey, []byte("next-manifest-key-0123456789")}
	h.keys.Store(&keys)
	r := h.postSigned(good.body(), keys[1], time.Now())
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
}

// indexedCache is an informer cache of the test's namespace with the receiver's index, as
// the manager has; it keeps serving when the API server goes away.
func (h *harness) indexedCache(ctx context.Context) cache.Cache {
	h.t.Helper()
	c, err := cache.New(restConfig, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{h.ns: {}}})
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(receiver.IndexApplication(ctx, c)).To(Succeed())
	go func() { _ = c.Start(ctx) }()
	h.g.Expect(c.WaitForCacheSync(ctx)).To(BeTrue())
	return c
}

// deadAPIClient is a client of an API server address where nothing listens, as during an
// outage.
func (h *harness) deadAPIClient() client.Client {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	h.g.Expect(err).NotTo(HaveOccurred())
	deadAddr := ln.Addr().String()
	h.g.Expect(ln.Close()).To(Succeed())
	dead := rest.CopyConfig(restConfig)
	dead.Host = "https://" + deadAddr
	dead.Timeout = 2 * time.Second
	c, err := client.New(dead, client.Options{Scheme: scheme})
	h.g.Expect(err).NotTo(HaveOccurred())
	return c
}

func TestReceiverAnswers503WhenTheAPIServerWriteFails(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.createEnv("prod", nil)

	// The index is served by a working cache; reads and writes go to an API server that is
	// not there, as during an outage.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := h.indexedCache(ctx)

	deadClient := h.deadAPIClient()

	srv := httptest.NewServer(receiver.NewMux(&receiver.Handler{
		Cache: c, Live: deadClient, Writer: deadClient,
		Keys: func() [][]byte { return [][]byte{testKey} }, Log: logr.Discard(),
	}))
	defer srv.Close()
	body := newBuild(4).body()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+receiver.ManifestPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	ts := time.Now()
	req.Header.Set(manifest.TimestampHeader, fmt.Sprint(ts.Unix()))
	req.Header.Set(manifest.SignatureHeader, manifest.Sign(testKey, ts, body))
	r := h.do(req)
	g.Expect(r.Code).To(Equal(http.StatusServiceUnavailable), r.Raw)
	g.Expect(r.Body["error"]).To(ContainSubstring("retry"))
	g.Expect(h.getEnv("prod").Status.LatestBuild).To(BeNil())
}
