package controllers

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// memorySink records what a tracker reports.
type memorySink struct {
	mu       sync.Mutex
	ended    map[ktypes.NamespacedName]RolloutObservation
	progress map[ktypes.NamespacedName][]RolloutProgress
	found    map[ktypes.NamespacedName]string
}

func (s *memorySink) Record(_ context.Context, key ktypes.NamespacedName, obs RolloutObservation) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended[key] = obs
	return true, nil
}

func (s *memorySink) FoundServiceDeployment(_ context.Context, key ktypes.NamespacedName, deploymentID, arn string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.found == nil {
		s.found = map[ktypes.NamespacedName]string{}
	}
	s.found[key] = arn
	return true, nil
}

func (s *memorySink) Progress(_ context.Context, key ktypes.NamespacedName, p RolloutProgress) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.progress[key] = append(s.progress[key], p)
	return true, nil
}

// TestServiceDeploymentTrackerBatchesAndWritesEachChangeOnce follows 21 blue/green
// deployments of the simulator through the real SDK: 20 ARNs per DescribeServiceDeployments,
// one progress write per change of stage (not per look), the end with the running digest read
// 20 revisions per DescribeServiceRevisions, and nothing followed afterwards.
func TestServiceDeploymentTrackerBatchesAndWritesEachChangeOnce(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	sim := ecssim.New(ecssim.WithClock(clock.Now), ecssim.WithStageDuration(time.Second))
	url, err := sim.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Close)
	client := ecs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}},
		func(o *ecs.Options) { o.BaseEndpoint = aws.String(url) })
	g.Expect(sim.SeedCluster("prod")).To(Succeed())
	for _, tag := range []string{"v1", "v2"} {
		_, err := sim.SeedTaskDefinition([]byte(`{"family":"web","containerDefinitions":[{"name":"app","image":"repo/web:` + tag + `"}]}`))
		g.Expect(err).NotTo(HaveOccurred())
	}

	sink := &memorySink{ended: map[ktypes.NamespacedName]RolloutObservation{}, progress: map[ktypes.NamespacedName][]RolloutProgress{}}
	tr := &ServiceDeploymentTracker{
		ECS:  func(context.Context, deployv1.ECSTarget) (ECSAPI, error) { return client, nil },
		Sink: sink, Log: logr.Discard(), Now: clock.Now,
	}
	const n = 21
	for i := range n {
		name := fmt.Sprintf("svc-%02d", i)
		_, err := client.CreateService(ctx, &ecs.CreateServiceInput{
			Cluster: aws.String("prod"), ServiceName: aws.String(name), TaskDefinition: aws.String("web:1"), DesiredCount: aws.Int32(1),
			DeploymentConfiguration: &types.DeploymentConfiguration{Strategy: types.DeploymentStrategyBlueGreen, BakeTimeInMinutes: aws.Int32(1)},
		})
		g.Expect(err).NotTo(HaveOccurred())
		started := metav1.NewTime(clock.Now())
		up, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String(name), TaskDefinition: aws.String("web:2")})
		g.Expect(err).NotTo(HaveOccurred())
		target := deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: name, Container: "app"}
		arn, err := findServiceDeployment(ctx, client, deployRequest{target: target, pending: &deployv1.Deploy{StartedAt: started}})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(arn).To(HavePrefix("arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/" + name + "/"))
		tr.Follow(ktypes.NamespacedName{Namespace: "ns", Name: name}, target,
			deployv1.Deploy{Image: "repo/web:v2", DeploymentID: aws.ToString(up.Service.Deployments[0].Id), ServiceDeploymentARN: arn, Result: deployv1.ResultInProgress}, nil)
	}

	pollAll := func() {
		for _, grp := range tr.takeDueAt(true) {
			tr.poll(ctx, grp)
		}
	}
	sim.ResetCalls()
	pollAll()
	g.Expect(sim.Calls("DescribeServiceDeployments")).To(Equal(2), "21 service deployments in two calls")
	pollAll()
	g.Expect(sim.Calls("DescribeServiceDeployments")).To(Equal(4))
	key := ktypes.NamespacedName{Namespace: "ns", Name: "svc-00"}
	g.Expect(sink.progress[key]).To(HaveLen(1), "the same stage seen twice is written once")
	g.Expect(sink.progress[key][0].Stage).To(Equal("RECONCILE_SERVICE"))

	var stages []string
	for range 300 {
		if len(sink.ended) == n {
			break
		}
		clock.Advance(time.Second)
		pollAll()
	}
	g.Expect(sink.ended).To(HaveLen(n))
	for _, p := range sink.progress[key] {
		stages = append(stages, p.Stage)
	}
	g.Expect(stages).To(ContainElements("PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME"))
	obs := sink.ended[key]
	g.Expect(obs.Result).To(Equal(deployv1.ResultCompleted))
	g.Expect(obs.ImageDigest).To(HavePrefix("sha256:"))
	g.Expect(sim.Calls("DescribeServiceRevisions")).To(BeNumerically("<=", 2), "digests read 20 revisions per call")

	_, ok := tr.schedule().untilNext()
	g.Expect(ok).To(BeFalse(), "nothing in progress: nothing to look at")
}

