package app_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// createShopAPI creates service prod/shop-api running v1 (through the SDK, so that the test
// chooses its deployment controller, strategy and load balancers).
func (h *harness) createShopAPI(in ecs.CreateServiceInput) {
	h.t.Helper()
	family := h.seedService("prod", "seed-only", image("v1"))
	in.Cluster, in.ServiceName, in.TaskDefinition = aws.String("prod"), aws.String("shop-api"), aws.String(family)
	in.DesiredCount = aws.Int32(2)
	_, err := h.sdk().CreateService(context.Background(), &in)
	h.g.Expect(err).NotTo(HaveOccurred())
}

func rolloutSummary(e *deployv1.Environment) string {
	if e == nil {
		return ""
	}
	return e.Status.Rollout
}

func stalledReason(e *deployv1.Environment) string {
	if c := condition(e, deployv1.StalledCondition); c != nil && c.Status == "True" {
		return c.Reason
	}
	return ""
}

func TestUnsupportedDeploymentControllerStallsWithoutCallingUpdate(t *testing.T) {
	for _, tc := range []struct {
		controller types.DeploymentControllerType
		says       string
	}{
		{types.DeploymentControllerTypeCodeDeploy, "trigger the deployment through AWS CodeDeploy"},
		{types.DeploymentControllerTypeExternal, "task sets"},
	} {
		t.Run(string(tc.controller), func(t *testing.T) {
			h := newHarness(t)
			g := h.g
			h.createShopAPI(ecs.CreateServiceInput{DeploymentController: &types.DeploymentController{Type: tc.controller}})
			h.createEnv("prod", nil)
			h.startManager()
			h.sim.ResetCalls()

			g.Expect(h.post(newBuild(3)).Code).To(Equal(http.StatusAccepted))
			g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(stalledReason, Equal(deployv1.ReasonUnsupportedDeploymentController)))
			env := h.getEnv("prod")
			ready := condition(env, deployv1.ReadyCondition)
			g.Expect(ready.Status).To(BeEquivalentTo("False"))
			g.Expect(ready.Message).To(And(ContainSubstring(string(tc.controller)), ContainSubstring(tc.says)))
			g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(BeZero())
			g.Expect(h.sim.Calls("UpdateService")).To(BeZero())
			// No retry loop: the deploy is not tried again until something changes.
			described := h.sim.Calls("DescribeServices")
			g.Consistently(func() int { return h.sim.Calls("DescribeServices") }, "1s", poll).Should(Equal(described))
			g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))

			// The retry annotation tries once more (and stalls again: nothing changed in ECS).
			h.updateEnv("prod", func(e *deployv1.Environment) {
				e.Annotations = map[string]string{deployv1.RetryAnnotation: "1"}
			})
			g.Eventually(func() int { return h.sim.Calls("DescribeServices") }, timeout, poll).Should(BeNumerically(">", described))
			g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string { return e.Status.RetryHandled }, Equal("1")))
			g.Expect(stalledReason(h.getEnv("prod"))).To(Equal(deployv1.ReasonUnsupportedDeploymentController))
			g.Expect(h.sim.Calls("UpdateService")).To(BeZero())
		})
	}
}

// followRollout returns the status.rollout values an Environment shows until its newest deploy
// ends (checked with Eventually).
func (h *harness) followRollout(name string) []string {
	h.t.Helper()
	var seen []string
	h.g.Eventually(func() string {
		e := h.env(name)()
		s := rolloutSummary(e)
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		return rolloutResult(e)
	}, timeout, 5*time.Millisecond).Should(BeElementOf(deployv1.ResultCompleted, deployv1.ResultFailed, deployv1.ResultSuperseded))
	return seen
}

