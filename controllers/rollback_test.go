package controllers

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

const tdPrefix = "arn:aws:ecs:us-east-1:123456789012:task-definition/"

func dep(id, status, td string, state types.DeploymentRolloutState, reason string) types.Deployment {
	return types.Deployment{Id: aws.String(id), Status: aws.String(status), TaskDefinition: aws.String(tdPrefix + td),
		RolloutState: state, RolloutStateReason: aws.String(reason)}
}

func activeService(deps ...types.Deployment) *types.Service {
	svc := &types.Service{Status: aws.String("ACTIVE"), Deployments: deps}
	for _, d := range deps {
		if aws.ToString(d.Status) == "PRIMARY" {
			svc.TaskDefinition = d.TaskDefinition
		}
	}
	return svc
}

// TestEvaluateRollout: how a tracked deployment (web:5, replacing web:4) ended, from what
// DescribeServices shows, above all when it is no longer listed.
func TestEvaluateRollout(t *testing.T) {
	const (
		completed = types.DeploymentRolloutStateCompleted
		failed    = types.DeploymentRolloutStateFailed
		running   = types.DeploymentRolloutStateInProgress
		rolling   = "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/prev."
		cbFailed  = "ECS deployment circuit breaker: tasks failed to start."
	)
	tracked := trackedDeployment{service: "web", deploymentID: "ecs-svc/d", taskDefinitionARN: tdPrefix + "web:5", previousTaskDefinitionARN: tdPrefix + "web:4"}
	unknownPrev := tracked
	unknownPrev.previousTaskDefinitionARN = ""
	mine := dep("ecs-svc/d", "PRIMARY", "web:5", running, "in progress")
	mineActive := func(state types.DeploymentRolloutState, reason string) types.Deployment {
		d := mine
		d.Status, d.RolloutState, d.RolloutStateReason = aws.String("ACTIVE"), state, aws.String(reason)
		return d
	}
	cases := []struct {
		name         string
		svc          *types.Service
		d            trackedDeployment
		done         bool
		result       string
		rolledBack   bool
		rolledBackTo string
		gone         bool
	}{
		{name: "service gone", svc: nil, d: tracked, done: true, result: deployv1.ResultSuperseded},
		{name: "service draining", svc: &types.Service{Status: aws.String("DRAINING")}, d: tracked, done: true, result: deployv1.ResultSuperseded},
		{name: "still rolling out", svc: activeService(mine, dep("ecs-svc/prev", "ACTIVE", "web:4", completed, "")), d: tracked},
		{name: "completed", svc: activeService(dep("ecs-svc/d", "PRIMARY", "web:5", completed, "done")), d: tracked, done: true, result: deployv1.ResultCompleted},
		{name: "failed, no rollback: it stays PRIMARY",
			svc: activeService(dep("ecs-svc/d", "PRIMARY", "web:5", failed, cbFailed), dep("ecs-svc/prev", "ACTIVE", "web:4", completed, "")),
			d:   tracked, done: true, result: deployv1.ResultFailed},
		{name: "failed and listed, rollback rolling out",
			svc: activeService(dep("ecs-svc/rb", "PRIMARY", "web:4", running, rolling), mineActive(failed, cbFailed)),
			d:   tracked, done: true, result: deployv1.ResultFailed, rolledBack: true, rolledBackTo: tdPrefix + "web:4"},
		{name: "failed and listed, rollback completed",
			svc: activeService(dep("ecs-svc/rb", "PRIMARY", "web:4", completed, "ECS deployment ecs-svc/rb completed."), mineActive(failed, cbFailed)),
			d:   tracked, done: true, result: deployv1.ResultFailed, rolledBack: true, rolledBackTo: tdPrefix + "web:4"},
		{name: "failed and listed, a newer revision deployed by someone since",
			svc: activeService(dep("ecs-svc/other", "PRIMARY", "web:6", running, "in progress"), mineActive(failed, cbFailed)),
			d:   tracked, done: true, result: deployv1.ResultFailed},
		{name: "failed and listed, its own revision forced again",
			svc: activeService(dep("ecs-svc/force", "PRIMARY", "web:5", running, "in progress"), mineActive(failed, cbFailed)),
			d:   tracked, done: true, result: deployv1.ResultFailed},
		{name: "gone, the revision it replaced runs again (rollback completed)",
			svc: activeService(dep("ecs-svc/rb", "PRIMARY", "web:4", completed, "ECS deployment ecs-svc/rb completed.")),
			d:   tracked, done: true, result: deployv1.ResultFailed, rolledBack: true, rolledBackTo: tdPrefix + "web:4", gone: true},
		{name: "gone, ECS rolls back to an older revision than the one it replaced",
			svc: activeService(dep("ecs-svc/rb", "PRIMARY", "other:9", running, rolling)),
			d:   tracked, done: true, result: deployv1.ResultFailed, rolledBack: true, rolledBackTo: tdPrefix + "other:9", gone: true},
		{name: "gone, an older revision of its family runs (what ran before not recorded)",
			svc: activeService(dep("ecs-svc/rb", "PRIMARY", "web:4", completed, "ECS deployment ecs-svc/rb completed.")),
			d:   unknownPrev, done: true, result: deployv1.ResultFailed, rolledBack: true, rolledBackTo: tdPrefix + "web:4", gone: true},
		{name: "gone, a newer revision of its family runs: a later deploy",
			svc: activeService(dep("ecs-svc/next", "PRIMARY", "web:6", completed, "ECS deployment ecs-svc/next completed.")),
			d:   tracked, done: true, result: deployv1.ResultSuperseded, gone: true},
		{name: "gone, a newer revision still rolling out: a later deploy",
			svc: activeService(dep("ecs-svc/next", "PRIMARY", "web:6", running, "in progress"), dep("ecs-svc/prev", "ACTIVE", "web:4", completed, "")),
			d:   unknownPrev, done: true, result: deployv1.ResultSuperseded, gone: true},
		{name: "gone, its own revision runs in a new deployment (forced by someone)",
			svc: activeService(dep("ecs-svc/force", "PRIMARY", "web:5", completed, "ECS deployment ecs-svc/force completed.")),
			d:   tracked, done: true, result: deployv1.ResultSuperseded, gone: true},
		{name: "gone, another family runs, nothing says rollback",
			svc: activeService(dep("ecs-svc/x", "PRIMARY", "other:1", completed, "ECS deployment ecs-svc/x completed.")),
			d:   tracked, done: true, result: deployv1.ResultSuperseded, gone: true},
		{name: "gone, no PRIMARY listed",
			svc: activeService(), d: tracked, done: true, result: deployv1.ResultSuperseded, gone: true},
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			obs, done := evaluateRollout(c.svc, c.d, now)
			g.Expect(done).To(Equal(c.done))
			if !done {
				return
			}
			g.Expect(obs.DeploymentID).To(Equal("ecs-svc/d"))
			g.Expect(obs.Result).To(Equal(c.result))
			g.Expect(obs.RolledBack).To(Equal(c.rolledBack))
			g.Expect(obs.RolledBackTo).To(Equal(c.rolledBackTo))
			g.Expect(obs.Gone).To(Equal(c.gone))
			g.Expect(obs.Reason).NotTo(BeEmpty())
		})
	}
}

