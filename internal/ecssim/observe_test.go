package ecssim_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

func TestCallObserver(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	clock := newFakeClock()
	var (
		mu    sync.Mutex
		calls []ecssim.Call
	)
	sim, url, _ := start(t, ecssim.WithClock(clock.Now), ecssim.WithAWSThrottling(),
		ecssim.WithCallObserver(func(c ecssim.Call) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, c)
		}))
	client := newClient(url, func(o *ecs.Options) { o.RetryMaxAttempts = 1 })
	for i := range 21 {
		_, _ = client.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
			Family:               aws.String("web"),
			ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("web:" + string(rune('a'+i)))}},
		})
	}
	_, err := client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("nope")})
	g.Expect(err).To(HaveOccurred())

	mu.Lock()
	defer mu.Unlock()
	g.Expect(calls).To(HaveLen(22))
	g.Expect(sim.TotalCalls()).To(Equal(22))
	for i, c := range calls[:20] {
		g.Expect(c.Operation).To(Equal("RegisterTaskDefinition"), "call %d", i)
		g.Expect(c.ErrorCode).To(BeEmpty(), "call %d", i)
		g.Expect(c.Account).To(Equal("123456789012"))
		g.Expect(c.Time).To(Equal(clock.Now()))
		g.Expect(strings.Contains(string(c.Body), `"family":"web"`)).To(BeTrue(), string(c.Body))
	}
	g.Expect(calls[20].ErrorCode).To(Equal("ThrottlingException"))
	g.Expect(calls[21].Operation).To(Equal("DescribeTaskDefinition"))
	g.Expect(calls[21].ErrorCode).To(Equal("ClientException"))
}

// TestCallObserverRunsBeforeTheAnswerIsSent: a large answer (a task definition of 64 KiB of
// environment variables, far past net/http's buffer) is held until the observer returns, so
// that what the observer does always happens before the caller learns the outcome.
func TestCallObserverRunsBeforeTheAnswerIsSent(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release := make(chan struct{})
	var hold sync.Once
	_, url, _ := start(t, ecssim.WithCallObserver(func(c ecssim.Call) {
		if c.Operation == "DescribeTaskDefinition" {
			hold.Do(func() { <-release })
		}
	}))
	client := newClient(url)
	env := make([]types.KeyValuePair, 512)
	for i := range env {
		env[i] = types.KeyValuePair{Name: aws.String(strings.Repeat("N", 60) + string(rune('a'+i%26))), Value: aws.String(strings.Repeat("v", 64))}
	}
	_, err := client.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:               aws.String("big"),
		ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("web:1"), Environment: env}},
	})
	g.Expect(err).NotTo(HaveOccurred())

	done := make(chan error, 1)
	go func() {
		_, err := client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("big")})
		done <- err
	}()
	g.Consistently(done, "300ms", "20ms").ShouldNot(Receive(), "the answer waits for the observer")
	close(release)
	g.Eventually(done, "20s").Should(Receive(BeNil()))
}