// takeDueAt returns every group (all true: as if all were due) for a test that drives polls.
func (t *ServiceDeploymentTracker) takeDueAt(all bool) []schedGroup[sdItem] {
	s := t.schedule()
	s.mu.Lock()
	for _, g := range s.groups {
		if all {
			g.next = time.Time{}
		}
	}
	s.mu.Unlock()
	return s.takeDue()
}

func TestEvaluateServiceDeployment(t *testing.T) {
	it := sdItem{arn: "arn:sd", deploymentID: "ecs-svc/1"}
	now := time.Unix(100, 0)
	for _, tc := range []struct {
		status     types.ServiceDeploymentStatus
		rollback   *types.Rollback
		done       bool
		result     string
		rolledBack bool
	}{
		{types.ServiceDeploymentStatusInProgress, nil, false, "", false},
		{types.ServiceDeploymentStatusPending, nil, false, "", false},
		{types.ServiceDeploymentStatusRollbackInProgress, nil, false, "", false},
		{types.ServiceDeploymentStatusSuccessful, nil, true, deployv1.ResultCompleted, false},
		{types.ServiceDeploymentStatusRollbackSuccessful, nil, true, deployv1.ResultFailed, true},
		{types.ServiceDeploymentStatusRollbackFailed, nil, true, deployv1.ResultFailed, false},
		{types.ServiceDeploymentStatusStopped, nil, true, deployv1.ResultFailed, false},
		{types.ServiceDeploymentStatusStopped, &types.Rollback{Reason: aws.String("stopped")}, true, deployv1.ResultFailed, true},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			g := NewWithT(t)
			obs, done := evaluateServiceDeployment(&types.ServiceDeployment{Status: tc.status, StatusReason: aws.String("why"), Rollback: tc.rollback}, it, now)
			g.Expect(done).To(Equal(tc.done))
			if !done {
				return
			}
			g.Expect(obs.Result).To(Equal(tc.result))
			g.Expect(obs.RolledBack).To(Equal(tc.rolledBack))
			g.Expect(obs.Reason).To(Equal("why"), "ECS's reason")
			g.Expect(obs.DeploymentID).To(Equal("ecs-svc/1"))
			g.Expect(obs.ServiceDeploymentARN).To(Equal("arn:sd"))
		})
	}
}

func TestRolloutSummaryAndMessages(t *testing.T) {
	g := NewWithT(t)
	g.Expect(RolloutSummary(nil)).To(BeEmpty())
	g.Expect(RolloutSummary(&deployv1.Deploy{Result: deployv1.ResultInProgress})).To(Equal("Rolling"))
	g.Expect(RolloutSummary(&deployv1.Deploy{Result: deployv1.ResultCompleted, Strategy: deployv1.StrategyCanary})).To(Equal("Completed"))
	g.Expect(RolloutSummary(&deployv1.Deploy{Result: deployv1.ResultInProgress, Strategy: deployv1.StrategyCanary, TrafficWeight: "5"})).To(Equal("Canary 5%"))
	g.Expect(RolloutSummary(&deployv1.Deploy{Result: deployv1.ResultInProgress, Strategy: deployv1.StrategyLinear, TrafficWeight: "30"})).To(Equal("Linear 30%"))
	g.Expect(RolloutSummary(&deployv1.Deploy{Result: deployv1.ResultInProgress, Strategy: deployv1.StrategyBlueGreen})).To(Equal("BlueGreen"))
	g.Expect(RolloutSummary(&deployv1.Deploy{Result: deployv1.ResultInProgress, Strategy: deployv1.StrategyBlueGreen, Stage: "BAKE_TIME", TrafficWeight: "100"})).To(Equal("BakeTime"))

	msg := rolloutInProgressMessage(&deployv1.Deploy{DeploymentID: "ecs-svc/1", Image: "img", Strategy: deployv1.StrategyCanary, Stage: "PRODUCTION_TRAFFIC_SHIFT", TrafficWeight: "0.1"})
	g.Expect(msg).To(ContainSubstring("canary deployment, stage PRODUCTION_TRAFFIC_SHIFT, 0.1% of production traffic"))

	w := 0.1
	g.Expect(formatWeight(&w)).To(Equal("0.1"))
	w = 100
	g.Expect(formatWeight(&w)).To(Equal("100"))
	g.Expect(formatWeight(nil)).To(BeEmpty())

	g.Expect(digestMismatch(&deployv1.Deploy{Image: "repo@sha256:aa", ImageDigest: "sha256:aa"})).To(BeEmpty())
	g.Expect(digestMismatch(&deployv1.Deploy{Image: "repo:tag", ImageDigest: "sha256:bb"})).To(BeEmpty(), "a tag names no digest")
	g.Expect(digestMismatch(&deployv1.Deploy{Image: "repo@sha256:aa", ImageDigest: "sha256:bb"})).To(ContainSubstring("ECS runs digest sha256:bb"))
}

