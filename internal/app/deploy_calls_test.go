package app_test

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// freshDeployCalls are the ECS calls of a fresh rolling deploy: what runs (DescribeServices,
// DescribeTaskDefinition of the running revision), the new revision and the service update.
// The family's newest revision is looked at only when a deploy is resumed.
var freshDeployCalls = map[string]int{
	"DescribeServices":       1,
	"DescribeTaskDefinition": 1,
	"RegisterTaskDefinition": 1,
	"UpdateService":          1,
}

// TestFreshDeployMakesFourECSCalls counts the simulator's calls for one fresh deploy of a
// build, and for the next build deployed while the first still rolls out: four each, one of
// each operation of freshDeployCalls, and nothing else (rollouts are left to ECS events, so no
// tracker polls).
func TestFreshDeployMakesFourECSCalls(t *testing.T) {
	h := newHarness(t, withoutPolling(), withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(readyReason, HaveSuffix("/"+deployv1.ReasonWaitingForBuild)))
	g.Expect(h.sim.TotalCalls()).To(BeZero())

	for _, n := range []int64{51, 52} {
		h.sim.ResetCalls()
		b := newBuild(n)
		g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
		g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
			if last := e.Status.LastDeploy(); last != nil && e.Status.PendingDeploy == nil && last.DeploymentID != "" && last.Build != nil && last.Build.Number == n {
				return last.Image
			}
			return ""
		}, Equal(b.Image)), "build %d deployed", n)
		calls := func() map[string]int {
			out := map[string]int{}
			for op := range freshDeployCalls {
				out[op] = h.sim.Calls(op)
			}
			return out
		}
		g.Expect(calls()).To(Equal(freshDeployCalls), "build %d", n)
		g.Consistently(h.sim.TotalCalls, "300ms", poll).Should(Equal(4), "build %d: no call besides the four", n)
	}
}
