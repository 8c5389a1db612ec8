package ecssim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start starts a simulator and returns it with its URL and an SDK client.
func start(t *testing.T, opts ...ecssim.Option) (*ecssim.Server, string, *ecs.Client) {
	t.Helper()
	sim := ecssim.New(opts...)
	url, err := sim.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim, url, newClient(url)
}

func newClient(url string, optFns ...func(*ecs.Options)) *ecs.Client {
	cfg := aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}}
	return ecs.NewFromConfig(cfg, append([]func(*ecs.Options){func(o *ecs.Options) {
		o.BaseEndpoint = aws.String(url)
	}}, optFns...)...)
}

func webTaskDefinition(image string) *ecs.RegisterTaskDefinitionInput {
	return &ecs.RegisterTaskDefinitionInput{
		Family:           aws.String("web"),
		TaskRoleArn:      aws.String("arn:aws:iam::123456789012:role/web-task"),
		ExecutionRoleArn: aws.String("arn:aws:iam::123456789012:role/ecsTaskExecutionRole"),
		NetworkMode:      types.NetworkModeAwsvpc,
		Cpu:              aws.String("512"),
		Memory:           aws.String("1024"),
		RequiresCompatibilities: []types.Compatibility{
			types.CompatibilityFargate,
		},
		RuntimePlatform: &types.RuntimePlatform{
			CpuArchitecture:       types.CPUArchitectureArm64,
			OperatingSystemFamily: types.OSFamilyLinux,
		},
		EphemeralStorage:     &types.EphemeralStorage{SizeInGiB: 30},
		EnableFaultInjection: aws.Bool(true),
		Volumes: []types.Volume{{
			Name: aws.String("data"),
			EfsVolumeConfiguration: &types.EFSVolumeConfiguration{
				FileSystemId:      aws.String("fs-12345678"),
				TransitEncryption: types.EFSTransitEncryptionEnabled,
			},
		}},
		ContainerDefinitions: []types.ContainerDefinition{
			{
				Name:      aws.String("app"),
				Image:     aws.String(image),
				Essential: aws.Bool(true),
				Environment: []types.KeyValuePair{
					{Name: aws.String("MODE"), Value: aws.String("production")},
					{Name: aws.String("PORT"), Value: aws.String("8080")},
				},
				PortMappings: []types.PortMapping{{
					ContainerPort: aws.Int32(8080),
					Protocol:      types.TransportProtocolTcp,
					Name:          aws.String("http"),
					AppProtocol:   types.ApplicationProtocolHttp,
				}},
				Secrets: []types.Secret{{
					Name:      aws.String("DB_PASSWORD"),
					ValueFrom: aws.String("arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"),
				}},
				LogConfiguration: &types.LogConfiguration{
					LogDriver: types.LogDriverAwslogs,
					Options: map[string]string{
						"awslogs-group":         "/ecs/web",
						"awslogs-region":        "us-east-1",
						"awslogs-stream-prefix": "web",
					},
				},
				MountPoints: []types.MountPoint{{
					SourceVolume:  aws.String("data"),
					ContainerPath: aws.String("/data"),
					ReadOnly:      aws.Bool(false),
				}},
				HealthCheck: &types.HealthCheck{
					Command:  []string{"CMD-SHELL", "curl -f http://localhost:8080/healthz || exit 1"},
					Interval: aws.Int32(10),
					Retries:  aws.Int32(3),
				},
			},
			{
				Name:   aws.String("sidecar"),
				Image:  aws.String("public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"),
				Cpu:    64,
				Memory: aws.Int32(128),
			},
		},
		Tags: []types.Tag{
			{Key: aws.String("team"), Value: aws.String("payments")},
			{Key: aws.String("env"), Value: aws.String("prod")},
		},
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestRegisterDescribeRoundTripPreservesFields(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	sim, _, client := start(t, ecssim.WithClock(clock.Now))
	ctx := context.Background()

	in := webTaskDefinition("123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v1")
	reg, err := client.RegisterTaskDefinition(ctx, in)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(reg.TaskDefinition.TaskDefinitionArn)).To(Equal("arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"))
	g.Expect(reg.Tags).To(HaveLen(2))

	out, err := client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{
		TaskDefinition: aws.String("web"),
		Include:        []types.TaskDefinitionField{types.TaskDefinitionFieldTags},
	})
	g.Expect(err).NotTo(HaveOccurred())
	td := out.TaskDefinition
	g.Expect(td.Revision).To(Equal(int32(1)))
	g.Expect(td.Status).To(Equal(types.TaskDefinitionStatusActive))
	g.Expect(td.RegisteredAt).NotTo(BeNil())
	g.Expect(td.RegisteredAt.Equal(clock.Now())).To(BeTrue())
	g.Expect(aws.ToString(td.RegisteredBy)).To(Equal("arn:aws:iam::123456789012:root"))
	g.Expect(td.Compatibilities).To(ContainElement(types.CompatibilityFargate))
	g.Expect(td.TaskRoleArn).To(Equal(in.TaskRoleArn))
	g.Expect(td.ExecutionRoleArn).To(Equal(in.ExecutionRoleArn))
	g.Expect(td.NetworkMode).To(Equal(in.NetworkMode))
	g.Expect(td.Cpu).To(Equal(in.Cpu))
	g.Expect(td.Memory).To(Equal(in.Memory))
	g.Expect(td.RequiresCompatibilities).To(Equal(in.RequiresCompatibilities))
	g.Expect(td.RuntimePlatform).To(Equal(in.RuntimePlatform))
	g.Expect(td.EphemeralStorage).To(Equal(in.EphemeralStorage))
	g.Expect(td.EnableFaultInjection).To(Equal(in.EnableFaultInjection))
	g.Expect(td.Volumes).To(Equal(in.Volumes))
	g.Expect(out.Tags).To(ConsistOf(in.Tags))

	g.Expect(td.ContainerDefinitions).To(HaveLen(2))
	app, wantApp := td.ContainerDefinitions[0], in.ContainerDefinitions[0]
	g.Expect(app.Name).To(Equal(wantApp.Name))
	g.Expect(app.Image).To(Equal(wantApp.Image))
	g.Expect(app.Environment).To(Equal(wantApp.Environment))
	g.Expect(app.PortMappings).To(Equal(wantApp.PortMappings))
	g.Expect(app.Secrets).To(Equal(wantApp.Secrets))
	g.Expect(app.LogConfiguration).To(Equal(wantApp.LogConfiguration))
	g.Expect(app.MountPoints).To(Equal(wantApp.MountPoints))
	g.Expect(app.HealthCheck).To(Equal(wantApp.HealthCheck))
	sidecar := td.ContainerDefinitions[1]
	g.Expect(sidecar.Cpu).To(Equal(int32(64)))
	g.Expect(sidecar.Memory).To(Equal(aws.Int32(128)))
	// Defaults ECS reports for omitted fields.
	g.Expect(sidecar.Essential).To(Equal(aws.Bool(true)))
	g.Expect(sidecar.Environment).To(BeEmpty())

	// Tags only when asked for.
	noTags, err := client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web:1")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(noTags.Tags).To(BeNil())

	// The raw stored document keeps every field, including read-only ones.
	raw, ok := sim.TaskDefinition("web:1")
	g.Expect(ok).To(BeTrue())
	g.Expect(raw).To(HaveKeyWithValue("enableFaultInjection", true))
	g.Expect(raw).To(HaveKeyWithValue("taskDefinitionArn", "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"))
	g.Expect(raw).NotTo(HaveKey("tags"))
	tags, ok := sim.TaskDefinitionTags("web")
	g.Expect(ok).To(BeTrue())
	g.Expect(tags).To(Equal(map[string]string{"team": "payments", "env": "prod"}))

	// Copying a described revision into a new one (as the product does) with
	// only the image changed gives identical container definitions otherwise.
	copied := &ecs.RegisterTaskDefinitionInput{
		Family: td.Family, TaskRoleArn: td.TaskRoleArn, ExecutionRoleArn: td.ExecutionRoleArn,
		NetworkMode: td.NetworkMode, ContainerDefinitions: td.ContainerDefinitions, Volumes: td.Volumes,
		PlacementConstraints: td.PlacementConstraints, RequiresCompatibilities: td.RequiresCompatibilities,
		Cpu: td.Cpu, Memory: td.Memory, PidMode: td.PidMode, IpcMode: td.IpcMode,
		ProxyConfiguration: td.ProxyConfiguration, InferenceAccelerators: td.InferenceAccelerators,
		EphemeralStorage: td.EphemeralStorage, RuntimePlatform: td.RuntimePlatform,
		EnableFaultInjection: td.EnableFaultInjection, Tags: out.Tags,
	}
	copied.ContainerDefinitions[0].Image = aws.String("123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v2")
	_, err = client.RegisterTaskDefinition(ctx, copied)
	g.Expect(err).NotTo(HaveOccurred())
	raw1, _ := sim.TaskDefinition("web:1")
	raw2, _ := sim.TaskDefinition("web:2")
	c1 := raw1["containerDefinitions"].([]any)
	c2 := raw2["containerDefinitions"].([]any)
	g.Expect(c2[1]).To(Equal(c1[1]))
	g.Expect(c2[0]).To(HaveKeyWithValue("image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v2"))
	delete(c1[0].(map[string]any), "image")
	delete(c2[0].(map[string]any), "image")
	g.Expect(c2[0]).To(Equal(c1[0]))
	g.Expect(raw2["volumes"]).To(Equal(raw1["volumes"]))
}