func TestRevisionOf(t *testing.T) {
	g := NewWithT(t)
	f, r, ok := revisionOf(tdPrefix + "shop-api:12")
	g.Expect([]any{f, r, ok}).To(Equal([]any{"shop-api", 12, true}))
	f, r, ok = revisionOf("web:3")
	g.Expect([]any{f, r, ok}).To(Equal([]any{"web", 3, true}))
	for _, bad := range []string{"", "web", "web:x", ":3", tdPrefix + "web"} {
		_, _, ok = revisionOf(bad)
		g.Expect(ok).To(BeFalse(), bad)
	}
}

// TestApplyRolloutRolledBack: a rollback puts what ran before back in the status; to another
// revision than the one the deploy replaced, what runs is not known; inferred while a later
// deploy of the Environment is under way, the deployment was superseded.
func TestApplyRolloutRolledBack(t *testing.T) {
	newEnv := func() *deployv1.Environment {
		b := &deployv1.BuildRef{ID: "shop-api:b2", Number: 2}
		prev := &deployv1.BuildRef{ID: "shop-api:b1", Number: 1}
		env := &deployv1.Environment{}
		env.Spec.Application, env.Spec.AutoDeploy = "shop-api", true
		env.Spec.ECS = deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "web", Container: "web"}
		env.Status.Target = &env.Spec.ECS
		env.Status.LatestBuild = &deployv1.Build{ID: b.ID, Number: 2, Image: "repo:b2", Branch: "main"}
		env.Status.DeployedImage, env.Status.DeployedBuild = "repo:b2", b
		env.Status.History = []deployv1.Deploy{{Image: "repo:b2", Build: b, Trigger: deployv1.TriggerBuild,
			PreviousImage: "repo:b1", PreviousBuild: prev, TaskDefinitionARN: tdPrefix + "web:5",
			PreviousTaskDefinitionARN: tdPrefix + "web:4", DeploymentID: "ecs-svc/d", Result: deployv1.ResultInProgress,
			StartedAt: metav1.Now()}}
		return env
	}
	obs := RolloutObservation{DeploymentID: "ecs-svc/d", Result: deployv1.ResultFailed, Reason: "ECS rolled back",
		RolledBack: true, RolledBackTo: tdPrefix + "web:4", Gone: true, At: time.Now()}

	g := NewWithT(t)
	env := newEnv()
	g.Expect(ApplyRollout(env, obs)).To(BeTrue())
	g.Expect(env.Status.DeployedImage).To(Equal("repo:b1"))
	g.Expect(env.Status.DeployedBuild.Number).To(Equal(int64(1)))
	g.Expect(env.Status.History[0].Result).To(Equal(deployv1.ResultFailed))
	g.Expect(env.Status.History[0].RolledBack).To(BeTrue())
	d := Decide(env)
	g.Expect(d.Held).To(BeTrue(), "the failed build is held")
	g.Expect(d.Action).To(Equal(ActionNone))

	env = newEnv()
	other := obs
	other.RolledBackTo = tdPrefix + "web:3"
	g.Expect(ApplyRollout(env, other)).To(BeTrue())
	g.Expect(env.Status.DeployedImage).To(BeEmpty(), "web:3 runs, whose image is not known here")
	g.Expect(env.Status.DeployedBuild).To(BeNil())
	g.Expect(env.Status.History[0].RolledBack).To(BeTrue())

	env = newEnv()
	env.Status.PendingDeploy = &deployv1.Deploy{Image: "repo:b3", Trigger: deployv1.TriggerBuild, StartedAt: metav1.Now()}
	g.Expect(ApplyRollout(env, obs)).To(BeTrue())
	g.Expect(env.Status.History[0].Result).To(Equal(deployv1.ResultSuperseded))
	g.Expect(env.Status.History[0].RolledBack).To(BeFalse())
	g.Expect(env.Status.DeployedImage).To(Equal("repo:b2"))
}
