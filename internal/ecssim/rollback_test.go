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

// With WithRollbackDuration a circuit-breaker rollback rolls out on the simulator's clock:
// the failed deployment is listed (ACTIVE, FAILED) while the rollback is IN_PROGRESS, and
// leaves the list when the rollback completes.
func TestRollbackRollsOutAndTheFailedDeploymentLeaves(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	clock := newFakeClock()
	rec := &eventRecorder{}
	sim, _, client := start(t, ecssim.WithClock(clock.Now), ecssim.WithRolloutDuration(time.Hour),
		ecssim.WithRollbackDuration(10*time.Minute), ecssim.WithEventSink(rec.sink))
	seedWeb(g, sim, 2)
	before, _ := sim.Service("prod", "web")
	up, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
		DeploymentConfiguration: &types.DeploymentConfiguration{
			DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
		},
	})
	g.Expect(err).NotTo(HaveOccurred())
	failedID := aws.ToString(up.Service.Deployments[0].Id)
	g.Expect(sim.FailDeployment("prod", "web", "tasks failed to start")).To(Succeed())

	describe := func() types.Service {
		out, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
		g.Expect(err).NotTo(HaveOccurred())
		return out.Services[0]
	}
	svc := describe()
	g.Expect(aws.ToString(svc.TaskDefinition)).To(Equal(webTD1))
	g.Expect(svc.Deployments).To(HaveLen(2))
	rb := svc.Deployments[0]
	g.Expect(aws.ToString(rb.Status)).To(Equal("PRIMARY"))
	g.Expect(rb.RolloutState).To(Equal(types.DeploymentRolloutStateInProgress))
	g.Expect(aws.ToString(rb.RolloutStateReason)).To(Equal("ECS deployment circuit breaker: rolling back to deploymentId " + before.Deployments[0].ID + "."))
	g.Expect(aws.ToString(rb.TaskDefinition)).To(Equal(webTD1))
	g.Expect(aws.ToString(svc.Deployments[1].Id)).To(Equal(failedID))
	g.Expect(aws.ToString(svc.Deployments[1].Status)).To(Equal("ACTIVE"))
	g.Expect(svc.Deployments[1].RolloutState).To(Equal(types.DeploymentRolloutStateFailed))
	g.Expect(rec.names()).To(Equal([]string{
		ecssim.EventDeploymentInProgress, ecssim.EventDeploymentFailed, ecssim.EventDeploymentInProgress,
	}))

	clock.Advance(10*time.Minute - time.Second)
	g.Expect(describe().Deployments).To(HaveLen(2), "the rollback is still rolling out")
	clock.Advance(time.Second)
	svc = describe()
	g.Expect(svc.Deployments).To(HaveLen(1), "the failed deployment left the list")
	g.Expect(aws.ToString(svc.Deployments[0].Id)).To(Equal(aws.ToString(rb.Id)))
	g.Expect(svc.Deployments[0].RolloutState).To(Equal(types.DeploymentRolloutStateCompleted))
	g.Expect(aws.ToString(svc.TaskDefinition)).To(Equal(webTD1))
	g.Expect(rec.names()[3:]).To(Equal([]string{ecssim.EventDeploymentCompleted}))
	g.Expect(rec.get(3).Detail.DeploymentID).To(Equal(aws.ToString(rb.Id)))
}

// CompleteDeployment ends a rollback at once, whatever the rollback duration.
func TestCompleteDeploymentEndsARollback(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	sim, _, client := start(t, ecssim.WithRolloutDuration(time.Hour), ecssim.WithRollbackDuration(time.Hour))
	seedWeb(g, sim, 2)
	_, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
		DeploymentConfiguration: &types.DeploymentConfiguration{
			DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
		},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sim.FailDeployment("prod", "web", "")).To(Succeed())
	st, _ := sim.Service("prod", "web")
	g.Expect(st.Deployments).To(HaveLen(2))
	g.Expect(sim.CompleteDeployment("prod", "web")).To(Succeed())
	st, _ = sim.Service("prod", "web")
	g.Expect(st.Deployments).To(HaveLen(1))
	g.Expect(st.Deployments[0].RolloutState).To(Equal(ecssim.RolloutCompleted))
	g.Expect(st.TaskDefinitionARN).To(Equal(webTD1))
}