func TestDescribeTaskDefinitionReferences(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := start(t)
	ctx := context.Background()

	for _, tag := range []string{"v1", "v2", "v3"} {
		_, err := client.RegisterTaskDefinition(ctx, webTaskDefinition("web:"+tag))
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(sim.Revisions("web")).To(Equal(3))

	image := func(ref string) string {
		out, err := client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(ref)})
		g.Expect(err).NotTo(HaveOccurred())
		return aws.ToString(out.TaskDefinition.ContainerDefinitions[0].Image)
	}
	g.Expect(image("web")).To(Equal("web:v3"))
	g.Expect(image("web:2")).To(Equal("web:v2"))
	g.Expect(image("arn:aws:ecs:us-east-1:123456789012:task-definition/web:1")).To(Equal("web:v1"))

	// Deregistering the latest makes the family resolve to the previous one.
	_, err := client.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: aws.String("web:3")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(image("web")).To(Equal("web:v2"))

	list, err := client.ListTaskDefinitions(ctx, &ecs.ListTaskDefinitionsInput{FamilyPrefix: aws.String("web"), Sort: types.SortOrderDesc})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list.TaskDefinitionArns).To(Equal([]string{
		"arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
		"arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
	}))

	for _, ref := range []string{"nope", "web:9", "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:1"} {
		_, err = client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(ref)})
		var ce *types.ClientException
		g.Expect(errors.As(err, &ce)).To(BeTrue(), ref)
		g.Expect(ce.ErrorMessage()).To(Equal("Unable to describe task definition."))
	}
}

