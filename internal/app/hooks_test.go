package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"
	ktypes "k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/hookctl"
)

// blueGreenWithPause is a blue/green configuration with a pause hook after the test traffic
// shift that takes timeoutAction after minutes deployment minutes.
func blueGreenWithPause(minutes int32, timeoutAction types.DeploymentLifecycleHookAction) *types.DeploymentConfiguration {
	return &types.DeploymentConfiguration{
		Strategy: types.DeploymentStrategyBlueGreen,
		LifecycleHooks: []types.DeploymentLifecycleHook{{
			TargetType:           types.DeploymentLifecycleHookTargetTypePause,
			LifecycleStages:      []types.DeploymentLifecycleHookStage{types.DeploymentLifecycleHookStagePostTestTrafficShift},
			TimeoutConfiguration: &types.DeploymentLifecycleHookTimeoutConfiguration{TimeoutInMinutes: aws.Int32(minutes), Action: timeoutAction},
		}},
	}
}

func awaitedHookID(e *deployv1.Environment) string {
	if e == nil {
		return ""
	}
	if h := e.Status.AwaitedHook(); h != nil {
		return h.HookID
	}
	return ""
}

func hookHandled(e *deployv1.Environment) string {
	if e == nil {
		return ""
	}
	return e.Status.HookActionHandled
}

// simAwaitedHook returns the id of the pause hook the service deployment arn waits at in the
// simulator, or "".
func (h *harness) simAwaitedHook(arn string) string {
	sd, ok := h.sim.ServiceDeployment(arn)
	if !ok || len(sd.HooksAwaiting) == 0 {
		return ""
	}
	return sd.HooksAwaiting[0].ID
}

func (h *harness) setHookAction(name, value string) {
	h.updateEnv(name, func(e *deployv1.Environment) {
		if e.Annotations == nil {
			e.Annotations = map[string]string{}
		}
		e.Annotations[deployv1.HookActionAnnotation] = value
	})
}