func TestStrategyRolloutsShowStagesAndWeightsAndComplete(t *testing.T) {
	for _, tc := range []struct {
		name      string
		config    types.DeploymentConfiguration
		noPolling bool
		shows     []string
	}{
		{"blue-green", types.DeploymentConfiguration{Strategy: types.DeploymentStrategyBlueGreen, BakeTimeInMinutes: aws.Int32(1)}, false,
			[]string{"BakeTime"}},
		{"blue-green-events-mode", types.DeploymentConfiguration{Strategy: types.DeploymentStrategyBlueGreen, BakeTimeInMinutes: aws.Int32(1)}, true,
			[]string{"BakeTime"}},
		{"linear", types.DeploymentConfiguration{Strategy: types.DeploymentStrategyLinear, BakeTimeInMinutes: aws.Int32(1),
			LinearConfiguration: &types.LinearConfiguration{StepPercent: aws.Float64(50), StepBakeTimeInMinutes: aws.Int32(1)}}, false,
			[]string{"Linear 50%", "BakeTime"}},
		{"canary", types.DeploymentConfiguration{Strategy: types.DeploymentStrategyCanary, BakeTimeInMinutes: aws.Int32(1),
			CanaryConfiguration: &types.CanaryConfiguration{CanaryPercent: aws.Float64(5), CanaryBakeTimeInMinutes: aws.Int32(1)}}, false,
			[]string{"Canary 5%", "BakeTime"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []harnessOption{withSim(ecssim.WithStageDuration(50*time.Millisecond), ecssim.WithDeploymentMinute(time.Second))}
			if tc.noPolling {
				opts = append(opts, withoutPolling())
			}
			h := newHarness(t, opts...)
			g := h.g
			cfg := tc.config
			h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: &cfg})
			h.createEnv("prod", nil)
			h.startManager()

			b := newBuild(4)
			g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
			g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)))
			last := h.getEnv("prod").Status.LastDeploy()
			g.Expect(last.Strategy).To(Equal(string(cfg.Strategy)))
			g.Expect(last.ServiceDeploymentARN).To(HavePrefix("arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/shop-api/"))
			// While it runs, Ready says the stage.
			g.Eventually(func() string {
				if c := condition(h.env("prod")(), deployv1.ReadyCondition); c != nil {
					return c.Message
				}
				return ""
			}, timeout, poll).Should(ContainSubstring("stage "))

			seen := h.followRollout("prod")
			for _, s := range tc.shows {
				g.Expect(seen).To(ContainElement(s), "status.rollout went through %v", seen)
			}
			g.Expect(seen[len(seen)-1]).To(Equal(deployv1.ResultCompleted))
			// Bake time is part of the rollout: it completed after BakeTime was shown.
			g.Expect(slices.Index(seen, "BakeTime")).To(BeNumerically("<", len(seen)-1))
			env := h.getEnv("prod")
			last = env.Status.LastDeploy()
			g.Expect(readyReason(env)).To(Equal("True/" + deployv1.ReasonDeployed))
			g.Expect(env.Status.DeployedImage).To(Equal(b.Image))
			g.Expect(last.ImageDigest).To(HavePrefix("sha256:"), "the digest that runs is recorded")
			g.Expect(last.Stage).To(BeEmpty())
			sd, ok := h.sim.ServiceDeployment(last.ServiceDeploymentARN)
			g.Expect(ok).To(BeTrue())
			g.Expect(sd.Status).To(Equal(ecssim.SDSuccessful))

			// Nothing in progress: no ECS call.
			h.sim.ResetCalls()
			g.Consistently(func() int {
				return h.sim.Calls("DescribeServiceDeployments") + h.sim.Calls("DescribeServices") + h.sim.Calls("ListServiceDeployments")
			}, "1s", poll).Should(BeZero())
		})
	}
}

func TestFailedBlueGreenRolloutRollsBackAndHoldsTheBuild(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithStageDuration(50*time.Millisecond), ecssim.WithDeploymentMinute(time.Hour)))
	g := h.g
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: &types.DeploymentConfiguration{
		Strategy: types.DeploymentStrategyBlueGreen, BakeTimeInMinutes: aws.Int32(1)}})
	h.createEnv("prod", nil)
	h.startManager()

	b := newBuild(8)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutSummary, Equal("BakeTime")))
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "alarm shop-api-5xx in ALARM")).To(Succeed())

	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultFailed)))
	env := h.getEnv("prod")
	last := env.Status.LastDeploy()
	g.Expect(last.RolledBack).To(BeTrue())
	g.Expect(last.Reason).To(ContainSubstring("alarm shop-api-5xx in ALARM"))
	g.Expect(env.Status.Rollout).To(Equal(deployv1.ResultFailed))
	g.Expect(env.Status.DeployedImage).To(Equal(image("v1")), "ECS put the source revision back")
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))
	g.Expect(readyReason(env)).To(Equal("False/" + deployv1.ReasonRolloutFailed))
	g.Eventually(h.eventReasons, timeout, poll).Should(ContainElement("RolloutFailed"))

	// Held: no redeploy of the build without the retry annotation.
	updates := h.sim.Calls("UpdateService")
	g.Consistently(func() int { return h.sim.Calls("UpdateService") }, "1s", poll).Should(Equal(updates))
	h.updateEnv("prod", func(e *deployv1.Environment) {
		e.Annotations = map[string]string{deployv1.RetryAnnotation: "now"}
	})
	g.Eventually(func() int { return h.sim.Calls("UpdateService") }, timeout, poll).Should(Equal(updates + 1))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutSummary, Equal("BakeTime")))
	g.Expect(h.getEnv("prod").Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerRetry))
}