func TestRegisterTaskDefinitionValidation(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := start(t)
	ctx := context.Background()

	_, err := client.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:               aws.String("web"),
		ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("app")}},
	})
	var ce *types.ClientException
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.ErrorMessage()).To(ContainSubstring("image"))

	_, err = client.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:               aws.String("bad family!"),
		ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("x")}},
	})
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.ErrorMessage()).To(ContainSubstring("Family"))

	// Seeding validates the same way.
	for body, field := range map[string]string{
		`{"containerDefinitions":[{"name":"a","image":"b"}]}`:   "Family",
		`{"family":"f","containerDefinitions":[]}`:              "Container list",
		`{"family":"f","containerDefinitions":[{"image":"b"}]}`: "name",
	} {
		_, err := sim.SeedTaskDefinition([]byte(body))
		g.Expect(err).To(MatchError(ContainSubstring(field)), body)
		g.Expect(err).To(MatchError(HavePrefix("ClientException")), body)
	}
	g.Expect(sim.Revisions("web")).To(BeZero())
	g.Expect(sim.Calls("RegisterTaskDefinition")).To(Equal(2))
}

func seedWeb(g *WithT, sim *ecssim.Server, desired int) {
	g.Expect(sim.SeedCluster("prod")).To(Succeed())
	for _, tag := range []string{"v1", "v2"} {
		body, err := json.Marshal(map[string]any{
			"family":               "web",
			"containerDefinitions": []any{map[string]any{"name": "app", "image": "repo/web:" + tag}},
		})
		g.Expect(err).NotTo(HaveOccurred())
		_, err = sim.SeedTaskDefinition(body)
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(sim.SeedService("prod", "web", "web:1", desired)).To(Succeed())
}

const (
	webService = "arn:aws:ecs:us-east-1:123456789012:service/prod/web"
	webTD1     = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"
	webTD2     = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
)

func TestCreateAndDescribeService(t *testing.T) {
	g := NewWithT(t)
	_, _, client := start(t)
	ctx := context.Background()

	_, err := client.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String("prod")})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = client.RegisterTaskDefinition(ctx, webTaskDefinition("repo/web:v1"))
	g.Expect(err).NotTo(HaveOccurred())
	created, err := client.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster:        aws.String("prod"),
		ServiceName:    aws.String("web"),
		TaskDefinition: aws.String("web"),
		DesiredCount:   aws.Int32(3),
		LaunchType:     types.LaunchTypeFargate,
		DeploymentConfiguration: &types.DeploymentConfiguration{
			DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
			MaximumPercent:           aws.Int32(200),
			MinimumHealthyPercent:    aws.Int32(50),
		},
		NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
			Subnets: []string{"subnet-1"},
		}},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(created.Service.ServiceArn)).To(Equal(webService))

	out, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{
		Cluster:  aws.String("arn:aws:ecs:us-east-1:123456789012:cluster/prod"),
		Services: []string{"web", webService, "missing"},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.Services).To(HaveLen(2))
	svc := out.Services[0]
	g.Expect(aws.ToString(svc.ServiceName)).To(Equal("web"))
	g.Expect(aws.ToString(svc.ClusterArn)).To(Equal("arn:aws:ecs:us-east-1:123456789012:cluster/prod"))
	g.Expect(aws.ToString(svc.Status)).To(Equal("ACTIVE"))
	g.Expect(svc.DesiredCount).To(Equal(int32(3)))
	g.Expect(svc.RunningCount).To(Equal(int32(3)))
	g.Expect(aws.ToString(svc.TaskDefinition)).To(Equal(webTD1))
	g.Expect(svc.LaunchType).To(Equal(types.LaunchTypeFargate))
	g.Expect(svc.DeploymentController.Type).To(Equal(types.DeploymentControllerTypeEcs))
	g.Expect(svc.DeploymentConfiguration.DeploymentCircuitBreaker.Rollback).To(BeTrue())
	g.Expect(svc.DeploymentConfiguration.MinimumHealthyPercent).To(Equal(aws.Int32(50)))
	g.Expect(svc.NetworkConfiguration.AwsvpcConfiguration.Subnets).To(Equal([]string{"subnet-1"}))
	g.Expect(svc.CreatedAt).NotTo(BeNil())
	g.Expect(svc.Deployments).To(HaveLen(1))
	d := svc.Deployments[0]
	g.Expect(aws.ToString(d.Id)).To(MatchRegexp(`^ecs-svc/\d{19}$`))
	g.Expect(aws.ToString(d.Status)).To(Equal("PRIMARY"))
	g.Expect(d.RolloutState).To(Equal(types.DeploymentRolloutStateCompleted))
	g.Expect(aws.ToString(d.TaskDefinition)).To(Equal(webTD1))
	g.Expect(d.RunningCount).To(Equal(int32(3)))
	g.Expect(d.CreatedAt).NotTo(BeNil())

	g.Expect(out.Failures).To(HaveLen(1))
	g.Expect(aws.ToString(out.Failures[0].Arn)).To(Equal("arn:aws:ecs:us-east-1:123456789012:service/prod/missing"))
	g.Expect(aws.ToString(out.Failures[0].Reason)).To(Equal("MISSING"))
}

