package controllers

import (
	"context"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/go-logr/logr"
	ktypes "k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// maxServicesPerDescribe is ECS's limit of services in one DescribeServices call.
const maxServicesPerDescribe = 10

// RolloutSink records how a rollout ended. *RolloutRecorder is one.
type RolloutSink interface {
	Record(ctx context.Context, key ktypes.NamespacedName, obs RolloutObservation) (bool, error)
}

// PollingTracker is the fallback for users without ECS events: it asks ECS only about
// deployments still in progress, batching up to 10 services of one cluster into one
// DescribeServices call, at intervals that double from Initial up to Max. With nothing in
// progress it makes no call at all.
type PollingTracker struct {
	ECS  ECSClientFunc
	Sink RolloutSink
	Log  logr.Logger
	// Initial and Max bound the interval between two looks at one cluster.
	Initial, Max time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	sched schedule[trackGroupKey, trackedDeployment]
}

// trackGroupKey is a cluster, reached with one role: one look serves its services.
type trackGroupKey struct{ region, roleARN, externalID, cluster string }

type trackedDeployment struct {
	service, deploymentID, taskDefinitionARN string
	// container is the container whose image digest is read when the rollout completes.
	container string
	// previousTaskDefinitionARN is the revision the deploy replaced; "" when not known.
	previousTaskDefinitionARN string
}

// schedule returns the tracker's schedule, set up with its timing.
func (t *PollingTracker) schedule() *schedule[trackGroupKey, trackedDeployment] {
	return t.sched.setup(&t.Initial, &t.Max, &t.Now)
}

// NeedLeaderElection is true: only the leader, which deploys, follows rollouts.
func (t *PollingTracker) NeedLeaderElection() bool { return true }

// Track follows deploymentID of the Environment key until it ends. Tracking the same
// deployment again changes nothing; a new deployment replaces the old one.
func (t *PollingTracker) Track(key ktypes.NamespacedName, target deployv1.ECSTarget, deploymentID, taskDefinitionARN, previousTaskDefinitionARN string) {
	gk := trackGroupKey{target.Region, target.RoleARN, target.ExternalID, target.Cluster}
	want := trackedDeployment{service: target.Service, deploymentID: deploymentID, taskDefinitionARN: taskDefinitionARN,
		container: target.Primary(), previousTaskDefinitionARN: previousTaskDefinitionARN}
	t.schedule().add(key, gk, target, want, func(cur trackedDeployment) bool { return cur == want })
}

// Untrack stops following the Environment key.
func (t *PollingTracker) Untrack(key ktypes.NamespacedName) {
	t.schedule().remove(key)
}

// Start polls until ctx is done.
func (t *PollingTracker) Start(ctx context.Context) error {
	return t.schedule().run(ctx, t.poll)
}

// poll looks at the services of one cluster, ten per call.
func (t *PollingTracker) poll(ctx context.Context, g schedGroup[trackedDeployment]) {
	api, err := t.ECS(ctx, g.target)
	if err != nil {
		t.Log.Error(err, "No ECS client for rollout tracking", "region", g.target.Region)
		return
	}
	byService := map[string][]ktypes.NamespacedName{}
	for key, d := range g.items {
		byService[d.service] = append(byService[d.service], key)
	}
	services := make([]string, 0, len(byService))
	for s := range byService {
		services = append(services, s)
	}
	sort.Strings(services)
	for start := 0; start < len(services); start += maxServicesPerDescribe {
		batch := services[start:min(start+maxServicesPerDescribe, len(services))]
		metrics.RolloutPolls.Inc()
		out, err := api.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(g.target.Cluster), Services: batch})
		if err != nil {
			t.Log.Error(err, "Looking at rollouts failed; trying again later", "cluster", g.target.Cluster)
			continue
		}
		found := map[string]*types.Service{}
		for i := range out.Services {
			svc := &out.Services[i]
			found[aws.ToString(svc.ServiceName)] = svc
			found[aws.ToString(svc.ServiceArn)] = svc
		}
		var ended []rollingEnded
		for _, name := range batch {
			for _, key := range byService[name] {
				d := g.items[key]
				svc := found[name]
				if svc == nil {
					// An old-format ARN (…:service/<name>) of a service ECS names by a new one.
					svc = found[serviceName(name)]
				}
				obs, done := evaluateRollout(svc, d, t.Now())
				if !done {
					continue
				}
				ended = append(ended, rollingEnded{key: key, d: d, obs: obs})
			}
		}
		t.addDigests(ctx, api, g.target.Cluster, ended)
		for _, e := range ended {
			if _, err := t.Sink.Record(ctx, e.key, e.obs); err != nil {
				t.Log.Error(err, "Recording a rollout result failed; trying again later", "environment", e.key)
				continue
			}
			t.untrackIf(e.key, e.d)
		}
	}
}

// untrackIf stops following key if it still follows d (and not a newer deployment).
func (t *PollingTracker) untrackIf(key ktypes.NamespacedName, d trackedDeployment) {
	t.schedule().removeIf(key, func(cur trackedDeployment) bool { return cur == d })
}

// evaluateRollout says whether deployment d of svc has ended, and how. A deployment still
// listed says so itself. One that left the list was replaced, and the PRIMARY deployment
// tells by what: a rollback by ECS (see rollbackOf) ends it Failed and RolledBack, anything
// else Superseded.
func evaluateRollout(svc *types.Service, d trackedDeployment, now time.Time) (RolloutObservation, bool) {
	obs := RolloutObservation{DeploymentID: d.deploymentID, At: now}
	if svc == nil || aws.ToString(svc.Status) != "ACTIVE" {
		obs.Result, obs.Reason = deployv1.ResultSuperseded, "the service no longer exists or is not active"
		return obs, true
	}
	primary := primaryOf(svc.Deployments)
	for i := range svc.Deployments {
		dep := &svc.Deployments[i]
		if aws.ToString(dep.Id) != d.deploymentID {
			continue
		}
		switch dep.RolloutState {
		case types.DeploymentRolloutStateCompleted:
			obs.Result, obs.Reason = deployv1.ResultCompleted, aws.ToString(dep.RolloutStateReason)
			return obs, true
		case types.DeploymentRolloutStateFailed:
			obs.Result, obs.Reason = deployv1.ResultFailed, aws.ToString(dep.RolloutStateReason)
			if rollbackOf(primary, d) {
				obs.RolledBack, obs.RolledBackTo = true, aws.ToString(primary.TaskDefinition)
			}
			return obs, true
		case "":
			// No rolloutState (a Classic Load Balancer): the rollout ends at steady state.
			if steady(svc, dep) {
				obs.Result, obs.Reason = deployv1.ResultCompleted, "the service reached steady state"
				return obs, true
			}
			return obs, false
		default:
			return obs, false
		}
	}
	obs.Gone = true
	if rollbackOf(primary, d) {
		obs.Result, obs.RolledBack, obs.RolledBackTo = deployv1.ResultFailed, true, aws.ToString(primary.TaskDefinition)
		obs.Reason = "ECS rolled the service back to " + obs.RolledBackTo + "; the failed deployment is no longer listed"
		return obs, true
	}
	obs.Result = deployv1.ResultSuperseded
	obs.Reason = "the service was updated again (now " + aws.ToString(svc.TaskDefinition) + ")"
	return obs, true
}

// steady reports whether dep is the service's only deployment and all its tasks run.
func steady(svc *types.Service, dep *types.Deployment) bool {
	return len(svc.Deployments) == 1 && aws.ToString(dep.Status) == "PRIMARY" && dep.RunningCount == dep.DesiredCount
}
