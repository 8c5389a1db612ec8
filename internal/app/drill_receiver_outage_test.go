package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// switchableClient is the receiver's view of the API server (Handler.Live and Handler.Writer):
// it forwards to whichever client is current, so a test can take the API server away from the
// receiver and give it back. It counts the status writes that reached the API server.
type switchableClient struct {
	current atomic.Pointer[client.Client]
	mu      sync.Mutex
	writes  map[string]int // namespace/name -> status writes the API server accepted
}

func newSwitchableClient(c client.Client) *switchableClient {
	s := &switchableClient{writes: map[string]int{}}
	s.use(c)
	return s
}

func (s *switchableClient) use(c client.Client) { s.current.Store(&c) }

func (s *switchableClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return (*s.current.Load()).Get(ctx, key, obj, opts...)
}

func (s *switchableClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return (*s.current.Load()).List(ctx, list, opts...)
}

func (s *switchableClient) Status() client.SubResourceWriter {
	return &countingStatusWriter{SubResourceWriter: (*s.current.Load()).Status(), s: s}
}

func (s *switchableClient) statusWrites(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes[name]
}

type countingStatusWriter struct {
	client.SubResourceWriter
	s *switchableClient
}

func (w *countingStatusWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	err := w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	if err == nil {
		w.s.mu.Lock()
		w.s.writes[obj.GetNamespace()+"/"+obj.GetName()]++
		w.s.mu.Unlock()
	}
	return err
}

// TestDrillAPIServerOutageAnswers503AndLosesNothing: while the API server is unreachable for
// the receiver, a signed manifest is answered 503 (with Retry-After) and the sender retries the
// very same request; once the API server is back, the retry is answered 202 and every matching
// Environment records the build exactly once. Resending it afterwards changes nothing.
func TestDrillAPIServerOutageAnswers503AndLosesNothing(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.createEnv("prod", nil)
	h.createEnv("staging", func(e *deployv1.Environment) { e.Spec.ECS.Service = "staging" })

	// The Environment index is served by a working informer cache, which keeps serving during
	// an outage; the live reads and the status writes go through the switchable client.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := h.indexedCache(ctx)

	deadClient := h.deadAPIClient()
	liveClient, err := client.New(restConfig, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())

	api := newSwitchableClient(deadClient) // the outage has begun
	srv := &http.Server{Handler: receiver.NewMux(&receiver.Handler{
		Cache: c, Live: api, Writer: api,
		Keys: func() [][]byte { return [][]byte{testKey} }, Log: logr.Discard(),
	}), ReadHeaderTimeout: 5 * time.Second}
	rln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	go func() { _ = srv.Serve(rln) }()
	defer srv.Close()
	url := "http://" + rln.Addr().String() + receiver.ManifestPath

	// One signed request, sent as a CI sender does: retried unchanged (same body, timestamp
	// and signature) after every 5xx, with a short doubling backoff, until it gets an answer
	// that is not 5xx.
	b := newBuild(4)
	body := b.body()
	first := time.Now()
	send := func(ts time.Time) (int, string) {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err.Error()
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(manifest.TimestampHeader, fmt.Sprint(ts.Unix()))
		req.Header.Set(manifest.SignatureHeader, manifest.Sign(testKey, ts, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error() // a transport error: the sender retries it like a 5xx
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusServiceUnavailable &&
			(resp.Header.Get("Retry-After") == "" || !bytes.Contains(raw, []byte("retry"))) {
			return 0, "a 503 without Retry-After or without saying retry: " + string(raw)
		}
		return resp.StatusCode, string(raw)
	}
	// unavailable counts proper 503s; odd counts transport errors and improper 5xx answers.
	var unavailable, odd atomic.Int64
	type result struct {
		code     int
		raw      string
		attempts int
	}
	done := make(chan result, 1)
	go func() {
		delay := 10 * time.Millisecond
		for attempt := 1; ; attempt++ {
			code, raw := send(first)
			if (code != 0 && code < 500) || attempt >= 200 || ctx.Err() != nil {
				done <- result{code, raw, attempt}
				return
			}
			if code == http.StatusServiceUnavailable {
				unavailable.Add(1)
			} else {
				odd.Add(1)
				fmt.Printf("drill sender, attempt %d: %d %s\n", attempt, code, raw)
			}
			time.Sleep(delay) // the sender's own backoff, not synchronisation
			delay = min(2*delay, 100*time.Millisecond)
		}
	}()

	// The sender is turned away several times, and nothing is written meanwhile.
	g.Eventually(unavailable.Load, timeout, poll).Should(BeNumerically(">=", 3))
	g.Expect(h.getEnv("prod").Status.LatestBuild).To(BeNil())
	g.Expect(h.getEnv("staging").Status.LatestBuild).To(BeNil())

	// The API server comes back; the sender's next retry gets through.
	api.use(liveClient)
	var res result
	g.Eventually(done, timeout, poll).Should(Receive(&res))
	g.Expect(res.code).To(Equal(http.StatusAccepted), res.raw)
	g.Expect(res.attempts).To(BeNumerically(">", 3))
	g.Expect(odd.Load()).To(BeZero(), "every refusal was a 503 with Retry-After")
	t.Logf("the sender needed %d attempts", res.attempts)

	for _, name := range []string{"prod", "staging"} {
		env := h.getEnv(name)
		g.Expect(env.Status.LatestBuild).NotTo(BeNil(), name)
		g.Expect(env.Status.LatestBuild.ID).To(Equal(b.ID), name)
		g.Expect(env.Status.LatestBuild.Image).To(Equal(b.Image), name)
		g.Expect(api.statusWrites(h.ns+"/"+name)).To(Equal(1), "%s records the build exactly once", name)
	}

	// The same request again (a sender that did not see the 202), and the same build signed
	// anew: answered as duplicates, nothing written.
	for _, ts := range []time.Time{first, first.Add(time.Second)} {
		code, raw := send(ts)
		g.Expect(code).To(Equal(http.StatusOK), raw)
		g.Expect(raw).To(ContainSubstring("duplicate"))
	}
	for _, name := range []string{"prod", "staging"} {
		g.Expect(api.statusWrites(h.ns+"/"+name)).To(Equal(1), name)
	}
}
