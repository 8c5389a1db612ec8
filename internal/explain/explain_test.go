package explain

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

var now = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func at(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }

func cond(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg}
}

func ready(status metav1.ConditionStatus, reason, msg string) []metav1.Condition {
	stalled := metav1.ConditionFalse
	if status == metav1.ConditionFalse && (reason == deployv1.ReasonRolloutFailed || reason == deployv1.ReasonServiceNotFound) {
		stalled = metav1.ConditionTrue
	}
	return []metav1.Condition{
		cond(deployv1.ReadyCondition, status, reason, msg),
		cond(deployv1.StalledCondition, stalled, reason, msg),
	}
}

func env(mut func(*deployv1.Environment)) *deployv1.Environment {
	e := &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: "shop"},
		Spec:       deployv1.EnvironmentSpec{Application: "shop-api", AutoDeploy: true},
		Status: deployv1.EnvironmentStatus{
			LatestBuild:   &deployv1.Build{ID: "b143", Number: 143, Image: "repo:143"},
			DeployedImage: "repo:142", DeployedBuild: &deployv1.BuildRef{ID: "b142", Number: 142},
			Conditions: ready(metav1.ConditionTrue, deployv1.ReasonDeployed, "ECS deployment d1 of build 142 (repo:142) completed"),
		},
	}
	mut(e)
	return e
}

func TestWhy(t *testing.T) {
	cases := []struct {
		name string
		env  *deployv1.Environment
		kind Kind
		want []string
	}{
		{"not reconciled", env(func(e *deployv1.Environment) { e.Status = deployv1.EnvironmentStatus{} }),
			KindNotReconciled, []string{"has not been reconciled yet"}},
		{"deployed", env(func(e *deployv1.Environment) {
			e.Status.History = []deployv1.Deploy{{Image: "repo:142", Trigger: "Build", Result: deployv1.ResultCompleted, FinishedAt: at(now.Add(-time.Hour))}}
		}), KindDeployed, []string{"shop/prod is up to date", "build 142", "completed at 2026-11-27 08:00 UTC"}},
		{"pinned", env(func(e *deployv1.Environment) {
			e.Spec.PinnedImage = "repo:v1.4.2"
			e.Status.DeployedImage, e.Status.DeployedBuild = "repo:v1.4.2", nil
		}), KindPinned, []string{"pinned to repo:v1.4.2", "the latest is build 143", "runs repo:v1.4.2", "`autodeployctl unpin prod -n shop`"}},
		{"pinned set", env(func(e *deployv1.Environment) {
			e.Spec.PinnedImages = map[string]string{"worker": "w:1", "web": "a:1"}
		}), KindPinned, []string{"pinned to web=a:1, worker=w:1"}},
		{"held after a failure", env(func(e *deployv1.Environment) {
			e.Status.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonRolloutFailed, "The rollout of build 143 (repo:143) failed (circuit breaker); it is not retried.")
		}), KindHeld, []string{"holds after a failed rollout", "circuit breaker", "`autodeployctl retry prod -n shop`"}},
		{"stalled", env(func(e *deployv1.Environment) {
			e.Status.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonServiceNotFound, "Service shop-api not found in cluster prod")
		}), KindStalled, []string{"is stalled (ServiceNotFound): Service shop-api not found in cluster prod.", "retry"}},
		{"waiting for upstream", env(func(e *deployv1.Environment) {
			e.Status.Gate = &deployv1.Gate{Reason: deployv1.ReasonWaitingForUpstream, Message: "waiting for shop-api-staging to complete build 143", Build: &deployv1.BuildRef{Number: 143}}
			e.Status.Conditions = ready(metav1.ConditionTrue, deployv1.ReasonWaitingForUpstream, e.Status.Gate.Message)
		}), KindGate, []string{"waits for its upstream: build 143", "waiting for shop-api-staging to complete build 143", "keeps running build 142"}},
		{"failed upstream", env(func(e *deployv1.Environment) {
			e.Status.Gate = &deployv1.Gate{Reason: deployv1.ReasonNotPromoted, Message: "Build 143 failed on shop-api-staging (tasks failed to start)", Build: &deployv1.BuildRef{Number: 143}}
		}), KindGate, []string{"does not deploy build 143: it failed or was replaced upstream, so it is never promoted", "tasks failed to start", "keeps running build 142"}},
		{"soaking", env(func(e *deployv1.Environment) {
			e.Status.Gate = &deployv1.Gate{Reason: deployv1.ReasonSoaking, Message: "soaking until 10:30 UTC", Build: &deployv1.BuildRef{Number: 143}, Until: at(now.Add(90 * time.Minute))}
		}), KindGate, []string{"lets build 143 soak upstream until 2026-11-27 10:30 UTC (in 1h30m0s)"}},
		{"awaiting approval", env(func(e *deployv1.Environment) {
			e.Status.Gate = &deployv1.Gate{Reason: deployv1.ReasonAwaitingApproval, Message: "build 143 waits for approval", Build: &deployv1.BuildRef{Number: 143}}
		}), KindGate, []string{"requires approval: build 143 waits", "`autodeployctl approve prod -n shop`", "newer build replaces it"}},
		{"outside window", env(func(e *deployv1.Environment) {
			e.Status.Gate = &deployv1.Gate{Reason: deployv1.ReasonOutsideDeployWindow, Message: "next window opens Monday 08:00 Europe/Berlin", Build: &deployv1.BuildRef{Number: 143}, Until: at(now.Add(48 * time.Hour))}
		}), KindGate, []string{"outside its deploy windows", "next opening until 2026-11-29 09:00 UTC", "never blocked by a window"}},
		{"frozen without end", env(func(e *deployv1.Environment) {
			e.Status.Gate = &deployv1.Gate{Reason: deployv1.ReasonFrozen, Message: "frozen: Black Friday", Build: &deployv1.BuildRef{Number: 143}}
		}), KindGate, []string{"is frozen: build 143 waits until the freeze is lifted (frozen: Black Friday)", deployv1.FreezeAnnotation}},
		{"awaiting a pause hook", env(func(e *deployv1.Environment) {
			e.Status.History = []deployv1.Deploy{{Image: "repo:143", Build: &deployv1.BuildRef{Number: 143}, Result: deployv1.ResultInProgress,
				AwaitingHook: &deployv1.AwaitingHook{HookID: "h-1", Stage: "POST_TEST_TRAFFIC_SHIFT", Since: metav1.NewTime(now), ExpiresAt: at(now.Add(time.Hour)), TimeoutAction: "ROLLBACK"}}}
			e.Status.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonAwaitingApproval, "waits at pause hook h-1")
		}), KindAwaitingHook, []string{"rollout of build 143 (repo:143) waits at ECS pause hook h-1 (stage POST_TEST_TRAFFIC_SHIFT)", "ECS will rollback at 2026-11-27 10:00 UTC", "`autodeployctl approve prod -n shop`", "`autodeployctl rollback prod -n shop`"}},
		{"rolling out", env(func(e *deployv1.Environment) {
			e.Status.History = []deployv1.Deploy{{Image: "repo:143", Build: &deployv1.BuildRef{Number: 143}, Result: deployv1.ResultInProgress, Strategy: deployv1.StrategyCanary, Stage: "PRODUCTION_TRAFFIC_SHIFT", TrafficWeight: "5"}}
			e.Status.Conditions = ready(metav1.ConditionUnknown, deployv1.ReasonRolloutInProgress, "ECS deployment d2 is rolling out")
		}), KindRollingOut, []string{"is rolling out: build 143 (repo:143) is rolling out (canary deployment, stage PRODUCTION_TRAFFIC_SHIFT, 5% of production traffic"}},
		{"auto-deploy off", env(func(e *deployv1.Environment) {
			e.Spec.AutoDeploy = false
			e.Status.Conditions = ready(metav1.ConditionTrue, deployv1.ReasonAutoDeployOff, "Auto-deploy is off")
		}), KindAutoDeployOff, []string{"Auto-deploy is off for Environment shop/prod", "latest build is 143", "keeps running build 142"}},
		{"newer build running", env(func(e *deployv1.Environment) {
			e.Status.Conditions = ready(metav1.ConditionTrue, deployv1.ReasonNewerBuildRunning, "The service runs build 150, newer than build 143")
		}), KindNewerRunning, []string{"does not deploy its latest build: The service runs build 150"}},
		{"ECS unavailable", env(func(e *deployv1.Environment) {
			e.Status.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonECSUnavailable, "throttled")
		}), KindNotReady, []string{"is not ready (ECSUnavailable): throttled", "retries with backoff"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := Why(tc.env, "autodeployctl", now)
			g.Expect(got.Kind).To(Equal(tc.kind), got.Text)
			for _, w := range tc.want {
				g.Expect(got.Text).To(ContainSubstring(w))
			}
			g.Expect(got.Text).NotTo(ContainSubstring("\n"), "one paragraph")
		})
	}
}

