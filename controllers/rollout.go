package controllers

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// Event reasons for rollouts.
const (
	EventRolloutCompleted  = "RolloutCompleted"
	EventRolloutFailed     = "RolloutFailed"
	EventRolloutSuperseded = "RolloutSuperseded"
	// EventDigestMismatch: the image deployed names a digest and the container runs another.
	EventDigestMismatch = "DigestMismatch"
)

// RolloutTracker follows in-progress ECS deployments until they end.
type RolloutTracker interface {
	// previousTaskDefinitionARN is the revision the deploy replaced ("" when not known).
	Track(key types.NamespacedName, target deployv1.ECSTarget, deploymentID, taskDefinitionARN, previousTaskDefinitionARN string)
	Untrack(key types.NamespacedName)
}

// RolloutObservation is how an ECS deployment ended, as ECS events or DescribeServices tell.
type RolloutObservation struct {
	DeploymentID string
	// Result is ResultCompleted, ResultFailed or ResultSuperseded.
	Result string
	Reason string
	// RolledBack is true when ECS put the previous task definition back.
	RolledBack bool
	// RolledBackTo is the task definition ECS rolled back to, when DescribeServices told.
	RolledBackTo string
	// Gone is true when the deployment had left the service's list and its end was inferred
	// from the PRIMARY deployment that replaced it.
	Gone bool
	At   time.Time
	// ServiceDeploymentARN is the service deployment that ended (BLUE_GREEN, LINEAR, CANARY);
	// it matches the newest deploy as its DeploymentID does.
	ServiceDeploymentARN string
	// ImageDigest is the digest of the image the container runs after a completed rollout,
	// when ECS said.
	ImageDigest string
	// Unconfirmed marks a failure an ECS event reported, before anyone knows whether ECS rolled
	// the service back: it is noted in the deploy's failureReported and the rollout stays in
	// progress until the reconciler has looked at the service (confirmFailure).
	Unconfirmed bool
}

// ApplyRollout records obs on env if it concerns the newest deploy and that deploy is still
// in progress. It reports whether env changed.
func ApplyRollout(env *deployv1.Environment, obs RolloutObservation) bool {
	last := env.Status.LastDeploy()
	if last == nil || last.Result != deployv1.ResultInProgress {
		return false
	}
	if last.DeploymentID != obs.DeploymentID && (obs.ServiceDeploymentARN == "" || last.ServiceDeploymentARN != obs.ServiceDeploymentARN) {
		return false
	}
	if obs.Unconfirmed {
		if last.FailureReported != nil {
			return false
		}
		last.FailureReported = &deployv1.FailureReport{Reason: obs.Reason, At: metav1.NewTime(obs.At)}
		return true
	}
	last.FailureReported = nil
	if p := env.Status.PendingDeploy; obs.Gone && obs.RolledBack && p != nil && p.Result != deployv1.ResultStalled {
		// The deployment left the list while a later deploy of this Environment is being
		// made: what replaced it may be that deploy, which supersedes it in any case.
		obs.Result, obs.RolledBack = deployv1.ResultSuperseded, false
		obs.Reason = "a later deploy of this Environment replaced it"
	}
	at := metav1.NewTime(obs.At)
	last.Result, last.Reason, last.RolledBack, last.FinishedAt = obs.Result, obs.Reason, obs.RolledBack, &at
	last.AwaitingHook = nil // an ended rollout awaits nothing
	if last.ServiceDeploymentARN != "" {
		// The stage and weight describe a service deployment while it runs.
		last.Stage, last.TrafficWeight = "", ""
	}
	if obs.ImageDigest != "" {
		last.ImageDigest = obs.ImageDigest
	}
	if obs.Result == deployv1.ResultFailed && obs.RolledBack && sameSet(env.Status.DeployedImage, env.Status.DeployedImages, last.Image, last.Images) {
		// ECS put the previous task definition back: that is what runs. When it is not known
		// (the deploy was resumed with nothing known of the service before it, or ECS went
		// back to another revision than the one the deploy replaced), the status says so
		// rather than naming the failed image.
		env.Status.DeployedImage, env.Status.DeployedImages, env.Status.DeployedBuild = last.PreviousImage, last.PreviousImages, last.PreviousBuild
		if obs.RolledBackTo != "" && last.PreviousTaskDefinitionARN != "" && obs.RolledBackTo != last.PreviousTaskDefinitionARN {
			env.Status.DeployedImage, env.Status.DeployedImages, env.Status.DeployedBuild = "", nil, nil
		}
	}
	desired := Decide(env)
	env.Status.DesiredImage, env.Status.DesiredImages = desired.Image, desired.Images
	setSettledConditions(env, desired)
	return true
}

// RolloutRecorder writes rollout observations to Environments, with optimistic concurrency.
type RolloutRecorder struct {
	// Cache, when set, gives the Environment a first write starts from; Reader reads the
	// live one after a conflict or to confirm a write is not needed (before each write when
	// Cache is nil).
	Cache    client.Reader
	Reader   client.Reader
	Writer   client.StatusClient
	Recorder events.EventRecorder
}

var recordBackoff = wait.Backoff{Steps: 20, Duration: 5 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: 500 * time.Millisecond}

