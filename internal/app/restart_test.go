package app_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

func TestRestartOverUpToDateEnvironmentsMakesNoECSCall(t *testing.T) {
	h := newHarness(t)
	g := h.g
	const n = 40
	svcs := h.fleet(n, func(i int, e *deployv1.Environment) {
		if i%4 == 0 {
			e.Spec.PinnedImage = image("v1")
		}
	})
	h.startManager()
	b := newBuild(1)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	for i := range n {
		want := b.Image
		if i%4 == 0 {
			want = image("v1")
		}
		g.Eventually(h.env(svcs[i]), timeout, poll).Should(And(
			WithTransform(deployedImage, Equal(want)),
			WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	}
	h.stopManager()

	h.sim.ResetCalls()
	before := metrics.EnvironmentReconciles()
	h.startManager()
	// Every Environment is reconciled once after the restart ...
	g.Eventually(metrics.EnvironmentReconciles, timeout, poll).Should(BeNumerically(">=", before+n))
	// ... and none of them costs an ECS call.
	g.Consistently(h.sim.TotalCalls, "500ms", poll).Should(BeZero())
}

func TestInterruptedDeployBetweenRegisterAndUpdateFinishesOnce(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	// UpdateService fails until cleared: the revision is registered, the service not updated.
	h.sim.InjectFault("UpdateService", ecssim.Fault{Status: 500, Code: "ServerException", Message: "injected"})
	h.startManager()

	b := newBuild(2)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(func() int { return h.sim.Calls("UpdateService") }, timeout, poll).Should(BeNumerically(">=", 2))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	env := h.getEnv("prod")
	g.Expect(env.Status.PendingDeploy).NotTo(BeNil(), "the intent is recorded before ECS is called")
	g.Expect(env.Status.PendingDeploy.Image).To(Equal(b.Image))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
		if c := condition(e, deployv1.ReadyCondition); c != nil && c.Reason == deployv1.ReasonECSUnavailable {
			return c.Message
		}
		return ""
	}, ContainSubstring("ServerException")))

	// The manager goes away mid-deploy; ECS recovers; a new manager finishes the deploy.
	h.stopManager()
	h.sim.ClearFaults()
	h.startManager()
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1), "the revision left behind is reused")
	g.Expect(h.sim.Revisions(family)).To(Equal(2))
	g.Expect(h.getEnv("prod").Status.PendingDeploy).To(BeNil())
}

func TestInterruptedDeployAfterUpdateIsRecordedWithoutRedeploying(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	b := newBuild(3)

	// What a manager that died right after UpdateService leaves behind: the service runs the
	// new revision, and the Environment still has the deploy pending.
	rev2, err := h.sim.SeedTaskDefinition(fmt.Appendf(nil,
		`{"family":%q,"containerDefinitions":[{"name":"web","image":%q}]}`, family, b.Image))
	g.Expect(err).NotTo(HaveOccurred())
	api := ecs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}},
		func(o *ecs.Options) { o.BaseEndpoint = aws.String(h.simURL) })
	_, err = api.UpdateService(context.Background(), &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("shop-api"), TaskDefinition: aws.String(rev2)})
	g.Expect(err).NotTo(HaveOccurred())
	h.createEnv("prod", nil)
	env := h.getEnv("prod")
	env.Status.LatestBuild = &deployv1.Build{ID: b.ID, Number: b.Number, Image: b.Image, Branch: b.Branch, ReceivedAt: metav1.Now()}
	env.Status.PendingDeploy = &deployv1.Deploy{Image: b.Image, Trigger: deployv1.TriggerBuild, StartedAt: metav1.Now(),
		Build: &deployv1.BuildRef{ID: b.ID, Number: b.Number}}
	g.Expect(k8sClient.Status().Update(context.Background(), env)).To(Succeed())
	h.sim.ResetCalls()

	h.startManager()
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
	env = h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().TaskDefinitionARN).To(Equal(rev2))
	g.Expect(env.Status.LastDeploy().DeploymentID).NotTo(BeEmpty())
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(BeZero())
	g.Expect(h.sim.Calls("UpdateService")).To(BeZero())
	g.Expect(h.sim.Revisions(family)).To(Equal(2))
}