// TestPauseHookFromPollingAwaitsApprovalAndContinuesOnce: a blue/green deployment waiting at a
// pause hook shows Ready=False AwaitingApproval with the hook and the commands to answer it,
// found by the service-deployment tracker alone (no events). An invalid value and the id of
// another hook are refused with no ECS call; autodeployctl continue sends exactly one
// ContinueServiceDeployment, the rollout completes, and a second continue is refused.
func TestPauseHookFromPollingAwaitsApprovalAndContinuesOnce(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithStageDuration(50*time.Millisecond), ecssim.WithDeploymentMinute(time.Hour)))
	g := h.g
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: blueGreenWithPause(10, types.DeploymentLifecycleHookActionRollback)})
	h.createEnv("prod", nil)
	h.startManager()
	key := ktypes.NamespacedName{Namespace: h.ns, Name: "prod"}
	ctx := context.Background()

	// Nothing awaits yet: the CLI refuses and sets nothing.
	var out bytes.Buffer
	g.Expect(hookctl.Answer(ctx, k8sClient, key, deployv1.HookActionContinue, hookctl.Options{}, &out)).
		To(MatchError(ContainSubstring("awaits no pause hook")))
	g.Expect(h.getEnv("prod").Annotations).NotTo(HaveKey(deployv1.HookActionAnnotation))

	b := newBuild(21)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(awaitedHookID, Not(BeEmpty())))
	env := h.getEnv("prod")
	last := env.Status.LastDeploy()
	hook := last.AwaitingHook
	g.Expect(hook.ServiceDeploymentARN).To(Equal(last.ServiceDeploymentARN))
	g.Expect(hook.HookID).To(Equal(h.simAwaitedHook(last.ServiceDeploymentARN)))
	g.Expect(hook.TimeoutAction).To(Equal("ROLLBACK"))
	g.Expect(hook.ExpiresAt).NotTo(BeNil())
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(readyReason, Equal("False/"+deployv1.ReasonAwaitingApproval)))
	ready := condition(h.getEnv("prod"), deployv1.ReadyCondition)
	g.Expect(ready.Message).To(And(
		ContainSubstring("pause hook "+hook.HookID),
		ContainSubstring("then rolls the deployment back"),
		ContainSubstring("kubectl -n "+h.ns+" annotate environment prod "+deployv1.HookActionAnnotation+"=continue:"+hook.HookID+" --overwrite"),
		ContainSubstring("autodeployctl rollback prod -n "+h.ns)))
	g.Expect(condition(h.getEnv("prod"), deployv1.StalledCondition).Status).To(BeEquivalentTo("False"))
	g.Eventually(h.eventReasons, timeout, poll).Should(ContainElement("AwaitingApproval"))

	// Refused, with no ECS call: an invalid value, then another hook's id.
	h.setHookAction("prod", "approve")
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(hookHandled, Equal("approve")))
	g.Eventually(h.eventReasons, timeout, poll).Should(ContainElement("HookActionInvalid"))
	h.setHookAction("prod", "continue:ecs-pause-of-another-deployment")
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(hookHandled, Equal("continue:ecs-pause-of-another-deployment")))
	g.Eventually(h.eventReasons, timeout, poll).Should(ContainElement("HookActionRejected"))
	g.Expect(h.sim.Calls("ContinueServiceDeployment")).To(BeZero())
	g.Expect(awaitedHookID(h.getEnv("prod"))).To(Equal(hook.HookID), "still awaiting")
	g.Expect(h.simAwaitedHook(last.ServiceDeploymentARN)).To(Equal(hook.HookID))

	// The CLI continues it: one ContinueServiceDeployment, and the rollout completes.
	out.Reset()
	g.Expect(hookctl.Answer(ctx, k8sClient, key, deployv1.HookActionContinue, hookctl.Options{Wait: timeout}, &out)).To(Succeed())
	// ECS may move past the hook before the CLI looks again: both say the answer went through.
	g.Expect(out.String()).To(And(ContainSubstring("continue:"+hook.HookID),
		Or(ContainSubstring("ECS accepted"), ContainSubstring("ECS is past pause hook "+hook.HookID))))
	g.Expect(h.getEnv("prod").Annotations[deployv1.HookActionAnnotation]).To(Equal("continue:" + hook.HookID))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	env = h.getEnv("prod")
	g.Expect(readyReason(env)).To(Equal("True/" + deployv1.ReasonDeployed))
	g.Expect(env.Status.LastDeploy().AwaitingHook).To(BeNil())
	g.Expect(env.Status.DeployedImage).To(Equal(b.Image))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
	g.Expect(h.sim.Calls("ContinueServiceDeployment")).To(Equal(1))
	g.Eventually(h.eventReasons, timeout, poll).Should(ContainElement("HookContinued"))

	// Answered once: the same annotation never calls ECS again, and nothing awaits now.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Labels = map[string]string{"touched": "yes"} })
	g.Consistently(func() int { return h.sim.Calls("ContinueServiceDeployment") }, "500ms", poll).Should(Equal(1))
	g.Expect(hookctl.Answer(ctx, k8sClient, key, deployv1.HookActionRollback, hookctl.Options{}, &out)).
		To(MatchError(ContainSubstring("awaits no pause hook")))
}

