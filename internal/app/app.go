// Package app wires the reconciler and the receiver into a controller-runtime manager. The
// manager binary and the integration tests use the same wiring.
package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// Options configure Setup.
type Options struct {
	// ReceiverAddr is where the receiver listens, unless ReceiverListener is set.
	ReceiverAddr     string
	ReceiverListener net.Listener
	// Keys returns the manifest signing keys.
	Keys func() [][]byte
	// ECS returns the ECS client for a Region.
	ECS controllers.ECSClientFunc
	// MaxConcurrentReconciles, RetryBaseDelay and RetryMaxDelay tune the reconciler.
	MaxConcurrentReconciles       int
	RetryBaseDelay, RetryMaxDelay time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Setup adds the Environment reconciler, the receiver and health checks to mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if opts.Keys == nil || opts.ECS == nil {
		return errors.New("app.Setup needs Keys and ECS")
	}
	if err := receiver.IndexApplication(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	if err := (&controllers.EnvironmentReconciler{
		Client:                  mgr.GetClient(),
		Recorder:                mgr.GetEventRecorder("autodeploy"),
		ECS:                     opts.ECS,
		Now:                     opts.Now,
		MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
		RetryBaseDelay:          opts.RetryBaseDelay,
		RetryMaxDelay:           opts.RetryMaxDelay,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	log := ctrl.Log.WithName("receiver")
	handler := &receiver.Handler{
		Cache:    mgr.GetCache(),
		Live:     mgr.GetAPIReader(),
		Writer:   mgr.GetClient(),
		Keys:     opts.Keys,
		Recorder: mgr.GetEventRecorder("autodeploy-receiver"),
		Log:      log,
		Now:      opts.Now,
	}
	if err := mgr.Add(&receiver.Server{
		Addr:     opts.ReceiverAddr,
		Listener: opts.ReceiverListener,
		Handler:  receiver.NewMux(handler),
		Log:      log,
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches not synced")
		}
		return nil
	})
}
