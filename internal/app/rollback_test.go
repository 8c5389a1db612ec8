package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// rollbackWorld is an Environment prod on service shop-api, which has the deployment circuit
// breaker with rollback on, where build 1 was deployed and completed and build 2 is rolling
// out. Rollouts and rollbacks last an hour unless a test ends them.
type rollbackWorld struct {
	h      *harness
	q      *eventQueue // the simulator's ECS events (events mode)
	events bool
	b1, b2 build
}

func newRollbackWorld(t *testing.T, events bool) *rollbackWorld {
	w := &rollbackWorld{q: &eventQueue{}, events: events, b1: newBuild(1), b2: newBuild(2)}
	opts := []harnessOption{withSim(ecssim.WithRolloutDuration(time.Hour), ecssim.WithRollbackDuration(time.Hour), ecssim.WithEventSink(w.q.add))}
	if events {
		opts = append(opts, withoutPolling())
	}
	h := newHarness(t, opts...)
	w.h = h
	keys := [][]byte{[]byte(ecsEventKey)}
	h.eventKeys.Store(&keys)
	family := h.seedService("prod", "seed-only", image("v1"))
	_, err := h.sdk().CreateService(context.Background(), &ecs.CreateServiceInput{
		Cluster: aws.String("prod"), ServiceName: aws.String("shop-api"), TaskDefinition: aws.String(family),
		DesiredCount: aws.Int32(2),
		DeploymentConfiguration: &types.DeploymentConfiguration{
			DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
		},
	})
	h.g.Expect(err).NotTo(HaveOccurred())
	h.createEnv("prod", nil)
	h.startManager()
	w.q.drain() // the service's creation concerns no Environment

	g := h.g
	g.Expect(h.post(w.b1).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(w.b1.Image)), WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	w.deliver()
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))

	g.Expect(h.post(w.b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(w.b2.Image)), WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	w.deliver()
	return w
}

// deliver posts the queued ECS events to the receiver, as an EventBridge API destination
// does, in events mode (in polling mode nobody listens to them).
func (w *rollbackWorld) deliver() {
	w.h.t.Helper()
	for _, ev := range w.q.drain() {
		if w.events {
			w.h.g.Expect(w.h.postEvent("/v1/events", ev, ecsEventKey).Code).To(Equal(http.StatusOK))
		}
	}
}

// failAndRollBack fails build 2's deployment; ECS rolls back to build 1's revision and, with
// gone, completes the rollback, so the failed deployment leaves the service's list.
func (w *rollbackWorld) failAndRollBack(gone bool) {
	w.h.t.Helper()
	w.h.g.Expect(w.h.sim.FailDeployment("prod", "shop-api", "ECS deployment circuit breaker: tasks failed to start.")).To(Succeed())
	if gone {
		w.h.g.Expect(w.h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
		st, _ := w.h.sim.Service("prod", "shop-api")
		w.h.g.Expect(st.Deployments).To(HaveLen(1), "the failed deployment left the list")
	}
}

func buildRef(e *deployv1.Environment) *deployv1.BuildRef {
	if e == nil {
		return nil
	}
	return e.Status.DeployedBuild
}

// expectRolledBack checks that the status says build 1 runs, build 2's rollout failed and
// was rolled back, and build 2 is held: not deployed again without the retry annotation.
func (w *rollbackWorld) expectRolledBack() {
	h, g := w.h, w.h.g
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultFailed)))
	env := h.getEnv("prod")
	last := env.Status.LastDeploy()
	g.Expect(last.Image).To(Equal(w.b2.Image))
	g.Expect(last.RolledBack).To(BeTrue(), "ECS rolled build 2 back")
	g.Expect(env.Status.DeployedImage).To(Equal(w.b1.Image), "build 1 runs again")
	g.Expect(env.Status.DeployedBuild).NotTo(BeNil())
	g.Expect(env.Status.DeployedBuild.ID).To(Equal(w.b1.ID))
	g.Expect(readyReason(env)).To(Equal("False/" + deployv1.ReasonRolloutFailed))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(w.b1.Image))

	// Held: a reconcile (here for an unrelated annotation) does not deploy build 2 again.
	updates, registers := h.sim.Calls("UpdateService"), h.sim.Calls("RegisterTaskDefinition")
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Annotations = map[string]string{"example.com/note": "x"} })
	g.Consistently(func() int { return h.sim.Calls("UpdateService") + h.sim.Calls("RegisterTaskDefinition") },
		"1s", poll).Should(Equal(updates + registers))
	g.Expect(h.getEnv("prod")).To(And(
		WithTransform(deployedImage, Equal(w.b1.Image)),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonRolloutFailed))))
}

