package ecssim_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

const stage = time.Second

// strategySim starts a simulator with a fake clock, one-second stages and
// prod/web on web:1 (2 tasks) with the given deployment configuration.
func strategySim(t *testing.T, g *WithT, dc *types.DeploymentConfiguration, opts ...ecssim.Option) (*ecssim.Server, *fakeClock, *ecs.Client) {
	t.Helper()
	clock := newFakeClock()
	sim, _, client := start(t, append([]ecssim.Option{ecssim.WithClock(clock.Now), ecssim.WithStageDuration(stage),
		ecssim.WithRolloutDuration(time.Minute)}, opts...)...)
	seedWebTaskDefinitions(g, sim)
	createWeb(g, client, ecs.CreateServiceInput{DeploymentConfiguration: dc})
	return sim, clock, client
}

func updateWeb(g *WithT, client *ecs.Client, td string) {
	_, err := client.UpdateService(context.Background(), &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String(td),
	})
	g.Expect(err).NotTo(HaveOccurred())
}

// latest returns the newest service deployment through the wire.
func latest(g *WithT, client *ecs.Client) types.ServiceDeployment {
	ctx := context.Background()
	list, err := client.ListServiceDeployments(ctx, &ecs.ListServiceDeploymentsInput{Cluster: aws.String("prod"), Service: aws.String("web")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list.ServiceDeployments).NotTo(BeEmpty())
	out, err := client.DescribeServiceDeployments(ctx, &ecs.DescribeServiceDeploymentsInput{
		ServiceDeploymentArns: []string{aws.ToString(list.ServiceDeployments[0].ServiceDeploymentArn)},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.ServiceDeployments).To(HaveLen(1))
	return out.ServiceDeployments[0]
}

func describeWeb(g *WithT, client *ecs.Client) types.Service {
	out, err := client.DescribeServices(context.Background(), &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
	g.Expect(err).NotTo(HaveOccurred())
	return out.Services[0]
}

// walk advances the clock one second at a time until the newest service
// deployment is terminal, recording each stage and production weight seen.
func walk(g *WithT, clock *fakeClock, client *ecs.Client) (stages []string, weights []float64, last types.ServiceDeployment) {
	for range 10000 {
		sd := latest(g, client)
		stg := string(sd.LifecycleStage)
		if len(stages) == 0 || stages[len(stages)-1] != stg {
			stages = append(stages, stg)
		}
		w := aws.ToFloat64(sd.TargetServiceRevision.RequestedProductionTrafficWeight)
		if len(weights) == 0 || weights[len(weights)-1] != w {
			weights = append(weights, w)
		}
		switch sd.Status {
		case types.ServiceDeploymentStatusSuccessful, types.ServiceDeploymentStatusRollbackSuccessful,
			types.ServiceDeploymentStatusRollbackFailed, types.ServiceDeploymentStatusStopped:
			return stages, weights, sd
		}
		clock.Advance(time.Second)
	}
	g.Expect("deployment").To(Equal("terminal"))
	return
}

func TestRollingServiceDeployments(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	sim, clock, client := strategySim(t, g, nil)
	g.Expect(sim.PushImage("web", "v3", "sha256:"+fmt.Sprintf("%064x", 3))).To(Succeed())
	ecrTD, err := sim.SeedTaskDefinition([]byte(`{"family":"web","containerDefinitions":[{"name":"app","image":"123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v3"},{"name":"log","image":"fluent/bit@sha256:` + fmt.Sprintf("%064x", 9) + `"}]}`))
	g.Expect(err).NotTo(HaveOccurred())

	created := latest(g, client)
	g.Expect(created.Status).To(Equal(types.ServiceDeploymentStatusSuccessful), "CreateService made a service deployment")
	g.Expect(created.SourceServiceRevisions).To(BeEmpty())

	updateWeb(g, client, "web:2")
	list, err := client.ListServiceDeployments(ctx, &ecs.ListServiceDeploymentsInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), Status: []types.ServiceDeploymentStatus{types.ServiceDeploymentStatusInProgress},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list.ServiceDeployments).To(HaveLen(1))
	arn := aws.ToString(list.ServiceDeployments[0].ServiceDeploymentArn)
	g.Expect(arn).To(MatchRegexp(`^arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/web/[A-Za-z0-9_-]{20}$`))
	st, _ := sim.Service("prod", "web")
	g.Expect(st.Deployments[0].ServiceDeploymentARN).To(Equal(arn))

	sd := latest(g, client)
	g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusInProgress))
	g.Expect(sd.LifecycleStage).To(BeEmpty(), "rolling deployments have no lifecycle stage")
	g.Expect(sd.SourceServiceRevisions).To(HaveLen(1))
	g.Expect(aws.ToString(sd.SourceServiceRevisions[0].Arn)).To(Equal(aws.ToString(created.TargetServiceRevision.Arn)))
	g.Expect(sd.DeploymentCircuitBreaker.Status).To(Equal(types.ServiceDeploymentRollbackMonitorsStatusDisabled))
	revARN := aws.ToString(sd.TargetServiceRevision.Arn)
	g.Expect(revARN).To(MatchRegexp(`^arn:aws:ecs:us-east-1:123456789012:service-revision/prod/web/\d{19}$`))

	revs, err := client.DescribeServiceRevisions(ctx, &ecs.DescribeServiceRevisionsInput{ServiceRevisionArns: []string{revARN, revARN + "0"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(revs.ServiceRevisions).To(HaveLen(1))
	g.Expect(revs.Failures).To(HaveLen(1))
	g.Expect(aws.ToString(revs.ServiceRevisions[0].TaskDefinition)).To(Equal(webTD2))
	sum := sha256.Sum256([]byte("repo/web:v2"))
	g.Expect(revs.ServiceRevisions[0].ContainerImages).To(HaveLen(1))
	ci := revs.ServiceRevisions[0].ContainerImages[0]
	g.Expect(aws.ToString(ci.ContainerName)).To(Equal("app"))
	g.Expect(aws.ToString(ci.Image)).To(Equal("repo/web:v2"))
	g.Expect(aws.ToString(ci.ImageDigest)).To(Equal("sha256:" + hex.EncodeToString(sum[:])))

	clock.Advance(time.Minute)
	sd = latest(g, client)
	g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusSuccessful))
	g.Expect(sd.FinishedAt).NotTo(BeNil())

	// A newer deployment stops the one in progress.
	updateWeb(g, client, "web:3")
	stopped := latest(g, client)
	updateWeb(g, client, ecrTD)
	all, err := client.ListServiceDeployments(ctx, &ecs.ListServiceDeploymentsInput{Cluster: aws.String("prod"), Service: aws.String("web")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(all.ServiceDeployments).To(HaveLen(4))
	g.Expect(all.ServiceDeployments[1].ServiceDeploymentArn).To(Equal(stopped.ServiceDeploymentArn), "newest first")
	g.Expect(all.ServiceDeployments[1].Status).To(Equal(types.ServiceDeploymentStatusStopped))
	g.Expect(all.ServiceDeployments[0].Status).To(Equal(types.ServiceDeploymentStatusInProgress))
	page, err := client.ListServiceDeployments(ctx, &ecs.ListServiceDeploymentsInput{Cluster: aws.String("prod"), Service: aws.String("web"), MaxResults: aws.Int32(3)})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(page.ServiceDeployments).To(HaveLen(3))
	g.Expect(page.NextToken).NotTo(BeNil())
	before, err := client.ListServiceDeployments(ctx, &ecs.ListServiceDeploymentsInput{Cluster: aws.String("prod"), Service: aws.String("web"),
		CreatedAt: &types.CreatedAt{Before: aws.Time(clock.Now().Add(-time.Second))}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(before.ServiceDeployments).To(HaveLen(2))

	// The ECR image's digest is the pushed one; a digest reference keeps its digest.
	revs, err = client.DescribeServiceRevisions(ctx, &ecs.DescribeServiceRevisionsInput{
		ServiceRevisionArns: []string{aws.ToString(all.ServiceDeployments[0].TargetServiceRevisionArn)}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(revs.ServiceRevisions[0].ContainerImages[0].ImageDigest)).To(Equal("sha256:" + fmt.Sprintf("%064x", 3)))
	g.Expect(aws.ToString(revs.ServiceRevisions[0].ContainerImages[1].ImageDigest)).To(Equal("sha256:" + fmt.Sprintf("%064x", 9)))

	// At most 20 ARNs per call.
	many := make([]string, 21)
	for i := range many {
		many[i] = arn
	}
	_, err = client.DescribeServiceDeployments(ctx, &ecs.DescribeServiceDeploymentsInput{ServiceDeploymentArns: many})
	invalidParameter(g, err, "serviceDeploymentArns")
	_, err = client.DescribeServiceRevisions(ctx, &ecs.DescribeServiceRevisionsInput{ServiceRevisionArns: many})
	invalidParameter(g, err, "serviceRevisionArns")
	missing, err := client.DescribeServiceDeployments(ctx, &ecs.DescribeServiceDeploymentsInput{ServiceDeploymentArns: []string{arn + "x"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(missing.Failures).To(HaveLen(1))
	g.Expect(aws.ToString(missing.Failures[0].Reason)).To(Equal("MISSING"))
}

func TestRollingCircuitBreakerRollbackIsRecorded(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := strategySim(t, g, &types.DeploymentConfiguration{
		DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
	})
	updateWeb(g, client, "web:2")
	g.Expect(sim.FailDeployment("prod", "web", "tasks failed to start")).To(Succeed())
	sd := latest(g, client)
	g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusRollbackSuccessful))
	g.Expect(aws.ToString(sd.StatusReason)).To(Equal("tasks failed to start"))
	g.Expect(sd.DeploymentCircuitBreaker.Status).To(Equal(types.ServiceDeploymentRollbackMonitorsStatusTriggered))
	g.Expect(aws.ToString(sd.Rollback.ServiceRevisionArn)).To(Equal(aws.ToString(sd.SourceServiceRevisions[0].Arn)))
}

func TestStrategyStagesAndWeights(t *testing.T) {
	prefix := []string{"RECONCILE_SERVICE", "PRE_SCALE_UP", "SCALE_UP", "POST_SCALE_UP", "TEST_TRAFFIC_SHIFT", "POST_TEST_TRAFFIC_SHIFT"}
	shift := []string{"PRE_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT", "POST_PRODUCTION_TRAFFIC_SHIFT"}
	suffix := []string{"BAKE_TIME", "CLEAN_UP"}
	// BAKE_TIME lasts bakeTimeInMinutes only: at 0 the walk does not see it.
	stagesWith := func(shifts int, bake bool) []string {
		out := append([]string{}, prefix...)
		for range shifts {
			out = append(out, shift...)
		}
		if !bake {
			return append(out, "CLEAN_UP")
		}
		return append(out, suffix...)
	}
	for _, tc := range []struct {
		name     string
		dc       types.DeploymentConfiguration
		stages   []string
		weights  []float64
		duration time.Duration // from UpdateService to SUCCESSFUL
	}{
		{"blue/green", types.DeploymentConfiguration{Strategy: types.DeploymentStrategyBlueGreen, BakeTimeInMinutes: aws.Int32(2)},
			stagesWith(1, true), []float64{0, 100}, 10*stage + 2*time.Minute},
		{"canary", types.DeploymentConfiguration{Strategy: types.DeploymentStrategyCanary,
			CanaryConfiguration: &types.CanaryConfiguration{CanaryPercent: aws.Float64(20), CanaryBakeTimeInMinutes: aws.Int32(5)}},
			stagesWith(2, false), []float64{0, 20, 100}, 13*stage + 5*time.Minute},
		{"canary defaults", types.DeploymentConfiguration{Strategy: types.DeploymentStrategyCanary},
			stagesWith(2, false), []float64{0, 5, 100}, 13*stage + 10*time.Minute},
		{"linear", types.DeploymentConfiguration{Strategy: types.DeploymentStrategyLinear,
			LinearConfiguration: &types.LinearConfiguration{StepPercent: aws.Float64(40), StepBakeTimeInMinutes: aws.Int32(1)}},
			stagesWith(3, false), []float64{0, 40, 80, 100}, 16*stage + 2*time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			rec := &eventRecorder{}
			sim, clock, client := strategySim(t, g, &tc.dc, ecssim.WithEventSink(rec.sink))
			g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusSuccessful), "a new service has nothing to shift")
			rec.reset()
			t0 := clock.Now()
			updateWeb(g, client, "web:2")
			sd := latest(g, client)
			g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusInProgress))
			g.Expect(sd.DeploymentCircuitBreaker.Status).To(Equal(types.ServiceDeploymentRollbackMonitorsStatusDisabled))
			svc := describeWeb(g, client)
			g.Expect(svc.Deployments).To(HaveLen(2))
			g.Expect(svc.Deployments[0].RolloutState).To(Equal(types.DeploymentRolloutStateInProgress))

			stages, weights, last := walk(g, clock, client)
			g.Expect(last.Status).To(Equal(types.ServiceDeploymentStatusSuccessful))
			g.Expect(stages).To(Equal(tc.stages))
			g.Expect(weights).To(Equal(tc.weights))
			g.Expect(last.FinishedAt.Sub(t0)).To(Equal(tc.duration))
			g.Expect(aws.ToFloat64(last.SourceServiceRevisions[0].RequestedProductionTrafficWeight)).To(BeZero())

			svc = describeWeb(g, client)
			g.Expect(aws.ToString(svc.TaskDefinition)).To(Equal(webTD2))
			g.Expect(svc.Deployments).To(HaveLen(1))
			g.Expect(svc.Deployments[0].RolloutState).To(Equal(types.DeploymentRolloutStateCompleted))
			g.Expect(rec.names()).To(BeEmpty(), "no Deployment State Change events are documented for non-rolling strategies")
			st, _ := sim.Service("prod", "web")
			lsd, _ := st.LatestServiceDeployment()
			g.Expect(lsd.Status).To(Equal(ecssim.SDSuccessful))
			g.Expect(lsd.ProductionTrafficWeight).To(Equal(100.0))
		})
	}
}

func TestStrategyConfigurationValidation(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	_, _, client := strategySim(t, g, nil)
	for _, tc := range []struct {
		dc   types.DeploymentConfiguration
		want string
	}{
		{types.DeploymentConfiguration{Strategy: "RED_BLACK"}, "deploymentConfiguration.strategy"},
		{types.DeploymentConfiguration{BakeTimeInMinutes: aws.Int32(1441)}, "deploymentConfiguration.bakeTimeInMinutes"},
		{types.DeploymentConfiguration{BakeTimeInMinutes: aws.Int32(-1)}, "deploymentConfiguration.bakeTimeInMinutes"},
		{types.DeploymentConfiguration{LinearConfiguration: &types.LinearConfiguration{StepPercent: aws.Float64(2)}}, "linearConfiguration.stepPercent"},
		{types.DeploymentConfiguration{LinearConfiguration: &types.LinearConfiguration{StepPercent: aws.Float64(101)}}, "linearConfiguration.stepPercent"},
		{types.DeploymentConfiguration{LinearConfiguration: &types.LinearConfiguration{StepBakeTimeInMinutes: aws.Int32(1441)}}, "linearConfiguration.stepBakeTimeInMinutes"},
		{types.DeploymentConfiguration{CanaryConfiguration: &types.CanaryConfiguration{CanaryPercent: aws.Float64(0.05)}}, "canaryConfiguration.canaryPercent"},
		{types.DeploymentConfiguration{CanaryConfiguration: &types.CanaryConfiguration{CanaryBakeTimeInMinutes: aws.Int32(2000)}}, "canaryConfiguration.canaryBakeTimeInMinutes"},
	} {
		_, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("web"), DeploymentConfiguration: &tc.dc})
		invalidParameter(g, err, tc.want)
		_, err = client.CreateService(ctx, &ecs.CreateServiceInput{Cluster: aws.String("prod"), ServiceName: aws.String("other"),
			TaskDefinition: aws.String("web:1"), DeploymentConfiguration: &tc.dc})
		invalidParameter(g, err, tc.want)
	}
	g.Expect(describeWeb(g, client).DeploymentConfiguration.Strategy).To(BeEmpty(), "a refused configuration is not stored")
}

