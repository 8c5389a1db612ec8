package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

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
	// ContinueServiceDeployment answers a pause hook (hooks.go).
	ContinueServiceDeployment(ctx context.Context, in *ecs.ContinueServiceDeploymentInput, optFns ...func(*ecs.Options)) (*ecs.ContinueServiceDeploymentOutput, error)
	// ListServiceDeployments, DescribeServiceDeployments and DescribeServiceRevisions follow
	// blue/green, linear and canary deployments and read the image digests a rollout runs.
	ListServiceDeployments(ctx context.Context, in *ecs.ListServiceDeploymentsInput, optFns ...func(*ecs.Options)) (*ecs.ListServiceDeploymentsOutput, error)
	DescribeServiceDeployments(ctx context.Context, in *ecs.DescribeServiceDeploymentsInput, optFns ...func(*ecs.Options)) (*ecs.DescribeServiceDeploymentsOutput, error)
	DescribeServiceRevisions(ctx context.Context, in *ecs.DescribeServiceRevisionsInput, optFns ...func(*ecs.Options)) (*ecs.DescribeServiceRevisionsOutput, error)
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
	var decided *deployError
	switch {
	case errors.As(err, &decided):
		return decided
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
	case concurrentRegistration(err):
		return err
	case errors.As(err, &apiErr) && apiErr.ErrorFault() == smithy.FaultClient && !retryableCode(apiErr.ErrorCode()):
		return &deployError{deployv1.ReasonInvalidRequest, fmt.Sprintf(
			"ECS rejected the request (%s): %s", apiErr.ErrorCode(), apiErr.ErrorMessage()), err}
	}
	return err
}

// retryableCode reports client-fault codes that clear by themselves (throttling). A
// ClientException is permanent except for ECS's answer to concurrent registrations of one
// family (concurrentRegistration), which classify never sees as a client fault.
func retryableCode(code string) bool {
	switch code {
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
		"LimitExceededException", "RequestThrottled":
		return true
	}
	return false
}

// concurrentRegistration reports ECS's ClientException "Too many concurrent attempts to
// create a new revision of the specified family", which clears by itself.
func concurrentRegistration(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "ClientException" &&
		strings.Contains(strings.ToLower(apiErr.ErrorMessage()), "too many concurrent attempts")
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
