// Package awsecs builds ECS clients from the standard AWS configuration chain (environment,
// shared config, web identity), one per Region, and counts their calls in metrics.
package awsecs

import (
	"context"
	"errors"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// Clients hands out one ECS client per Region, built lazily.
type Clients struct {
	cfg     aws.Config
	optFns  []func(*ecs.Options)
	mu      sync.Mutex
	clients map[string]*ecs.Client
}

// New loads the default AWS configuration. optFns adjust every client (tests point
// BaseEndpoint at a simulator; AWS_ENDPOINT_URL_ECS does the same without code).
func New(ctx context.Context, optFns ...func(*ecs.Options)) (*Clients, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return NewFromConfig(cfg, optFns...), nil
}

// NewFromConfig uses cfg instead of the default chain.
func NewFromConfig(cfg aws.Config, optFns ...func(*ecs.Options)) *Clients {
	return &Clients{cfg: cfg, optFns: optFns, clients: map[string]*ecs.Client{}}
}

// For returns the client for region.
func (c *Clients) For(region string) *ecs.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[region]; ok {
		return cl
	}
	opts := append([]func(*ecs.Options){func(o *ecs.Options) {
		o.Region = region
		o.APIOptions = append(o.APIOptions, countCalls)
	}}, c.optFns...)
	cl := ecs.NewFromConfig(c.cfg, opts...)
	c.clients[region] = cl
	return cl
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
