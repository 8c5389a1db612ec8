// Package awsecs builds ECS clients from the standard AWS configuration chain (environment,
// shared config, web identity): one per Region and assumed role, each sharing the
// client-side API rate budget of its account and Region, and counted in metrics.
package awsecs

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// Options tune the clients.
type Options struct {
	// Limits are the client-side token buckets per throttle category, applied per account
	// and Region; AWSLimits() when nil. An empty map turns budgeting off.
	Limits map[Category]Bucket
	// ECS and STS adjust every client (tests point BaseEndpoint at a simulator;
	// AWS_ENDPOINT_URL_ECS and AWS_ENDPOINT_URL_STS do the same without code).
	ECS []func(*ecs.Options)
	STS []func(*sts.Options)
}

// sessionName names the assumed-role sessions (in CloudTrail).
const sessionName = "autodeploy"

// Clients hands out ECS clients, built lazily and cached.
type Clients struct {
	cfg  aws.Config
	opts Options

	mu      sync.Mutex
	clients map[clientKey]*ecs.Client
	budgets map[budgetKey]*Budget
}

type clientKey struct{ region, roleARN, externalID string }

// New loads the default AWS configuration.
func New(ctx context.Context, opts Options) (*Clients, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return NewFromConfig(cfg, opts), nil
}

// NewFromConfig uses cfg instead of the default chain.
func NewFromConfig(cfg aws.Config, opts Options) *Clients {
	if opts.Limits == nil {
		opts.Limits = AWSLimits()
	}
	return &Clients{cfg: cfg, opts: opts, clients: map[clientKey]*ecs.Client{}, budgets: map[budgetKey]*Budget{}}
}

// For returns the client for region, acting as roleARN (assumed through STS, with
// externalID when set) or, when roleARN is empty, with the controller's own credentials.
func (c *Clients) For(region, roleARN, externalID string) *ecs.Client {
	key := clientKey{region, roleARN, externalID}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[key]; ok {
		return cl
	}
	budget := c.budgetLocked(AccountOf(roleARN), region)
	opts := []func(*ecs.Options){func(o *ecs.Options) {
		o.Region = region
		o.APIOptions = append(o.APIOptions, countCalls, budget.middleware)
		if roleARN != "" {
			o.Credentials = c.assumeRole(region, roleARN, externalID)
		}
	}}
	cl := ecs.NewFromConfig(c.cfg, append(opts, c.opts.ECS...)...)
	c.clients[key] = cl
	return cl
}

// assumeRole returns cached, self-refreshing credentials of roleARN.
func (c *Clients) assumeRole(region, roleARN, externalID string) aws.CredentialsProvider {
	stsClient := sts.NewFromConfig(c.cfg, append([]func(*sts.Options){func(o *sts.Options) {
		if o.Region == "" {
			o.Region = region
		}
	}}, c.opts.STS...)...)
	provider := stscreds.NewAssumeRoleProvider(stsClient, roleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = sessionName
		if externalID != "" {
			o.ExternalID = aws.String(externalID)
		}
	})
	return aws.NewCredentialsCache(provider)
}

func (c *Clients) budgetLocked(account, region string) *Budget {
	key := budgetKey{account, region}
	b, ok := c.budgets[key]
	if !ok {
		b = newBudget(c.opts.Limits)
		c.budgets[key] = b
	}
	return b
}

// AccountOf returns the account id in an IAM role ARN, or "" for none.
func AccountOf(roleARN string) string {
	// arn:partition:iam::account:role/name
	parts := strings.SplitN(roleARN, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}

// countCalls records every ECS operation and its result code, once per call (retries included
// in the one call).
func countCalls(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("autodeployCallMetrics",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			code := "OK"
			if err != nil {
				code = "Error"
				var apiErr smithy.APIError
				if errors.As(err, &apiErr) {
					code = apiErr.ErrorCode()
				}
			}
			metrics.ECSCalls.WithLabelValues(awsmiddleware.GetOperationName(ctx), code).Inc()
			return out, md, err
		}), middleware.After)
}
