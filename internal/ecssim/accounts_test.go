package ecssim_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

const (
	accountB   = "222222222222"
	roleB      = "arn:aws:iam::222222222222:role/deployer"
	externalID = "autodeploy-7f3a"
)

// seeder is what the Server and an AccountView have in common for seeding.
type seeder interface {
	SeedCluster(name string) error
	SeedTaskDefinition(rawJSON []byte) (string, error)
	SeedService(cluster, name, taskDefinition string, desiredCount int) error
}

func seedWebIn(g *WithT, s seeder, desired int) {
	g.Expect(s.SeedCluster("prod")).To(Succeed())
	for _, tag := range []string{"v1", "v2"} {
		_, err := s.SeedTaskDefinition([]byte(`{"family":"web","containerDefinitions":[{"name":"app","image":"repo/web:` + tag + `"}]}`))
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(s.SeedService("prod", "web", "web:1", desired)).To(Succeed())
}

func stsClient(url string, creds aws.CredentialsProvider) *sts.Client {
	return sts.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: creds}, func(o *sts.Options) {
		o.BaseEndpoint = aws.String(url)
	})
}

func ecsClientWith(url string, creds aws.CredentialsProvider) *ecs.Client {
	return ecs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: creds}, func(o *ecs.Options) {
		o.BaseEndpoint = aws.String(url)
		o.RetryMaxAttempts = 1
	})
}

func ecrClientWith(url string, creds aws.CredentialsProvider) *ecr.Client {
	return ecr.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: creds}, func(o *ecr.Options) {
		o.BaseEndpoint = aws.String(url)
		o.RetryMaxAttempts = 1
	})
}

// baseCreds are long-term credentials the simulator does not know: they act
// in the default account.
var baseCreds = credentials.NewStaticCredentialsProvider("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "")

func assumeB(g *WithT, url string, duration int32) *credentials.StaticCredentialsProvider {
	out, err := stsClient(url, baseCreds).AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String(roleB), RoleSessionName: aws.String("autodeploy"),
		ExternalId: aws.String(externalID), DurationSeconds: aws.Int32(duration),
	})
	g.Expect(err).NotTo(HaveOccurred())
	c := out.Credentials
	p := credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	return &p
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestAssumeRoleActsInTheRolesAccount(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	clock := newFakeClock()
	sim, url, anonymous := start(t, ecssim.WithClock(clock.Now), ecssim.WithRole(roleB, externalID))
	b := sim.Account(accountB)
	g.Expect(b.ID()).To(Equal(accountB))
	g.Expect(b.SeedCluster("only-in-b")).To(Succeed())

	out, err := stsClient(url, baseCreds).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(roleB), RoleSessionName: aws.String("autodeploy"), ExternalId: aws.String(externalID),
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(out.AssumedRoleUser.Arn)).To(Equal("arn:aws:sts::222222222222:assumed-role/deployer/autodeploy"))
	g.Expect(aws.ToString(out.AssumedRoleUser.AssumedRoleId)).To(MatchRegexp(`^AROA[A-Z0-9]{17}:autodeploy$`))
	g.Expect(aws.ToString(out.Credentials.AccessKeyId)).To(MatchRegexp(`^ASIA[A-Z0-9]{16}$`))
	g.Expect(aws.ToString(out.Credentials.SecretAccessKey)).NotTo(BeEmpty())
	g.Expect(aws.ToString(out.Credentials.SessionToken)).NotTo(BeEmpty())
	g.Expect(*out.Credentials.Expiration).To(BeTemporally("==", clock.Now().Add(time.Hour)))
	g.Expect(sim.Calls("AssumeRole")).To(Equal(1), "STS calls are counted in the caller's account")

	c := out.Credentials
	bClient := ecsClientWith(url, credentials.NewStaticCredentialsProvider(
		aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken)))
	describe := func(client *ecs.Client) *ecs.DescribeClustersOutput {
		out, err := client.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{"only-in-b"}})
		g.Expect(err).NotTo(HaveOccurred())
		return out
	}
	inB := describe(bClient)
	g.Expect(inB.Clusters).To(HaveLen(1))
	g.Expect(aws.ToString(inB.Clusters[0].ClusterArn)).To(Equal("arn:aws:ecs:us-east-1:222222222222:cluster/only-in-b"))
	inDefault := describe(anonymous)
	g.Expect(inDefault.Clusters).To(BeEmpty())
	g.Expect(aws.ToString(inDefault.Failures[0].Arn)).To(Equal("arn:aws:ecs:us-east-1:123456789012:cluster/only-in-b"))
	g.Expect(describe(ecsClientWith(url, baseCreds)).Clusters).To(BeEmpty(), "unknown long-term keys act in the default account")

	g.Expect(b.Calls("DescribeClusters")).To(Equal(1))
	g.Expect(b.TotalCalls()).To(Equal(1))
	g.Expect(sim.Calls("DescribeClusters")).To(Equal(2))
	g.Expect(sim.TotalCalls()).To(Equal(3))

	id, err := stsClient(url, bClient.Options().Credentials).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(id.Account)).To(Equal(accountB))
	g.Expect(aws.ToString(id.Arn)).To(Equal("arn:aws:sts::222222222222:assumed-role/deployer/autodeploy"))
	g.Expect(aws.ToString(id.UserId)).To(HaveSuffix(":autodeploy"))
	self, err := stsClient(url, baseCreds).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(self.Account)).To(Equal("123456789012"))
	g.Expect(b.Calls("GetCallerIdentity")).To(Equal(1))
}