func TestCheckDeploymentController(t *testing.T) {
	g := NewWithT(t)
	target := deployv1.ECSTarget{Cluster: "prod", Service: "web"}
	g.Expect(checkDeploymentController(&types.Service{}, target)).To(Succeed())
	g.Expect(checkDeploymentController(&types.Service{DeploymentController: &types.DeploymentController{Type: types.DeploymentControllerTypeEcs}}, target)).To(Succeed())
	for ct, want := range map[types.DeploymentControllerType]string{
		types.DeploymentControllerTypeCodeDeploy: "trigger the deployment through AWS CodeDeploy",
		types.DeploymentControllerTypeExternal:   "task sets",
	} {
		err := checkDeploymentController(&types.Service{DeploymentController: &types.DeploymentController{Type: ct}}, target)
		var de *deployError
		g.Expect(err).To(BeAssignableToTypeOf(de))
		de = err.(*deployError)
		g.Expect(de.reason).To(Equal(deployv1.ReasonUnsupportedDeploymentController))
		g.Expect(de.message).To(ContainSubstring(string(ct)))
		g.Expect(de.message).To(ContainSubstring(want))
	}
}

func TestApplyProgressAndServiceDeploymentEnd(t *testing.T) {
	g := NewWithT(t)
	env := &deployv1.Environment{Spec: deployv1.EnvironmentSpec{Application: "app", ECS: deployv1.ECSTarget{Cluster: "c", Service: "s"}}}
	env.Status.DeployedImage = "repo@sha256:new"
	env.Status.History = []deployv1.Deploy{{Image: "repo@sha256:new", PreviousImage: "repo:old", DeploymentID: "ecs-svc/1",
		ServiceDeploymentARN: "arn:sd", Strategy: deployv1.StrategyCanary, Result: deployv1.ResultInProgress}}
	p := RolloutProgress{ServiceDeploymentARN: "arn:sd", Stage: "PRODUCTION_TRAFFIC_SHIFT", TrafficWeight: "5"}
	g.Expect(ApplyProgress(env, p)).To(BeTrue())
	g.Expect(env.Status.Rollout).To(Equal("Canary 5%"))
	g.Expect(condition(env, deployv1.ReadyCondition).Message).To(ContainSubstring("5% of production traffic"))
	g.Expect(ApplyProgress(env, p)).To(BeFalse(), "the same progress changes nothing")
	g.Expect(ApplyProgress(env, RolloutProgress{ServiceDeploymentARN: "arn:other", Stage: "BAKE_TIME"})).To(BeFalse())

	g.Expect(ApplyRollout(env, RolloutObservation{ServiceDeploymentARN: "arn:sd", Result: deployv1.ResultFailed, RolledBack: true, Reason: "alarm"})).To(BeTrue())
	last := env.Status.LastDeploy()
	g.Expect(last.Result).To(Equal(deployv1.ResultFailed))
	g.Expect(last.Stage).To(BeEmpty())
	g.Expect(env.Status.DeployedImage).To(Equal("repo:old"), "ECS put the source revision back")
	g.Expect(env.Status.Rollout).To(Equal("Failed"))
}

func condition(env *deployv1.Environment, typ string) *metav1.Condition {
	for i := range env.Status.Conditions {
		if env.Status.Conditions[i].Type == typ {
			return &env.Status.Conditions[i]
		}
	}
	return nil
}
