// Package controllers holds the Environment reconciler.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
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
	// EventDeployed: the service was updated (or found updated) to a deploy's image; it
	// names the build and the trigger. A deploy's start has no Event of its own: it is a
	// status write (status.pendingDeploy, the Reconciling condition), and Deployed,
	// DeployFailed or DeployWithdrawn follows it within the ECS calls of one reconcile.
	EventDeployed     = "Deployed"
	EventDeployFailed = "DeployFailed"
	// EventNotDeployed: the service already runs a newer build.
	EventNotDeployed = "NotDeployed"
	// EventDeployWithdrawn: a pending deploy no longer wanted was dropped before it reached
	// the service.
	EventDeployWithdrawn = "DeployWithdrawn"
)

// EnvironmentReconciler deploys an Environment's desired image to its ECS service. It decides
// from the Environment alone and calls ECS only when the desired image is not yet deployed.
type EnvironmentReconciler struct {
	Client client.Client
	// APIReader reads live Environments when a status write conflicts; Client when nil.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// ECS returns the ECS client for a target (its Region and role).
	ECS ECSClientFunc
	// Tracker follows in-progress rollouts; nil leaves them to ECS events.
	Tracker RolloutTracker
	// ServiceDeployments follows blue/green, linear and canary rollouts, for which ECS sends
	// no completion events; SteadyState follows the rollouts of services for which ECS
	// reports no rollout state when Tracker is nil. Either nil leaves those rollouts InProgress.
	ServiceDeployments ServiceDeploymentFollower
	SteadyState        RolloutTracker
	// Rollouts records the end of a rollout an ECS event reported failed, once the reconciler
	// looked whether ECS rolled the service back (confirmFailure); such a rollout stays in
	// progress when nil.
	Rollouts RolloutSink
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxConcurrentReconciles bounds parallel deploys; 4 when zero.
	MaxConcurrentReconciles int
	// RetryBaseDelay and RetryMaxDelay bound the backoff after a transient ECS error;
	// 1s and 5m when zero.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// Account is the controller's own AWS account, where an Environment whose spec.ecs names
	// no account (by an ARN or a role) deploys; "" when not known, and then such an
	// Environment and one naming the same service by ARN are not seen to share it.
	Account string

	// recorded holds, per Environment, the last pending deploy this reconciler recorded as
	// done, to tell a cache that has not caught up from a deploy to resume.
	recorded sync.Map
	// hookAnswered holds, per Environment, the last hook-action value this reconciler
	// answered, to tell a cache that has not caught up from a new value (hooks.go).
	hookAnswered sync.Map
	// approvalWarned holds, per Environment, the approve value last warned about as naming
	// another build than the one waiting (gate_reconcile.go).
	approvalWarned sync.Map
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
	if err := IndexServiceKey(context.Background(), mgr.GetFieldIndexer(), r.Account); err != nil {
		return err
	}
	if err := IndexUpstream(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&deployv1.Environment{}, builder.WithPredicates(environmentChanged())).
		// The owner of a service may change when another Environment naming it comes, goes or
		// moves.
		Watches(&deployv1.Environment{}, r.serviceSharers()).
		// A promoted Environment decides again when its upstream's rollouts change.
		Watches(&deployv1.Environment{}, r.downstreams()).
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
				oldEnv.Annotations[deployv1.RetryAnnotation] != newEnv.Annotations[deployv1.RetryAnnotation] ||
				oldEnv.Annotations[deployv1.HookActionAnnotation] != newEnv.Annotations[deployv1.HookActionAnnotation] ||
				failureReported(newEnv) && !failureReported(oldEnv) ||
				gateAnnotationsChanged(oldEnv, newEnv)
		},
		// A delete reconciles once: the Environment is gone, so its rollout is no longer
		// followed (no ECS call).
		DeleteFunc: func(event.DeleteEvent) bool { return true },
	}
}

// failureReported reports whether an ECS event reported the rollout of e's newest deploy
// failed and the reconciler has yet to look whether it rolled back.
func failureReported(e *deployv1.Environment) bool {
	last := e.Status.LastDeploy()
	return last != nil && last.Result == deployv1.ResultInProgress && last.FailureReported != nil
}

// Reconcile converges one Environment, and comes back when its gates change by the clock (a
// soak's end, a deploy window's opening, a freeze's end).
func (r *EnvironmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var wake time.Time
	res, err := r.reconcile(ctx, req, &wake)
	return r.wakeAt(res, err, wake)
}

