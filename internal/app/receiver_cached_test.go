package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// cachedReceiver is a receiver whose index is served by cache, reading live Environments with
// live and writing with the test's client.
func (h *harness) cachedReceiver(cache client.Reader, live client.Reader) *httptest.Server {
	srv := httptest.NewServer(receiver.NewMux(&receiver.Handler{
		Cache: cache, Live: live, Writer: k8sClient,
		Keys: func() [][]byte { return [][]byte{testKey} }, Log: logr.Discard(),
	}))
	h.t.Cleanup(srv.Close)
	return srv
}

// postTo posts b's signed manifest to srv, signed at the time given (a signed request is
// accepted once: a second post of one build is signed at another second).
func (h *harness) postTo(srv *httptest.Server, b build, ts time.Time) reply {
	body := b.body()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+receiver.ManifestPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(manifest.TimestampHeader, fmt.Sprint(ts.Unix()))
	req.Header.Set(manifest.SignatureHeader, manifest.Sign(testKey, ts, body))
	return h.do(req)
}

func liveReads(why string) float64 {
	return testutil.ToFloat64(metrics.ReceiverLiveReads.WithLabelValues(why))
}

// TestReceiverWritesFromTheCachedEnvironment: a build is written from the Environment as the
// cache holds it, with optimistic concurrency: with a current cache it costs no read (here the
// live reader is an API server that is not there, so a read would fail the request).
func TestReceiverWritesFromTheCachedEnvironment(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.createEnv("prod", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := h.cachedReceiver(h.indexedCache(ctx), h.deadAPIClient())

	conflicts := liveReads("conflict")
	r := h.postTo(srv, newBuild(4), time.Now())
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(h.getEnv("prod").Status.LatestBuild.ID).To(Equal(newBuild(4).ID))
	g.Expect(liveReads("conflict")).To(Equal(conflicts), "no conflict, no read")
}

// TestReceiverWritesBackToBackBuildsFromItsOwnLastWrite: builds posted one right after the
// other for one Environment are each written in one request, though the cache has not seen
// the write before: the receiver starts from the object its own last write returned. Here
// the cache stops following the API server after its first list (which has the Environment:
// indexedCache waits for it) and the live reader is an API server that is not there, so a
// conflict (a write from the cached copy) would fail the request.
func TestReceiverWritesBackToBackBuildsFromItsOwnLastWrite(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.createEnv("prod", nil)
	ctx, cancel := context.WithCancel(context.Background())
	c := h.indexedCache(ctx)
	cancel()
	srv := h.cachedReceiver(c, h.deadAPIClient())

	conflicts := liveReads("conflict")
	for n := int64(4); n <= 7; n++ {
		r := h.postTo(srv, newBuild(n), time.Now())
		g.Expect(r.Code).To(Equal(http.StatusAccepted), "build %d: %s", n, r.Raw)
		g.Expect(h.getEnv("prod").Status.LatestBuild.ID).To(Equal(newBuild(n).ID))
	}
	g.Expect(liveReads("conflict")).To(Equal(conflicts), "no conflict, no read")
}

// TestReceiverReadsLiveOnlyWhenTheCacheLags: behind a cache that no longer follows the API
// server, a write conflicts and is made again on the live object; an answer that needs no write
// is confirmed on the live object, so that an Environment deleted and created again, which
// the cache still shows with the build, gets it.
func TestReceiverReadsLiveOnlyWhenTheCacheLags(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.createEnv("prod", nil)
	ctx, cancel := context.WithCancel(context.Background())
	c := h.indexedCache(ctx)
	srv := h.cachedReceiver(c, k8sClient)
	b4 := newBuild(4)
	g.Expect(h.postTo(srv, b4, time.Now().Add(-time.Second)).Code).To(Equal(http.StatusAccepted))
	// The cache catches up with build 4, then stops following the API server.
	g.Eventually(func() string {
		e := &deployv1.Environment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: h.ns, Name: "prod"}, e); err != nil || e.Status.LatestBuild == nil {
			return ""
		}
		return e.Status.LatestBuild.ID
	}, timeout, poll).Should(Equal(b4.ID))
	cancel()

	// Someone else writes the Environment: the cached resourceVersion is old.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Annotations = map[string]string{"example.com/note": "x"} })
	conflicts := liveReads("conflict")
	b5 := newBuild(5)
	r := h.postTo(srv, b5, time.Now())
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(h.getEnv("prod").Status.LatestBuild.ID).To(Equal(b5.ID))
	g.Expect(liveReads("conflict")).To(Equal(conflicts+1), "one conflict, one live read")

	// Deleted and created again: the cache still shows build 4 recorded, the new object has
	// nothing. Build 4 again is not taken for a duplicate.
	g.Expect(k8sClient.Delete(context.Background(), h.getEnv("prod"))).To(Succeed())
	g.Eventually(func() error {
		return k8sClient.Get(context.Background(), client.ObjectKey{Namespace: h.ns, Name: "prod"}, &deployv1.Environment{})
	}, timeout, poll).ShouldNot(Succeed())
	h.createEnv("prod", nil)
	confirms := liveReads("confirm")
	r = h.postTo(srv, b4, time.Now())
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns + "/prod"))
	g.Expect(h.getEnv("prod").Status.LatestBuild.ID).To(Equal(b4.ID))
	g.Expect(liveReads("confirm")).To(Equal(confirms + 1))
}

// TestRolloutRecorderWritesFromTheCachedEnvironment: the end of a rollout is written from the
// cached Environment, with optimistic concurrency: with a current cache it costs no read (here
// the live reader is an API server that is not there); an observation the cached object says
// changes nothing is confirmed on the live one.
func TestRolloutRecorderWritesFromTheCachedEnvironment(t *testing.T) {
	h := newHarness(t)
	g := h.g
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.createEnv("prod", nil)
	env := h.getEnv("prod")
	started := metav1.Now()
	env.Status.History = []deployv1.Deploy{{Image: image("v2"), Trigger: deployv1.TriggerBuild, DeploymentID: "ecs-svc/1",
		Result: deployv1.ResultInProgress, StartedAt: started}}
	g.Expect(k8sClient.Status().Update(ctx, env)).To(Succeed())
	c := h.indexedCache(ctx)
	key := client.ObjectKey{Namespace: h.ns, Name: "prod"}
	g.Eventually(func() int {
		e := &deployv1.Environment{}
		if err := c.Get(ctx, key, e); err != nil {
			return 0
		}
		return len(e.Status.History)
	}, timeout, poll).Should(Equal(1))

	rec := &controllers.RolloutRecorder{Cache: c, Reader: h.deadAPIClient(), Writer: k8sClient}
	changed, err := rec.Record(ctx, key, controllers.RolloutObservation{DeploymentID: "ecs-svc/1", Result: deployv1.ResultCompleted, At: time.Now()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeTrue())
	g.Expect(h.getEnv("prod").Status.LastDeploy().Result).To(Equal(deployv1.ResultCompleted))

	// The cache still says in progress only until it catches up; an observation of another
	// deployment changes nothing there and is confirmed on the live object.
	live := &controllers.RolloutRecorder{Cache: c, Reader: k8sClient, Writer: k8sClient}
	changed, err = live.Record(ctx, key, controllers.RolloutObservation{DeploymentID: "ecs-svc/other", Result: deployv1.ResultFailed, At: time.Now()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeFalse())
	g.Expect(h.getEnv("prod").Status.LastDeploy().Result).To(Equal(deployv1.ResultCompleted))
}