func TestStoppedServiceDeploymentIsSupersededOrFailed(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithStageDuration(50*time.Millisecond), ecssim.WithDeploymentMinute(time.Hour)))
	g := h.g
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: &types.DeploymentConfiguration{
		Strategy:            types.DeploymentStrategyCanary,
		CanaryConfiguration: &types.CanaryConfiguration{CanaryPercent: aws.Float64(10), CanaryBakeTimeInMinutes: aws.Int32(1)}}})
	h.createEnv("prod", nil)
	h.startManager()

	// A later deploy of this Environment supersedes the first.
	g.Expect(h.post(newBuild(1)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutSummary, Equal("Canary 10%")))
	b2 := newBuild(2)
	g.Expect(h.post(b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b2.Image)), WithTransform(rolloutSummary, Equal("Canary 10%"))))
	hist := h.getEnv("prod").Status.History
	g.Expect(hist[1].Result).To(Equal(deployv1.ResultSuperseded))

	// Another update of the service (not by autodeploy) stops it: superseded, not failed.
	first := h.getEnv("prod").Status.LastDeploy()
	_, err := h.sdk().UpdateService(context.Background(), &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("shop-api"), TaskDefinition: aws.String(first.TaskDefinitionARN), ForceNewDeployment: true,
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultSuperseded)))
	g.Expect(h.getEnv("prod").Status.LastDeploy().Reason).To(ContainSubstring("updated again"))

	// StopServiceDeployment (rollback) of the next deploy: failed, rolled back.
	b3 := newBuild(3)
	g.Expect(h.post(b3).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b3.Image)), WithTransform(rolloutSummary, Equal("Canary 10%"))))
	arn := h.getEnv("prod").Status.LastDeploy().ServiceDeploymentARN
	_, err = h.sdk().StopServiceDeployment(context.Background(), &ecs.StopServiceDeploymentInput{
		ServiceDeploymentArn: aws.String(arn), StopType: types.StopServiceDeploymentStopTypeRollback})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultFailed)))
	env := h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().RolledBack).To(BeTrue())
	g.Expect(env.Status.DeployedImage).To(Equal(b2.Image), "ECS returned the service to the previous revision")
}

func TestClassicLoadBalancerRolloutCompletesAtSteadyState(t *testing.T) {
	for _, noPolling := range []bool{false, true} {
		name := "polling"
		if noPolling {
			name = "events-mode"
		}
		t.Run(name, func(t *testing.T) {
			opts := []harnessOption{withSim(ecssim.WithRolloutDuration(300 * time.Millisecond))}
			if noPolling {
				opts = append(opts, withoutPolling())
			}
			h := newHarness(t, opts...)
			g := h.g
			h.createShopAPI(ecs.CreateServiceInput{LoadBalancers: []types.LoadBalancer{{
				LoadBalancerName: aws.String("shop-clb"), ContainerName: aws.String("web"), ContainerPort: aws.Int32(8080)}}})
			h.createEnv("prod", nil)
			h.startManager()

			b := newBuild(9)
			g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
			g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
			env := h.getEnv("prod")
			g.Expect(env.Status.LastDeploy().SteadyState).To(BeTrue())
			g.Expect(readyReason(env)).To(Equal("True/" + deployv1.ReasonDeployed))
			h.sim.ResetCalls()
			g.Consistently(func() int { return h.sim.Calls("DescribeServices") }, "1s", poll).Should(BeZero())
		})
	}
}

// TestServiceDeploymentListedLateIsFollowed: ECS's list of service deployments is eventually
// consistent, and the one ListServiceDeployments right after UpdateService may not show the
// deployment it started. With rollouts otherwise ended by ECS events (which blue/green does
// not send), the rollout stays in progress, the tracker looks for it until ECS lists it, and
// then follows it to its end.
func TestServiceDeploymentListedLateIsFollowed(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithStageDuration(50*time.Millisecond), ecssim.WithDeploymentMinute(time.Second)), withoutPolling())
	g := h.g
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: &types.DeploymentConfiguration{
		Strategy: types.DeploymentStrategyBlueGreen, BakeTimeInMinutes: aws.Int32(1)}})
	h.createEnv("prod", nil)
	h.sim.SetServiceDeploymentListLag(time.Hour)
	h.startManager()

	b := newBuild(4)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)))
	last := h.getEnv("prod").Status.LastDeploy()
	g.Expect(last.Strategy).To(Equal(deployv1.StrategyBlueGreen))
	g.Expect(last.ServiceDeploymentARN).To(BeEmpty(), "ECS did not list it yet")
	// The tracker keeps looking; the rollout is not taken for ended meanwhile.
	lists := h.sim.Calls("ListServiceDeployments")
	g.Eventually(func() int { return h.sim.Calls("ListServiceDeployments") }, timeout, poll).Should(BeNumerically(">", lists))
	g.Expect(h.getEnv("prod").Status.LastDeploy().Result).To(Equal(deployv1.ResultInProgress))

	h.sim.SetServiceDeploymentListLag(0)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	env := h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().ServiceDeploymentARN).To(HavePrefix("arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/shop-api/"))
	g.Expect(env.Status.DeployedImage).To(Equal(b.Image))
	g.Expect(readyReason(env)).To(Equal("True/" + deployv1.ReasonDeployed))
	// Nothing in progress: no ECS call.
	h.sim.ResetCalls()
	g.Consistently(func() int {
		return h.sim.Calls("DescribeServiceDeployments") + h.sim.Calls("ListServiceDeployments")
	}, "1s", poll).Should(BeZero())
}
