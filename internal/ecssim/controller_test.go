package ecssim_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// createWeb creates service prod/web of web:1 through the wire with in's
// other fields.
func createWeb(g *WithT, client *ecs.Client, in ecs.CreateServiceInput) *types.Service {
	in.Cluster, in.ServiceName, in.TaskDefinition = aws.String("prod"), aws.String("web"), aws.String("web:1")
	if in.DesiredCount == nil {
		in.DesiredCount = aws.Int32(2)
	}
	out, err := client.CreateService(context.Background(), &in)
	g.Expect(err).NotTo(HaveOccurred())
	return out.Service
}

// seedWebTaskDefinitions seeds cluster prod and web:1, web:2, web:3 (images
// repo/web:v1 … v3) without a service.
func seedWebTaskDefinitions(g *WithT, sim *ecssim.Server) {
	g.Expect(sim.SeedCluster("prod")).To(Succeed())
	for _, tag := range []string{"v1", "v2", "v3"} {
		_, err := sim.SeedTaskDefinition([]byte(`{"family":"web","containerDefinitions":[{"name":"app","image":"repo/web:` + tag + `"}]}`))
		g.Expect(err).NotTo(HaveOccurred())
	}
}

func invalidParameter(g *WithT, err error, substr string) {
	g.Expect(err).To(HaveOccurred())
	var ipe *types.InvalidParameterException
	g.Expect(errors.As(err, &ipe)).To(BeTrue(), "want InvalidParameterException, got %v", err)
	g.Expect(ipe.ErrorMessage()).To(ContainSubstring(substr))
}

func TestDeploymentControllerTypes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		controller types.DeploymentControllerType
		want       string // "" means UpdateService deploys
	}{
		{"", ""},
		{types.DeploymentControllerTypeEcs, ""},
		{types.DeploymentControllerTypeCodeDeploy, "Unable to update task definition on services with a CODE_DEPLOY deployment controller. Use AWS CodeDeploy to trigger a new deployment."},
		{types.DeploymentControllerTypeExternal, "Unable to update task definition on services with an EXTERNAL deployment controller"},
	} {
		t.Run(string(tc.controller), func(t *testing.T) {
			g := NewWithT(t)
			sim, _, client := start(t, ecssim.WithRolloutDuration(time.Hour))
			seedWebTaskDefinitions(g, sim)
			in := ecs.CreateServiceInput{}
			if tc.controller != "" {
				in.DeploymentController = &types.DeploymentController{Type: tc.controller}
			}
			created := createWeb(g, client, in)
			wantType := tc.controller
			if wantType == "" {
				wantType = types.DeploymentControllerTypeEcs
			}
			g.Expect(created.DeploymentController.Type).To(Equal(wantType))
			out, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out.Services[0].DeploymentController.Type).To(Equal(wantType))

			_, err = client.UpdateService(ctx, &ecs.UpdateServiceInput{
				Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
			})
			st, _ := sim.Service("prod", "web")
			if tc.want == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(st.TaskDefinitionARN).To(Equal(webTD2))
				return
			}
			invalidParameter(g, err, tc.want)
			g.Expect(st.TaskDefinitionARN).To(Equal(webTD1), "a refused update changes nothing")
			g.Expect(st.Deployments).To(HaveLen(1))
			// Other updates still work.
			up, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
				Cluster: aws.String("prod"), Service: aws.String("web"), DesiredCount: aws.Int32(5),
			})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(up.Service.DesiredCount).To(Equal(int32(5)))
		})
	}
	t.Run("unknown type", func(t *testing.T) {
		g := NewWithT(t)
		sim, _, client := start(t)
		seedWebTaskDefinitions(g, sim)
		_, err := client.CreateService(ctx, &ecs.CreateServiceInput{
			Cluster: aws.String("prod"), ServiceName: aws.String("web"), TaskDefinition: aws.String("web:1"),
			DeploymentController: &types.DeploymentController{Type: "SPINNAKER"},
		})
		invalidParameter(g, err, "deploymentController.type")
	})
}

func TestClassicLoadBalancerServiceHasNoRolloutState(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	rec := &eventRecorder{}
	clock := newFakeClock()
	sim, _, client := start(t, ecssim.WithClock(clock.Now), ecssim.WithRolloutDuration(time.Minute), ecssim.WithEventSink(rec.sink))
	seedWebTaskDefinitions(g, sim)
	created := createWeb(g, client, ecs.CreateServiceInput{LoadBalancers: []types.LoadBalancer{{
		LoadBalancerName: aws.String("web-clb"), ContainerName: aws.String("app"), ContainerPort: aws.Int32(8080),
	}}})
	g.Expect(created.Deployments[0].RolloutState).To(BeEmpty())
	g.Expect(created.Deployments[0].RolloutStateReason).To(BeNil())

	up, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(up.Service.Deployments).To(HaveLen(2))
	for _, d := range up.Service.Deployments {
		g.Expect(d.RolloutState).To(BeEmpty())
		g.Expect(d.RolloutStateReason).To(BeNil())
	}
	clock.Advance(time.Minute)
	out, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.Services[0].Deployments).To(HaveLen(1), "the deployment still completes")
	g.Expect(out.Services[0].Deployments[0].RolloutState).To(BeEmpty())
	g.Expect(rec.names()).To(BeEmpty(), "no ECS Deployment State Change events for a Classic Load Balancer service")
	st, _ := sim.Service("prod", "web")
	g.Expect(st.Deployments[0].RolloutState).To(BeEmpty())

	// A service behind a target group keeps rolloutState and events.
	g.Expect(sim.SeedCluster("alb")).To(Succeed())
	_, err = client.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster: aws.String("alb"), ServiceName: aws.String("web"), TaskDefinition: aws.String("web:1"),
		LoadBalancers: []types.LoadBalancer{{
			TargetGroupArn: aws.String("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"),
			ContainerName:  aws.String("app"), ContainerPort: aws.Int32(8080),
		}},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rec.names()).To(Equal([]string{ecssim.EventDeploymentInProgress, ecssim.EventDeploymentCompleted}))
}