func TestAssumeRoleProviderDeploysInTheRolesAccount(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	sim, url, _ := start(t, ecssim.WithRole(roleB, externalID), ecssim.WithRolloutDuration(time.Hour))
	b := sim.Account(accountB)
	seedWebIn(g, b, 2)
	seedWebIn(g, sim, 1)

	provider := stscreds.NewAssumeRoleProvider(stsClient(url, baseCreds), roleB, func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String(externalID)
		o.RoleSessionName = "manager"
	})
	client := ecsClientWith(url, aws.NewCredentialsCache(provider))
	out, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(out.Service.ServiceArn)).To(Equal("arn:aws:ecs:us-east-1:222222222222:service/prod/web"))
	g.Expect(aws.ToString(out.Service.TaskDefinition)).To(Equal("arn:aws:ecs:us-east-1:222222222222:task-definition/web:2"))
	_, err = client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
	g.Expect(err).NotTo(HaveOccurred())

	st, ok := b.Service("prod", "web")
	g.Expect(ok).To(BeTrue())
	g.Expect(st.Deployments).To(HaveLen(2))
	g.Expect(st.DesiredCount).To(Equal(2))
	def, _ := sim.Service("prod", "web")
	g.Expect(def.TaskDefinitionARN).To(Equal(webTD1), "the default account's service is untouched")
	g.Expect(b.Calls("UpdateService")).To(Equal(1))
	g.Expect(sim.Calls("UpdateService")).To(BeZero())
	g.Expect(sim.Calls("AssumeRole")).To(Equal(1), "the credentials cache assumes the role once")

	// ARNs of another account do not resolve.
	_, err = client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(webService), Service: aws.String("web")})
	g.Expect(apiCode(err)).To(Equal("ClusterNotFoundException"))
	g.Expect(b.CompleteDeployment("prod", "web")).To(Succeed())
	st, _ = b.Service("prod", "web")
	g.Expect(st.Deployments).To(HaveLen(1))
}

