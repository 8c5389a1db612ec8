package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/taskdef"
)

// ECSAPI is the part of the ECS API the reconciler calls. *ecs.Client satisfies it.
type ECSAPI interface {
	DescribeServices(ctx context.Context, in *ecs.DescribeServicesInput, optFns ...func(*ecs.Options)) (*ecs.DescribeServicesOutput, error)
	DescribeTaskDefinition(ctx context.Context, in *ecs.DescribeTaskDefinitionInput, optFns ...func(*ecs.Options)) (*ecs.DescribeTaskDefinitionOutput, error)
	RegisterTaskDefinition(ctx context.Context, in *ecs.RegisterTaskDefinitionInput, optFns ...func(*ecs.Options)) (*ecs.RegisterTaskDefinitionOutput, error)
	UpdateService(ctx context.Context, in *ecs.UpdateServiceInput, optFns ...func(*ecs.Options)) (*ecs.UpdateServiceOutput, error)
}

// ECSClientFunc returns the ECS client for a target: its Region, and its role when the
// service is in another account.
type ECSClientFunc func(ctx context.Context, target deployv1.ECSTarget) (ECSAPI, error)

// deployError is a deploy failure that retrying will not fix until the user changes something.
type deployError struct {
	reason  string
	message string
	err     error
}

func (e *deployError) Error() string { return e.message }
func (e *deployError) Unwrap() error { return e.err }

// classify turns an ECS error into a *deployError when it needs the user, or returns it
// unchanged when it is transient (throttling, 5xx, network) and worth retrying.
func classify(err error, target deployv1.ECSTarget) error {
	var notFoundCluster *types.ClusterNotFoundException
	var notFoundService *types.ServiceNotFoundException
	var notActive *types.ServiceNotActiveException
	var denied *types.AccessDeniedException
	var invalid *types.InvalidParameterException
	var containerErr *taskdef.ContainerNotFoundError
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &notFoundCluster):
		return &deployError{deployv1.ReasonClusterNotFound, fmt.Sprintf(
			"ECS cluster %q not found in %s: create it or fix spec.ecs.cluster", target.Cluster, target.Region), err}
	case errors.As(err, &notFoundService):
		return &deployError{deployv1.ReasonServiceNotFound, fmt.Sprintf(
			"ECS service %q not found in cluster %q: create it or fix spec.ecs.service", target.Service, target.Cluster), err}
	case errors.As(err, &notActive):
		return &deployError{deployv1.ReasonServiceNotActive, fmt.Sprintf(
			"ECS service %q in cluster %q is not active: recreate it or point spec.ecs.service at an active one", target.Service, target.Cluster), err}
	case errors.As(err, &denied):
		return &deployError{deployv1.ReasonAccessDenied, fmt.Sprintf(
			"Access denied by ECS (%s): grant the controller's role the ECS permissions in docs/iam.md", denied.ErrorMessage()), err}
	case errors.As(err, &invalid):
		return &deployError{deployv1.ReasonInvalidRequest, fmt.Sprintf(
			"ECS rejected the request: %s", invalid.ErrorMessage()), err}
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDenied" && target.RoleARN != "":
		// STS refused to let the controller assume the Environment's role.
		return &deployError{deployv1.ReasonAccessDenied, fmt.Sprintf(
			"Assuming role %s failed (%s): check the role's trust policy and spec.ecs.externalID", target.RoleARN, apiErr.ErrorMessage()), err}
	case errors.As(err, &containerErr):
		return &deployError{deployv1.ReasonContainerNotFound, containerErr.Error(), err}
	case errors.As(err, &apiErr) && apiErr.ErrorFault() == smithy.FaultClient && !retryableCode(apiErr.ErrorCode()):
		return &deployError{deployv1.ReasonInvalidRequest, fmt.Sprintf(
			"ECS rejected the request (%s): %s", apiErr.ErrorCode(), apiErr.ErrorMessage()), err}
	}
	return err
}

// retryableCode reports client-fault codes that clear by themselves: throttling, and ECS's
// answer to concurrent registrations of one family.
func retryableCode(code string) bool {
	switch code {
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
		"LimitExceededException", "RequestThrottled", "ClientException":
		// ClientException is retried: ECS uses it for "Too many concurrent attempts to create a
		// new revision"; a malformed request shows up as InvalidParameterException instead.
		return true
	}
	return false
}

// transientMessage describes a retryable ECS error for the Ready condition.
func transientMessage(err error) string {
	var apiErr smithy.APIError
	var netErr net.Error
	switch {
	case errors.As(err, &apiErr):
		return fmt.Sprintf("ECS call failed, retrying with backoff: %s: %s", apiErr.ErrorCode(), apiErr.ErrorMessage())
	case errors.As(err, &netErr):
		return "ECS unreachable, retrying with backoff: " + netErr.Error()
	default:
		return "ECS call failed, retrying with backoff: " + err.Error()
	}
}