// TestRollbackSeenThroughECSEvents: with ECS events only, a failed deploy that ECS rolled
// back is recorded as rolled back, at the cost of one DescribeServices for the failure.
func TestRollbackSeenThroughECSEvents(t *testing.T) {
	w := newRollbackWorld(t, true)
	rollbacks := testutil.ToFloat64(metrics.Rollbacks)
	w.failAndRollBack(false)
	w.deliver() // FAILED, then the rollback's IN_PROGRESS
	w.expectRolledBack()
	// Counted once the status is written, so it can trail the status by a moment.
	w.h.g.Eventually(func() float64 { return testutil.ToFloat64(metrics.Rollbacks) }, timeout, poll).
		Should(Equal(rollbacks+1), "autodeploy_rollbacks_total counts the rollback")
	// The rollback completes; its event changes nothing.
	w.h.g.Expect(w.h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	before := w.h.getEnv("prod")
	w.deliver()
	w.h.g.Expect(w.h.getEnv("prod").ResourceVersion).To(Equal(before.ResourceVersion))
	// One look at the service per deploy, and one for the failure.
	w.h.g.Expect(w.h.sim.Calls("DescribeServices")).To(Equal(3))
}

// TestFailureEventCostsTheReceiverNoECSCall: the receiver only records that ECS reported a
// failure; the reconciler asks ECS whether it rolled back. With DescribeServices failing the
// receiver still answers 200 at once (EventBridge need not retry), the status never calls the
// rollout ended before the look, and once ECS answers again the rollback is recorded.
func TestFailureEventCostsTheReceiverNoECSCall(t *testing.T) {
	w := newRollbackWorld(t, true)
	h, g := w.h, w.h.g
	h.sim.InjectFault("DescribeServices", ecssim.Fault{Status: 500, Code: "ServerException"})
	looks := h.sim.Calls("DescribeServices")
	w.failAndRollBack(false)
	w.deliver() // answered 200: the failure is recorded as reported
	env := h.getEnv("prod")
	last := env.Status.LastDeploy()
	g.Expect(last.FailureReported).NotTo(BeNil(), "the failure is recorded as reported")
	g.Expect(last.FailureReported.Reason).To(ContainSubstring("circuit breaker"))
	g.Expect(last.Result).To(Equal(deployv1.ResultInProgress), "not ended before anyone knows whether ECS rolled back")
	// The reconciler tries, and keeps trying while ECS fails.
	g.Eventually(func() int { return h.sim.Calls("DescribeServices") }, timeout, poll).Should(BeNumerically(">", looks))
	g.Expect(h.getEnv("prod").Status.LastDeploy().Result).To(Equal(deployv1.ResultInProgress))
	h.sim.ClearFaults()
	w.expectRolledBack()
	g.Expect(h.getEnv("prod").Status.LastDeploy().FailureReported).To(BeNil(), "the report is answered")
}

// TestRollbackSeenThroughALateECSEvent: the FAILED event arrives after the rollback completed
// and the failed deployment left the list (EventBridge retries late, or delivers out of
// order): the service running the revision build 2 replaced still tells a rollback.
func TestRollbackSeenThroughALateECSEvent(t *testing.T) {
	w := newRollbackWorld(t, true)
	w.failAndRollBack(true)
	w.deliver()
	w.expectRolledBack()
	w.h.g.Expect(w.h.sim.Calls("DescribeServices")).To(Equal(3))
}

// TestRollbackSeenByPollingAfterTheFailedDeploymentLeft: the tracker looks only once the
// rollback completed and the failed deployment is gone (its interval had grown, or ECS did
// not answer meanwhile): still Failed and rolled back, not Superseded.
func TestRollbackSeenByPollingAfterTheFailedDeploymentLeft(t *testing.T) {
	w := newRollbackWorld(t, false)
	w.h.sim.InjectFault("DescribeServices", ecssim.Fault{Status: 500, Code: "ServerException", Message: "injected"})
	w.failAndRollBack(true)
	w.h.sim.ClearFaults()
	w.expectRolledBack()
}

// TestRollbackSeenAfterARestart: the manager was down through the whole rollout and
// rollback; once back it records the rollback, in both tracking modes.
func TestRollbackSeenAfterARestart(t *testing.T) {
	for _, events := range []bool{false, true} {
		name := "polling"
		if events {
			name = "events"
		}
		t.Run(name, func(t *testing.T) {
			w := newRollbackWorld(t, events)
			w.h.stopManager()
			w.failAndRollBack(true)
			w.h.startManager()
			w.deliver() // EventBridge delivers again what the receiver missed
			w.expectRolledBack()
		})
	}
}

// TestSupersededRolloutIsNotARollback: someone else deploys a newer revision over build 2
// before its rollout ended; the tracker finds build 2's deployment gone and records it
// Superseded: nothing failed and nothing is held.
func TestSupersededRolloutIsNotARollback(t *testing.T) {
	w := newRollbackWorld(t, false)
	h, g := w.h, w.h.g
	h.sim.InjectFault("DescribeServices", ecssim.Fault{Status: 500, Code: "ServerException", Message: "injected"})
	out, err := h.sdk().DescribeTaskDefinition(context.Background(), &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("prod-seed-only")})
	g.Expect(err).NotTo(HaveOccurred())
	td := out.TaskDefinition
	td.ContainerDefinitions[0].Image = aws.String(image("hotfix"))
	reg, err := h.sdk().RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{
		Family: td.Family, ContainerDefinitions: td.ContainerDefinitions, NetworkMode: td.NetworkMode,
		RequiresCompatibilities: td.RequiresCompatibilities, Cpu: td.Cpu, Memory: td.Memory,
	})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = h.sdk().UpdateService(context.Background(), &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("shop-api"), TaskDefinition: reg.TaskDefinition.TaskDefinitionArn})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	h.sim.ClearFaults()

	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultSuperseded)))
	env := h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().RolledBack).To(BeFalse())
	g.Expect(readyReason(env)).NotTo(HaveSuffix(deployv1.ReasonRolloutFailed))
	// Not taken for a rollback: the status does not go back to build 1 (it keeps naming the
	// deploy's build; what the other deployment runs is not looked at), and build 2 is not held.
	g.Expect(env.Status.DeployedImage).To(Equal(w.b2.Image))
	g.Expect(env.Status.DeployedBuild.ID).To(Equal(w.b2.ID))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("hotfix")))
}
