// Package controllers holds the Environment reconciler.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// Event reasons.
const (
	EventDeployStarted = "DeployStarted"
	EventDeployed      = "Deployed"
	EventDeployFailed  = "DeployFailed"
)

// EnvironmentReconciler deploys an Environment's desired image to its ECS service. It decides
// from the Environment alone and calls ECS only when the desired image is not yet deployed.
type EnvironmentReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	// ECS returns the ECS client for a target (its Region and role).
	ECS ECSClientFunc
	// Tracker follows in-progress rollouts; nil leaves them to ECS events.
	Tracker RolloutTracker
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxConcurrentReconciles bounds parallel deploys; 4 when zero.
	MaxConcurrentReconciles int
	// RetryBaseDelay and RetryMaxDelay bound the backoff after a transient ECS error;
	// 1s and 5m when zero.
	RetryBaseDelay, RetryMaxDelay time.Duration
}

// +kubebuilder:rbac:groups=deploy.autodeploy.dev,resources=environments,verbs=get;list;watch
// +kubebuilder:rbac:groups=deploy.autodeploy.dev,resources=environments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler. It watches spec changes, status.latestBuild
// changes and the retry annotation, and ignores the reconciler's own status writes.
func (r *EnvironmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.Recorder == nil || r.ECS == nil {
		return errors.New("EnvironmentReconciler needs Client, Recorder and ECS")
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 4
	}
	if r.RetryBaseDelay == 0 {
		r.RetryBaseDelay = time.Second
	}
	if r.RetryMaxDelay == 0 {
		r.RetryMaxDelay = 5 * time.Minute
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&deployv1.Environment{}, builder.WithPredicates(environmentChanged())).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: r.MaxConcurrentReconciles,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](r.RetryBaseDelay, r.RetryMaxDelay),
		}).
		Complete(r)
}

// environmentChanged passes creates (including the initial list after a restart, which costs
// no ECS call for an up-to-date Environment), spec changes, new builds and retry requests.
func environmentChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldEnv, ok1 := e.ObjectOld.(*deployv1.Environment)
			newEnv, ok2 := e.ObjectNew.(*deployv1.Environment)
			if !ok1 || !ok2 {
				return false
			}
			return oldEnv.Generation != newEnv.Generation ||
				!equality.Semantic.DeepEqual(oldEnv.Status.LatestBuild, newEnv.Status.LatestBuild) ||
				oldEnv.Annotations[deployv1.RetryAnnotation] != newEnv.Annotations[deployv1.RetryAnnotation]
		},
		DeleteFunc: func(event.DeleteEvent) bool { return false },
	}
}