func TestUpdateServiceRollout(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	sim, _, client := start(t, ecssim.WithClock(clock.Now), ecssim.WithRolloutDuration(time.Minute))
	seedWeb(g, sim, 2)
	ctx := context.Background()

	up, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(up.Service.TaskDefinition)).To(Equal(webTD2))
	g.Expect(up.Service.Deployments).To(HaveLen(2))
	primary, old := up.Service.Deployments[0], up.Service.Deployments[1]
	g.Expect(aws.ToString(primary.Status)).To(Equal("PRIMARY"))
	g.Expect(primary.RolloutState).To(Equal(types.DeploymentRolloutStateInProgress))
	g.Expect(aws.ToString(primary.TaskDefinition)).To(Equal(webTD2))
	g.Expect(aws.ToString(primary.RolloutStateReason)).To(ContainSubstring("in progress"))
	g.Expect(aws.ToString(old.Status)).To(Equal("ACTIVE"))
	g.Expect(aws.ToString(old.TaskDefinition)).To(Equal(webTD1))

	describe := func() types.Service {
		out, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out.Services).To(HaveLen(1))
		return out.Services[0]
	}
	clock.Advance(59 * time.Second)
	g.Expect(describe().Deployments[0].RolloutState).To(Equal(types.DeploymentRolloutStateInProgress))

	clock.Advance(time.Second)
	svc := describe()
	g.Expect(svc.Deployments).To(HaveLen(1))
	g.Expect(aws.ToString(svc.Deployments[0].Id)).To(Equal(aws.ToString(primary.Id)))
	g.Expect(svc.Deployments[0].RolloutState).To(Equal(types.DeploymentRolloutStateCompleted))
	g.Expect(svc.Deployments[0].RunningCount).To(Equal(int32(2)))
	g.Expect(svc.RunningCount).To(Equal(int32(2)))
	g.Expect(svc.PendingCount).To(BeZero())

	st, ok := sim.Service("prod", "web")
	g.Expect(ok).To(BeTrue())
	g.Expect(st.TaskDefinitionARN).To(Equal(webTD2))
	p, ok := st.Primary()
	g.Expect(ok).To(BeTrue())
	g.Expect(p.RolloutState).To(Equal(ecssim.RolloutCompleted))

	// Same task definition without forceNewDeployment: no new deployment.
	up, err = client.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"), DesiredCount: aws.Int32(4),
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(up.Service.Deployments).To(HaveLen(1))
	g.Expect(up.Service.RunningCount).To(Equal(int32(4)))

	// forceNewDeployment starts one; CompleteDeployment finishes it early.
	up, err = client.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), ForceNewDeployment: true,
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(up.Service.Deployments).To(HaveLen(2))
	g.Expect(sim.CompleteDeployment("prod", "web")).To(Succeed())
	g.Expect(describe().Deployments).To(HaveLen(1))
}

