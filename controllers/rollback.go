package controllers

import (
	"context"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// rollbackReason is what ECS puts in the rolloutStateReason of a deployment the circuit
// breaker started to undo a failed one (and in the reason of its IN_PROGRESS event), for
// example "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/123.". Once
// that deployment completes, its reason is the usual "ECS deployment … completed.".
const rollbackReason = "rolling back"

// rollbackOf reports whether primary, the service's PRIMARY deployment, undid deployment d:
// it is another deployment, of another revision than d's, and
//   - it runs the revision d replaced (what ran before runs again), or
//   - ECS says it rolls back (circuit breaker), or
//   - it runs an older revision of d's family: ECS rolls back to a revision that ran before,
//     while a later deploy (of this Environment, another tool or a person) registers a new one.
//
// A PRIMARY of a newer revision, or of d's own revision (a forced new deployment), was
// started by someone: d was superseded, not rolled back.
func rollbackOf(primary *types.Deployment, d trackedDeployment) bool {
	if primary == nil || aws.ToString(primary.Id) == d.deploymentID {
		return false
	}
	td := aws.ToString(primary.TaskDefinition)
	switch {
	case td == "" || td == d.taskDefinitionARN:
		return false
	case td == d.previousTaskDefinitionARN:
		return true
	case strings.Contains(aws.ToString(primary.RolloutStateReason), rollbackReason):
		return true
	}
	family, rev, ok := revisionOf(td)
	dFamily, dRev, dOK := revisionOf(d.taskDefinitionARN)
	return ok && dOK && family == dFamily && rev < dRev
}

// revisionOf splits a task-definition ARN (…:task-definition/family:revision) or
// family:revision into its family and revision number.
func revisionOf(ref string) (family string, revision int, ok bool) {
	if i := strings.LastIndex(ref, "task-definition/"); i >= 0 {
		ref = ref[i+len("task-definition/"):]
	}
	family, rev, found := strings.Cut(ref, ":")
	if !found || family == "" {
		return "", 0, false
	}
	n, err := strconv.Atoi(rev)
	if err != nil {
		return "", 0, false
	}
	return family, n, true
}

// serviceLooks holds the one DescribeServices answer an ECS event may cost.
type serviceLooks struct {
	done bool
	svc  *types.Service
	err  error
}

// describe returns the service of serviceARN, asking ECS the first time only.
func (l *serviceLooks) describe(ctx context.Context, clients ECSClientFunc, target deployv1.ECSTarget, serviceARN string) (*types.Service, error) {
	if l.done {
		return l.svc, l.err
	}
	l.done = true
	api, err := clients(ctx, target)
	if err != nil {
		l.err = err
		return nil, err
	}
	out, err := api.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(target.Cluster), Services: []string{serviceARN}})
	if err != nil {
		l.err = err
		return nil, err
	}
	if len(out.Services) > 0 {
		l.svc = &out.Services[0]
	}
	return l.svc, nil
}

// rolledBack completes obs, from the SERVICE_DEPLOYMENT_FAILED event of env's newest deploy,
// with whether ECS rolled the service back, and to what.
//
// The events alone cannot tell. The FAILED event carries only the circuit breaker's reason
// ("tasks failed to start"), the same with rollback on or off. The rollback shows as an
// IN_PROGRESS event of a new deployment whose reason names the deployment it returns to,
// which the status does not record, and EventBridge delivers events in any order and
// retries them for up to a day. So a FAILED event that will change the status costs one
// DescribeServices of its service, and the PRIMARY deployment tells, as it does for the
// polling tracker (evaluateRollout). A repeated event, one about an older deploy and every
// COMPLETED event cost no call.
func (d *DeploymentEvents) rolledBack(ctx context.Context, env *deployv1.Environment, serviceARN string, obs RolloutObservation, looks *serviceLooks) (RolloutObservation, error) {
	last := env.Status.LastDeploy()
	if d.ECS == nil || last == nil || last.DeploymentID != obs.DeploymentID || last.Result != deployv1.ResultInProgress {
		return obs, nil
	}
	target := env.Spec.ECS
	if env.Status.Target != nil {
		target = *env.Status.Target
	}
	svc, err := looks.describe(ctx, d.ECS, target, serviceARN)
	if err != nil {
		return obs, err
	}
	seen, _ := evaluateRollout(svc, trackedDeployment{
		service: target.Service, deploymentID: last.DeploymentID,
		taskDefinitionARN: last.TaskDefinitionARN, previousTaskDefinitionARN: last.PreviousTaskDefinitionARN,
	}, obs.At)
	if seen.RolledBack {
		obs.RolledBack, obs.RolledBackTo, obs.Gone = true, seen.RolledBackTo, seen.Gone
	}
	return obs, nil
}
