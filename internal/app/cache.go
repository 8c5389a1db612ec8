package app

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/shard"
)

// lastAppliedAnnotation is where `kubectl apply` keeps a copy of the object it applied.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// CacheOptions are the manager's cache options for the namespaces it watches (all when nil).
// The cache keeps of each object only what the code reads: managedFields and kubectl's
// last-applied copy of the spec are dropped as objects enter it (often more than half of a
// kubectl-applied Environment's size). Every write is a patch computed against a cached
// object, so what is dropped is never written back or removed.
func CacheOptions(namespaces map[string]cache.Config) cache.Options {
	return cache.Options{DefaultNamespaces: namespaces, DefaultTransform: TrimForCache}
}

// TrimForCache removes from a cached object what the manager never reads.
func TrimForCache(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil {
		// Tombstones of deleted objects pass unchanged.
		return in, nil
	}
	obj.SetManagedFields(nil)
	if a := obj.GetAnnotations(); a != nil {
		if _, ok := a[lastAppliedAnnotation]; ok {
			delete(a, lastAppliedAnnotation)
			obj.SetAnnotations(a)
		}
	}
	return in, nil
}

// ShardCacheOptions are base restricted to the Environments of shard a (those carrying its
// shard.Label): the manager holding a caches about 1/a.Count of the fleet. Other kinds are
// cached as base says.
func ShardCacheOptions(base cache.Options, a shard.Assignment) cache.Options {
	o := base
	o.ByObject = map[client.Object]cache.ByObject{}
	for k, v := range base.ByObject {
		o.ByObject[k] = v
	}
	o.ByObject[&deployv1.Environment{}] = cache.ByObject{Label: a.Selector()}
	return o
}
