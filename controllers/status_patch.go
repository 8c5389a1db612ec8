package controllers

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// patchLiveStatus lets apply change the Environment key and patches its status with
// optimistic concurrency when apply says it changed. The first attempt starts from the cached
// Environment when cache is set: a write nobody raced costs one request. The live object is read
// after a conflict, and to confirm an answer that changes nothing (the cache may not have caught
// up with the write that makes the observation apply, such as the deploy an ECS event is about).
// It returns the Environment as last read; the error is the Get's or the Patch's.
func patchLiveStatus(ctx context.Context, cache, r client.Reader, w client.StatusClient, key ktypes.NamespacedName, apply func(env *deployv1.Environment) bool) (*deployv1.Environment, error) {
	var env *deployv1.Environment
	first := cache != nil
	err := retry.OnError(recordBackoff, apierrors.IsConflict, func() error {
		if first {
			first = false
			cached := &deployv1.Environment{}
			if err := cache.Get(ctx, key, cached); err == nil {
				base := cached.DeepCopy()
				if apply(cached) {
					env = cached
					return w.Status().Patch(ctx, env, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
				}
			}
		}
		env = &deployv1.Environment{}
		if err := r.Get(ctx, key, env); err != nil {
			return err
		}
		base := env.DeepCopy()
		if !apply(env) {
			return nil
		}
		return w.Status().Patch(ctx, env, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	})
	return env, err
}
