package app_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
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

// newEventsHarness runs a manager without the polling tracker, the ECS event key set, the
// simulator's events queued in q (rollouts last an hour unless an event ends them), and
// Environment prod on service shop-api running v1.
func newEventsHarness(t *testing.T, q *eventQueue, simOpts ...ecssim.Option) *harness {
	simOpts = append([]ecssim.Option{ecssim.WithRolloutDuration(time.Hour), ecssim.WithEventSink(q.add)}, simOpts...)
	h := newHarness(t, withoutPolling(), withSim(simOpts...))
	keys := [][]byte{[]byte(ecsEventKey)}
	h.eventKeys.Store(&keys)
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()
	return h
}

// TestRolloutsEndFromECSEventsWithZeroPolling: with the tracker off, ECS "Deployment State
// Change" events posted to the receiver end rollouts (completed and failed), with no
// DescribeServices call after the deploy itself but one per failure; a repeated event
// changes nothing.
func TestRolloutsEndFromECSEventsWithZeroPolling(t *testing.T) {
	q := &eventQueue{}
	h := newEventsHarness(t, q)
	g := h.g

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

	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	completed := q.drain()
	g.Expect(completed).NotTo(BeEmpty())
	for _, ev := range completed {
		g.Expect(h.postEvent("/v1/events", ev, ecsEventKey).Code).To(Equal(http.StatusOK))
	}
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	g.Expect(readyReason(h.getEnv("prod"))).To(Equal("True/" + deployv1.ReasonDeployed))
	// The same event again (EventBridge delivers at least once) changes nothing.
	before := h.getEnv("prod")
	for _, ev := range completed {
		r := h.postEvent("/v1/events", ev, ecsEventKey)
		g.Expect(r.Code).To(Equal(http.StatusOK))
	}
	after := h.getEnv("prod")
	g.Expect(after.Status.History).To(Equal(before.Status.History))
	g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "a repeated event writes nothing")

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

	// Zero polling: the DescribeServices calls were the deploys' own, one each (a deploy is
	// never looked at twice: a status conflict or a cache behind costs no ECS call), and one
	// for the failure, to learn whether ECS rolled back; a completion costs none.
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(2), "one update per build")
	g.Expect(h.sim.Calls("DescribeServices")).To(Equal(3), "one look at the service per deploy and per failure")

	// A wrong key is refused.
	g.Expect(h.postEvent("/v1/events", completed[0], "wrong-key-0123456789abcdef").Code).To(Equal(http.StatusUnauthorized))
}

// TestECSEventBeforeItsDeployIsRecordedIsRedelivered: ECS can report a deployment's end
// before the controller recorded the deployment's id (here the UpdateService response is held
// back while the deployment completes and its event is posted). The receiver answers 503, so
// EventBridge delivers the event again, instead of dropping it as unknown; delivered again
// once the deploy is recorded, it ends the rollout.
func TestECSEventBeforeItsDeployIsRecordedIsRedelivered(t *testing.T) {
	q := &eventQueue{}
	var (
		h       *harness
		hold    sync.Once
		early   = make(chan int, 1)
		pending [][]byte // the events posted too early, for redelivery
	)
	observe := func(c ecssim.Call) {
		if c.Operation != "UpdateService" || c.ErrorCode != "" {
			return
		}
		// Runs before the UpdateService response reaches the controller.
		hold.Do(func() {
			code := -1
			if h.sim.CompleteDeployment("prod", "shop-api") == nil {
				for _, ev := range q.drain() {
					if strings.Contains(string(ev), ecssim.EventDeploymentCompleted) {
						pending = append(pending, ev)
						code = postEventCode(h.mgr.receiverURL+"/v1/events", ev, ecsEventKey)
					}
				}
			}
			early <- code
		})
	}
	h = newEventsHarness(t, q, ecssim.WithCallObserver(observe))
	g := h.g

	b := newBuild(21)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	var code int
	g.Eventually(early, timeout).Should(Receive(&code))
	g.Expect(code).To(Equal(http.StatusServiceUnavailable), "an event about a deploy still being recorded must be redelivered, not dropped")

	// The deploy is recorded (InProgress, with its deployment id); the redelivered event ends it.
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	g.Expect(pending).To(HaveLen(1))
	g.Expect(h.postEvent("/v1/events", pending[0], ecsEventKey).Code).To(Equal(http.StatusOK))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
}

// postEventCode posts an EventBridge event and returns the status code (-1 on a transport
// error); safe to call from any goroutine.
func postEventCode(url string, body []byte, apiKey string) int {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return -1
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Amazon/EventBridge/ApiDestinations")
	req.Header.Set(receiver.APIKeyHeader, apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}
