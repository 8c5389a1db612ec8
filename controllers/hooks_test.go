package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
)

func TestParseHookAction(t *testing.T) {
	for _, tc := range []struct {
		in, action, hook, err string
	}{
		{in: "continue:ecs-pause-abc", action: "continue", hook: "ecs-pause-abc"},
		{in: "ROLLBACK:ecs-pause-abc", action: "rollback", hook: "ecs-pause-abc"},
		{in: "continue", err: "is not continue:<hookID> or rollback:<hookID>"},
		{in: "continue:", err: "is not continue:<hookID> or rollback:<hookID>"},
		{in: "approve:ecs-pause-abc", err: `action "approve" is neither continue nor rollback`},
		{in: "continue:a b", err: "is not continue:<hookID>"},
	} {
		g := NewWithT(t)
		action, hook, err := ParseHookAction(tc.in)
		if tc.err != "" {
			g.Expect(err).To(MatchError(And(ContainSubstring(tc.err), ContainSubstring(deployv1.HookActionAnnotation))), tc.in)
			continue
		}
		g.Expect(err).NotTo(HaveOccurred(), tc.in)
		g.Expect([]string{action, hook}).To(Equal([]string{tc.action, tc.hook}), tc.in)
	}
}

const (
	hookSD    = "arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/shop-api/abc"
	hookSvc   = "arn:aws:ecs:us-east-1:123456789012:service/prod/shop-api"
	hookImage = decideRepo + ":142"
)

// hookEnv is an Environment whose deploy of build 142 updated the service at updated and
// is rolling out.
func hookEnv(updated time.Time) *deployv1.Environment {
	at := metav1.NewTime(updated)
	env := &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: "shop"},
		Spec: deployv1.EnvironmentSpec{Application: "shop-api", AutoDeploy: true,
			ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api"}},
	}
	env.Status.LatestBuild = &deployv1.Build{ID: "shop-api:142", Number: 142, Image: hookImage}
	env.Status.DeployedImage, env.Status.DeployedBuild = hookImage, env.Status.LatestBuild.Ref()
	env.Status.History = []deployv1.Deploy{{Image: hookImage, Build: env.Status.LatestBuild.Ref(), Trigger: deployv1.TriggerBuild,
		DeploymentID: "ecs-svc/1", Result: deployv1.ResultInProgress, StartedAt: at, ServiceUpdatedAt: &at}}
	return env
}

func TestApplyHook(t *testing.T) {
	g := NewWithT(t)
	updated := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	expires := updated.Add(10 * time.Minute)
	awaiting := HookObservation{ServiceDeploymentARN: hookSD, HookID: "ecs-pause-1", Status: HookAwaitingAction,
		Stage: "POST_TEST_TRAFFIC_SHIFT", ExpiresAt: &expires, TimeoutAction: "ROLLBACK", At: updated.Add(time.Minute)}

	env := hookEnv(updated)
	g.Expect(ApplyHook(env, awaiting)).To(Equal(HookApplied))
	h := AwaitedHook(env)
	g.Expect(h).NotTo(BeNil())
	g.Expect(h.HookID).To(Equal("ecs-pause-1"))
	g.Expect(h.Stage).To(Equal("POST_TEST_TRAFFIC_SHIFT"))
	g.Expect(h.ExpiresAt.Time).To(BeTemporally("==", expires))
	ready := meta.FindStatusCondition(env.Status.Conditions, deployv1.ReadyCondition)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(deployv1.ReasonAwaitingApproval))
	g.Expect(ready.Message).To(And(
		ContainSubstring("pause hook ecs-pause-1 at stage POST_TEST_TRAFFIC_SHIFT"),
		ContainSubstring("until 2026-12-01T10:10:00Z, then rolls the deployment back"),
		ContainSubstring("kubectl -n shop annotate environment prod deploy.autodeploy.dev/hook-action=continue:ecs-pause-1 --overwrite"),
		ContainSubstring("deploy.autodeploy.dev/hook-action=rollback:ecs-pause-1"),
		ContainSubstring("autodeployctl continue prod -n shop")))
	g.Expect(meta.IsStatusConditionTrue(env.Status.Conditions, deployv1.ReconcilingCondition)).To(BeTrue())
	g.Expect(meta.IsStatusConditionTrue(env.Status.Conditions, deployv1.StalledCondition)).To(BeFalse(), "ECS moves on at the timeout")

	// A duplicate changes nothing; another service deployment is not this rollout's.
	g.Expect(ApplyHook(env, awaiting)).To(Equal(HookUnchanged))
	other := awaiting
	other.ServiceDeploymentARN, other.HookID = hookSD+"x", "ecs-pause-9"
	g.Expect(ApplyHook(env, other)).To(Equal(HookNoMatch))

	// The hook is done: cleared, and a late AWAITING event of it does not bring it back.
	done := awaiting
	done.Status, done.At = "SUCCEEDED", updated.Add(2*time.Minute)
	g.Expect(ApplyHook(env, done)).To(Equal(HookApplied))
	g.Expect(AwaitedHook(env)).To(BeNil())
	g.Expect(meta.FindStatusCondition(env.Status.Conditions, deployv1.ReadyCondition).Reason).To(Equal(deployv1.ReasonRolloutInProgress))
	g.Expect(ApplyHook(env, awaiting)).To(Equal(HookUnchanged))
	g.Expect(AwaitedHook(env)).To(BeNil())

	// The next hook of the same deployment.
	next := awaiting
	next.HookID = "ecs-pause-2"
	g.Expect(ApplyHook(env, next)).To(Equal(HookApplied))
	g.Expect(AwaitedHook(env).HookID).To(Equal("ecs-pause-2"))

	// An event older than the deploy's service update is about an earlier deployment.
	early := hookEnv(updated)
	old := awaiting
	old.At = updated.Add(-time.Hour)
	g.Expect(ApplyHook(early, old)).To(Equal(HookNoMatch))

	// While a deploy is being recorded, an event that may be its own is to be delivered again.
	pending := hookEnv(updated)
	pending.Status.PendingDeploy = &deployv1.Deploy{Image: decideRepo + ":143", Trigger: deployv1.TriggerBuild, StartedAt: metav1.NewTime(updated.Add(30 * time.Second))}
	g.Expect(ApplyHook(pending, awaiting)).To(Equal(HookEarly))

	// A rollout that ended awaits nothing.
	ended := hookEnv(updated)
	g.Expect(ApplyHook(ended, awaiting)).To(Equal(HookApplied))
	g.Expect(ApplyRollout(ended, RolloutObservation{DeploymentID: "ecs-svc/1", Result: deployv1.ResultCompleted, At: updated.Add(time.Hour)})).To(BeTrue())
	g.Expect(ended.Status.LastDeploy().AwaitingHook).To(BeNil())
	g.Expect(ApplyHook(ended, next)).To(Equal(HookNoMatch))
}

