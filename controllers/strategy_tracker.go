package controllers

import (
	"context"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// ServiceDeploymentFollower follows ECS service deployments (blue/green, linear, canary)
// until they end.
type ServiceDeploymentFollower interface {
	// Follow follows the service deployment of deploy d of the Environment key, which went
	// to target. Following the same one again changes nothing; another replaces it. When d
	// has no service-deployment ARN yet (ECS did not list it right after UpdateService), it
	// is looked for until found, never taking one of known (the ARNs in the history).
	Follow(key ktypes.NamespacedName, target deployv1.ECSTarget, d deployv1.Deploy, known map[string]bool)
	Unfollow(key ktypes.NamespacedName)
}

// RolloutProgress is where a service deployment under way is: its lifecycle stage and the
// production traffic weight (percent) of the new revision.
type RolloutProgress struct {
	ServiceDeploymentARN string
	Stage, TrafficWeight string
}

// ServiceDeploymentSink records how service deployments move and end. *RolloutRecorder is one.
type ServiceDeploymentSink interface {
	RolloutSink
	Progress(ctx context.Context, key ktypes.NamespacedName, p RolloutProgress) (bool, error)
	// FoundServiceDeployment records the service deployment arn of the newest deploy, whose
	// ECS deployment is deploymentID, when it had none.
	FoundServiceDeployment(ctx context.Context, key ktypes.NamespacedName, deploymentID, arn string) (bool, error)
}

// ServiceDeploymentTracker follows blue/green, linear and canary deployments with
// DescribeServiceDeployments, up to 20 per call for one Region and role, only while one is
// in progress, at intervals that double from Initial up to Max. ECS sends no completion events
// for these strategies, so it runs whether or not rollouts end through events. A change of
// stage or traffic weight is written once; the end goes to the Sink like any rollout's.
type ServiceDeploymentTracker struct {
	ECS  ECSClientFunc
	Sink ServiceDeploymentSink
	// Hooks records the pause hooks the deployments wait at (hook_tracking.go); nil ignores them.
	Hooks HookSink
	Log   logr.Logger
	// Initial and Max bound the interval between two looks at one Region and role.
	Initial, Max time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	sched schedule[sdGroupKey, sdItem]
}

// sdGroupKey is a Region reached with one role: one look serves its service deployments.
type sdGroupKey struct{ region, roleARN, externalID string }

// sdItem is one followed service deployment; stage and weight are what the status says.
type sdItem struct {
	target                   deployv1.ECSTarget
	arn, deploymentID, image string
	stage, weight            string
	hook                     string // the pause hook the status says the deployment awaits
	// startedAt and known find the service deployment when arn is not known yet.
	startedAt metav1.Time
	known     map[string]bool
}

// schedule returns the tracker's schedule, set up with its timing.
func (t *ServiceDeploymentTracker) schedule() *schedule[sdGroupKey, sdItem] {
	return t.sched.setup(&t.Initial, &t.Max, &t.Now)
}

// NeedLeaderElection is true: only the leader, which deploys, follows rollouts.
func (t *ServiceDeploymentTracker) NeedLeaderElection() bool { return true }

// Follow implements ServiceDeploymentFollower.
func (t *ServiceDeploymentTracker) Follow(key ktypes.NamespacedName, target deployv1.ECSTarget, d deployv1.Deploy, known map[string]bool) {
	gk := sdGroupKey{target.Region, target.RoleARN, target.ExternalID}
	it := sdItem{target: target, arn: d.ServiceDeploymentARN, deploymentID: d.DeploymentID, image: d.Image,
		stage: d.Stage, weight: d.TrafficWeight, hook: awaitedHookID(&d), startedAt: d.StartedAt, known: known}
	t.schedule().add(key, gk, target, it, func(cur sdItem) bool {
		return cur.deploymentID == d.DeploymentID && (cur.arn == d.ServiceDeploymentARN || d.ServiceDeploymentARN == "") && cur.target.Equal(target)
	})
}

// Unfollow implements ServiceDeploymentFollower.
func (t *ServiceDeploymentTracker) Unfollow(key ktypes.NamespacedName) {
	t.schedule().remove(key)
}

// Start polls until ctx is done.
func (t *ServiceDeploymentTracker) Start(ctx context.Context) error {
	return t.schedule().run(ctx, t.poll)
}

// sdEnded is a followed service deployment that ended.
type sdEnded struct {
	key         ktypes.NamespacedName
	item        sdItem
	obs         RolloutObservation
	revisionARN string
}

// poll looks at the service deployments of one Region and role, 20 per call.
func (t *ServiceDeploymentTracker) poll(ctx context.Context, g schedGroup[sdItem]) {
	api, err := t.ECS(ctx, g.target)
	if err != nil {
		t.Log.Error(err, "No ECS client for following service deployments", "region", g.target.Region)
		return
	}
	keys := make([]ktypes.NamespacedName, 0, len(g.items))
	for k, it := range g.items {
		if it.arn == "" {
			t.find(ctx, api, k, it)
			continue
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for start := 0; start < len(keys); start += maxServiceDeploymentsPerDescribe {
		batch := keys[start:min(start+maxServiceDeploymentsPerDescribe, len(keys))]
		arns := make([]string, 0, len(batch))
		seen := map[string]bool{}
		for _, k := range batch {
			if a := g.items[k].arn; !seen[a] {
				seen[a] = true
				arns = append(arns, a)
			}
		}
		metrics.RolloutPolls.Inc()
		out, err := api.DescribeServiceDeployments(ctx, &ecs.DescribeServiceDeploymentsInput{ServiceDeploymentArns: arns})
		if err != nil {
			t.Log.Error(err, "Looking at service deployments failed; trying again later", "region", g.target.Region)
			continue
		}
		found := map[string]*types.ServiceDeployment{}
		for i := range out.ServiceDeployments {
			sd := &out.ServiceDeployments[i]
			found[aws.ToString(sd.ServiceDeploymentArn)] = sd
		}
		missing := map[string]bool{}
		for _, f := range out.Failures {
			missing[aws.ToString(f.Arn)] = true
		}
		var ended []sdEnded
		for _, key := range batch {
			it := g.items[key]
			sd := found[it.arn]
			if sd == nil {
				if missing[it.arn] {
					ended = append(ended, sdEnded{key: key, item: it, obs: RolloutObservation{
						DeploymentID: it.deploymentID, ServiceDeploymentARN: it.arn, At: t.Now(),
						Result: deployv1.ResultSuperseded, Reason: "ECS no longer knows service deployment " + it.arn,
					}})
				}
				continue
			}
			obs, done := evaluateServiceDeployment(sd, it, t.Now())
			if !done {
				t.progress(ctx, key, it, sd)
				t.pauseHooks(ctx, key, it, sd)
				continue
			}
			if sd.Status == types.ServiceDeploymentStatusStopped {
				if by, err := t.replacedBy(ctx, api, it, sd); err != nil {
					t.Log.Error(err, "Looking for the deployment that stopped a service deployment failed; trying again later", "environment", key)
					continue
				} else if by != "" {
					obs.Result, obs.RolledBack = deployv1.ResultSuperseded, false
					obs.Reason = "the service was updated again (service deployment " + by + ")"
				}
			}
			e := sdEnded{key: key, item: it, obs: obs}
			if obs.Result == deployv1.ResultCompleted && sd.TargetServiceRevision != nil {
				e.revisionARN = aws.ToString(sd.TargetServiceRevision.Arn)
			}
			ended = append(ended, e)
		}
		t.addDigests(ctx, api, ended)
		for _, e := range ended {
			if _, err := t.Sink.Record(ctx, e.key, e.obs); err != nil {
				t.Log.Error(err, "Recording a rollout result failed; trying again later", "environment", e.key)
				continue
			}
			t.unfollowIf(e.key, e.item.arn)
		}
	}
}

// find looks for the service deployment of it, which ECS did not list right after the
// UpdateService that started it (its list is eventually consistent): one ListServiceDeployments
// of its service per look. Once found it is written to the status and followed from the next
// look on; until then the rollout stays in progress, never taken for ended.
func (t *ServiceDeploymentTracker) find(ctx context.Context, api ECSAPI, key ktypes.NamespacedName, it sdItem) {
	metrics.RolloutPolls.Inc()
	arn, err := findServiceDeployment(ctx, api, deployRequest{target: it.target, pending: &deployv1.Deploy{StartedAt: it.startedAt}, knownARNs: it.known})
	if err != nil {
		t.Log.Error(err, "Looking for a service deployment failed; trying again later", "environment", key)
		return
	}
	if arn == "" {
		return
	}
	if _, err := t.Sink.FoundServiceDeployment(ctx, key, it.deploymentID, arn); err != nil {
		t.Log.Error(err, "Recording a service deployment failed; trying again later", "environment", key)
		return
	}
	t.schedule().update(key, func(cur *sdItem) {
		if cur.arn == "" && cur.deploymentID == it.deploymentID {
			cur.arn = arn
		}
	})
}

// progress writes a new stage or traffic weight of a service deployment under way, once.
func (t *ServiceDeploymentTracker) progress(ctx context.Context, key ktypes.NamespacedName, it sdItem, sd *types.ServiceDeployment) {
	p := RolloutProgress{ServiceDeploymentARN: it.arn, Stage: string(sd.LifecycleStage)}
	if sd.TargetServiceRevision != nil {
		p.TrafficWeight = formatWeight(sd.TargetServiceRevision.RequestedProductionTrafficWeight)
	}
	if p.Stage == it.stage && p.TrafficWeight == it.weight {
		return
	}
	if _, err := t.Sink.Progress(ctx, key, p); err != nil {
		t.Log.Error(err, "Recording the progress of a service deployment failed; trying again later", "environment", key)
		return
	}
	t.schedule().update(key, func(cur *sdItem) {
		if cur.arn == it.arn {
			cur.stage, cur.weight = p.Stage, p.TrafficWeight
		}
	})
}

// replacedBy returns the service deployment of the same service created after sd, if any: a
// STOPPED deployment that another update replaced is superseded, not failed.
func (t *ServiceDeploymentTracker) replacedBy(ctx context.Context, api ECSAPI, it sdItem, sd *types.ServiceDeployment) (string, error) {
	in := &ecs.ListServiceDeploymentsInput{Cluster: aws.String(it.target.Cluster), Service: aws.String(it.target.Service)}
	if sd.CreatedAt != nil {
		in.CreatedAt = &types.CreatedAt{After: sd.CreatedAt}
	}
	out, err := api.ListServiceDeployments(ctx, in)
	if err != nil {
		return "", err
	}
	for _, b := range out.ServiceDeployments {
		arn := aws.ToString(b.ServiceDeploymentArn)
		if arn == it.arn || (sd.CreatedAt != nil && b.CreatedAt != nil && !b.CreatedAt.After(*sd.CreatedAt)) {
			continue
		}
		return arn, nil
	}
	return "", nil
}

// addDigests reads the image digests of the completed rollouts' revisions, 20 per call.
func (t *ServiceDeploymentTracker) addDigests(ctx context.Context, api ECSAPI, ended []sdEnded) {
	var want []revisionImage
	var idx []int
	for i, e := range ended {
		if e.revisionARN != "" {
			want = append(want, revisionImage{arn: e.revisionARN, container: e.item.target.Primary()})
			idx = append(idx, i)
		}
	}
	digests := revisionDigests(ctx, api, want, t.Log)
	for j, i := range idx {
		ended[i].obs.ImageDigest = digests[j]
	}
}

// unfollowIf stops following key if it still follows arn.
func (t *ServiceDeploymentTracker) unfollowIf(key ktypes.NamespacedName, arn string) {
	t.schedule().removeIf(key, func(cur sdItem) bool { return cur.arn == arn })
}

// evaluateServiceDeployment says whether service deployment sd has ended, and how.
// ROLLBACK_SUCCESSFUL is a failed deploy whose source revision ECS put back.
func evaluateServiceDeployment(sd *types.ServiceDeployment, it sdItem, now time.Time) (RolloutObservation, bool) {
	obs := RolloutObservation{DeploymentID: it.deploymentID, ServiceDeploymentARN: it.arn, At: now, Reason: aws.ToString(sd.StatusReason)}
	if obs.Reason == "" && sd.Rollback != nil {
		obs.Reason = aws.ToString(sd.Rollback.Reason)
	}
	if obs.Reason == "" {
		obs.Reason = "ECS service deployment " + string(sd.Status)
	}
	switch sd.Status {
	case types.ServiceDeploymentStatusSuccessful:
		obs.Result = deployv1.ResultCompleted
	case types.ServiceDeploymentStatusRollbackSuccessful:
		obs.Result, obs.RolledBack = deployv1.ResultFailed, true
	case types.ServiceDeploymentStatusRollbackFailed:
		obs.Result = deployv1.ResultFailed
	case types.ServiceDeploymentStatusStopped:
		obs.Result, obs.RolledBack = deployv1.ResultFailed, sd.Rollback != nil
	default:
		return obs, false
	}
	return obs, true
}

// revisionImage asks for the digest of a container's image in a service revision.
type revisionImage struct{ arn, container string }

// revisionDigests returns the image digest of each wanted container ("" when not known),
// reading the revisions with DescribeServiceRevisions, 20 per call. A failed read is logged:
// the digest is a record, not a condition of the rollout.
func revisionDigests(ctx context.Context, api ECSAPI, want []revisionImage, logger logr.Logger) []string {
	out := make([]string, len(want))
	var arns []string
	seen := map[string]bool{}
	for _, w := range want {
		if !seen[w.arn] {
			seen[w.arn] = true
			arns = append(arns, w.arn)
		}
	}
	images := map[string][]types.ContainerImage{}
	for start := 0; start < len(arns); start += maxServiceDeploymentsPerDescribe {
		batch := arns[start:min(start+maxServiceDeploymentsPerDescribe, len(arns))]
		res, err := api.DescribeServiceRevisions(ctx, &ecs.DescribeServiceRevisionsInput{ServiceRevisionArns: batch})
		if err != nil {
			logger.Error(err, "Reading the image digests of service revisions failed", "revisions", len(batch))
			continue
		}
		for _, r := range res.ServiceRevisions {
			images[aws.ToString(r.ServiceRevisionArn)] = r.ContainerImages
		}
	}
	for i, w := range want {
		ci := images[w.arn]
		for _, c := range ci {
			if aws.ToString(c.ContainerName) == w.container || (w.container == "" && len(ci) == 1) {
				out[i] = aws.ToString(c.ImageDigest)
			}
		}
	}
	return out
}

// routeTracking hands the newest rollout of env to the follower it needs and stops the others
// following key. It returns the tracker that follows it with DescribeServices, or nil when
// none does (a service deployment, ECS events, nothing in progress).
func (r *EnvironmentReconciler) routeTracking(key ktypes.NamespacedName, env *deployv1.Environment) RolloutTracker {
	last := env.Status.LastDeploy()
	if last != nil && last.Result == deployv1.ResultInProgress && (last.ServiceDeploymentARN != "" || followsServiceDeployment(last.Strategy)) && r.ServiceDeployments != nil {
		target := env.Spec.ECS
		if env.Status.Target != nil {
			target = *env.Status.Target
		}
		r.ServiceDeployments.Follow(key, target, *last, knownServiceDeployments(&env.Status))
		if r.Tracker != nil {
			r.Tracker.Untrack(key)
		}
		if r.SteadyState != nil {
			r.SteadyState.Untrack(key)
		}
		return nil
	}
	if r.ServiceDeployments != nil {
		r.ServiceDeployments.Unfollow(key)
	}
	if r.Tracker != nil {
		return r.Tracker
	}
	if r.SteadyState != nil {
		if last != nil && last.SteadyState {
			return r.SteadyState
		}
		r.SteadyState.Untrack(key)
	}
	return nil
}

// untrackAll stops every follower following key (the Environment is gone).
func (r *EnvironmentReconciler) untrackAll(key ktypes.NamespacedName) {
	if r.Tracker != nil {
		r.Tracker.Untrack(key)
	}
	if r.SteadyState != nil {
		r.SteadyState.Untrack(key)
	}
	if r.ServiceDeployments != nil {
		r.ServiceDeployments.Unfollow(key)
	}
}

// rollingEnded is a rolling deployment the polling tracker saw end.
type rollingEnded struct {
	key ktypes.NamespacedName
	d   trackedDeployment
	obs RolloutObservation
}

// addDigests reads the image digests of the completed rolling deployments: the newest
// successful service deployment of each service names the revision (one
// ListServiceDeployments per completed rollout, once), and DescribeServiceRevisions reads 20
// revisions per call. A failed read leaves the digest unknown.
func (t *PollingTracker) addDigests(ctx context.Context, api ECSAPI, cluster string, ended []rollingEnded) {
	var want []revisionImage
	var idx []int
	for i, e := range ended {
		if e.obs.Result != deployv1.ResultCompleted {
			continue
		}
		out, err := api.ListServiceDeployments(ctx, &ecs.ListServiceDeploymentsInput{
			Cluster: aws.String(cluster), Service: aws.String(e.d.service),
			Status: []types.ServiceDeploymentStatus{types.ServiceDeploymentStatusSuccessful},
		})
		if err != nil {
			t.Log.Error(err, "Finding the service deployment of a completed rollout failed", "environment", e.key)
			continue
		}
		newest := newestBrief(out.ServiceDeployments, func(*types.ServiceDeploymentBrief) bool { return true })
		if newest == nil || aws.ToString(newest.TargetServiceRevisionArn) == "" {
			continue
		}
		want = append(want, revisionImage{arn: aws.ToString(newest.TargetServiceRevisionArn), container: e.d.container})
		idx = append(idx, i)
	}
	digests := revisionDigests(ctx, api, want, t.Log)
	for j, i := range idx {
		ended[i].obs.ImageDigest = digests[j]
	}
}