func TestWhyHookAndGateTogether(t *testing.T) {
	g := NewWithT(t)
	e := env(func(e *deployv1.Environment) {
		e.Status.History = []deployv1.Deploy{{Image: "repo:142", Result: deployv1.ResultInProgress, AwaitingHook: &deployv1.AwaitingHook{HookID: "h-9", Since: metav1.NewTime(now)}}}
		e.Status.Gate = &deployv1.Gate{Reason: deployv1.ReasonAwaitingApproval, Message: "build 143 waits for approval", Build: &deployv1.BuildRef{Number: 143}}
	})
	got := Why(e, "kubectl autodeploy", now)
	g.Expect(got.Kind).To(Equal(KindAwaitingHook))
	g.Expect(got.Text).To(ContainSubstring("Besides, build 143 waits (AwaitingApproval)"))
	g.Expect(got.Text).To(ContainSubstring("`kubectl autodeploy approve prod -n shop --build 143`"))
}

func TestSummary(t *testing.T) {
	long := "x"
	for len(long) < 200 {
		long += "x"
	}
	cases := []struct {
		name string
		env  *deployv1.Environment
		want string
	}{
		{"ready", env(func(*deployv1.Environment) {}), "Deployed: ECS deployment d1 of build 142 (repo:142) completed"},
		{"gate wins over Ready", env(func(e *deployv1.Environment) {
			e.Status.Gate = &deployv1.Gate{Reason: deployv1.ReasonSoaking, Message: "soaking until 10:30 UTC"}
		}), "Soaking: soaking until 10:30 UTC"},
		{"pinned", env(func(e *deployv1.Environment) { e.Spec.PinnedImage = "repo:v1" }), "Pinned: repo:v1"},
		{"no status", env(func(e *deployv1.Environment) { e.Status.Conditions = nil }), "NotReconciled"},
		{"cut", env(func(e *deployv1.Environment) {
			e.Status.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonECSUnavailable, long)
		}), "ECSUnavailable: " + long[:summaryMax-len("ECSUnavailable: ")-1] + "…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(Summary(tc.env)).To(Equal(tc.want))
		})
	}
}
