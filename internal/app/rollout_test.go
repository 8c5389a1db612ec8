package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

func rolloutResult(e *deployv1.Environment) string {
	if e == nil || e.Status.LastDeploy() == nil {
		return ""
	}
	return e.Status.LastDeploy().Result
}

func readyReason(e *deployv1.Environment) string {
	if c := condition(e, deployv1.ReadyCondition); c != nil {
		return string(c.Status) + "/" + c.Reason
	}
	return ""
}

func (h *harness) eventReasons() []string {
	list := &eventsv1.EventList{}
	_ = k8sClient.List(context.Background(), list, client.InNamespace(h.ns))
	var reasons []string
	for _, e := range list.Items {
		reasons = append(reasons, e.Reason)
	}
	return reasons
}

// sdk is a plain ECS client of the simulator, for setting up what a test needs.
func (h *harness) sdk() *ecs.Client {
	return ecs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}},
		func(o *ecs.Options) { o.BaseEndpoint = aws.String(h.simURL) })
}

func TestRolloutCompletionIsTrackedAndPollingStops(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(300*time.Millisecond)))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	b := newBuild(5)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	// Right after UpdateService the rollout is in progress and Ready is Unknown.
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
	g.Expect(h.env("prod")()).To(Or(
		WithTransform(readyReason, Equal("Unknown/"+deployv1.ReasonRolloutInProgress)),
		WithTransform(readyReason, Equal("True/"+deployv1.ReasonDeployed))))

	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	env := h.getEnv("prod")
	g.Expect(readyReason(env)).To(Equal("True/" + deployv1.ReasonDeployed))
	g.Expect(condition(env, deployv1.ReconcilingCondition).Status).To(Equal(metav1.ConditionFalse))
	last := env.Status.LastDeploy()
	g.Expect(last.FinishedAt).NotTo(BeNil())
	g.Expect(last.PreviousImage).To(Equal(image("v1")))
	g.Expect(last.ImageDigest).To(HavePrefix("sha256:"), "the digest that runs is recorded at the end of the rollout")
	// Events are written asynchronously (the events.k8s.io broadcaster).
	g.Eventually(h.eventReasons, timeout, poll).Should(ContainElement("RolloutCompleted"))

	// Nothing in progress: the tracker asks ECS nothing, however long we wait (several times
	// its longest interval here).
	h.sim.ResetCalls()
	g.Consistently(func() int { return h.sim.Calls("DescribeServices") }, "1500ms", poll).Should(BeZero())

	// A second build: history keeps both, newest first.
	b2 := newBuild(6)
	g.Expect(h.post(b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b2.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	hist := h.getEnv("prod").Status.History
	g.Expect(hist).To(HaveLen(2))
	g.Expect(hist[0].Image).To(Equal(b2.Image))
	g.Expect(hist[1].Image).To(Equal(b.Image))
	g.Expect(hist[1].Result).To(Equal(deployv1.ResultCompleted))
}

func TestFailedRolloutIsReportedAndNotRetriedInALoop(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	family := h.seedService("prod", "seed-only", image("v1"))
	// A service with the deployment circuit breaker and rollback on.
	_, err := h.sdk().CreateService(context.Background(), &ecs.CreateServiceInput{
		Cluster: aws.String("prod"), ServiceName: aws.String("shop-api"), TaskDefinition: aws.String(family),
		DesiredCount: aws.Int32(2),
		DeploymentConfiguration: &types.DeploymentConfiguration{
			DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
		},
	})
	g.Expect(err).NotTo(HaveOccurred())
	h.createEnv("prod", nil)
	h.startManager()

	b := newBuild(7)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)))
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())

	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultFailed)))
	env := h.getEnv("prod")
	last := env.Status.LastDeploy()
	g.Expect(last.RolledBack).To(BeTrue())
	g.Expect(last.Reason).NotTo(BeEmpty())
	g.Expect(env.Status.DeployedImage).To(Equal(image("v1")), "ECS rolled back: v1 runs")
	g.Expect(readyReason(env)).To(Equal("False/" + deployv1.ReasonRolloutFailed))
	g.Expect(condition(env, deployv1.StalledCondition).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(condition(env, deployv1.ReadyCondition).Message).To(ContainSubstring(deployv1.RetryAnnotation))
	g.Eventually(h.eventReasons, timeout, poll).Should(ContainElement("RolloutFailed"))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")), "the controller does not fight ECS's rollback")

	// Not retried in a loop.
	registers, updates := h.sim.Calls("RegisterTaskDefinition"), h.sim.Calls("UpdateService")
	g.Consistently(func() int { return h.sim.Calls("RegisterTaskDefinition") + h.sim.Calls("UpdateService") },
		"1s", poll).Should(Equal(registers + updates))

	// An explicit retry deploys the same build again, once.
	h.updateEnv("prod", func(e *deployv1.Environment) {
		e.Annotations = map[string]string{deployv1.RetryAnnotation: "1"}
	})
	g.Eventually(func() int { return h.sim.Calls("UpdateService") }, timeout, poll).Should(Equal(updates + 1))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)),
		WithTransform(deployedImage, Equal(b.Image))))
	g.Expect(h.getEnv("prod").Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerRetry))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(registers), "the failed build's revision is reused")
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))

	// The next build moves on as usual.
	b2 := newBuild(8)
	g.Expect(h.post(b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b2.Image)))
}

func TestTrackerBatchesTenServicesPerCall(t *testing.T) {
	// Record how many services each DescribeServices call names.
	var mu sync.Mutex
	var batches []int
	observe := func(c ecssim.Call) {
		if c.Operation != "DescribeServices" || c.ErrorCode != "" {
			return
		}
		var in struct{ Services []string }
		if json.Unmarshal(c.Body, &in) == nil {
			mu.Lock()
			batches = append(batches, len(in.Services))
			mu.Unlock()
		}
	}
	sizes := func() map[int]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[int]int{}
		for _, n := range batches {
			out[n]++
		}
		return out
	}
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour), ecssim.WithCallObserver(observe)))
	g := h.g
	const n = 25
	svcs := h.fleet(n, nil)
	h.startManager()
	g.Expect(h.post(newBuild(1)).Code).To(Equal(http.StatusAccepted))
	for _, svc := range svcs {
		g.Eventually(h.env(svc), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)))
	}
	// Each deploy described its own service (one per call); once all 25 are in progress, the
	// tracker looks at them in calls of 10, 10 and 5, again and again.
	g.Eventually(sizes, timeout, poll).Should(And(HaveKeyWithValue(10, BeNumerically(">=", 4)), HaveKeyWithValue(5, BeNumerically(">=", 2))))
	for size := range sizes() {
		// Early looks, while deploys are still starting, see fewer services.
		g.Expect(size).To(BeNumerically("<=", 10), "no DescribeServices call names more than 10 services")
	}

	// All complete: the tracker reports them and goes quiet.
	for _, svc := range svcs {
		g.Expect(h.sim.CompleteDeployment("prod", svc)).To(Succeed())
	}
	for _, svc := range svcs {
		g.Eventually(h.env(svc), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	}
	h.sim.ResetCalls()
	g.Consistently(func() int { return h.sim.Calls("DescribeServices") }, "1s", poll).Should(BeZero())
}
