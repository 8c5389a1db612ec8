package controllers

import (
	"context"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// UpstreamIndex indexes Environments by the name of their spec.promotion upstream.
const UpstreamIndex = "spec.promotion.upstream"

// EventApprovalIgnored: the approve annotation names another build than the one waiting.
const EventApprovalIgnored = "ApprovalIgnored"

// IndexUpstream registers UpstreamIndex.
func IndexUpstream(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &deployv1.Environment{}, UpstreamIndex, func(o client.Object) []string {
		env, ok := o.(*deployv1.Environment)
		if !ok || env.Spec.Promotion == nil {
			return nil
		}
		return []string{env.Spec.Promotion.Upstream}
	})
}

// gateAnnotationsChanged reports whether an annotation a gate reads changed.
func gateAnnotationsChanged(a, b *deployv1.Environment) bool {
	for _, k := range []string{deployv1.ApproveAnnotation, deployv1.ApprovedByAnnotation, deployv1.FreezeAnnotation} {
		av, aok := a.Annotations[k]
		bv, bok := b.Annotations[k]
		if av != bv || aok != bok {
			return true
		}
	}
	return false
}

// upstreamChanged reports whether a change of an Environment can change what it promotes.
func upstreamChanged(a, b *deployv1.Environment) bool {
	return a.Spec.Application != b.Spec.Application || a.Spec.Branch != b.Spec.Branch ||
		!equality.Semantic.DeepEqual(a.Status.History, b.Status.History) ||
		!equality.Semantic.DeepEqual(a.Status.DeployedBuild, b.Status.DeployedBuild) ||
		!equality.Semantic.DeepEqual(a.Status.LatestBuild, b.Status.LatestBuild)
}

// downstreams enqueues the Environments promoted from an Environment when it is created or
// deleted, or its rollouts, builds or application change: the watch that ends a wait for an
// upstream, with no polling.
func (r *EnvironmentReconciler) downstreams() handler.TypedEventHandler[client.Object, reconcile.Request] {
	enqueue := func(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		list := &deployv1.EnvironmentList{}
		if err := r.Client.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{UpstreamIndex: o.GetName()}); err != nil {
			log.FromContext(ctx).Error(err, "Listing the Environments promoted from an Environment failed", "upstream", o.GetName())
			return
		}
		for i := range list.Items {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}})
		}
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			a, ok1 := e.ObjectOld.(*deployv1.Environment)
			b, ok2 := e.ObjectNew.(*deployv1.Environment)
			if ok1 && ok2 && upstreamChanged(a, b) {
				enqueue(ctx, b, q)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q)
		},
	}
}

// applyGates answers env's gates (reading its upstream from the cache and the clock) and
// records the answer in env's status, for Decide; wake is moved to when the answer next
// changes by the clock. Gate settings that cannot be applied stall env with no ECS call (stop
// is then true, with the reconcile's result).
func (r *EnvironmentReconciler) applyGates(ctx context.Context, base, env *deployv1.Environment, wake *time.Time) (stop bool, res ctrl.Result, err error) {
	var upstream *deployv1.Environment
	if p := env.Spec.Promotion; p != nil && p.Upstream != env.Name {
		up := &deployv1.Environment{}
		switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: env.Namespace, Name: p.Upstream}, up); {
		case err == nil:
			upstream = up
		case !apierrors.IsNotFound(err):
			return true, ctrl.Result{}, err
		}
	}
	gr := EvaluateGates(env, upstream, r.Now())
	if gr.Invalid != nil {
		res, err := r.stallGate(ctx, base, env, gr.Invalid)
		return true, res, err
	}
	prev := env.Status.Gate
	env.Status.Gate, env.Status.PromotedBuild = gr.Gate, gr.Promoted
	*wake = earliest(*wake, gr.Wake)
	g := gr.Gate
	if g != nil && (prev == nil || prev.Reason != g.Reason || !deployv1.SameBuild(prev.Build, g.Build)) {
		log.FromContext(ctx).Info("A build of Environment waits at a gate", "reason", g.Reason, "why", g.Message)
		r.Recorder.Eventf(env, nil, "Normal", g.Reason, "Gate", "%s", g.Message)
	}
	r.judgeApproval(env, g)
	return false, ctrl.Result{}, nil
}

