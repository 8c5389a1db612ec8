package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// withReceiver adjusts the receiver's options for one test.
func withReceiver(f func(*app.ReceiverOptions)) harnessOption {
	return func(c *harnessConfig) { c.receiver = append(c.receiver, f) }
}

// receiverOptions are the tests' receiver options: the cluster-wide EventBridge keys from
// h.eventKeys, tenant keys read on every request (so that a rotation shows at once), no rate
// limit; then the test's own adjustments.
func (h *harness) receiverOptions() app.ReceiverOptions {
	o := app.ReceiverOptions{
		EventKeys: func() [][]byte {
			if k := h.eventKeys.Load(); k != nil {
				return *k
			}
			return nil
		},
		TenantKeyTTL: -1,
		Rate:         rate.Inf,
	}
	for _, f := range h.receiverOpts {
		f(&o)
	}
	return o
}

func (h *harness) cacheNamespaces() map[string]cache.Config {
	m := map[string]cache.Config{h.ns: {}}
	for _, ns := range h.extraNS {
		m[ns] = cache.Config{}
	}
	return m
}

// addNamespace creates another namespace (a tenant) the manager will watch; call it before
// startManager.
func (h *harness) addNamespace(suffix string) string {
	h.t.Helper()
	base := h.ns
	if len(base) > 50 {
		base = strings.TrimRight(base[:50], "-")
	}
	ns := base + "-" + suffix
	h.g.Expect(k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	h.extraNS = append(h.extraNS, ns)
	return ns
}

func (h *harness) createEnvIn(ns, name string, mutate func(*deployv1.Environment)) {
	h.t.Helper()
	h.createEnv(name, func(e *deployv1.Environment) {
		e.Namespace = ns
		if mutate != nil {
			mutate(e)
		}
	})
}

func (h *harness) getEnvIn(ns, name string) *deployv1.Environment {
	h.t.Helper()
	env := &deployv1.Environment{}
	h.g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, env)).To(Succeed())
	return env
}

// setTenantKeys creates or replaces the namespace's autodeploy-receiver Secret.
func (h *harness) setTenantKeys(ns string, data map[string]string) {
	h.t.Helper()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: receiver.TenantSecretName}, StringData: data}
	err := k8sClient.Create(context.Background(), secret)
	if apierrors.IsAlreadyExists(err) {
		current := &corev1.Secret{}
		h.g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: receiver.TenantSecretName}, current)).To(Succeed())
		current.Data, current.StringData = nil, data
		err = k8sClient.Update(context.Background(), current)
	}
	h.g.Expect(err).NotTo(HaveOccurred())
}

func manifestsPath(ns string) string { return "/v1/namespaces/" + ns + "/manifests" }
func eventsPath(ns string) string    { return "/v1/namespaces/" + ns + "/events" }

// postSignedTo signs body with key at ts and posts it to path.
func (h *harness) postSignedTo(path string, body, key []byte, ts time.Time) reply {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.mgr.receiverURL+path, bytes.NewReader(body))
	h.g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(manifest.TimestampHeader, fmt.Sprint(ts.Unix()))
	req.Header.Set(manifest.SignatureHeader, manifest.Sign(key, ts, body))
	return h.do(req)
}

// postEvent posts an EventBridge event to path as an API destination with an API_KEY
// connection does.
func (h *harness) postEvent(path string, body []byte, apiKey string) reply {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.mgr.receiverURL+path, bytes.NewReader(body))
	h.g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Amazon/EventBridge/ApiDestinations")
	if apiKey != "" {
		req.Header.Set(receiver.APIKeyHeader, apiKey)
	}
	return h.do(req)
}

// eventFixture reads one of the receiver's EventBridge fixtures (AWS documentation examples).
func eventFixture(name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "receiver", "testdata", name))
	if err != nil {
		panic(err)
	}
	return b
}

// postManifestCode posts b, signed with testKey, to the receiver at baseURL without asserting
// anything (safe off the test goroutine) and returns the status, or 0 when the request failed.
func postManifestCode(baseURL string, b build) int {
	body := b.body()
	req, err := http.NewRequest(http.MethodPost, baseURL+receiver.ManifestPath, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	ts := time.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(manifest.TimestampHeader, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(manifest.SignatureHeader, manifest.Sign(testKey, ts, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