func TestRolloutCompletesOnNextRequestByDefault(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := start(t, ecssim.WithClock(newFakeClock().Now))
	seedWeb(g, sim, 1)
	ctx := context.Background()

	up, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String(webService), TaskDefinition: aws.String(webTD2),
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(up.Service.Deployments[0].RolloutState).To(Equal(types.DeploymentRolloutStateInProgress))

	out, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.Services[0].Deployments).To(HaveLen(1))
	g.Expect(out.Services[0].Deployments[0].RolloutState).To(Equal(types.DeploymentRolloutStateCompleted))
}

func TestFailDeployment(t *testing.T) {
	ctx := context.Background()
	t.Run("rollback", func(t *testing.T) {
		g := NewWithT(t)
		sim, _, client := start(t, ecssim.WithRolloutDuration(time.Hour))
		seedWeb(g, sim, 2)
		_, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
			Cluster: aws.String("prod"), Service: aws.String("web"),
			DeploymentConfiguration: &types.DeploymentConfiguration{
				DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
			},
			TaskDefinition: aws.String("web:2"),
		})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sim.FailDeployment("prod", "web", "tasks failed to start")).To(Succeed())

		out, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
		g.Expect(err).NotTo(HaveOccurred())
		svc := out.Services[0]
		g.Expect(aws.ToString(svc.TaskDefinition)).To(Equal(webTD1))
		g.Expect(svc.Deployments).To(HaveLen(2))
		g.Expect(aws.ToString(svc.Deployments[0].Status)).To(Equal("PRIMARY"))
		g.Expect(svc.Deployments[0].RolloutState).To(Equal(types.DeploymentRolloutStateCompleted))
		g.Expect(aws.ToString(svc.Deployments[0].TaskDefinition)).To(Equal(webTD1))
		g.Expect(svc.Deployments[1].RolloutState).To(Equal(types.DeploymentRolloutStateFailed))
		g.Expect(aws.ToString(svc.Deployments[1].RolloutStateReason)).To(Equal("tasks failed to start"))
		g.Expect(aws.ToString(svc.Deployments[1].TaskDefinition)).To(Equal(webTD2))
		g.Expect(svc.RunningCount).To(Equal(int32(2)))
	})
	t.Run("no rollback", func(t *testing.T) {
		g := NewWithT(t)
		sim, _, client := start(t, ecssim.WithRolloutDuration(time.Hour))
		seedWeb(g, sim, 2)
		g.Expect(sim.FailDeployment("prod", "web", "x")).To(HaveOccurred()) // nothing in progress
		_, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
			Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
		})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sim.FailDeployment("prod", "web", "")).To(Succeed())
		st, _ := sim.Service("prod", "web")
		g.Expect(st.TaskDefinitionARN).To(Equal(webTD2))
		p, _ := st.Primary()
		g.Expect(p.RolloutState).To(Equal(ecssim.RolloutFailed))
		g.Expect(st.Deployments).To(HaveLen(2))
		g.Expect(sim.CompleteDeployment("prod", "web")).To(HaveOccurred())
	})
}

