package app_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

const ecsEventKey = "eventbridge-api-key-0123456789"

// eventQueue holds the ECS events the simulator emitted, for the test to deliver as an
// EventBridge API destination would.
type eventQueue struct {
	mu     sync.Mutex
	events [][]byte
}

func (q *eventQueue) add(ev []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.events = append(q.events, append([]byte(nil), ev...))
}

func (q *eventQueue) drain() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.events
	q.events = nil
	return out
}

// TestRolloutsEndFromECSEventsWithZeroPolling: with the tracker off, ECS "Deployment State
// Change" events posted to the receiver end rollouts (completed and failed), with no
// DescribeServices call at all after the deploy itself; a repeated event changes nothing.
func TestRolloutsEndFromECSEventsWithZeroPolling(t *testing.T) {
	q := &eventQueue{}
	h := newHarness(t, withoutPolling(), withSim(ecssim.WithRolloutDuration(time.Hour), ecssim.WithEventSink(q.add)))
	g := h.g
	keys := [][]byte{[]byte(ecsEventKey)}
	h.eventKeys.Store(&keys)
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	deliver := func() (codes []int) {
		for _, ev := range q.drain() {
			r := h.postEvent("/v1/events", ev, ecsEventKey)
			codes = append(codes, r.Code)
		}
		return codes
	}

	b := newBuild(11)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)))
	describes := h.sim.Calls("DescribeServices")

	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	completed := q.drain()
	g.Expect(completed).NotTo(BeEmpty())
	for _, ev := range completed {
		g.Expect(h.postEvent("/v1/events", ev, ecsEventKey).Code).To(Equal(http.StatusOK))
	}
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	g.Expect(readyReason(h.getEnv("prod"))).To(Equal("True/" + deployv1.ReasonDeployed))
	// The same event again (EventBridge delivers at least once) changes nothing.
	for _, ev := range completed {
		r := h.postEvent("/v1/events", ev, ecsEventKey)
		g.Expect(r.Code).To(Equal(http.StatusOK))
	}
	g.Expect(h.getEnv("prod").Status.LastDeploy().Result).To(Equal(deployv1.ResultCompleted))

	// A failure, from its event.
	b2 := newBuild(12)
	g.Expect(h.post(b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b2.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	deliver()
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())
	for _, c := range deliver() {
		g.Expect(c).To(Equal(http.StatusOK))
	}
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultFailed)))
	g.Expect(readyReason(h.getEnv("prod"))).To(Equal("False/" + deployv1.ReasonRolloutFailed))

	// Zero polling: the only DescribeServices calls were the deploys' own (one each).
	g.Expect(h.sim.Calls("DescribeServices")).To(Equal(describes + 1))

	// A wrong key is refused.
	g.Expect(h.postEvent("/v1/events", completed[0], "wrong-key-0123456789abcdef").Code).To(Equal(http.StatusUnauthorized))
}