// Record applies obs to the Environment key. It is a no-op for a deployment that is not the
// Environment's newest or that already ended, so duplicate and late reports are harmless.
func (r *RolloutRecorder) Record(ctx context.Context, key types.NamespacedName, obs RolloutObservation) (bool, error) {
	var changed bool
	env, err := patchLiveStatus(ctx, r.Cache, r.Reader, r.Writer, key, func(env *deployv1.Environment) bool {
		changed = ApplyRollout(env, obs)
		return changed
	})
	if err != nil || !changed {
		return false, client.IgnoreNotFound(err)
	}
	if obs.Unconfirmed {
		log.FromContext(ctx).Info("ECS reported the rollout of Environment failed; the reconciler looks whether it rolled back",
			"environment", key, "deploymentID", obs.DeploymentID, "reason", obs.Reason)
		return true, nil
	}
	last := env.Status.LastDeploy()
	log.FromContext(ctx).Info("Rollout of Environment ended", "environment", key, "deploymentID", obs.DeploymentID,
		"result", obs.Result, "reason", obs.Reason, "rolledBack", obs.RolledBack)
	metrics.Deploys.WithLabelValues(resultLabel(obs.Result)).Inc()
	switch obs.Result {
	case deployv1.ResultCompleted:
		observeCompleted(env, last)
		r.event(env, "Normal", EventRolloutCompleted, "ECS deployment %s of %s%s completed", obs.DeploymentID, last.Image, buildSuffix(last.Build))
		if m := digestMismatch(last); m != "" {
			r.event(env, "Warning", EventDigestMismatch, "ECS deployment %s: %s", obs.DeploymentID, m)
		}
	case deployv1.ResultFailed:
		msg := fmt.Sprintf("ECS deployment %s of %s%s failed: %s", obs.DeploymentID, last.Image, buildSuffix(last.Build), obs.Reason)
		if obs.RolledBack {
			metrics.Rollbacks.Inc()
			msg += "; ECS rolled the service back to " + orUnknown(last.PreviousImage)
		}
		r.event(env, "Warning", EventRolloutFailed, "%s", msg)
	default:
		r.event(env, "Warning", EventRolloutSuperseded, "ECS deployment %s of %s was replaced before it ended: %s", obs.DeploymentID, last.Image, obs.Reason)
	}
	return true, nil
}

func (r *RolloutRecorder) event(env *deployv1.Environment, typ, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(env, nil, typ, reason, "Rollout", note, args...)
	}
}

func resultLabel(result string) string {
	switch result {
	case deployv1.ResultCompleted:
		return "completed"
	case deployv1.ResultFailed:
		return "failed"
	default:
		return "superseded"
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "its previous task definition"
	}
	return s
}

// observeCompleted records the time from the build finishing to its rollout completing.
func observeCompleted(env *deployv1.Environment, d *deployv1.Deploy) {
	b := env.Status.LatestBuild
	if d == nil || d.Build == nil || b == nil || b.ID != d.Build.ID || d.FinishedAt == nil {
		return
	}
	start := b.ReceivedAt.Time
	if b.FinishedAt != nil {
		start = b.FinishedAt.Time
	}
	metrics.BuildToDeployed.Observe(d.FinishedAt.Sub(start).Seconds())
}

// FoundServiceDeployment implements ServiceDeploymentSink.
func (r *RolloutRecorder) FoundServiceDeployment(ctx context.Context, key types.NamespacedName, deploymentID, arn string) (bool, error) {
	var changed bool
	_, err := patchLiveStatus(ctx, r.Cache, r.Reader, r.Writer, key, func(env *deployv1.Environment) bool {
		last := env.Status.LastDeploy()
		changed = last != nil && last.Result == deployv1.ResultInProgress && last.DeploymentID == deploymentID && last.ServiceDeploymentARN == ""
		if changed {
			last.ServiceDeploymentARN = arn
		}
		return changed
	})
	if err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if changed {
		log.FromContext(ctx).Info("Found the service deployment of Environment's deploy", "environment", key, "deploymentID", deploymentID, "serviceDeployment", arn)
	}
	return changed, nil
}

// ApplyProgress records a new stage or traffic weight of the service deployment of env's
// newest deploy, while it runs. It reports whether env changed.
func ApplyProgress(env *deployv1.Environment, p RolloutProgress) bool {
	last := env.Status.LastDeploy()
	if last == nil || last.Result != deployv1.ResultInProgress || last.ServiceDeploymentARN != p.ServiceDeploymentARN ||
		(last.Stage == p.Stage && last.TrafficWeight == p.TrafficWeight) {
		return false
	}
	last.Stage, last.TrafficWeight = p.Stage, p.TrafficWeight
	setSettledConditions(env, Decide(env))
	return true
}

// Progress writes p to the Environment key, with optimistic concurrency; a no-op when p is
// not about its newest deploy or changes nothing.
func (r *RolloutRecorder) Progress(ctx context.Context, key types.NamespacedName, p RolloutProgress) (bool, error) {
	var changed bool
	_, err := patchLiveStatus(ctx, r.Cache, r.Reader, r.Writer, key, func(env *deployv1.Environment) bool {
		changed = ApplyProgress(env, p)
		return changed
	})
	if err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if changed {
		log.FromContext(ctx).V(1).Info("Service deployment of Environment moved", "environment", key,
			"serviceDeployment", p.ServiceDeploymentARN, "stage", p.Stage, "trafficWeight", p.TrafficWeight)
	}
	return changed, nil
}