// TestPauseHookFromEventsRollsBackAndHoldsTheBuild: the "ECS Hook State Change" event the
// simulator emits, posted to the receiver, marks the rollout AwaitingApproval while the
// tracker cannot see it (DescribeServiceDeployments failing); a repeat is a duplicate, an event
// of another service matches nothing. The rollback annotation sends one
// ContinueServiceDeployment ROLLBACK: the rollout ends Failed and rolled back, and the build
// is held.
func TestPauseHookFromEventsRollsBackAndHoldsTheBuild(t *testing.T) {
	q := &eventQueue{}
	h := newHarness(t, withSim(ecssim.WithStageDuration(50*time.Millisecond), ecssim.WithDeploymentMinute(time.Hour), ecssim.WithEventSink(q.add)))
	keys := [][]byte{[]byte(ecsEventKey)}
	h.eventKeys.Store(&keys)
	g := h.g
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: blueGreenWithPause(10, types.DeploymentLifecycleHookActionContinue)})
	h.createEnv("prod", nil)
	h.startManager()

	b := newBuild(31)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(func() string {
		if last := h.getEnv("prod").Status.LastDeploy(); last != nil {
			return last.ServiceDeploymentARN
		}
		return ""
	}, timeout, poll).ShouldNot(BeEmpty())
	// The tracker is blind from here on: only the event can tell.
	h.sim.InjectFault("DescribeServiceDeployments", ecssim.Fault{})
	arn := h.getEnv("prod").Status.LastDeploy().ServiceDeploymentARN
	g.Eventually(func() string { return h.simAwaitedHook(arn) }, timeout, poll).ShouldNot(BeEmpty())
	var hookEvents [][]byte
	for _, ev := range q.drain() {
		if bytes.Contains(ev, []byte(`"ECS Hook State Change"`)) {
			hookEvents = append(hookEvents, ev)
		}
	}
	g.Expect(hookEvents).To(HaveLen(1))
	g.Expect(awaitedHookID(h.getEnv("prod"))).To(BeEmpty())

	r := h.postEvent("/v1/events", hookEvents[0], ecsEventKey)
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(r.Body["result"]).To(Equal("recorded"))
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns + "/prod"))
	env := h.getEnv("prod")
	hookID := h.simAwaitedHook(arn)
	g.Expect(awaitedHookID(env)).To(Equal(hookID))
	g.Expect(readyReason(env)).To(Equal("False/" + deployv1.ReasonAwaitingApproval))
	g.Expect(condition(env, deployv1.ReadyCondition).Message).To(ContainSubstring("then continues the deployment"))
	g.Expect(env.Status.LastDeploy().AwaitingHook.Stage).To(Equal("POST_TEST_TRAFFIC_SHIFT"))

	again := h.postEvent("/v1/events", hookEvents[0], ecsEventKey)
	g.Expect(again.Code).To(Equal(http.StatusOK))
	g.Expect(again.Body["result"]).To(Equal("duplicate"))
	var other map[string]any
	g.Expect(json.Unmarshal(hookEvents[0], &other)).To(Succeed())
	other["id"] = "another-event"
	other["resources"] = []string{"arn:aws:ecs:us-east-1:123456789012:service/prod/billing"}
	other["detail"].(map[string]any)["serviceDeploymentArn"] = "arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/billing/x"
	raw, _ := json.Marshal(other)
	nomatch := h.postEvent("/v1/events", raw, ecsEventKey)
	g.Expect(nomatch.Code).To(Equal(http.StatusOK))
	g.Expect(nomatch.Body["result"]).To(Equal("no-match"))
	delete(other["detail"].(map[string]any), "hookId")
	other["id"] = "an-event-without-hook-id"
	raw, _ = json.Marshal(other)
	bad := h.postEvent("/v1/events", raw, ecsEventKey)
	g.Expect(bad.Code).To(Equal(http.StatusBadRequest), bad.Raw)
	g.Expect(bad.Body["error"]).To(ContainSubstring("detail.hookId"))

	// Roll back, as kubectl annotate would.
	h.setHookAction("prod", "rollback:"+hookID)
	g.Eventually(func() int { return h.sim.Calls("ContinueServiceDeployment") }, timeout, poll).Should(Equal(1))
	g.Eventually(h.eventReasons, timeout, poll).Should(ContainElement("HookRolledBack"))
	h.sim.ClearFaults()
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultFailed)))
	env = h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().RolledBack).To(BeTrue())
	g.Expect(env.Status.LastDeploy().AwaitingHook).To(BeNil())
	g.Expect(env.Status.DeployedImage).To(Equal(image("v1")))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))
	g.Expect(readyReason(env)).To(Equal("False/" + deployv1.ReasonRolloutFailed))
	// Held: the rolled-back build is not deployed again, and ECS got one answer.
	updates := h.sim.Calls("UpdateService")
	g.Consistently(func() int { return h.sim.Calls("UpdateService") + h.sim.Calls("ContinueServiceDeployment") }, "1s", poll).Should(Equal(updates + 1))
}

// TestPauseHookTimeoutWithRollbackFails: nobody answers; at the hook's timeout ECS rolls the
// deployment back, and the rollout ends Failed without any ContinueServiceDeployment.
func TestPauseHookTimeoutWithRollbackFails(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithStageDuration(50*time.Millisecond), ecssim.WithDeploymentMinute(time.Second)))
	g := h.g
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: blueGreenWithPause(2, types.DeploymentLifecycleHookActionRollback)})
	h.createEnv("prod", nil)
	h.startManager()

	g.Expect(h.post(newBuild(41)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(readyReason, Equal("False/"+deployv1.ReasonAwaitingApproval)))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultFailed)))
	env := h.getEnv("prod")
	last := env.Status.LastDeploy()
	g.Expect(last.RolledBack).To(BeTrue())
	g.Expect(last.Reason).To(ContainSubstring("timed out"))
	g.Expect(last.AwaitingHook).To(BeNil())
	g.Expect(readyReason(env)).To(Equal("False/" + deployv1.ReasonRolloutFailed))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))
	g.Expect(h.sim.Calls("ContinueServiceDeployment")).To(BeZero())
}