// deployResult is what a deploy did to the service.
type deployResult struct {
	previousImage     string
	taskDefinitionARN string
	deploymentID      string
	// rolloutState and rolloutReason are ECS's view of the deployment right after the call.
	rolloutState, rolloutReason string
	registered, updated         bool
}

// deploy makes the service run image in the chosen container. It is idempotent: when the
// service already runs image it changes nothing (unless force asks for a new deployment of
// it), and when a revision for image was registered by an interrupted earlier attempt it
// reuses that revision instead of registering another.
func deploy(ctx context.Context, api ECSAPI, target deployv1.ECSTarget, image string, force bool) (*deployResult, error) {
	svcOut, err := api.DescribeServices(ctx, &ecs.DescribeServicesInput{
		Cluster:  aws.String(target.Cluster),
		Services: []string{target.Service},
	})
	if err != nil {
		return nil, err
	}
	if len(svcOut.Services) == 0 {
		return nil, &types.ServiceNotFoundException{Message: aws.String("service not found")}
	}
	svc := svcOut.Services[0]
	if status := aws.ToString(svc.Status); status != "ACTIVE" {
		return nil, &types.ServiceNotActiveException{Message: aws.String("service status " + status)}
	}

	current, err := api.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{
		TaskDefinition: svc.TaskDefinition,
		Include:        []types.TaskDefinitionField{types.TaskDefinitionFieldTags},
	})
	if err != nil {
		return nil, err
	}
	running, err := taskdef.Image(current.TaskDefinition, target.Container)
	if err != nil {
		return nil, err
	}
	if running == image {
		if !force {
			res := &deployResult{previousImage: running, taskDefinitionARN: aws.ToString(svc.TaskDefinition)}
			res.setDeployment(svc.Deployments)
			return res, nil
		}
		return update(ctx, api, target, &deployResult{previousImage: running, taskDefinitionARN: aws.ToString(svc.TaskDefinition)}, true)
	}

	want, err := taskdef.RegisterInput(current.TaskDefinition, current.Tags, target.Container, image)
	if err != nil {
		return nil, err
	}
	arn, registered, err := registerOnce(ctx, api, current.TaskDefinition, want, target.Container, image)
	if err != nil {
		return nil, err
	}

	return update(ctx, api, target, &deployResult{previousImage: running, taskDefinitionARN: arn, registered: registered}, false)
}

// update points the service at res.taskDefinitionARN and records the new deployment.
func update(ctx context.Context, api ECSAPI, target deployv1.ECSTarget, res *deployResult, force bool) (*deployResult, error) {
	upd, err := api.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster:            aws.String(target.Cluster),
		Service:            aws.String(target.Service),
		TaskDefinition:     aws.String(res.taskDefinitionARN),
		ForceNewDeployment: force,
	})
	if err != nil {
		return nil, err
	}
	res.updated = true
	if upd.Service != nil {
		res.setDeployment(upd.Service.Deployments)
	}
	return res, nil
}

// setDeployment records the service's primary deployment.
func (res *deployResult) setDeployment(ds []types.Deployment) {
	for _, d := range ds {
		if aws.ToString(d.Status) == "PRIMARY" {
			res.deploymentID = aws.ToString(d.Id)
			res.rolloutState = string(d.RolloutState)
			res.rolloutReason = aws.ToString(d.RolloutStateReason)
			return
		}
	}
}

// registerOnce returns the ARN of a revision equal to want, registering one only when the
// family's newest revision is not already it (left by an attempt interrupted before
// UpdateService).
func registerOnce(ctx context.Context, api ECSAPI, current *types.TaskDefinition, want *ecs.RegisterTaskDefinitionInput, container, image string) (string, bool, error) {
	newest, err := api.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{
		TaskDefinition: current.Family,
		Include:        []types.TaskDefinitionField{types.TaskDefinitionFieldTags},
	})
	if err != nil {
		return "", false, err
	}
	if newest.TaskDefinition.Revision != current.Revision {
		if got, err := taskdef.Image(newest.TaskDefinition, container); err == nil && got == image {
			existing, err := taskdef.RegisterInput(newest.TaskDefinition, newest.Tags, container, image)
			if err == nil && taskdef.Equivalent(existing, want) {
				return aws.ToString(newest.TaskDefinition.TaskDefinitionArn), false, nil
			}
		}
	}
	out, err := api.RegisterTaskDefinition(ctx, want)
	if err != nil {
		return "", false, err
	}
	return aws.ToString(out.TaskDefinition.TaskDefinitionArn), true, nil
}
