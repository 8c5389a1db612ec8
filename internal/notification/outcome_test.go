package notification

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

func gated(reason string, build int64) *deployv1.Environment {
	latest := &deployv1.Build{Application: "shop-api", ID: "shop-api:build-143", Number: 143, Image: "shop-api:b143", Commit: "abc123"}
	return &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-api-prod", Namespace: "shop"},
		Spec:       deployv1.EnvironmentSpec{Application: "shop-api"},
		Status: deployv1.EnvironmentStatus{
			LatestBuild: latest,
			Gate: &deployv1.Gate{Reason: reason, Message: "waiting for shop-api-staging to complete build 143",
				Build: &deployv1.BuildRef{Application: "shop-api", ID: "shop-api:build-143", Number: build}},
		},
	}
}

// TestGatesAreHeldOrAwaitingApproval: status.gate is told as Held (upstream, soak, window,
// freeze) or AwaitingApproval, with the build and its commit; its key is the same at every
// read and differs per reason, so a build that moves from one wait to another is told again.
func TestGatesAreHeldOrAwaitingApproval(t *testing.T) {
	g := NewWithT(t)
	up := Derive(gated(deployv1.ReasonWaitingForUpstream, 143), time.Time{})
	g.Expect(up).To(HaveLen(1))
	g.Expect(up[0].Type).To(Equal(deployv1.OutcomeHeld))
	g.Expect(up[0].Commit).To(Equal("abc123"))
	g.Expect(up[0].Image).To(Equal("shop-api:b143"))
	g.Expect(up[0].GitHubKey).To(Equal("build-shop-api:build-143"))
	g.Expect(up[0].Message).To(ContainSubstring("shop-api-staging"))
	g.Expect(Derive(gated(deployv1.ReasonWaitingForUpstream, 143), time.Time{})[0].Key).To(Equal(up[0].Key))

	soak := Derive(gated(deployv1.ReasonSoaking, 143), time.Time{})
	g.Expect(soak[0].Type).To(Equal(deployv1.OutcomeHeld))
	g.Expect(soak[0].Key).NotTo(Equal(up[0].Key))
	for _, r := range []string{deployv1.ReasonOutsideDeployWindow, deployv1.ReasonFrozen} {
		g.Expect(Derive(gated(r, 143), time.Time{})[0].Type).To(Equal(deployv1.OutcomeHeld))
	}
	appr := Derive(gated(deployv1.ReasonAwaitingApproval, 143), time.Time{})
	g.Expect(appr[0].Type).To(Equal(deployv1.OutcomeAwaitingApproval))
	g.Expect(appr[0].GitHubKey).To(Equal(up[0].GitHubKey), "one GitHub deployment per build")
}

// TestHistoryBeforeTheNotificationIsNotRetold: deploys that started and ended before since are
// left out; a rollout that ends after it is told, its start is not.
func TestHistoryBeforeTheNotificationIsNotRetold(t *testing.T) {
	g := NewWithT(t)
	since := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(since.Add(d)) }
	t1, t2 := at(-time.Hour), at(time.Minute)
	env := &deployv1.Environment{ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: "shop"}}
	env.Status.History = []deployv1.Deploy{
		{Image: "b2", Trigger: deployv1.TriggerBuild, StartedAt: at(-time.Minute), Result: deployv1.ResultCompleted, FinishedAt: &t2},
		{Image: "b1", Trigger: deployv1.TriggerBuild, StartedAt: at(-2 * time.Hour), Result: deployv1.ResultFailed, FinishedAt: &t1, RolledBack: true},
	}
	out := Derive(env, since)
	g.Expect(out).To(HaveLen(1))
	g.Expect(out[0].Type).To(Equal(deployv1.OutcomeRolloutCompleted))
	g.Expect(out[0].Deploy).To(Equal(DeployID(&env.Status.History[0])))
	g.Expect(Derive(env, time.Time{})).To(HaveLen(5), "b1 started, failed, rolled back; b2 started, completed")
}

func TestRetryAfter(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	g.Expect(retryAfter("30", now)).To(Equal(30 * time.Second))
	g.Expect(retryAfter(now.Add(time.Minute).Format(http1123), now)).To(Equal(time.Minute))
	g.Expect(retryAfter("soon", now)).To(BeZero())
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"
