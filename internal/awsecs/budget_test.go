package awsecs_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// TestBudgetIsPerAccountAndRegion: the client-side token buckets are shared by every client of
// one account and Region, and separate across accounts and Regions.
func TestBudgetIsPerAccountAndRegion(t *testing.T) {
	g := NewWithT(t)
	const roleA, roleA2, roleB = "arn:aws:iam::111111111111:role/a", "arn:aws:iam::111111111111:role/a2", "arn:aws:iam::222222222222:role/b"
	sim := ecssim.New(ecssim.WithRole(roleA, ""), ecssim.WithRole(roleA2, ""), ecssim.WithRole(roleB, ""))
	url, err := sim.Start()
	g.Expect(err).NotTo(HaveOccurred())
	defer sim.Close()
	for _, id := range []string{"111111111111", "222222222222"} {
		g.Expect(sim.Account(id).SeedCluster("prod")).To(Succeed())
	}

	// One DescribeServices per account and Region, then nothing for an hour.
	limits := map[awsecs.Category]awsecs.Bucket{awsecs.ServiceRead: {Burst: 1, PerSecond: 1.0 / 3600}}
	clients := awsecs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}}, awsecs.Options{
		Limits: limits,
		ECS:    []func(*ecs.Options){func(o *ecs.Options) { o.BaseEndpoint = aws.String(url) }},
		STS:    []func(*sts.Options){func(o *sts.Options) { o.BaseEndpoint = aws.String(url) }},
	})
	// A call that has to wait for the budget fails at once: its wait (an hour) is past any
	// deadline. The deadline only has to be long enough for a call that does not wait (an
	// AssumeRole and a DescribeServices) on a busy machine.
	describe := func(c *ecs.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"x"}})
		return err
	}
	g.Expect(describe(clients.For("us-east-1", roleA, ""))).To(Succeed())
	// Another role of the same account shares the account's budget: it has to wait.
	err = describe(clients.For("us-east-1", roleA2, ""))
	g.Expect(err).To(MatchError(ContainSubstring("rate")), "it waited on the budget, not on ECS")
	// Another account, or another Region, has its own.
	g.Expect(describe(clients.For("us-east-1", roleB, ""))).To(Succeed())
	g.Expect(describe(clients.For("us-west-2", roleA, ""))).To(Succeed())
	g.Expect(sim.Account("111111111111").Calls("DescribeServices")).To(Equal(2))
	g.Expect(sim.Account("222222222222").Calls("DescribeServices")).To(Equal(1))
}