func (r *EnvironmentReconciler) reconcile(ctx context.Context, req ctrl.Request, wake *time.Time) (ctrl.Result, error) {
	env := &deployv1.Environment{}
	if err := r.Client.Get(ctx, req.NamespacedName, env); err != nil {
		if apierrors.IsNotFound(err) {
			r.recorded.Delete(req.NamespacedName)
			r.untrackAll(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if p := env.Status.PendingDeploy; p != nil {
		if done, ok := r.recorded.Load(req.NamespacedName); ok && sameRecord(p, done.(*deployv1.Deploy)) {
			// The cache has not caught up with the write that recorded this deploy: read the
			// live Environment (one GET) rather than ask ECS what became of it again.
			live := &deployv1.Environment{}
			if err := r.apiReader().Get(ctx, req.NamespacedName, live); err != nil {
				return ctrl.Result{}, client.IgnoreNotFound(err)
			}
			env = live
		}
	} else {
		r.recorded.Delete(req.NamespacedName)
	}
	base := env.DeepCopy()
	if res, done, err := r.holdOff(ctx, base, env); done {
		return res, err
	}
	if ended, err := r.confirmFailure(ctx, req.NamespacedName, env); err != nil {
		return ctrl.Result{}, err
	} else if ended {
		// Go on from what was written.
		live := &deployv1.Environment{}
		if err := r.apiReader().Get(ctx, req.NamespacedName, live); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		env, base = live, live.DeepCopy()
	}
	adoptTarget(env)
	if stop, res, err := r.answerHook(ctx, req.NamespacedName, &base, &env); stop {
		return res, err
	}

	// An observed or withdrawn pending deploy is followed by a fresh decision: at most one
	// of each, then a deploy or nothing.
	for range 3 {
		if stop, res, err := r.applyGates(ctx, base, env, wake); stop {
			return res, err
		}
		desired := Decide(env)
		switch desired.Action {
		case ActionNone:
			finish(env)
			res, err := r.patchStatus(ctx, base, env)
			if err == nil && res.IsZero() {
				r.track(req.NamespacedName, env)
			}
			return res, err
		case ActionWithdraw:
			r.withdrawn(ctx, env, env.Status.PendingDeploy, "it stalled before it reached the service")
			env.Status.PendingDeploy = nil
		case ActionObserve:
			pending := env.Status.PendingDeploy.DeepCopy()
			res, err := r.deploy(ctx, env, deployRequest{pending: pending, observe: true})
			if err != nil {
				return r.deployFailed(ctx, base, env, pending, err)
			}
			if res.outcome == outcomeObserved {
				r.withdrawn(ctx, env, pending, "it never reached the service")
			}
			target := env.Spec.ECS
			live, err := r.commit(ctx, base, env, func(e *deployv1.Environment) { r.recordOutcome(ctx, e, pending, res, target) })
			if err != nil || live == nil {
				return ctrl.Result{}, err
			}
			r.recorded.Store(req.NamespacedName, pending)
			env, base = live, live.DeepCopy()
		case ActionDeploy:
			return r.deployDesired(ctx, req.NamespacedName, base, env, desired)
		}
	}
	return ctrl.Result{}, fmt.Errorf("no decision settled Environment %s", req.NamespacedName)
}

// deployDesired records the intent of a deploy (unless it is the pending one resumed), makes
// it, and records what ECS did.
func (r *EnvironmentReconciler) deployDesired(ctx context.Context, key types.NamespacedName, base, env *deployv1.Environment, desired Desired) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	st := &env.Status
	pending := st.PendingDeploy
	if pending == nil || !desired.Resume && pending.Result != deployv1.ResultStalled {
		// Record the intent before any ECS call, so that a restart finishes this deploy, with
		// what runs now (when it is known) as the previous image.
		pending = &deployv1.Deploy{
			Image:     desired.Image,
			Images:    desired.Images,
			Build:     desired.Build,
			Trigger:   desired.Trigger,
			StartedAt: metav1.NewTime(r.Now()),
		}
		if targetKnown(env) {
			pending.PreviousImage, pending.PreviousImages, pending.PreviousBuild = st.DeployedImage, st.DeployedImages, st.DeployedBuild
		}
		if env.Spec.Approval == deployv1.ApprovalRequired && desired.Build != nil && desired.Trigger != deployv1.TriggerPin {
			pending.Approval = approvalOf(r.approvalSource(ctx, key, env), desired.Build.Number, r.Now())
		}
		st.PendingDeploy = pending
		st.DesiredImage, st.DesiredImages = desired.Image, desired.Images
		st.RetryHandled = env.Annotations[deployv1.RetryAnnotation]
		setPinned(env)
		msg := fmt.Sprintf("Deploying %s (trigger %s)", describe(desired.Image, desired.Build), desired.Trigger)
		setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionTrue, deployv1.ReasonDeploying, msg)
		setCondition(env, deployv1.ReadyCondition, metav1.ConditionUnknown, deployv1.ReasonDeploying, msg)
		setCondition(env, deployv1.StalledCondition, metav1.ConditionFalse, deployv1.ReasonDeploying, msg)
		if res, err := r.patchStatus(ctx, base, env); err != nil || !res.IsZero() {
			return res, err
		}
		base = env.DeepCopy()
		pending = st.PendingDeploy
		logger.Info("Deploying Environment", "image", desired.Image, "trigger", desired.Trigger)
	} else if pending.Result == deployv1.ResultStalled {
		// A stalled deploy tried again (the spec changed, or a retry was requested): it never
		// reached the service, so there is nothing to look for first.
		pending.Result, pending.Reason = "", ""
		st.RetryHandled = env.Annotations[deployv1.RetryAnnotation]
	}
	pending = pending.DeepCopy()

	res, err := r.deploy(ctx, env, deployRequest{
		image: pending.Image, images: pending.Images, build: pending.Build, force: desired.Force,
		// A pin moved to another service (trigger Target) is still a pin: it may be older.
		pin:     pending.Trigger == deployv1.TriggerPin || pinned(&env.Spec, pending.Image, pending.Images),
		pending: pending, resume: desired.Resume,
	})
	if err != nil {
		return r.deployFailed(ctx, base, env, pending, err)
	}
	metrics.Deploys.WithLabelValues("started").Inc()
	logger.Info("Deployed Environment", "image", pending.Image, "outcome", res.outcome.String(), "taskDefinition", res.taskDefinitionARN,
		"deploymentID", res.deploymentID, "registered", res.registered, "updatedService", res.updated, "running", res.running)
	target := env.Spec.ECS
	live, err := r.commit(ctx, base, env, func(e *deployv1.Environment) { r.recordOutcome(ctx, e, pending, res, target) })
	if err != nil || live == nil {
		return ctrl.Result{}, err
	}
	r.recorded.Store(key, pending)
	switch res.outcome {
	case outcomeNewer:
		r.Recorder.Eventf(live, nil, "Normal", EventNotDeployed, "Deploy", "The service runs %s, newer than %s: not deployed over it",
			describe(res.running, res.runningBuild), describe(pending.Image, pending.Build))
	default:
		if last := live.Status.LastDeploy(); last != nil && last.DeploymentID == res.deploymentID {
			// A rollout ECS had already ended when the deploy looked (a resumed deploy that
			// finds its deployment over) is counted here; the others when they end.
			switch last.Result {
			case deployv1.ResultCompleted:
				observeCompleted(live, last)
				metrics.Deploys.WithLabelValues(resultLabel(last.Result)).Inc()
			case deployv1.ResultFailed:
				metrics.Deploys.WithLabelValues(resultLabel(last.Result)).Inc()
				if last.RolledBack {
					metrics.Rollbacks.Inc()
				}
			}
			r.Recorder.Eventf(live, nil, "Normal", EventDeployed, "Deploy", "%s %s (trigger %s) as %s, ECS deployment %s",
				res.outcome.verb(), describe(last.Image, last.Build), last.Trigger, last.TaskDefinitionARN, last.DeploymentID)
		}
	}
	r.track(key, live)
	return ctrl.Result{}, nil
}

// recordOutcome records what a deploy (or a look at the service) to target found on e, if e
// still has the pending deploy it was made for, and settles e's conditions. The target is the
// one the deploy was made to: a live e read after a conflict may name another one already,
// which the next reconcile then deploys to.
func (r *EnvironmentReconciler) recordOutcome(ctx context.Context, e *deployv1.Environment, pending *deployv1.Deploy, res *deployResult, target deployv1.ECSTarget) {
	st := &e.Status
	if !sameRecord(st.PendingDeploy, pending) {
		// Another writer (a leader before this one) recorded it already.
		log.FromContext(ctx).Info("The deploy was recorded by another writer", "image", pending.Image)
		finish(e)
		return
	}
	st.Target = target.DeepCopy()
	st.PendingDeploy = nil
	switch res.outcome {
	case outcomeNewer, outcomeObserved:
		build := res.runningBuild
		if build == nil && sameSet(res.running, res.runningImages, st.DeployedImage, st.DeployedImages) {
			build = st.DeployedBuild
		}
		st.DeployedImage, st.DeployedImages, st.DeployedBuild = res.running, res.runningImages, build
		finish(e)
		if res.outcome == outcomeNewer {
			setCondition(e, deployv1.ReadyCondition, metav1.ConditionTrue, deployv1.ReasonNewerBuildRunning,
				fmt.Sprintf("Running %s; %s is older and is not deployed over it", describe(res.running, res.runningBuild), describe(pending.Image, pending.Build)))
		}
		return
	}
	now := metav1.NewTime(r.Now())
	done := pending.DeepCopy()
	done.Result, done.Reason = deployv1.ResultInProgress, ""
	done.PreviousImage, done.PreviousImages, done.PreviousBuild = res.previousImage, res.previousImages, res.previousBuild
	done.TaskDefinitionARN, done.DeploymentID = res.taskDefinitionARN, res.deploymentID
	done.PreviousTaskDefinitionARN = res.previousTaskDefinitionARN
	done.ServiceUpdatedAt = &now
	res.annotate(done)
	switch res.rolloutState {
	case "COMPLETED":
		done.Result, done.FinishedAt = deployv1.ResultCompleted, &now
	case "FAILED":
		done.Result, done.FinishedAt, done.Reason, done.RolledBack = deployv1.ResultFailed, &now, res.rolloutReason, res.rolledBack
	}
	st.RecordDeploy(*done)
	st.DeployedImage, st.DeployedImages, st.DeployedBuild = done.Image, done.Images, done.Build
	if done.Build == nil && sameSet(res.running, res.runningImages, done.Image, done.Images) {
		st.DeployedBuild = res.runningBuild
	}
	if done.RolledBack {
		st.DeployedImage, st.DeployedImages, st.DeployedBuild = res.running, res.runningImages, res.runningBuild
		if st.DeployedBuild == nil && sameSet(res.running, res.runningImages, done.PreviousImage, done.PreviousImages) {
			st.DeployedBuild = done.PreviousBuild
		}
	}
	finish(e)
}

// sameRecord reports whether p is the record of the pending deploy want (times are stored to
// the second).
func sameRecord(p, want *deployv1.Deploy) bool {
	return p != nil && want != nil && p.Image == want.Image && p.Trigger == want.Trigger && p.StartedAt.Unix() == want.StartedAt.Unix()
}

// finish sets what every settled pass sets: the decision's image, the conditions, the
// generation acted on, and the retry request answered.
func finish(e *deployv1.Environment) {
	desired := Decide(e)
	e.Status.DesiredImage, e.Status.DesiredImages = desired.Image, desired.Images
	e.Status.ObservedGeneration = e.Generation
	if !blockingGate(desired.Reason) {
		// A retry held back by a gate is answered when the gate lets it through.
		e.Status.RetryHandled = e.Annotations[deployv1.RetryAnnotation]
	}
	setPinned(e)
	setSettledConditions(e, desired)
}

// adoptTarget records spec.ecs as the target of a status written before targets and
// deployed builds were recorded: what it says deployed is taken to run there, from the
// build of the newest deploy of that image.
func adoptTarget(env *deployv1.Environment) {
	st := &env.Status
	if st.Target == nil && st.DeployedImage != "" {
		st.Target = env.Spec.ECS.DeepCopy()
		if st.DeployedBuild == nil {
			st.DeployedBuild = historyBuild(st, st.DeployedImage, st.DeployedImages)
		}
	}
}

// withdrawn tells that a pending deploy no longer wanted was dropped.
func (r *EnvironmentReconciler) withdrawn(ctx context.Context, env *deployv1.Environment, p *deployv1.Deploy, why string) {
	log.FromContext(ctx).Info("Withdrew a deploy no longer wanted", "image", p.Image, "trigger", p.Trigger, "why", why)
	r.Recorder.Eventf(env, nil, "Normal", EventDeployWithdrawn, "Deploy", "The deploy of %s is no longer wanted and was withdrawn: %s",
		describe(p.Image, p.Build), why)
}

// commit writes env's status over base. On a conflict it reads the live Environment, applies
// apply to it and writes that, until a write succeeds: what ECS reported is never thrown away
// and never costs an ECS call again. It returns the Environment written (nil if deleted).
func (r *EnvironmentReconciler) commit(ctx context.Context, base, env *deployv1.Environment, apply func(*deployv1.Environment)) (*deployv1.Environment, error) {
	apply(env)
	err := r.Client.Status().Patch(ctx, env, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	switch {
	case err == nil:
		return env, nil
	case apierrors.IsNotFound(err):
		return nil, nil
	case !apierrors.IsConflict(err):
		return nil, err
	}
	key := client.ObjectKeyFromObject(env)
	var live *deployv1.Environment
	err = retry.OnError(recordBackoff, apierrors.IsConflict, func() error {
		live = &deployv1.Environment{}
		if err := r.apiReader().Get(ctx, key, live); err != nil {
			return err
		}
		b := live.DeepCopy()
		apply(live)
		if equality.Semantic.DeepEqual(b.Status, live.Status) {
			return nil
		}
		return r.Client.Status().Patch(ctx, live, client.MergeFromWithOptions(b, client.MergeFromWithOptimisticLock{}))
	})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return live, err
}

func (r *EnvironmentReconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// track hands an in-progress rollout to the tracker, which reports how it ends.
func (r *EnvironmentReconciler) track(key types.NamespacedName, env *deployv1.Environment) {
	tracker := r.routeTracking(key, env)
	if tracker == nil {
		return
	}
	last := env.Status.LastDeploy()
	if last == nil || last.Result != deployv1.ResultInProgress || last.DeploymentID == "" {
		tracker.Untrack(key)
		return
	}
	// The rollout is on the service it was deployed to, which spec.ecs may no longer name.
	target := env.Spec.ECS
	if env.Status.Target != nil {
		target = *env.Status.Target
	}
	tracker.Track(key, target, last.DeploymentID, last.TaskDefinitionARN, last.PreviousTaskDefinitionARN)
}

func (r *EnvironmentReconciler) deploy(ctx context.Context, env *deployv1.Environment, req deployRequest) (*deployResult, error) {
	api, err := r.ECS(ctx, env.Spec.ECS)
	if err != nil {
		return nil, err
	}
	req.target, req.application = env.Spec.ECS, env.Spec.Application
	req.known, req.knownARNs = knownDeployments(&env.Status), knownServiceDeployments(&env.Status)
	return deployAndFollow(ctx, api, req)
}

// deployFailed records a failed deploy. A failure that needs the user stalls the Environment
// without requeueing (and marks the pending deploy as never having reached the service, so
// that withdrawing it costs no ECS call); anything else is retried with exponential backoff.
func (r *EnvironmentReconciler) deployFailed(ctx context.Context, base, env *deployv1.Environment, pending *deployv1.Deploy, err error) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var permanent *deployError
	if errors.As(classify(err, env.Spec.ECS), &permanent) {
		metrics.Deploys.WithLabelValues("stalled").Inc()
		logger.Error(err, "Deploy of Environment failed; waiting for a change", "reason", permanent.reason)
		r.Recorder.Eventf(env, nil, "Warning", EventDeployFailed, "Deploy", "%s", permanent.message)
		_, werr := r.commit(ctx, base, env, func(e *deployv1.Environment) {
			if p := e.Status.PendingDeploy; sameRecord(p, pending) {
				p.Result, p.Reason = deployv1.ResultStalled, permanent.message
			}
			e.Status.ObservedGeneration = e.Generation
			setCondition(e, deployv1.ReadyCondition, metav1.ConditionFalse, permanent.reason, permanent.message)
			setCondition(e, deployv1.StalledCondition, metav1.ConditionTrue, permanent.reason, permanent.message)
			setCondition(e, deployv1.ReconcilingCondition, metav1.ConditionFalse, permanent.reason, permanent.message)
		})
		return ctrl.Result{}, werr
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

func setSettledConditions(env *deployv1.Environment, desired Desired) {
	st := &env.Status
	last := st.LastDeploy()
	st.Rollout = RolloutSummary(last)
	set := func(ready metav1.ConditionStatus, stalled bool, reconciling bool, reason, msg string) {
		setCondition(env, deployv1.ReadyCondition, ready, reason, msg)
		setCondition(env, deployv1.StalledCondition, boolStatus(stalled), reason, msg)
		setCondition(env, deployv1.ReconcilingCondition, boolStatus(reconciling), reason, msg)
	}
	known := targetKnown(env)
	switch p := st.PendingDeploy; {
	case desired.Action == ActionDeploy && (p == nil || p.Result != deployv1.ResultStalled):
		// Recorded on a live Environment that wants another deploy already (a new build or
		// target arrived meanwhile): the next reconcile makes it.
		set(metav1.ConditionUnknown, false, true, deployv1.ReasonDeploying,
			fmt.Sprintf("Deploying %s next (trigger %s)", describe(desired.Image, desired.Build), desired.Trigger))
		return
	case desired.Action == ActionObserve:
		set(metav1.ConditionUnknown, false, true, deployv1.ReasonDeploying,
			fmt.Sprintf("Finding out whether the withdrawn deploy of %s reached the service", describe(p.Image, p.Build)))
		return
	case p != nil && p.Result == deployv1.ResultStalled:
		set(metav1.ConditionFalse, true, false, stalledReason(env), p.Reason)
		return
	case desired.Held:
		set(metav1.ConditionFalse, true, false, desired.Reason, desired.Message)
		return
	case known && last != nil && last.Result == deployv1.ResultInProgress && sameSet(last.Image, last.Images, st.DeployedImage, st.DeployedImages) && last.AwaitingHook != nil:
		ready, reason, msg := hookConditions(env, last)
		set(ready, false, true, reason, msg)
		return
	case known && last != nil && last.Result == deployv1.ResultInProgress && sameSet(last.Image, last.Images, st.DeployedImage, st.DeployedImages):
		set(metav1.ConditionUnknown, false, true, deployv1.ReasonRolloutInProgress, rolloutInProgressMessage(last))
		return
	case known && last != nil && last.RolledBack && st.DeployedImage == "":
		set(metav1.ConditionFalse, false, false, deployv1.ReasonRolledBackToUnknown,
			fmt.Sprintf("ECS deployment %s of %s failed (%s) and ECS rolled the service back to a task definition whose image is not known; the next deploy finds out",
				last.DeploymentID, describe(last.Image, last.Build), last.Reason))
		return
	case known && last != nil && last.Result == deployv1.ResultFailed && sameSet(last.Image, last.Images, st.DeployedImage, st.DeployedImages) && !last.RolledBack:
		set(metav1.ConditionFalse, true, false, deployv1.ReasonRolloutFailed,
			fmt.Sprintf("ECS deployment %s of %s failed: %s", last.DeploymentID, describe(last.Image, last.Build), last.Reason))
		return
	case st.Gate != nil && desired.Action == ActionNone && p == nil:
		// A build waits at a gate: Ready carries the gate's reason and message.
		set(metav1.ConditionFalse, false, false, st.Gate.Reason, st.Gate.Message)
		return
	}
	reason, msg := desired.Reason, desired.Message
	if known && st.DeployedImage != "" {
		reason, msg = deployv1.ReasonUpToDate, "Running "+describe(st.DeployedImage, st.DeployedBuild)
		if last != nil && sameSet(last.Image, last.Images, st.DeployedImage, st.DeployedImages) && last.Result == deployv1.ResultCompleted && deployv1.SameBuild(last.Build, st.DeployedBuild) {
			reason = deployv1.ReasonDeployed
			msg = fmt.Sprintf("ECS deployment %s of %s completed", last.DeploymentID, describe(last.Image, last.Build))
			if m := digestMismatch(last); m != "" {
				msg += "; " + m
			}
		}
		if desired.Reason == deployv1.ReasonNewerBuildRunning {
			reason = desired.Reason
		}
		if desired.Reason != "" {
			msg += "; " + desired.Message
		}
	}
	if reason == "" {
		reason, msg = deployv1.ReasonUpToDate, "Nothing to deploy"
	}
	set(metav1.ConditionTrue, false, false, reason, msg)
}

func boolStatus(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
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
	if env.Spec.Pinned() {
		setCondition(env, deployv1.PinnedCondition, metav1.ConditionTrue, deployv1.ReasonPinned,
			"Pinned to "+env.Spec.PinText()+": new builds are recorded, not deployed")
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

func (o deployOutcome) String() string {
	return [...]string{"Updated", "Found", "Running", "Newer", "Observed"}[o]
}

// verb says what a deploy with this outcome did, for its Event.
func (o deployOutcome) verb() string {
	switch o {
	case outcomeFound:
		return "Found the service updated to"
	case outcomeRunning:
		return "The service already ran"
	default:
		return "Updated the service to"
	}
}
