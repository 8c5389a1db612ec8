package shard

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// +kubebuilder:rbac:groups=deploy.autodeploy.dev,resources=environments,verbs=patch

// Labeler writes the shard label on the Environments of its shard's namespaces that carry
// no valid one (new Environments, or those labelled for another shard count). It watches
// only those, and only their metadata, from a cache of its own: an Environment leaves that
// cache as soon as it is labelled, so the cache is empty but for Environments created in the
// last moments. It writes one merge patch of one label per Environment, once in the
// Environment's life.
type Labeler struct {
	// Client writes the label.
	Client client.Writer
	// Shard is the shard whose namespaces this replica labels.
	Shard Assignment
	// Cache holds the options of the labeler's cache (namespaces, informer constructor,
	// transform); its label selector is set by SetupWithManager.
	Cache cache.Options
}

// SetupWithManager adds the labeler's cache and controller to mgr; the controller runs
// while mgr holds the shard's Lease.
func (l *Labeler) SetupWithManager(mgr ctrl.Manager) error {
	if l.Client == nil || !l.Shard.Sharded() {
		return errors.New("shard.Labeler needs a Client and a Shard of several")
	}
	opts := l.Cache
	opts.Scheme, opts.Mapper = mgr.GetScheme(), mgr.GetRESTMapper()
	opts.ByObject = map[client.Object]cache.ByObject{environmentMetadata(): {Label: Unassigned(l.Shard.Count)}}
	c, err := cache.New(mgr.GetConfig(), opts)
	if err != nil {
		return fmt.Errorf("the shard labeler's cache: %w", err)
	}
	if err := mgr.Add(c); err != nil {
		return err
	}
	ctl, err := controller.New("shard-labeler", mgr, controller.Options{Reconciler: l})
	if err != nil {
		return err
	}
	return ctl.Watch(source.Kind(c, environmentMetadata(),
		&handler.TypedEnqueueRequestForObject[*metav1.PartialObjectMetadata]{},
		predicate.NewTypedPredicateFuncs(func(o *metav1.PartialObjectMetadata) bool {
			return l.Shard.Owns(o.GetNamespace())
		})))
}

// Reconcile labels one Environment of the shard's namespaces.
func (l *Labeler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !l.Shard.Owns(req.Namespace) {
		return reconcile.Result{}, nil
	}
	obj := environmentMetadata()
	obj.Namespace, obj.Name = req.Namespace, req.Name
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, Label, l.Shard.String())
	err := l.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch)))
	return reconcile.Result{}, client.IgnoreNotFound(err)
}

func environmentMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(deployv1.GroupVersion.WithKind("Environment"))
	return m
}