// Reconcile converges one Environment.
func (r *EnvironmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	env := &deployv1.Environment{}
	if err := r.Client.Get(ctx, req.NamespacedName, env); err != nil {
		if apierrors.IsNotFound(err) && r.Tracker != nil {
			r.Tracker.Untrack(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := env.DeepCopy()

	desired := Decide(env)
	env.Status.DesiredImage = desired.Image
	setPinned(env)

	pending := env.Status.PendingDeploy
	if desired.Image == "" || (desired.Image == env.Status.DeployedImage && pending == nil && !desired.Force) {
		r.settle(env, desired)
		r.track(req.NamespacedName, env)
		return r.patchStatus(ctx, base, env)
	}

	// Record the intent before any ECS call, so that a restart finishes this deploy.
	if pending == nil || pending.Image != desired.Image || (desired.Force && pending.Trigger != deployv1.TriggerRetry) {
		pending = &deployv1.Deploy{
			Image:     desired.Image,
			Build:     desired.Build,
			Trigger:   desired.Trigger,
			StartedAt: metav1.NewTime(r.Now()),
		}
		env.Status.PendingDeploy = pending
		env.Status.RetryHandled = env.Annotations[deployv1.RetryAnnotation]
		msg := fmt.Sprintf("Deploying %s%s", desired.Image, buildSuffix(desired.Build))
		setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionTrue, deployv1.ReasonDeploying, msg)
		setCondition(env, deployv1.ReadyCondition, metav1.ConditionUnknown, deployv1.ReasonDeploying, msg)
		setCondition(env, deployv1.StalledCondition, metav1.ConditionFalse, deployv1.ReasonDeploying, msg)
		if res, err := r.patchStatus(ctx, base, env); err != nil || !res.IsZero() {
			return res, err
		}
		base = env.DeepCopy()
		logger.Info("Deploying Environment", "image", desired.Image, "trigger", desired.Trigger)
		r.Recorder.Eventf(env, nil, "Normal", EventDeployStarted, "Deploy", "%s (trigger %s)", msg, desired.Trigger)
	}

	res, err := r.deploy(ctx, env, pending, desired.Force)
	if err != nil {
		return r.deployFailed(ctx, base, env, err)
	}

	now := metav1.NewTime(r.Now())
	done := pending.DeepCopy()
	done.PreviousImage = res.previousImage
	done.TaskDefinitionARN = res.taskDefinitionARN
	done.DeploymentID = res.deploymentID
	done.ServiceUpdatedAt = &now
	done.Result = deployv1.ResultInProgress
	switch res.rolloutState {
	case "COMPLETED":
		done.Result, done.FinishedAt = deployv1.ResultCompleted, &now
	case "FAILED":
		done.Result, done.FinishedAt, done.Reason = deployv1.ResultFailed, &now, res.rolloutReason
	}
	env.Status.RecordDeploy(*done)
	env.Status.DeployedImage = done.Image
	env.Status.PendingDeploy = nil
	env.Status.DesiredImage = done.Image
	metrics.Deploys.WithLabelValues("started").Inc()
	logger.Info("Updated the ECS service of Environment", "image", done.Image, "taskDefinition", done.TaskDefinitionARN,
		"deploymentID", done.DeploymentID, "registered", res.registered, "updatedService", res.updated, "rollout", done.Result)
	r.Recorder.Eventf(env, nil, "Normal", EventDeployed, "Deploy", "Updated the service to %s%s as %s, ECS deployment %s",
		done.Image, buildSuffix(done.Build), done.TaskDefinitionARN, done.DeploymentID)
	r.settle(env, Decide(env))
	if done.Result == deployv1.ResultCompleted {
		observeCompleted(env, done)
	}
	// A conflict here requeues; the next attempt finds the service already running the
	// image and records it without registering again.
	result, err := r.patchStatus(ctx, base, env)
	if err == nil && result.IsZero() {
		r.track(req.NamespacedName, env)
	}
	return result, err
}

// track hands an in-progress rollout to the tracker, which reports how it ends.
func (r *EnvironmentReconciler) track(key types.NamespacedName, env *deployv1.Environment) {
	if r.Tracker == nil {
		return
	}
	last := env.Status.LastDeploy()
	if last == nil || last.Result != deployv1.ResultInProgress || last.DeploymentID == "" {
		r.Tracker.Untrack(key)
		return
	}
	r.Tracker.Track(key, env.Spec.ECS, last.DeploymentID, last.TaskDefinitionARN)
}

func (r *EnvironmentReconciler) deploy(ctx context.Context, env *deployv1.Environment, pending *deployv1.Deploy, force bool) (*deployResult, error) {
	api, err := r.ECS(ctx, env.Spec.ECS)
	if err != nil {
		return nil, err
	}
	return deploy(ctx, api, env.Spec.ECS, pending.Image, force)
}

// deployFailed records a failed deploy. A failure that needs the user stalls the Environment
// without requeueing; anything else is retried with exponential backoff.
func (r *EnvironmentReconciler) deployFailed(ctx context.Context, base, env *deployv1.Environment, err error) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var permanent *deployError
	if errors.As(classify(err, env.Spec.ECS), &permanent) {
		env.Status.ObservedGeneration = env.Generation
		setCondition(env, deployv1.ReadyCondition, metav1.ConditionFalse, permanent.reason, permanent.message)
		setCondition(env, deployv1.StalledCondition, metav1.ConditionTrue, permanent.reason, permanent.message)
		setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionFalse, permanent.reason, permanent.message)
		metrics.Deploys.WithLabelValues("stalled").Inc()
		logger.Error(err, "Deploy of Environment failed; waiting for a change", "reason", permanent.reason)
		r.Recorder.Eventf(env, nil, "Warning", EventDeployFailed, "Deploy", "%s", permanent.message)
		return r.patchStatus(ctx, base, env)
	}
	msg := transientMessage(err)
	setCondition(env, deployv1.ReadyCondition, metav1.ConditionFalse, deployv1.ReasonECSUnavailable, msg)
	setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionTrue, deployv1.ReasonECSUnavailable, msg)
	metrics.Deploys.WithLabelValues("retried").Inc()
	r.Recorder.Eventf(env, nil, "Warning", EventDeployFailed, "Deploy", "%s", msg)
	if _, perr := r.patchStatus(ctx, base, env); perr != nil {
		logger.Error(perr, "Recording the deploy failure of Environment failed")
	}
	// Returning the error hands the retry to the workqueue's exponential backoff.
	return ctrl.Result{}, err
}

