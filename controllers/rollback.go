package controllers

import (
	"context"
	"strconv"
	"strings"

	ktypes "k8s.io/apimachinery/pkg/types"

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

// confirmFailure ends the rollout of env's newest deploy when an ECS event reported it failed
// (history[0].failureReported): it tells whether ECS rolled the service back, and to what.
//
// The event alone cannot tell. The FAILED event carries only the circuit breaker's reason
// ("tasks failed to start"), the same with rollback on or off. The rollback shows as an
// IN_PROGRESS event of a new deployment whose reason names the deployment it returns to,
// which the status does not record, and EventBridge delivers events in any order and
// retries them for up to a day. So a reported failure costs one DescribeServices of its
// service, and the PRIMARY deployment tells, as it does for the polling tracker
// (evaluateRollout). The receiver only records the report: it never calls ECS. A repeated
// event, one about an older deploy and every COMPLETED event cost no call.
//
// It reports whether it recorded the end of the rollout (env is then stale).
func (r *EnvironmentReconciler) confirmFailure(ctx context.Context, key ktypes.NamespacedName, env *deployv1.Environment) (bool, error) {
	last := env.Status.LastDeploy()
	if last == nil || last.Result != deployv1.ResultInProgress || last.FailureReported == nil || r.Rollouts == nil {
		return false, nil
	}
	target := env.Spec.ECS
	if env.Status.Target != nil {
		target = *env.Status.Target
	}
	api, err := r.ECS(ctx, target)
	if err != nil {
		return false, err
	}
	out, err := api.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(target.Cluster), Services: []string{target.Service}})
	if err != nil {
		return false, err
	}
	var svc *types.Service
	if len(out.Services) > 0 {
		svc = &out.Services[0]
	}
	report := last.FailureReported
	obs := RolloutObservation{DeploymentID: last.DeploymentID, Result: deployv1.ResultFailed, Reason: report.Reason, At: report.At.Time}
	seen, _ := evaluateRollout(svc, trackedDeployment{
		service: target.Service, deploymentID: last.DeploymentID,
		taskDefinitionARN: last.TaskDefinitionARN, previousTaskDefinitionARN: last.PreviousTaskDefinitionARN,
	}, obs.At)
	if seen.RolledBack {
		obs.RolledBack, obs.RolledBackTo, obs.Gone = true, seen.RolledBackTo, seen.Gone
	}
	if _, err := r.Rollouts.Record(ctx, key, obs); err != nil {
		return false, err
	}
	return true, nil
}
