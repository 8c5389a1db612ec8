package controllers

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// patchLiveStatus reads the live Environment key, lets apply change it, and patches its status
// with optimistic concurrency when apply says it changed, reading again after a conflict. It
// returns the Environment as last read and changed; the error is the Get's or the Patch's.
func patchLiveStatus(ctx context.Context, r client.Reader, w client.StatusClient, key ktypes.NamespacedName, apply func(env *deployv1.Environment) bool) (*deployv1.Environment, error) {
	var env *deployv1.Environment
	err := retry.OnError(recordBackoff, apierrors.IsConflict, func() error {
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