func TestParseHookEvent(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2026, 12, 1, 10, 1, 0, 0, time.UTC)
	ev := &eventbridge.Event{Source: "aws.ecs", DetailType: "ECS Hook State Change", Time: at, Resources: []string{hookSvc},
		Detail: []byte(`{"eventType":"INFO","eventName":"HOOK_AWAITING_ACTION","serviceDeploymentArn":"` + hookSD + `",
		"hookId":"ecs-pause-1","targetType":"PAUSE","lifecycleStage":"POST_SCALE_UP","status":"AWAITING_ACTION",
		"expiresAt":"2026-12-01T10:11:00.000Z","timeoutAction":"CONTINUE"}`)}
	obs, svc, target, err := parseHookEvent(ev)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(svc).To(Equal(hookSvc))
	g.Expect(target).To(Equal("PAUSE"))
	g.Expect(obs.HookID).To(Equal("ecs-pause-1"))
	g.Expect(obs.Status).To(Equal(HookAwaitingAction))
	g.Expect(obs.Stage).To(Equal("POST_SCALE_UP"))
	g.Expect(obs.TimeoutAction).To(Equal("CONTINUE"))
	g.Expect(*obs.ExpiresAt).To(BeTemporally("==", at.Add(10*time.Minute)))
	g.Expect(obs.At).To(Equal(at))

	// The service ARN follows from the service deployment's; the status from the event name.
	ev.Resources = nil
	ev.Detail = []byte(`{"eventName":"HOOK_TIMED_OUT","serviceDeploymentArn":"` + hookSD + `","hookId":"ecs-pause-1","expiresAt":1796119860}`)
	obs, svc, _, err = parseHookEvent(ev)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(svc).To(Equal(hookSvc))
	g.Expect(obs.Status).To(Equal(HookTimedOut))
	g.Expect(obs.ExpiresAt.Unix()).To(Equal(int64(1796119860)))

	for detail, want := range map[string]string{
		`{"eventName":"HOOK_AWAITING_ACTION","serviceDeploymentArn":"` + hookSD + `"}`:                              "detail.hookId is required",
		`{"eventName":"HOOK_AWAITING_ACTION","hookId":"h"}`:                                                         "detail.serviceDeploymentArn",
		`{"hookId":"h","serviceDeploymentArn":"` + hookSD + `"}`:                                                    "detail.eventName",
		`{"eventName":"HOOK_AWAITING_ACTION","hookId":"h","serviceDeploymentArn":"` + hookSD + `","expiresAt":"x"}`: "detail.expiresAt",
		`[]`: "invalid event: detail",
	} {
		ev.Detail = []byte(detail)
		_, _, _, err := parseHookEvent(ev)
		g.Expect(err).To(MatchError(ContainSubstring(want)), detail)
	}
}