func TestStrategyFailureRollsBack(t *testing.T) {
	bg := &types.DeploymentConfiguration{Strategy: types.DeploymentStrategyBlueGreen}
	t.Run("FailDeployment", func(t *testing.T) {
		g := NewWithT(t)
		sim, clock, client := strategySim(t, g, bg)
		updateWeb(g, client, "web:2")
		clock.Advance(5 * stage)
		g.Expect(sim.FailDeployment("prod", "web", "health checks failed")).To(Succeed())
		sd := latest(g, client)
		g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusRollbackInProgress))
		g.Expect(aws.ToString(sd.StatusReason)).To(Equal("health checks failed"))
		g.Expect(aws.ToString(sd.Rollback.ServiceRevisionArn)).To(Equal(aws.ToString(sd.SourceServiceRevisions[0].Arn)))
		clock.Advance(stage)
		sd = latest(g, client)
		g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusRollbackSuccessful))
		svc := describeWeb(g, client)
		g.Expect(aws.ToString(svc.TaskDefinition)).To(Equal(webTD1))
		g.Expect(svc.Deployments).To(HaveLen(1))
		g.Expect(aws.ToString(svc.Deployments[0].TaskDefinition)).To(Equal(webTD1))
		st, _ := sim.Service("prod", "web")
		lsd, _ := st.LatestServiceDeployment()
		g.Expect(lsd.RollbackTaskDefinition).To(Equal(webTD1))
	})
	t.Run("rollback fails", func(t *testing.T) {
		g := NewWithT(t)
		sim, _, client := strategySim(t, g, bg)
		updateWeb(g, client, "web:2")
		g.Expect(sim.FailRollback("prod", "web")).To(Succeed()) // armed for the next rollback
		g.Expect(sim.FailDeployment("prod", "web", "")).To(Succeed())
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackInProgress))
		g.Expect(sim.FailRollback("prod", "web")).To(Succeed()) // the one in progress, now
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackFailed))
		g.Expect(aws.ToString(describeWeb(g, client).TaskDefinition)).To(Equal(webTD2))
	})
	t.Run("armed rollback failure", func(t *testing.T) {
		g := NewWithT(t)
		sim, clock, client := strategySim(t, g, bg)
		updateWeb(g, client, "web:2")
		g.Expect(sim.FailRollback("prod", "web")).To(Succeed())
		g.Expect(sim.FailDeployment("prod", "web", "")).To(Succeed())
		clock.Advance(stage)
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackFailed))
	})
	t.Run("alarm", func(t *testing.T) {
		g := NewWithT(t)
		sim, _, client := strategySim(t, g, &types.DeploymentConfiguration{Strategy: types.DeploymentStrategyCanary,
			Alarms: &types.DeploymentAlarms{AlarmNames: []string{"web-5xx", "web-latency"}, Enable: true, Rollback: true}})
		sim.SetAlarm("web-latency", true) // already in ALARM: ignored by the next deployment
		updateWeb(g, client, "web:2")
		g.Expect(latest(g, client).Alarms.Status).To(Equal(types.ServiceDeploymentRollbackMonitorsStatusMonitoring))
		sim.SetAlarm("web-latency", false)
		sim.SetAlarm("web-latency", true)
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusInProgress), "ignored for this deployment")
		sim.SetAlarm("web-5xx", true)
		sd := latest(g, client)
		g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusRollbackInProgress))
		g.Expect(sd.Alarms.Status).To(Equal(types.ServiceDeploymentRollbackMonitorsStatusTriggered))
		g.Expect(sd.Alarms.TriggeredAlarmNames).To(Equal([]string{"web-5xx"}))
	})
	t.Run("StopServiceDeployment", func(t *testing.T) {
		g := NewWithT(t)
		ctx := context.Background()
		_, clock, client := strategySim(t, g, bg)
		updateWeb(g, client, "web:2")
		arn := latest(g, client).ServiceDeploymentArn
		out, err := client.StopServiceDeployment(ctx, &ecs.StopServiceDeploymentInput{ServiceDeploymentArn: arn, StopType: types.StopServiceDeploymentStopTypeRollback})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out.ServiceDeploymentArn).To(Equal(arn))
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackRequested))
		clock.Advance(stage)
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackInProgress))
		clock.Advance(stage)
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackSuccessful))
		g.Expect(aws.ToString(describeWeb(g, client).TaskDefinition)).To(Equal(webTD1))
		_, err = client.StopServiceDeployment(ctx, &ecs.StopServiceDeploymentInput{ServiceDeploymentArn: arn})
		var conflict *types.ConflictException
		g.Expect(errors.As(err, &conflict)).To(BeTrue(), "a finished deployment cannot be stopped: %v", err)
	})
	t.Run("StopServiceDeployment rolling", func(t *testing.T) {
		g := NewWithT(t)
		_, _, client := strategySim(t, g, nil)
		updateWeb(g, client, "web:2")
		_, err := client.StopServiceDeployment(context.Background(), &ecs.StopServiceDeploymentInput{ServiceDeploymentArn: latest(g, client).ServiceDeploymentArn})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackSuccessful))
		g.Expect(aws.ToString(describeWeb(g, client).TaskDefinition)).To(Equal(webTD1))
	})
	t.Run("superseded", func(t *testing.T) {
		g := NewWithT(t)
		_, clock, client := strategySim(t, g, bg)
		updateWeb(g, client, "web:2")
		clock.Advance(3 * stage)
		first := latest(g, client)
		updateWeb(g, client, "web:3")
		out, err := client.DescribeServiceDeployments(context.Background(), &ecs.DescribeServiceDeploymentsInput{ServiceDeploymentArns: []string{aws.ToString(first.ServiceDeploymentArn)}})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out.ServiceDeployments[0].Status).To(Equal(types.ServiceDeploymentStatusStopped))
		second := latest(g, client)
		g.Expect(second.SourceServiceRevisions).To(HaveLen(2), "both the old and the interrupted revision run")
		_, _, last := walk(g, clock, client)
		g.Expect(last.Status).To(Equal(types.ServiceDeploymentStatusSuccessful))
		g.Expect(describeWeb(g, client).Deployments).To(HaveLen(1))
	})
}