func TestTypedErrors(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := start(t)
	seedWeb(g, sim, 1)
	ctx := context.Background()

	_, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("nope"), Services: []string{"web"}})
	var cnf *types.ClusterNotFoundException
	g.Expect(errors.As(err, &cnf)).To(BeTrue())
	g.Expect(cnf.ErrorMessage()).To(Equal("Cluster not found."))

	_, err = client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("nope"), Service: aws.String("web")})
	g.Expect(errors.As(err, &cnf)).To(BeTrue())

	_, err = client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("api")})
	var snf *types.ServiceNotFoundException
	g.Expect(errors.As(err, &snf)).To(BeTrue())
	g.Expect(snf.ErrorMessage()).To(Equal("Service not found."))

	_, err = client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("other:1")})
	var ce *types.ClientException
	g.Expect(errors.As(err, &ce)).To(BeTrue())

	many := make([]string, 11)
	for i := range many {
		many[i] = fmt.Sprintf("s%d", i)
	}
	_, err = client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: many})
	var ipe *types.InvalidParameterException
	g.Expect(errors.As(err, &ipe)).To(BeTrue())

	// The request id reaches the SDK.
	var re interface{ ServiceRequestID() string }
	g.Expect(errors.As(err, &re)).To(BeTrue())
	g.Expect(re.ServiceRequestID()).NotTo(BeEmpty())
}

func TestFaultInjection(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := start(t)
	seedWeb(g, sim, 1)
	ctx := context.Background()
	describe := func() error {
		_, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
		return err
	}

	// A single 500 is retried by the SDK: two calls, one success.
	sim.InjectFault("DescribeServices", ecssim.Fault{Status: 500, Code: "ServerException", Times: 1})
	g.Expect(describe()).To(Succeed())
	g.Expect(sim.Calls("DescribeServices")).To(Equal(2))

	// A non-retryable fault until cleared.
	sim.InjectFault("DescribeServices", ecssim.Fault{Code: "AccessDeniedException", Message: "no"})
	for range 2 {
		err := describe()
		var ade *types.AccessDeniedException
		g.Expect(errors.As(err, &ade)).To(BeTrue())
		g.Expect(ade.ErrorMessage()).To(Equal("no"))
	}
	g.Expect(sim.Calls("DescribeServices")).To(Equal(4))
	sim.ClearFaults()
	g.Expect(describe()).To(Succeed())

	// Unmodelled codes arrive as generic API errors.
	sim.InjectFault("DescribeServices", ecssim.Fault{Code: "WeirdException", Times: 1})
	g.Expect(apiCode(describe())).To(Equal("WeirdException"))
	g.Expect(describe()).To(Succeed())
}

