package ecssim_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// RegisterTaskDefinition answers what ECS refuses with a ClientException: an invalid image
// reference, a Fargate task without task-level cpu or memory. Seeding does not apply these
// checks (seeded revisions stand for revisions registered under older rules).
func TestRegisterTaskDefinitionRefusesWhatECSRefuses(t *testing.T) {
	g := NewWithT(t)
	sim, _, client := start(t)
	ctx := context.Background()

	bad := webTaskDefinition("repo/web:v1 two")
	_, err := client.RegisterTaskDefinition(ctx, bad)
	var ce *types.ClientException
	g.Expect(errors.As(err, &ce)).To(BeTrue(), "%v", err)
	g.Expect(ce.ErrorMessage()).To(Equal("Container.image contains invalid characters."))

	for _, field := range []string{"cpu", "memory"} {
		in := webTaskDefinition("repo/web:v1")
		if field == "cpu" {
			in.Cpu = nil
		} else {
			in.Memory = nil
		}
		_, err = client.RegisterTaskDefinition(ctx, in)
		g.Expect(errors.As(err, &ce)).To(BeTrue(), "%v", err)
		g.Expect(ce.ErrorMessage()).To(Equal("Fargate requires that '" + field + "' be defined at the task level."))
	}
	g.Expect(sim.Revisions("web")).To(BeZero())

	// Digests, ports and the EC2 launch type without task-level memory are fine.
	ok := webTaskDefinition("registry.example.com:5000/team/web@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	_, err = client.RegisterTaskDefinition(ctx, ok)
	g.Expect(err).NotTo(HaveOccurred())
	ec2 := &ecs.RegisterTaskDefinitionInput{Family: aws.String("web"),
		ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("repo/web:v1")}}}
	_, err = client.RegisterTaskDefinition(ctx, ec2)
	g.Expect(err).NotTo(HaveOccurred())

	seed, err := json.Marshal(map[string]any{
		"family": "old", "requiresCompatibilities": []string{"FARGATE"}, "networkMode": "awsvpc",
		"containerDefinitions": []any{map[string]any{"name": "app", "image": "repo/web:v1"}},
	})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = sim.SeedTaskDefinition(seed)
	g.Expect(err).NotTo(HaveOccurred())
}

// A fault with AfterWork lets the operation take effect and loses its answer: a caller whose
// SDK retries does the work twice.
func TestFaultAfterWorkLosesTheAnswer(t *testing.T) {
	g := NewWithT(t)
	sim, url, _ := start(t)
	ctx := context.Background()
	sim.InjectFault("RegisterTaskDefinition", ecssim.Fault{Status: 500, Code: "ServerException", Times: 1, AfterWork: true})
	_, err := newClient(url, func(o *ecs.Options) { o.Retryer = aws.NopRetryer{} }).RegisterTaskDefinition(ctx, webTaskDefinition("repo/web:v1"))
	g.Expect(apiCode(err)).To(Equal("ServerException"))
	g.Expect(sim.Revisions("web")).To(Equal(1), "the work was done")

	sim.InjectFault("RegisterTaskDefinition", ecssim.Fault{Status: 500, Code: "ServerException", Times: 1, AfterWork: true})
	_, err = newClient(url).RegisterTaskDefinition(ctx, webTaskDefinition("repo/web:v2"))
	g.Expect(err).NotTo(HaveOccurred(), "the SDK retried")
	g.Expect(sim.Revisions("web")).To(Equal(3), "and registered a second revision")
}

// WithOldServiceARNs names services service/<name>, in answers and in deployment events;
// requests may use either format.
func TestOldFormatServiceARNs(t *testing.T) {
	g := NewWithT(t)
	var events []ecssim.DeploymentEvent
	sim, _, client := start(t, ecssim.WithOldServiceARNs(), ecssim.WithEventSink(func(b []byte) {
		var ev ecssim.DeploymentEvent
		if json.Unmarshal(b, &ev) == nil {
			events = append(events, ev)
		}
	}))
	ctx := context.Background()
	seedWeb(g, sim, 1)
	const oldARN = "arn:aws:ecs:us-east-1:123456789012:service/web"
	for _, ref := range []string{"web", oldARN, webService} {
		out, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{ref}})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out.Services).To(HaveLen(1), ref)
		g.Expect(aws.ToString(out.Services[0].ServiceArn)).To(Equal(oldARN))
	}
	upd, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("web"), TaskDefinition: aws.String("web:2")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(upd.Service.ServiceArn)).To(Equal(oldARN))
	g.Expect(events).NotTo(BeEmpty())
	g.Expect(events[0].Resources).To(Equal([]string{oldARN}))
}
