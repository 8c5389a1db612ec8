package awsecs

import (
	"context"
	"math"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/time/rate"

	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// Category is an ECS throttle category: the actions in one share one token bucket per
// account and Region.
type Category string

// ECS throttle categories.
const (
	ServiceModify        Category = "service-modify"
	ServiceRead          Category = "service-read"
	TaskDefinitionModify Category = "task-definition-modify"
	TaskDefinitionRead   Category = "task-definition-read"
	// ServiceDeploymentRead: the service-deployment and service-revision reads that follow
	// blue/green, linear and canary deployments.
	ServiceDeploymentRead Category = "service-deployment-read"
)

// Bucket is a token bucket: Burst tokens, refilled at PerSecond.
type Bucket struct {
	Burst     int
	PerSecond float64
}

// AWSLimits are the buckets AWS publishes for the ECS API ("Request throttling for the Amazon
// ECS API"), per account per Region.
func AWSLimits() map[Category]Bucket {
	return map[Category]Bucket{
		ServiceModify:        {Burst: 50, PerSecond: 5},
		ServiceRead:          {Burst: 100, PerSecond: 20},
		TaskDefinitionModify: {Burst: 20, PerSecond: 1},
		TaskDefinitionRead:   {Burst: 50, PerSecond: 20},
		// "service deployment read" (ListServiceDeployments, DescribeServiceDeployments,
		// DescribeServiceRevisions); set with --ecs-service-deployment-read-burst and -rate.
		ServiceDeploymentRead: {Burst: 50, PerSecond: 20},
	}
}

// DefaultBudgetShare is the share of AWS's limits the controller allows itself by default:
// a little below them, so that the clocks of the two token buckets never disagree into a
// ThrottlingException.
const DefaultBudgetShare = 0.97

// ScaleLimits multiplies every bucket's burst and refill by f (at least one token each), for
// an account whose budget is shared with other tools (f < 1) or for benchmarks.
func ScaleLimits(limits map[Category]Bucket, f float64) map[Category]Bucket {
	out := make(map[Category]Bucket, len(limits))
	for c, b := range limits {
		// Rounded down: a share below 1 must leave headroom in the burst too, since the
		// server's bucket and this one never sample the clock at exactly the same instants.
		out[c] = Bucket{Burst: max(1, int(math.Floor(float64(b.Burst)*f+1e-9))), PerSecond: b.PerSecond * f}
	}
	return out
}

// CategoryOf returns the throttle category of an ECS operation.
func CategoryOf(op string) (Category, bool) {
	switch op {
	case "CreateService", "DeleteService", "UpdateService":
		return ServiceModify, true
	case "DescribeServices", "ListServices":
		return ServiceRead, true
	case "RegisterTaskDefinition", "DeregisterTaskDefinition":
		return TaskDefinitionModify, true
	case "DescribeTaskDefinition", "ListTaskDefinitions", "ListTaskDefinitionFamilies":
		return TaskDefinitionRead, true
	case "ListServiceDeployments", "DescribeServiceDeployments", "DescribeServiceRevisions":
		return ServiceDeploymentRead, true
	}
	return "", false
}

type budgetKey struct{ account, region string }

// Budget holds the token buckets of one account and Region, shared by every Environment
// there. Callers wait their turn in arrival order, so a fan-out is served fairly and never
// runs into AWS's throttling.
type Budget struct {
	limiters map[Category]*rate.Limiter
}

func newBudget(limits map[Category]Bucket) *Budget {
	b := &Budget{limiters: map[Category]*rate.Limiter{}}
	for c, l := range limits {
		b.limiters[c] = rate.NewLimiter(rate.Limit(l.PerSecond), l.Burst)
	}
	return b
}

// Wait blocks until op may be sent.
func (b *Budget) Wait(ctx context.Context, op string) error {
	c, ok := CategoryOf(op)
	if !ok {
		return nil
	}
	l := b.limiters[c]
	if l == nil {
		return nil
	}
	start := time.Now()
	err := l.Wait(ctx)
	metrics.ECSThrottleWait.WithLabelValues(string(c)).Observe(time.Since(start).Seconds())
	return err
}

// middleware makes every attempt of a call (retries included) wait for the budget.
func (b *Budget) middleware(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("autodeployBudget",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if err := b.Wait(ctx, awsmiddleware.GetOperationName(ctx)); err != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, err
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}