func TestAssumeRoleDenied(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	sim, url, _ := start(t, ecssim.WithRole(roleB, externalID),
		ecssim.WithRole("arn:aws:iam::333333333333:role/path/open", ""))
	client := stsClient(url, baseCreds)
	assume := func(role string, externalID *string) error {
		_, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn: aws.String(role), RoleSessionName: aws.String("s1"), ExternalId: externalID,
		})
		return err
	}

	err := assume(roleB, aws.String("wrong"))
	g.Expect(apiCode(err)).To(Equal("AccessDenied"))
	g.Expect(httpStatus(err)).To(Equal(403))
	var ae interface{ ErrorMessage() string }
	g.Expect(errors.As(err, &ae)).To(BeTrue())
	g.Expect(ae.ErrorMessage()).To(Equal("User: arn:aws:iam::123456789012:root is not authorized to perform: sts:AssumeRole on resource: " + roleB))
	g.Expect(apiCode(assume(roleB, nil))).To(Equal("AccessDenied"))
	g.Expect(apiCode(assume("arn:aws:iam::222222222222:role/other", aws.String(externalID)))).To(Equal("AccessDenied"))
	g.Expect(assume("arn:aws:iam::333333333333:role/path/open", nil)).To(Succeed(), "no external id required")
	g.Expect(assume("arn:aws:iam::333333333333:role/path/open", aws.String("whatever"))).To(Succeed())

	_, err = client.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(roleB), RoleSessionName: aws.String("s1"), ExternalId: aws.String(externalID), DurationSeconds: aws.Int32(60),
	})
	g.Expect(apiCode(err)).To(Equal("ValidationError"))
	g.Expect(sim.Calls("AssumeRole")).To(Equal(6))
	g.Expect(sim.Accounts()).To(ConsistOf("123456789012", accountB, "333333333333"))

	g.Expect(func() { ecssim.New(ecssim.WithRole("arn:aws:iam::123:role/x", "")) }).To(Panic())
}

func TestExpiredAndUnknownCredentials(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	clock := newFakeClock()
	sim, url, _ := start(t, ecssim.WithClock(clock.Now), ecssim.WithRole(roleB, externalID))
	seedWebIn(g, sim.Account(accountB), 1)
	creds := assumeB(g, url, 900)
	client := ecsClientWith(url, creds)
	describe := func(client *ecs.Client) error {
		_, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
		return err
	}

	clock.Advance(899 * time.Second)
	g.Expect(describe(client)).To(Succeed())
	clock.Advance(time.Second)
	err := describe(client)
	g.Expect(apiCode(err)).To(Equal("ExpiredTokenException"))
	g.Expect(httpStatus(err)).To(Equal(400))
	g.Expect(sim.Account(accountB).Calls("DescribeServices")).To(Equal(2), "rejected calls are counted")
	_, err = stsClient(url, creds).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	g.Expect(apiCode(err)).To(Equal("ExpiredToken"))
	g.Expect(httpStatus(err)).To(Equal(403))

	// Temporary keys the simulator never issued, or a wrong session token.
	forged := credentials.NewStaticCredentialsProvider("ASIAFORGEDFORGED0000", "secret", "token")
	g.Expect(apiCode(describe(ecsClientWith(url, forged)))).To(Equal("UnrecognizedClientException"))
	fresh := assumeB(g, url, 3600)
	v, err := fresh.Retrieve(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	wrongToken := credentials.NewStaticCredentialsProvider(v.AccessKeyID, v.SecretAccessKey, "not-the-token")
	g.Expect(apiCode(describe(ecsClientWith(url, wrongToken)))).To(Equal("UnrecognizedClientException"))
	g.Expect(describe(ecsClientWith(url, fresh))).To(Succeed())
}

func TestThrottlingIsPerAccount(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	sim, url, anonymous := start(t, ecssim.WithClock(clock.Now), ecssim.WithRole(roleB, externalID),
		ecssim.WithThrottling(map[ecssim.Category]ecssim.Bucket{ecssim.CategoryServiceRead: {Burst: 2, RefillPerSecond: 1}}))
	seedWebIn(g, sim, 1)
	seedWebIn(g, sim.Account(accountB), 1)
	anonymous = ecsClientWith(url, aws.AnonymousCredentials{})
	bClient := ecsClientWith(url, assumeB(g, url, 3600))
	describe := func(client *ecs.Client) error {
		_, err := client.DescribeServices(context.Background(), &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"web"}})
		return err
	}

	g.Expect(describe(anonymous)).To(Succeed())
	g.Expect(describe(anonymous)).To(Succeed())
	g.Expect(apiCode(describe(anonymous))).To(Equal("ThrottlingException"))
	g.Expect(describe(bClient)).To(Succeed(), "account B has its own bucket")
	g.Expect(describe(bClient)).To(Succeed())
	g.Expect(apiCode(describe(bClient))).To(Equal("ThrottlingException"))
	g.Expect(sim.Throttled("DescribeServices")).To(Equal(1))
	g.Expect(sim.Account(accountB).Throttled("DescribeServices")).To(Equal(1))
	clock.Advance(time.Second)
	g.Expect(describe(bClient)).To(Succeed())
	g.Expect(sim.DescribedServices()).To(Equal(2), "throttled calls describe nothing")
	g.Expect(sim.Account(accountB).DescribedServices()).To(Equal(3))

	sim.Account(accountB).ResetCalls()
	g.Expect(sim.Account(accountB).TotalCalls()).To(BeZero())
	g.Expect(sim.Account(accountB).DescribedServices()).To(BeZero())
	g.Expect(sim.TotalCalls()).To(Equal(4), "3 DescribeServices and the AssumeRole")
}

