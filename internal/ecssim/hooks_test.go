package ecssim_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

func pauseHook(action types.DeploymentLifecycleHookAction, minutes int32, stages ...types.DeploymentLifecycleHookStage) types.DeploymentLifecycleHook {
	h := types.DeploymentLifecycleHook{TargetType: types.DeploymentLifecycleHookTargetTypePause, LifecycleStages: stages}
	if minutes != 0 || action != "" {
		h.TimeoutConfiguration = &types.DeploymentLifecycleHookTimeoutConfiguration{TimeoutInMinutes: aws.Int32(minutes), Action: action}
	}
	return h
}

// untilHook advances the clock a second at a time until the newest service
// deployment has a hook awaiting action.
func untilHook(g *WithT, clock *fakeClock, client *ecs.Client) types.ServiceDeployment {
	for range 1000 {
		sd := latest(g, client)
		if len(sd.LifecycleHookDetails) > 0 {
			return sd
		}
		g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusInProgress))
		clock.Advance(time.Second)
	}
	g.Expect("hook").To(Equal("awaiting"))
	return types.ServiceDeployment{}
}

func continueHook(g *WithT, client *ecs.Client, sd types.ServiceDeployment, action types.DeploymentLifecycleHookAction) {
	out, err := client.ContinueServiceDeployment(context.Background(), &ecs.ContinueServiceDeploymentInput{
		ServiceDeploymentArn: sd.ServiceDeploymentArn, HookId: sd.LifecycleHookDetails[0].HookId, Action: action,
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.ServiceDeploymentArn).To(Equal(sd.ServiceDeploymentArn))
}

func TestPauseHooks(t *testing.T) {
	bg := func(hooks ...types.DeploymentLifecycleHook) *types.DeploymentConfiguration {
		return &types.DeploymentConfiguration{Strategy: types.DeploymentStrategyBlueGreen, LifecycleHooks: hooks}
	}
	t.Run("continue", func(t *testing.T) {
		g := NewWithT(t)
		rec := &eventRecorder{}
		sim, clock, client := strategySim(t, g, bg(pauseHook(types.DeploymentLifecycleHookActionRollback, 10, types.DeploymentLifecycleHookStagePostTestTrafficShift)),
			ecssim.WithEventSink(rec.sink))
		updateWeb(g, client, "web:2")
		sd := untilHook(g, clock, client)
		g.Expect(sd.LifecycleStage).To(Equal(types.ServiceDeploymentLifecycleStagePostTestTrafficShift))
		h := sd.LifecycleHookDetails[0]
		g.Expect(aws.ToString(h.HookId)).To(MatchRegexp(`^ecs-pause-[A-Za-z0-9_-]{43}$`))
		g.Expect(h.TargetType).To(Equal(types.DeploymentLifecycleHookTargetTypePause))
		g.Expect(h.Status).To(Equal(types.DeploymentLifecycleHookStatusAwaitingAction))
		g.Expect(h.TimeoutAction).To(Equal(types.DeploymentLifecycleHookActionRollback))
		g.Expect(*h.ExpiresAt).To(BeTemporally("==", clock.Now().Add(10*time.Minute)))
		g.Expect(aws.ToFloat64(sd.TargetServiceRevision.RequestedTestTrafficWeight)).To(Equal(100.0))
		g.Expect(aws.ToFloat64(sd.TargetServiceRevision.RequestedProductionTrafficWeight)).To(BeZero())

		// The event.
		g.Expect(rec.raw).To(HaveLen(1))
		ev := rec.raw[0]
		g.Expect(ev["detail-type"]).To(Equal("ECS Hook State Change"))
		g.Expect(ev["resources"]).To(Equal([]any{webService}))
		detail := ev["detail"].(map[string]any)
		g.Expect(detail["eventName"]).To(Equal("HOOK_AWAITING_ACTION"))
		g.Expect(detail["hookId"]).To(Equal(aws.ToString(h.HookId)))
		g.Expect(detail["serviceDeploymentArn"]).To(Equal(aws.ToString(sd.ServiceDeploymentArn)))
		g.Expect(detail["lifecycleStage"]).To(Equal("POST_TEST_TRAFFIC_SHIFT"))

		// It waits.
		clock.Advance(9 * time.Minute)
		g.Expect(latest(g, client).LifecycleStage).To(Equal(types.ServiceDeploymentLifecycleStagePostTestTrafficShift))
		st, _ := sim.Service("prod", "web")
		lsd, _ := st.LatestServiceDeployment()
		g.Expect(lsd.HooksAwaiting).To(HaveLen(1))
		g.Expect(lsd.HooksAwaiting[0].ID).To(Equal(aws.ToString(h.HookId)))

		continueHook(g, client, sd, types.DeploymentLifecycleHookActionContinue)
		g.Expect(latest(g, client).LifecycleHookDetails).To(BeEmpty())
		_, _, last := walk(g, clock, client)
		g.Expect(last.Status).To(Equal(types.ServiceDeploymentStatusSuccessful))
		g.Expect(aws.ToString(describeWeb(g, client).TaskDefinition)).To(Equal(webTD2))

		_, err := client.ContinueServiceDeployment(context.Background(), &ecs.ContinueServiceDeploymentInput{
			ServiceDeploymentArn: sd.ServiceDeploymentArn, HookId: h.HookId, Action: types.DeploymentLifecycleHookActionContinue,
		})
		g.Expect(err).To(HaveOccurred(), "a hook acts once")
	})
	t.Run("rollback", func(t *testing.T) {
		g := NewWithT(t)
		_, clock, client := strategySim(t, g, bg(pauseHook(types.DeploymentLifecycleHookActionContinue, 10, types.DeploymentLifecycleHookStagePostScaleUp)))
		updateWeb(g, client, "web:2")
		sd := untilHook(g, clock, client)
		continueHook(g, client, sd, types.DeploymentLifecycleHookActionRollback)
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackInProgress))
		clock.Advance(stage)
		g.Expect(latest(g, client).Status).To(Equal(types.ServiceDeploymentStatusRollbackSuccessful))
		g.Expect(aws.ToString(describeWeb(g, client).TaskDefinition)).To(Equal(webTD1))
	})
	for _, action := range []types.DeploymentLifecycleHookAction{types.DeploymentLifecycleHookActionContinue, types.DeploymentLifecycleHookActionRollback} {
		t.Run("timeout "+string(action), func(t *testing.T) {
			g := NewWithT(t)
			_, clock, client := strategySim(t, g, bg(pauseHook(action, 10, types.DeploymentLifecycleHookStagePreScaleUp)))
			updateWeb(g, client, "web:2")
			untilHook(g, clock, client)
			clock.Advance(10*time.Minute - time.Second)
			g.Expect(latest(g, client).LifecycleHookDetails).To(HaveLen(1))
			clock.Advance(time.Second)
			g.Expect(latest(g, client).LifecycleHookDetails).To(BeEmpty())
			_, _, sd := walk(g, clock, client)
			if action == types.DeploymentLifecycleHookActionRollback {
				g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusRollbackSuccessful))
				g.Expect(aws.ToString(sd.StatusReason)).To(ContainSubstring("timed out"))
				return
			}
			g.Expect(sd.Status).To(Equal(types.ServiceDeploymentStatusSuccessful))
		})
	}
	t.Run("every production step", func(t *testing.T) {
		g := NewWithT(t)
		_, clock, client := strategySim(t, g, &types.DeploymentConfiguration{Strategy: types.DeploymentStrategyCanary,
			LifecycleHooks: []types.DeploymentLifecycleHook{pauseHook("", 0, types.DeploymentLifecycleHookStagePreProductionTrafficShift)}})
		updateWeb(g, client, "web:2")
		var weights []float64
		for range 2 {
			sd := untilHook(g, clock, client)
			g.Expect(sd.LifecycleHookDetails[0].TimeoutAction).To(Equal(types.DeploymentLifecycleHookActionRollback), "default action")
			weights = append(weights, aws.ToFloat64(sd.TargetServiceRevision.RequestedProductionTrafficWeight))
			continueHook(g, client, sd, types.DeploymentLifecycleHookActionContinue)
		}
		g.Expect(weights).To(Equal([]float64{0, 5}))
		_, _, last := walk(g, clock, client)
		g.Expect(last.Status).To(Equal(types.ServiceDeploymentStatusSuccessful))
	})
	t.Run("validation", func(t *testing.T) {
		g := NewWithT(t)
		_, _, client := strategySim(t, g, nil)
		eleven := make([]types.DeploymentLifecycleHook, 11)
		for i := range eleven {
			eleven[i] = pauseHook("", 0, types.DeploymentLifecycleHookStagePostScaleUp)
		}
		for _, tc := range []struct {
			hooks []types.DeploymentLifecycleHook
			want  string
		}{
			{eleven, "at most 10"},
			{[]types.DeploymentLifecycleHook{pauseHook("", 0, types.DeploymentLifecycleHookStageTestTrafficShift)}, "cannot run at TEST_TRAFFIC_SHIFT"},
			{[]types.DeploymentLifecycleHook{pauseHook("", 0, types.DeploymentLifecycleHookStageProductionTrafficShift)}, "cannot run at PRODUCTION_TRAFFIC_SHIFT"},
			{[]types.DeploymentLifecycleHook{pauseHook("", 20161, types.DeploymentLifecycleHookStagePostScaleUp)}, "timeoutConfiguration.timeoutInMinutes"},
			{[]types.DeploymentLifecycleHook{pauseHook("", 0)}, "lifecycleStages"},
		} {
			_, err := client.UpdateService(context.Background(), &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("web"),
				DeploymentConfiguration: &types.DeploymentConfiguration{Strategy: types.DeploymentStrategyBlueGreen, LifecycleHooks: tc.hooks}})
			invalidParameter(g, err, tc.want)
		}
	})
}