func (r *eventRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events, r.raw = nil, nil
}

func TestSeedTakesStrategyAndController(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	sim, _, client := start(t, ecssim.WithClock(clock.Now))
	g.Expect(sim.LoadSeed(strings.NewReader(`{"clusters":["prod"],
		"taskDefinitions":[{"family":"web","containerDefinitions":[{"name":"app","image":"repo/web:v1"}]},
		                   {"family":"web","containerDefinitions":[{"name":"app","image":"repo/web:v2"}]}],
		"services":[{"cluster":"prod","name":"web","taskDefinition":"web:1","desiredCount":1,
		             "deploymentConfiguration":{"strategy":"LINEAR","linearConfiguration":{"stepPercent":50,"stepBakeTimeInMinutes":1}}},
		            {"cluster":"prod","name":"cd","taskDefinition":"web:1","desiredCount":1,"deploymentController":"CODE_DEPLOY"}]}`))).To(Succeed())
	updateWeb(g, client, "web:2")
	_, weights, last := walk(g, clock, client)
	g.Expect(last.Status).To(Equal(types.ServiceDeploymentStatusSuccessful))
	g.Expect(weights).To(Equal([]float64{50, 100}), "with 0-length stages only the baking step is seen")
	_, err := client.UpdateService(context.Background(), &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("cd"), TaskDefinition: aws.String("web:2")})
	invalidParameter(g, err, "CODE_DEPLOY")
	err = sim.LoadSeed(strings.NewReader(`{"clusters":["prod"],"services":[{"cluster":"prod","name":"bad","taskDefinition":"web:1","deploymentConfiguration":{"strategy":"LINEAR","linearConfiguration":{"stepPercent":1}}}]}`))
	g.Expect(err).To(MatchError(ContainSubstring("linearConfiguration.stepPercent")))
}