// settle sets the conditions of an Environment with no deploy to make now: up to date, a
// rollout under way, a rollout that failed and is held back, or nothing to deploy yet.
func (r *EnvironmentReconciler) settle(env *deployv1.Environment, desired Desired) {
	env.Status.ObservedGeneration = env.Generation
	setSettledConditions(env, desired)
}

func setSettledConditions(env *deployv1.Environment, desired Desired) {
	last := env.Status.LastDeploy()
	switch {
	case desired.Held:
		setCondition(env, deployv1.ReadyCondition, metav1.ConditionFalse, desired.Reason, desired.Message)
		setCondition(env, deployv1.StalledCondition, metav1.ConditionTrue, desired.Reason, desired.Message)
		setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionFalse, desired.Reason, desired.Message)
		return
	case last != nil && last.Image == desired.Image && last.Result == deployv1.ResultInProgress:
		msg := fmt.Sprintf("ECS deployment %s of %s%s is rolling out", last.DeploymentID, last.Image, buildSuffix(last.Build))
		setCondition(env, deployv1.ReadyCondition, metav1.ConditionUnknown, deployv1.ReasonRolloutInProgress, msg)
		setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionTrue, deployv1.ReasonRolloutInProgress, msg)
		setCondition(env, deployv1.StalledCondition, metav1.ConditionFalse, deployv1.ReasonRolloutInProgress, msg)
		return
	case last != nil && last.Image == desired.Image && last.Result == deployv1.ResultFailed:
		msg := fmt.Sprintf("ECS deployment %s of %s%s failed: %s", last.DeploymentID, last.Image, buildSuffix(last.Build), last.Reason)
		setCondition(env, deployv1.ReadyCondition, metav1.ConditionFalse, deployv1.ReasonRolloutFailed, msg)
		setCondition(env, deployv1.StalledCondition, metav1.ConditionTrue, deployv1.ReasonRolloutFailed, msg)
		setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionFalse, deployv1.ReasonRolloutFailed, msg)
		return
	}
	reason, msg := desired.Reason, desired.Message
	if desired.Image != "" {
		reason, msg = deployv1.ReasonUpToDate, "Running "+desired.Image+buildSuffix(desired.Build)
		if last != nil && last.Image == desired.Image && last.Result == deployv1.ResultCompleted {
			reason = deployv1.ReasonDeployed
			msg = fmt.Sprintf("ECS deployment %s of %s%s completed", last.DeploymentID, last.Image, buildSuffix(last.Build))
		}
		if desired.Reason != "" {
			msg += "; " + desired.Message
		}
	}
	setCondition(env, deployv1.ReadyCondition, metav1.ConditionTrue, reason, msg)
	setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionFalse, reason, msg)
	setCondition(env, deployv1.StalledCondition, metav1.ConditionFalse, reason, msg)
}

// patchStatus writes the status with optimistic concurrency. A conflict (the receiver
// recorded a build meanwhile) requeues at once rather than backing off.
func (r *EnvironmentReconciler) patchStatus(ctx context.Context, base, env *deployv1.Environment) (ctrl.Result, error) {
	if equality.Semantic.DeepEqual(base.Status, env.Status) {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	if err := r.Client.Status().Patch(ctx, env, patch); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: time.Millisecond}, nil
		}
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

func setPinned(env *deployv1.Environment) {
	if pin := env.Spec.PinnedImage; pin != "" {
		setCondition(env, deployv1.PinnedCondition, metav1.ConditionTrue, deployv1.ReasonPinned,
			"Pinned to "+pin+": new builds are recorded, not deployed")
		return
	}
	setCondition(env, deployv1.PinnedCondition, metav1.ConditionFalse, deployv1.ReasonNotPinned, "No image is pinned")
}

func setCondition(env *deployv1.Environment, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&env.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: env.Generation,
	})
}

func buildSuffix(b *deployv1.BuildRef) string {
	if b == nil {
		return ""
	}
	return fmt.Sprintf(" (build %d)", b.Number)
}
