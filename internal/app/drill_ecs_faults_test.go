package app_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// The retry settings the harness gives the manager and its SDK clients (suite_test.go:
// startManager and ecsClients); the drills' call bounds are computed from them.
const (
	drillRetryBase   = 20 * time.Millisecond  // app.Options.RetryBaseDelay
	drillRetryMax    = 500 * time.Millisecond // app.Options.RetryMaxDelay
	drillSDKAttempts = 3                      // retry.NewStandard's default MaxAttempts
	drillPollFirst   = 50 * time.Millisecond  // app.Options.RolloutPollInterval
	drillPollMax     = 400 * time.Millisecond // app.Options.RolloutPollMaxInterval
)

// drillDeployOps are the ECS operations a deploy makes.
var drillDeployOps = []string{"DescribeServices", "DescribeTaskDefinition", "RegisterTaskDefinition", "UpdateService"}

// maxReconcileStarts bounds how many times the workqueue can start a failing reconcile of one
// Environment within window, when nothing but its own failures requeue it: one attempt
// already due or under way, then one per backoff delay that fits in the window. The delays
// double from base to max (workqueue.ItemExponentialFailureRateLimiter); the count assumes the
// worst case, a failure counter that starts at zero (a conflict requeue resets it).
func maxReconcileStarts(window, base, max time.Duration) int {
	n, spent, d := 1, time.Duration(0), base
	for spent+d <= window {
		spent += d
		n++
		d = min(2*d, max)
	}
	return n
}

// revisionImages returns the web image of every revision of family, oldest first.
func (h *harness) revisionImages(family string) []string {
	h.t.Helper()
	var out []string
	for rev := 1; rev <= h.sim.Revisions(family); rev++ {
		td, ok := h.sim.TaskDefinition(fmt.Sprintf("%s:%d", family, rev))
		h.g.Expect(ok).To(BeTrue(), "%s:%d", family, rev)
		out = append(out, webImageOf(td))
	}
	return out
}