func TestThrottling(t *testing.T) {
	ctx := context.Background()
	body := func(i int) *ecs.RegisterTaskDefinitionInput {
		return &ecs.RegisterTaskDefinitionInput{
			Family:               aws.String("web"),
			ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(fmt.Sprintf("web:%d", i))}},
		}
	}
	t.Run("aws buckets", func(t *testing.T) {
		g := NewWithT(t)
		clock := newFakeClock()
		sim, url, _ := start(t, ecssim.WithClock(clock.Now), ecssim.WithAWSThrottling())
		client := newClient(url, func(o *ecs.Options) { o.RetryMaxAttempts = 1 })

		for i := range 20 {
			_, err := client.RegisterTaskDefinition(ctx, body(i))
			g.Expect(err).NotTo(HaveOccurred())
		}
		_, err := client.RegisterTaskDefinition(ctx, body(20))
		g.Expect(apiCode(err)).To(Equal("ThrottlingException"))
		var ae smithy.APIError
		g.Expect(errors.As(err, &ae)).To(BeTrue())
		g.Expect(ae.ErrorMessage()).To(Equal("Rate exceeded"))
		g.Expect(sim.Throttled("RegisterTaskDefinition")).To(Equal(1))
		g.Expect(sim.Calls("RegisterTaskDefinition")).To(Equal(21))
		g.Expect(sim.Revisions("web")).To(Equal(20))

		// Reads have their own bucket.
		_, err = client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web")})
		g.Expect(err).NotTo(HaveOccurred())

		// One token per second refills.
		clock.Advance(time.Second)
		_, err = client.RegisterTaskDefinition(ctx, body(21))
		g.Expect(err).NotTo(HaveOccurred())
		_, err = client.RegisterTaskDefinition(ctx, body(22))
		g.Expect(apiCode(err)).To(Equal("ThrottlingException"))

		// Seeding is not throttled.
		_, err = sim.SeedTaskDefinition([]byte(`{"family":"web","containerDefinitions":[{"name":"a","image":"b"}]}`))
		g.Expect(err).NotTo(HaveOccurred())
	})
}

func TestCustomThrottlingBuckets(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	sim, url, _ := start(t, ecssim.WithClock(clock.Now), ecssim.WithThrottling(map[ecssim.Category]ecssim.Bucket{
		ecssim.CategoryServiceRead: {Burst: 2, RefillPerSecond: 1},
	}))
	seedWeb(g, sim, 1)
	client := newClient(url, func(o *ecs.Options) { o.RetryMaxAttempts = 1 })
	describe := func() error {
		_, err := client.DescribeServices(context.Background(), &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
		return err
	}
	g.Expect(describe()).To(Succeed())
	g.Expect(describe()).To(Succeed())
	g.Expect(apiCode(describe())).To(Equal("ThrottlingException"))
	clock.Advance(time.Second)
	g.Expect(describe()).To(Succeed())
	// UpdateService is in another category, unthrottled here.
	for range 5 {
		_, err := client.UpdateService(context.Background(), &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("web")})
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(sim.Throttled("DescribeServices")).To(Equal(1))
}

func TestCallCounting(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := start(t)
	seedWeb(g, sim, 1)
	g.Expect(sim.TotalCalls()).To(BeZero(), "seeding is not counted")
	ctx := context.Background()

	_, _ = client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
	_, _ = client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("nope"), Services: []string{"web"}})
	_, _ = client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web")})
	g.Expect(sim.Calls("DescribeServices")).To(Equal(2))
	g.Expect(sim.Calls("DescribeTaskDefinition")).To(Equal(1))
	g.Expect(sim.Calls("UpdateService")).To(BeZero())
	g.Expect(sim.TotalCalls()).To(Equal(3))
	sim.ResetCalls()
	g.Expect(sim.TotalCalls()).To(BeZero())
	g.Expect(sim.Calls("DescribeServices")).To(BeZero())
}