// eventRecorder collects the events a sink receives.
type eventRecorder struct {
	mu     sync.Mutex
	events []ecssim.DeploymentEvent
	raw    []map[string]any
}

func (r *eventRecorder) sink(b []byte) {
	var e ecssim.DeploymentEvent
	if err := json.Unmarshal(b, &e); err != nil {
		panic(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		panic(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.raw = append(r.raw, raw)
}

func (r *eventRecorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Detail.EventName)
	}
	return out
}

func (r *eventRecorder) get(i int) ecssim.DeploymentEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events[i]
}

func TestDeploymentEvents(t *testing.T) {
	ctx := context.Background()
	t.Run("in progress then completed", func(t *testing.T) {
		g := NewWithT(t)
		clock := newFakeClock()
		rec := &eventRecorder{}
		sim, url, client := start(t, ecssim.WithClock(clock.Now), ecssim.WithRolloutDuration(30*time.Second),
			ecssim.WithEventSink(rec.sink))
		seedWeb(g, sim, 2)
		g.Expect(rec.names()).To(BeEmpty(), "seeding sends no events")

		out, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
			Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
		})
		g.Expect(err).NotTo(HaveOccurred())
		id := aws.ToString(out.Service.Deployments[0].Id)
		g.Expect(id).To(MatchRegexp(`^ecs-svc/\d{19}$`))
		g.Expect(rec.names()).To(Equal([]string{ecssim.EventDeploymentInProgress}), "delivered before the response")
		g.Expect(rec.raw[0]).To(Equal(map[string]any{
			"version":     "0",
			"id":          rec.raw[0]["id"],
			"detail-type": "ECS Deployment State Change",
			"source":      "aws.ecs",
			"account":     "123456789012",
			"time":        "2026-01-02T03:04:05Z",
			"region":      "us-east-1",
			"resources":   []any{webService},
			"detail": map[string]any{
				"eventType":    "INFO",
				"eventName":    "SERVICE_DEPLOYMENT_IN_PROGRESS",
				"deploymentId": id,
				"updatedAt":    "2026-01-02T03:04:05.000Z",
				"reason":       "ECS deployment " + id + " in progress.",
			},
		}))
		g.Expect(rec.raw[0]["id"]).To(MatchRegexp(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`))

		clock.Advance(29 * time.Second)
		g.Expect(sim.AdvanceRollouts()).To(BeZero())
		clock.Advance(time.Second)
		g.Expect(sim.AdvanceRollouts()).To(Equal(1))
		g.Expect(sim.AdvanceRollouts()).To(BeZero())
		g.Expect(rec.names()).To(Equal([]string{ecssim.EventDeploymentInProgress, ecssim.EventDeploymentCompleted}))
		done := rec.get(1)
		g.Expect(done.Resources).To(Equal([]string{webService}))
		g.Expect(done.Detail).To(Equal(ecssim.DeploymentEventDetail{
			EventType: "INFO", EventName: "SERVICE_DEPLOYMENT_COMPLETED", DeploymentID: id,
			UpdatedAt: "2026-01-02T03:04:35.000Z", Reason: "ECS deployment " + id + " completed.",
		}))
		g.Expect(done.Time).To(Equal("2026-01-02T03:04:35Z"))
		g.Expect(done.ID).NotTo(Equal(rec.get(0).ID))
		st, _ := sim.Service("prod", "web")
		g.Expect(st.Deployments).To(HaveLen(1))

		// CreateService over the wire: IN_PROGRESS and COMPLETED at once.
		created, err := client.CreateService(ctx, &ecs.CreateServiceInput{
			Cluster: aws.String("prod"), ServiceName: aws.String("api"), TaskDefinition: aws.String("web:1"),
		})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(rec.names()[2:]).To(Equal([]string{ecssim.EventDeploymentInProgress, ecssim.EventDeploymentCompleted}))
		g.Expect(rec.get(3).Resources).To(Equal([]string{aws.ToString(created.Service.ServiceArn)}))
		g.Expect(rec.get(3).Detail.DeploymentID).To(Equal(aws.ToString(created.Service.Deployments[0].Id)))

		// Lazily completed rollouts send their event too (from the request).
		_, err = client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("web"), ForceNewDeployment: true})
		g.Expect(err).NotTo(HaveOccurred())
		clock.Advance(time.Minute)
		_, err = ecsClientWith(url, aws.AnonymousCredentials{}).ListServices(ctx, &ecs.ListServicesInput{Cluster: aws.String("prod")})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(rec.names()[4:]).To(Equal([]string{ecssim.EventDeploymentInProgress, ecssim.EventDeploymentCompleted}))
	})

	t.Run("failed with rollback", func(t *testing.T) {
		g := NewWithT(t)
		rec := &eventRecorder{}
		sim, _, client := start(t, ecssim.WithRolloutDuration(time.Hour), ecssim.WithEventSink(rec.sink))
		seedWeb(g, sim, 2)
		before, _ := sim.Service("prod", "web")
		out, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{
			Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2"),
			DeploymentConfiguration: &types.DeploymentConfiguration{
				DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
			},
		})
		g.Expect(err).NotTo(HaveOccurred())
		failedID := aws.ToString(out.Service.Deployments[0].Id)
		g.Expect(sim.FailDeployment("prod", "web", "ECS deployment circuit breaker: task failed to start.")).To(Succeed())

		g.Expect(rec.names()).To(Equal([]string{
			ecssim.EventDeploymentInProgress, ecssim.EventDeploymentFailed,
			ecssim.EventDeploymentInProgress, ecssim.EventDeploymentCompleted,
		}))
		failed := rec.get(1)
		g.Expect(failed.Resources).To(Equal([]string{webService}))
		g.Expect(failed.Detail.EventType).To(Equal("ERROR"))
		g.Expect(failed.Detail.DeploymentID).To(Equal(failedID))
		g.Expect(failed.Detail.Reason).To(Equal("ECS deployment circuit breaker: task failed to start."))

		after, _ := sim.Service("prod", "web")
		rollbackID := after.Deployments[0].ID
		g.Expect(rec.get(2).Detail.DeploymentID).To(Equal(rollbackID))
		g.Expect(rec.get(2).Detail.Reason).To(Equal("ECS deployment circuit breaker: rolling back to deploymentId " + before.Deployments[0].ID + "."))
		g.Expect(rec.get(3).Detail.DeploymentID).To(Equal(rollbackID))
		g.Expect(rec.get(3).Detail.EventType).To(Equal("INFO"))
	})

	t.Run("other accounts and reentrant sinks", func(t *testing.T) {
		g := NewWithT(t)
		var sim *ecssim.Server
		rec := &eventRecorder{}
		var seen []string
		sink := func(b []byte) {
			rec.sink(b)
			// The sink may call the simulator.
			st, ok := sim.Account(accountB).Service("prod", "web")
			if ok {
				seen = append(seen, st.Deployments[0].RolloutState)
			}
		}
		sim, url, _ := start(t, ecssim.WithRole(roleB, externalID), ecssim.WithRolloutDuration(time.Minute),
			ecssim.WithEventSink(sink), ecssim.WithRegion("eu-west-1"))
		seedWebIn(g, sim.Account(accountB), 1)
		client := ecsClientWith(url, assumeB(g, url, 3600))
		_, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("web"), ForceNewDeployment: true})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sim.Account(accountB).CompleteDeployment("prod", "web")).To(Succeed())
		g.Expect(rec.names()).To(Equal([]string{ecssim.EventDeploymentInProgress, ecssim.EventDeploymentCompleted}))
		for i := range 2 {
			e := rec.get(i)
			g.Expect(e.Account).To(Equal(accountB))
			g.Expect(e.Region).To(Equal("eu-west-1"))
			g.Expect(e.Resources).To(Equal([]string{"arn:aws:ecs:eu-west-1:222222222222:service/prod/web"}))
		}
		g.Expect(seen).To(Equal([]string{ecssim.RolloutInProgress, ecssim.RolloutCompleted}))
	})
}

func TestECRDescribeImages(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	clock := newFakeClock()
	sim, url, _ := start(t, ecssim.WithClock(clock.Now), ecssim.WithRole(roleB, externalID), ecssim.WithAWSThrottling())
	digest := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	g.Expect(sim.PushImage("team/web", "v1", digest("a"))).To(Succeed())
	clock.Advance(time.Minute)
	g.Expect(sim.PushImage("team/web", "v2", digest("b"))).To(Succeed())
	g.Expect(sim.PushImage("team/web", "latest", digest("b"))).To(Succeed())
	clock.Advance(time.Minute)
	g.Expect(sim.PushImage("team/web", "v1", digest("c"))).To(Succeed(), "moves tag v1; the first image is untagged")
	g.Expect(sim.PushImage("Bad Repo", "v1", "")).NotTo(Succeed())
	g.Expect(sim.PushImage("team/web", "v1", "sha256:short")).NotTo(Succeed())
	g.Expect(sim.SeedRepository("empty")).To(Succeed())

	client := ecrClientWith(url, aws.AnonymousCredentials{})
	out, err := client.DescribeImages(ctx, &ecr.DescribeImagesInput{
		RepositoryName: aws.String("team/web"),
		Filter:         &ecrtypes.DescribeImagesFilter{TagStatus: ecrtypes.TagStatusTagged},
		MaxResults:     aws.Int32(100),
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.ImageDetails).To(HaveLen(2))
	d := out.ImageDetails[0]
	g.Expect(aws.ToString(d.RegistryId)).To(Equal("123456789012"))
	g.Expect(aws.ToString(d.RepositoryName)).To(Equal("team/web"))
	g.Expect(aws.ToString(d.ImageDigest)).To(Equal(digest("b")))
	g.Expect(d.ImageTags).To(Equal([]string{"v2", "latest"}))
	g.Expect(*d.ImagePushedAt).To(BeTemporally("==", newFakeClock().Now().Add(time.Minute)))
	g.Expect(aws.ToInt64(d.ImageSizeInBytes)).To(BeNumerically(">", 0))
	g.Expect(out.ImageDetails[1].ImageTags).To(Equal([]string{"v1"}))
	g.Expect(out.NextToken).To(BeNil())

	all, err := client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/web")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(all.ImageDetails).To(HaveLen(3))
	g.Expect(all.ImageDetails[0].ImageTags).To(BeEmpty())

	page, err := client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/web"), MaxResults: aws.Int32(2)})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(page.ImageDetails).To(HaveLen(2))
	g.Expect(page.NextToken).NotTo(BeNil())
	page, err = client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/web"), MaxResults: aws.Int32(2), NextToken: page.NextToken})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(page.ImageDetails).To(HaveLen(1))

	byTag, err := client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/web"),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("latest")}}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(byTag.ImageDetails[0].ImageDigest)).To(Equal(digest("b")))
	_, err = client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/web"),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v9")}}})
	var inf *ecrtypes.ImageNotFoundException
	g.Expect(errors.As(err, &inf)).To(BeTrue(), "%v", err)

	empty, err := client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("empty")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(empty.ImageDetails).To(BeEmpty())

	_, err = client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("missing")})
	var rnf *ecrtypes.RepositoryNotFoundException
	g.Expect(errors.As(err, &rnf)).To(BeTrue(), "%v", err)
	g.Expect(rnf.ErrorMessage()).To(Equal("The repository with name 'missing' does not exist in the registry with id '123456789012'"))

	// Repositories are per account.
	g.Expect(sim.Account(accountB).PushImage("team/web", "b1", "")).To(Succeed())
	bClient := ecrClientWith(url, assumeB(g, url, 3600))
	inB, err := bClient.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/web")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(inB.ImageDetails).To(HaveLen(1))
	g.Expect(aws.ToString(inB.ImageDetails[0].RegistryId)).To(Equal(accountB))
	g.Expect(inB.ImageDetails[0].ImageTags).To(Equal([]string{"b1"}))
	g.Expect(aws.ToString(inB.ImageDetails[0].ImageDigest)).To(MatchRegexp(`^sha256:[0-9a-f]{64}$`))
	g.Expect(sim.Account(accountB).Calls("DescribeImages")).To(Equal(1))
	g.Expect(sim.Calls("DescribeImages")).To(Equal(8))

	// Throttled: the ECR DescribeImages bucket is 10 per second.
	clock.Advance(time.Second)
	for range 10 {
		_, err := client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/web")})
		g.Expect(err).NotTo(HaveOccurred())
	}
	_, err = client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/web")})
	g.Expect(apiCode(err)).To(Equal("ThrottlingException"))
	g.Expect(sim.Throttled("DescribeImages")).To(Equal(1))
	cat, ok := ecssim.CategoryOf("DescribeImages")
	g.Expect(ok).To(BeTrue())
	g.Expect(cat).To(Equal(ecssim.CategoryECRDescribeImages))
}

func TestSTSWireShapes(t *testing.T) {
	g := NewWithT(t)
	_, base, _ := start(t, ecssim.WithRole(roleB, ""))
	post := func(form url.Values) (*http.Response, string) {
		resp, err := http.Post(base+"/", "application/x-www-form-urlencoded; charset=utf-8", strings.NewReader(form.Encode()))
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		return resp, string(b)
	}
	resp, body := post(url.Values{"Action": {"AssumeRole"}, "Version": {"2011-06-15"}, "RoleArn": {roleB}, "RoleSessionName": {"s"}})
	g.Expect(resp.StatusCode).To(Equal(400))
	g.Expect(body).To(ContainSubstring("<Code>ValidationError</Code>"))

	resp, body = post(url.Values{"Action": {"AssumeRole"}, "Version": {"2011-06-15"}, "RoleArn": {roleB}, "RoleSessionName": {"sess"}})
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(body).To(HavePrefix(`<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIA`))
	var ok struct {
		Result struct {
			Credentials struct{ Expiration string }
			User        struct{ Arn string } `xml:"AssumedRoleUser"`
		} `xml:"AssumeRoleResult"`
		RequestID string `xml:"ResponseMetadata>RequestId"`
	}
	g.Expect(xml.Unmarshal([]byte(body), &ok)).To(Succeed())
	g.Expect(ok.Result.Credentials.Expiration).To(MatchRegexp(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`))
	g.Expect(ok.Result.User.Arn).To(Equal("arn:aws:sts::222222222222:assumed-role/deployer/sess"))
	g.Expect(ok.RequestID).To(Equal(resp.Header.Get("X-Amzn-Requestid")))

	resp, body = post(url.Values{"Action": {"AssumeRole"}, "Version": {"2011-06-15"}, "RoleArn": {"arn:aws:iam::1:role/x"}, "RoleSessionName": {"sess"}})
	g.Expect(resp.StatusCode).To(Equal(403))
	g.Expect(body).To(MatchRegexp(`^<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:root is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::1:role/x</Message></Error><RequestId>[0-9a-f-]{36}</RequestId></ErrorResponse>$`))

	resp, body = post(url.Values{"Action": {"Frobnicate"}, "Version": {"2011-06-15"}})
	g.Expect(resp.StatusCode).To(Equal(400))
	g.Expect(body).To(ContainSubstring("<Code>InvalidAction</Code>"))
}

func TestAdminAccountParameter(t *testing.T) {
	g := NewWithT(t)
	sim, url, _ := start(t)
	resp, err := http.Post(url+"/_sim/seed?account="+accountB, "application/json", strings.NewReader(`{"clusters":["b"],"images":[{"repository":"web","tag":"v1"}]}`))
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
	resp, err = http.Post(url+"/_sim/images?account="+accountB, "application/json", strings.NewReader(`{"repository":"web","tag":"v2"}`))
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
	g.Expect(sim.Account(accountB).SeedCluster("b")).To(Succeed())
	g.Expect(sim.Accounts()).To(ConsistOf("123456789012", accountB))

	resp, err = http.Post(url+"/_sim/advance", "application/json", nil)
	g.Expect(err).NotTo(HaveOccurred())
	var adv map[string]int
	g.Expect(json.NewDecoder(resp.Body).Decode(&adv)).To(Succeed())
	_ = resp.Body.Close()
	g.Expect(adv).To(Equal(map[string]int{"completed": 0}))
}