// TestDrillECSFaultsDelayButNeverLoseDeploys: ECS throttles, fails with 5xx and answers slowly
// for a while, during which builds keep arriving for several Environments. While ECS is down
// the controller retries with backoff (the calls it makes are counted and bounded); once ECS
// recovers, flaky calls included, every Environment deploys the latest build, registering
// exactly one revision per image, and later builds deploy normally.
func TestDrillECSFaultsDelayButNeverLoseDeploys(t *testing.T) {
	// Rollouts take a while, so that the rollout tracker is still following them when
	// DescribeServices fails again (phase 3).
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(4*time.Second)))
	g := h.g
	const envs = 3
	names := make([]string, envs)
	for i := range envs {
		names[i] = fmt.Sprintf("svc-%d", i)
		h.seedService("prod", names[i], image("v1"))
		h.createEnv(names[i], func(e *deployv1.Environment) { e.Spec.ECS.Service = names[i] })
	}

	// Phase 1, outage: DescribeServices, the first call of every deploy, is throttled; had it
	// answered, the 5xx of the other calls (slow as well) would have followed.
	h.sim.InjectFault("DescribeServices", ecssim.Fault{Code: "ThrottlingException", Message: "Rate exceeded"})
	h.sim.InjectFault("DescribeTaskDefinition", ecssim.Fault{Status: 500, Code: "ServerException"})
	h.sim.InjectFault("RegisterTaskDefinition", ecssim.Fault{Status: 500, Code: "ServerException"})
	h.sim.InjectFault("UpdateService", ecssim.Fault{Status: 503, Code: "ServiceUnavailableException"})
	h.sim.SetLatency("RegisterTaskDefinition", 30*time.Millisecond)
	h.sim.SetLatency("UpdateService", 30*time.Millisecond)
	h.startManager()

	// Builds arrive during the outage (all of them: nothing can deploy before ECS recovers,
	// so exactly one image, the latest, must be deployed afterwards).
	const builds = 4
	for n := int64(1); n <= builds; n++ {
		r := h.post(newBuild(n))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		g.Expect(r.Body["updated"]).To(HaveLen(envs))
	}
	latest := newBuild(builds)
	// Each Environment has recorded its intent and seen ECS fail.
	for _, name := range names {
		g.Eventually(h.env(name), timeout, poll).Should(And(
			WithTransform(latestNumber, Equal(int64(builds))),
			WithTransform(func(e *deployv1.Environment) string {
				if e.Status.PendingDeploy == nil {
					return ""
				}
				return e.Status.PendingDeploy.Image
			}, Equal(latest.Image)),
			WithTransform(readyReason, Equal("False/"+deployv1.ReasonECSUnavailable))), name)
	}

	// Count the calls of a quiet stretch of the outage (no new builds, nothing to requeue an
	// Environment but its own failures).
	otherCalls := func() int { // the calls of the deploy operations after DescribeServices
		n := 0
		for _, op := range drillDeployOps[1:] {
			n += h.sim.Calls(op)
		}
		return n
	}
	callsBefore := h.sim.Calls("DescribeServices")
	otherBefore := otherCalls()
	start := time.Now()
	g.Consistently(func() []string {
		var running []string
		for _, name := range names {
			running = append(running, h.webImage("prod", name))
		}
		return running
	}, "2s", poll).Should(HaveEach(image("v1")), "nothing deploys while ECS is down")
	window := time.Since(start)
	failed := h.sim.Calls("DescribeServices") - callsBefore

	// The bound. Within the window each Environment's reconcile can start at most
	// maxReconcileStarts times (20ms, 40ms, ... doubling to 500ms between failures: 8 starts
	// in 2s, in the worst case of a failure counter reset just before the window by a
	// conflict requeue, which is what usually happens here), plus one for a watch event of
	// the last build delivered late, and each start makes at most drillSDKAttempts wire
	// calls, all DescribeServices, before it gives up (fewer once the SDK's retry quota is
	// spent). For 3 Environments and 2s: 3 × 9 × 3 = 81 calls, about 13 per Environment and
	// second. A controller retrying without backoff would make a call every few milliseconds
	// per Environment (the SDK's own backoff is capped at 20ms): several hundred calls per
	// second for three Environments.
	starts := maxReconcileStarts(window, drillRetryBase, drillRetryMax) + 1
	bound := envs * starts * drillSDKAttempts
	t.Logf("outage window %v: %d DescribeServices calls (bound %d: %d Environments × %d reconcile starts × %d attempts)",
		window.Round(time.Millisecond), failed, bound, envs, starts, drillSDKAttempts)
	g.Expect(failed).To(BeNumerically(">", 0), "the controller keeps retrying during the outage")
	g.Expect(failed).To(BeNumerically("<=", bound), "calls back off")
	g.Expect(otherCalls()).To(Equal(otherBefore), "no deploy gets past DescribeServices while it fails")
	for _, name := range names {
		g.Expect(h.sim.Revisions("prod-"+name)).To(Equal(1), name)
	}

	// Phase 2, recovery with hiccups: each operation fails a few more times (throttling,
	// 500 and 503), and every call is slow.
	h.sim.ClearFaults()
	h.sim.InjectFault("DescribeServices", ecssim.Fault{Code: "ThrottlingException", Message: "Rate exceeded", Times: 2})
	h.sim.InjectFault("DescribeTaskDefinition", ecssim.Fault{Status: 500, Code: "ServerException", Times: 3})
	h.sim.InjectFault("RegisterTaskDefinition", ecssim.Fault{Status: 500, Code: "ServerException", Times: 2})
	h.sim.InjectFault("UpdateService", ecssim.Fault{Code: "ThrottlingException", Message: "Rate exceeded", Times: 4})
	for _, op := range drillDeployOps {
		h.sim.SetLatency(op, 25*time.Millisecond)
	}
	for _, name := range names {
		g.Eventually(h.env(name), timeout, poll).Should(WithTransform(deployedImage, Equal(latest.Image)), name)
		g.Expect(h.webImage("prod", name)).To(Equal(latest.Image), name)
		// Exactly one deploy, of one new revision, whatever failed on the way.
		g.Expect(h.revisionImages("prod-"+name)).To(Equal([]string{image("v1"), latest.Image}), name)
		env := h.getEnv(name)
		g.Expect(env.Status.History).To(HaveLen(1), name)
		g.Expect(env.Status.LastDeploy().Build.Number).To(Equal(int64(builds)), name)
		g.Expect(env.Status.PendingDeploy).To(BeNil(), name)
	}

	// Phase 3: DescribeServices is throttled again while the rollouts are in progress: the
	// tracker, the only caller now, backs off too. Its looks at one cluster (one call for up
	// to ten services) come 50ms, 100ms, ... doubling to 400ms apart whatever they return,
	// so within the window it looks at most maxReconcileStarts(window, 50ms, 400ms) times
	// (worst case: a deploy reset the interval just before), plus one for slack, each look
	// making at most drillSDKAttempts calls: (6 + 1) × 3 = 21 calls in 1.5s, where a poller
	// without backoff would make hundreds.
	h.sim.ClearFaults()
	h.sim.InjectFault("DescribeServices", ecssim.Fault{Code: "ThrottlingException", Message: "Rate exceeded"})
	tracked := 0
	for _, name := range names {
		if rolloutResult(h.getEnv(name)) == deployv1.ResultInProgress {
			tracked++
		}
	}
	callsBefore = h.sim.Calls("DescribeServices")
	otherBefore = otherCalls()
	start = time.Now()
	g.Consistently(otherCalls, "1500ms", poll).Should(Equal(otherBefore), "nothing but the tracker calls ECS")
	window = time.Since(start)
	polls := h.sim.Calls("DescribeServices") - callsBefore
	bound = (maxReconcileStarts(window, drillPollFirst, drillPollMax) + 1) * drillSDKAttempts
	t.Logf("tracker outage window %v, %d rollouts followed: %d DescribeServices calls (bound %d)",
		window.Round(time.Millisecond), tracked, polls, bound)
	if tracked > 0 {
		g.Expect(polls).To(BeNumerically(">", 0), "the tracker keeps looking")
	}
	g.Expect(polls).To(BeNumerically("<=", bound), "the tracker backs off")
	// ECS answers again: every rollout is seen completing.
	h.sim.ClearFaults()
	for _, name := range names {
		g.Eventually(h.env(name), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)), name)
	}

	// Phase 4: ECS is healthy again but still slow; the next build deploys, once.
	next := newBuild(builds + 1)
	g.Expect(h.post(next).Code).To(Equal(http.StatusAccepted))
	for _, name := range names {
		g.Eventually(h.env(name), timeout, poll).Should(WithTransform(deployedImage, Equal(next.Image)), name)
		g.Expect(h.webImage("prod", name)).To(Equal(next.Image), name)
		g.Expect(h.revisionImages("prod-"+name)).To(Equal([]string{image("v1"), latest.Image, next.Image}), name)
	}
}
