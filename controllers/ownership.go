package controllers

import (
	"context"
	"fmt"

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

// ServiceKeyIndex is the field index on the ECS service an Environment names (ServiceKey,
// normalized whatever the spelling), used to find the Environments that share a service.
// An Environment whose spec.ecs contradicts itself is not indexed.
const ServiceKeyIndex = "spec.ecs.serviceKey"

// IndexServiceKey registers ServiceKeyIndex; account is the controller's own account (""
// when not known), the account of an Environment whose spec.ecs names none.
func IndexServiceKey(ctx context.Context, indexer client.FieldIndexer, account string) error {
	return indexer.IndexField(ctx, &deployv1.Environment{}, ServiceKeyIndex, func(o client.Object) []string {
		return serviceKeyValues(o.(*deployv1.Environment), account)
	})
}

// ownKeyOf is KeyOf with account, the controller's own, for a target that names none.
func ownKeyOf(t deployv1.ECSTarget, account string) (ServiceKey, error) {
	k, err := KeyOf(t)
	if err == nil && k.Account == "" {
		k.Account = account
	}
	return k, err
}

func serviceKeyValues(env *deployv1.Environment, account string) []string {
	k, err := ownKeyOf(env.Spec.ECS, account)
	if err != nil {
		return nil
	}
	return []string{k.String()}
}

// ownsBefore reports whether a owns a service both name rather than b: the older one, ties
// broken by namespace/name.
func ownsBefore(a, b *deployv1.Environment) bool {
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// serviceOwner returns the Environment that owns env's service when it is not env: of the
// Environments (in any namespace) that name the same service, the oldest deploys to it; every
// other one makes no ECS call.
func (r *EnvironmentReconciler) serviceOwner(ctx context.Context, env *deployv1.Environment, key ServiceKey) (*deployv1.Environment, error) {
	list := &deployv1.EnvironmentList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{ServiceKeyIndex: key.String()}); err != nil {
		return nil, err
	}
	var owner *deployv1.Environment
	for i := range list.Items {
		other := &list.Items[i]
		if (other.Namespace == env.Namespace && other.Name == env.Name) || other.DeletionTimestamp != nil {
			continue
		}
		if k, err := ownKeyOf(other.Spec.ECS, r.Account); err != nil || k != key {
			continue
		}
		if ownsBefore(other, env) && (owner == nil || ownsBefore(other, owner)) {
			owner = other
		}
	}
	return owner, nil
}

// holdOff settles an Environment that may not deploy: its spec.ecs contradicts itself
// (invalid) or an older Environment owns its service. It makes no ECS call: the Environment
// is Stalled until the spec changes or the owner goes away (the watch on Environments sharing
// a service reconciles it then). done is false when env may deploy.
func (r *EnvironmentReconciler) holdOff(ctx context.Context, base, env *deployv1.Environment) (res ctrl.Result, done bool, err error) {
	var reason, msg string
	key, kerr := ownKeyOf(env.Spec.ECS, r.Account)
	if kerr != nil {
		reason, msg = deployv1.ReasonInvalidTarget, "spec.ecs names no single ECS service: "+kerr.Error()
	} else {
		owner, err := r.serviceOwner(ctx, env, key)
		if err != nil {
			return ctrl.Result{}, true, err
		}
		if owner == nil {
			// It may deploy. A hold that ended is not a stalled deploy's reason.
			if c := meta.FindStatusCondition(env.Status.Conditions, deployv1.StalledCondition); c != nil &&
				(c.Reason == deployv1.ReasonServiceConflict || c.Reason == deployv1.ReasonInvalidTarget) {
				meta.RemoveStatusCondition(&env.Status.Conditions, deployv1.StalledCondition)
			}
			return ctrl.Result{}, false, nil
		}
		reason = deployv1.ReasonServiceConflict
		msg = fmt.Sprintf("Environment %s/%s, older, deploys to ECS service %s in cluster %s (%s): this one makes no ECS call while it does; point spec.ecs at another service or delete one of them",
			owner.Namespace, owner.Name, key.Service, key.Cluster, key.Region)
	}
	if r.Tracker != nil {
		r.Tracker.Untrack(types.NamespacedName{Namespace: env.Namespace, Name: env.Name})
	}
	if c := meta.FindStatusCondition(env.Status.Conditions, deployv1.ReadyCondition); c == nil || c.Reason != reason || c.Message != msg {
		// The Event's reason is the condition's: ServiceConflict or InvalidTarget.
		log.FromContext(ctx).Info("Environment may not deploy; no ECS call", "reason", reason, "why", msg)
		r.Recorder.Eventf(env, nil, "Warning", reason, "Deploy", "%s", msg)
	}
	env.Status.ObservedGeneration = env.Generation
	setPinned(env)
	setCondition(env, deployv1.ReadyCondition, metav1.ConditionFalse, reason, msg)
	setCondition(env, deployv1.StalledCondition, metav1.ConditionTrue, reason, msg)
	setCondition(env, deployv1.ReconcilingCondition, metav1.ConditionFalse, reason, msg)
	res, err = r.patchStatus(ctx, base, env)
	return res, true, err
}

// serviceSharers enqueues, on every create, spec change and delete of an Environment, the
// other Environments that name the service it named before or names now: the owner of a
// service may have changed.
func (r *EnvironmentReconciler) serviceSharers() handler.TypedEventHandler[client.Object, reconcile.Request] {
	enqueue := func(ctx context.Context, self client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request], envs ...client.Object) {
		seen := map[string]bool{}
		for _, o := range envs {
			env, ok := o.(*deployv1.Environment)
			if !ok {
				continue
			}
			for _, v := range serviceKeyValues(env, r.Account) {
				if seen[v] {
					continue
				}
				seen[v] = true
				list := &deployv1.EnvironmentList{}
				if err := r.Client.List(ctx, list, client.MatchingFields{ServiceKeyIndex: v}); err != nil {
					log.FromContext(ctx).Error(err, "Listing the Environments of a service failed", "service", v)
					continue
				}
				for i := range list.Items {
					other := &list.Items[i]
					if other.Namespace == self.GetNamespace() && other.Name == self.GetName() {
						continue
					}
					q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: other.Namespace, Name: other.Name}})
				}
			}
		}
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			oldEnv, ok1 := e.ObjectOld.(*deployv1.Environment)
			newEnv, ok2 := e.ObjectNew.(*deployv1.Environment)
			if !ok1 || !ok2 || (oldEnv.Spec.ECS.Equal(newEnv.Spec.ECS) && (oldEnv.DeletionTimestamp == nil) == (newEnv.DeletionTimestamp == nil)) {
				return
			}
			enqueue(ctx, e.ObjectNew, q, e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q, e.Object)
		},
	}
}
