package controllers

import (
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// noSDKRetry turns the SDK's retries off for one call.
func noSDKRetry(o *ecs.Options) { o.Retryer = aws.NopRetryer{} }

// registerFailed classifies a RegisterTaskDefinition failure: ECS's ClientException is a
// revision it will never accept (an invalid image reference, a family without task-level
// memory on Fargate, ...), except its answer to concurrent registrations of the family, which
// clears by itself.
func registerFailed(err error, image string) error {
	var client *types.ClientException
	if !errors.As(err, &client) || concurrentRegistration(err) {
		return err
	}
	return &deployError{deployv1.ReasonInvalidTaskDefinition, fmt.Sprintf(
		"ECS refused to register the task definition with image %s: %s. Fix the image (spec.pinnedImage or the build's) or the family's task definition; the deploy is not retried until the spec changes or the %s annotation gets a new value",
		image, client.ErrorMessage(), deployv1.RetryAnnotation), err}
}