// judgeApproval warns, once per value, about an approve annotation that names another build
// than the one awaiting approval (a value left from an approval already deployed is quiet).
func (r *EnvironmentReconciler) judgeApproval(env *deployv1.Environment, g *deployv1.Gate) {
	key := types.NamespacedName{Namespace: env.Namespace, Name: env.Name}
	v := env.Annotations[deployv1.ApproveAnnotation]
	if g == nil || g.Reason != deployv1.ReasonAwaitingApproval || g.Build == nil || v == "" || v == strconv.FormatInt(g.Build.Number, 10) {
		return
	}
	for _, d := range env.Status.History {
		if d.Approval != nil && strconv.FormatInt(d.Approval.Build, 10) == v {
			return
		}
	}
	token := v + "/" + g.Build.ID
	if old, ok := r.approvalWarned.Load(key); ok && old.(string) == token {
		return
	}
	r.approvalWarned.Store(key, token)
	r.Recorder.Eventf(env, nil, "Warning", EventApprovalIgnored, "Approve",
		"Annotation %s=%s approves no waiting build: build %d awaits approval; nothing was deployed (approve it with autodeployctl approve %s -n %s, or %s=%d)",
		deployv1.ApproveAnnotation, v, g.Build.Number, env.Name, env.Namespace, deployv1.ApproveAnnotation, g.Build.Number)
}

// approvalSource returns the Environment to learn an approval's author and time from: env
// when it names who approved or carries managedFields, else the live Environment (the cache
// may drop managedFields), one GET per approved deploy.
func (r *EnvironmentReconciler) approvalSource(ctx context.Context, key types.NamespacedName, env *deployv1.Environment) *deployv1.Environment {
	if env.Annotations[deployv1.ApprovedByAnnotation] != "" || len(env.ManagedFields) > 0 {
		return env
	}
	live := &deployv1.Environment{}
	if err := r.apiReader().Get(ctx, key, live); err != nil || live.Annotations[deployv1.ApproveAnnotation] != env.Annotations[deployv1.ApproveAnnotation] {
		return env
	}
	return live
}

// stallGate settles an Environment whose gate settings cannot be applied: Stalled, with the
// reason and what to fix, and no ECS call until the spec (or annotation) changes.
func (r *EnvironmentReconciler) stallGate(ctx context.Context, base, env *deployv1.Environment, ge *GateError) (ctrl.Result, error) {
	if c := meta.FindStatusCondition(env.Status.Conditions, deployv1.ReadyCondition); c == nil || c.Reason != ge.Reason || c.Message != ge.Message {
		log.FromContext(ctx).Info("Environment's gates cannot be applied; no ECS call", "reason", ge.Reason, "why", ge.Message)
		r.Recorder.Eventf(env, nil, "Warning", ge.Reason, "Gate", "%s", ge.Message)
	}
	env.Status.Gate = nil
	env.Status.ObservedGeneration = env.Generation
	setPinned(env)
	setCondition(env, deployv1.ReadyCondition, metav1.ConditionFalse, ge.Reason, ge.Message)
	setCondition(env, deployv1.StalledCondition, metav1.ConditionTrue, ge.Reason, ge.Message)
	setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionFalse, ge.Reason, ge.Message)
	return r.patchStatus(ctx, base, env)
}

// wakeAt has a successful reconcile come back at wake, unless it comes back sooner anyway.
func (r *EnvironmentReconciler) wakeAt(res ctrl.Result, err error, wake time.Time) (ctrl.Result, error) {
	if err != nil || wake.IsZero() {
		return res, err
	}
	d := max(wake.Sub(r.Now()), 100*time.Millisecond)
	if res.RequeueAfter == 0 || d < res.RequeueAfter {
		res.RequeueAfter = d
	}
	return res, nil
}