func TestConcurrentRegistrations(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := start(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			_, err := client.RegisterTaskDefinition(ctx, webTaskDefinition(fmt.Sprintf("web:%d", i)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(sim.Revisions("web")).To(Equal(20))
	g.Expect(sim.Calls("RegisterTaskDefinition")).To(Equal(20))
}

func TestWireProtocolErrors(t *testing.T) {
	g := NewWithT(t)
	sim, url, _ := start(t)

	post := func(target, body string) (*http.Response, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(body))
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", target)
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		var m map[string]any
		g.Expect(json.NewDecoder(resp.Body).Decode(&m)).To(Succeed())
		return resp, m
	}

	resp, m := post("AmazonEC2ContainerServiceV20141113.Frobnicate", "{}")
	g.Expect(resp.StatusCode).To(Equal(400))
	g.Expect(resp.Header.Get("X-Amzn-ErrorType")).To(Equal("UnknownOperationException"))
	g.Expect(m).To(HaveKeyWithValue("__type", "UnknownOperationException"))
	g.Expect(resp.Header.Get("X-Amzn-Requestid")).NotTo(BeEmpty())

	resp, m = post("AmazonEC2ContainerServiceV20141113.DescribeServices", "{not json")
	g.Expect(resp.StatusCode).To(Equal(400))
	g.Expect(m).To(HaveKeyWithValue("__type", "SerializationException"))

	resp, m = post("AmazonEC2ContainerServiceV20141113.CreateCluster", `{"clusterName":"c"}`)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/x-amz-json-1.1"))
	g.Expect(m).To(HaveKeyWithValue("cluster", HaveKeyWithValue("clusterArn", "arn:aws:ecs:us-east-1:123456789012:cluster/c")))

	get, err := http.Get(url + "/")
	g.Expect(err).NotTo(HaveOccurred())
	_ = get.Body.Close()
	g.Expect(get.StatusCode).To(Equal(http.StatusMethodNotAllowed))

	g.Expect(sim.Calls("Frobnicate")).To(Equal(1))
	g.Expect(sim.TotalCalls()).To(Equal(4))
}

func TestAdminSurface(t *testing.T) {
	g := NewWithT(t)
	sim, url, client := start(t, ecssim.WithRegion("eu-west-1"), ecssim.WithAccount("210987654321"))

	seed := `{"clusters":["prod"],
		"taskDefinitions":[{"family":"web","containerDefinitions":[{"name":"app","image":"repo/web:v1"},{"name":"log","image":"fluent-bit:3"}]}],
		"services":[{"cluster":"prod","name":"web","taskDefinition":"web","desiredCount":2}]}`
	resp, err := http.Post(url+"/_sim/seed", "application/json", strings.NewReader(seed))
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusNoContent))

	out, err := client.DescribeServices(context.Background(), &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(out.Services[0].ServiceArn)).To(Equal("arn:aws:ecs:eu-west-1:210987654321:service/prod/web"))

	getJSON := func(path string, v any) int {
		resp, err := http.Get(url + path)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(json.Unmarshal(b, v)).To(Succeed(), string(b))
		return resp.StatusCode
	}
	var svc ecssim.AdminService
	g.Expect(getJSON("/_sim/services/prod/web", &svc)).To(Equal(200))
	g.Expect(svc.TaskDefinitionARN).To(Equal("arn:aws:ecs:eu-west-1:210987654321:task-definition/web:1"))
	g.Expect(svc.Images).To(Equal(map[string]string{"app": "repo/web:v1", "log": "fluent-bit:3"}))
	g.Expect(svc.Deployments).To(HaveLen(1))

	var calls struct {
		Total int            `json:"total"`
		Calls map[string]int `json:"calls"`
	}
	g.Expect(getJSON("/_sim/calls", &calls)).To(Equal(200))
	g.Expect(calls.Total).To(Equal(1))
	g.Expect(calls.Calls).To(Equal(map[string]int{"DescribeServices": 1}))

	var notFound map[string]string
	g.Expect(getJSON("/_sim/services/prod/nope", &notFound)).To(Equal(404))

	resp, err = http.Post(url+"/_sim/faults", "application/json",
		strings.NewReader(`{"operation":"DescribeServices","code":"AccessDeniedException","times":1}`))
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
	_, err = client.DescribeServices(context.Background(), &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
	g.Expect(apiCode(err)).To(Equal("AccessDeniedException"))
	g.Expect(sim.Calls("DescribeServices")).To(Equal(2))
}
