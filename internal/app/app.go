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
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
	"github.com/autodeploy-dev/autodeploy/internal/shard"
)

// Options configure Setup.
type Options struct {
	// ReceiverAddr is where the receiver listens, unless ReceiverListener is set.
	ReceiverAddr     string
	ReceiverListener net.Listener
	// Keys returns the cluster-wide manifest signing keys (nil: that route answers 401).
	Keys func() [][]byte
	// Receiver configures the receiver's other keys, routes, limits and TLS.
	Receiver ReceiverOptions
	// ECS returns the ECS client for a target.
	ECS controllers.ECSClientFunc
	// RolloutPolling turns on the fallback tracker that follows rollouts with DescribeServices;
	// without it, rollouts end through ECS "Deployment State Change" events.
	RolloutPolling bool
	// RolloutPollInterval and RolloutPollMaxInterval bound the tracker's intervals.
	RolloutPollInterval, RolloutPollMaxInterval time.Duration
	// MaxConcurrentReconciles, RetryBaseDelay and RetryMaxDelay tune the reconciler.
	MaxConcurrentReconciles       int
	RetryBaseDelay, RetryMaxDelay time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Account is the controller's own AWS account ("" when not known): Environments that
	// name a service by ARN and by name are then seen to share it.
	Account string
	// Notifications tune the delivery of Notification outcomes.
	Notifications NotificationOptions
	// Shard is the shard this manager holds (the zero value: no sharding). Its cache must
	// hold only that shard's Environments (ShardCacheOptions). The receiver then finds a
	// build's Environments with the API server's field selector, as they may be in any
	// shard, and the manager labels its namespaces' new Environments.
	Shard shard.Assignment
	// BaseCache holds the cache options the manager's were made from before sharding
	// (namespaces, informer constructor, transform), for the shard labeler's cache.
	BaseCache cache.Options
}

// NotificationOptions tune the notification controller.
type NotificationOptions struct {
	// Timeout bounds one request to an endpoint; 10s when zero.
	Timeout time.Duration
	// RetryBaseDelay and RetryMaxDelay bound the backoff after a failed delivery; 2s and 10m
	// when zero.
	RetryBaseDelay, RetryMaxDelay time.Duration
}

// Setup adds the Environment reconciler, the receiver and health checks to mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if opts.ECS == nil {
		return errors.New("app.Setup needs ECS")
	}
	if err := receiver.IndexApplication(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	rollouts := &controllers.RolloutRecorder{
		Cache:    mgr.GetCache(),
		Reader:   mgr.GetAPIReader(),
		Writer:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("autodeploy"),
	}
	// The polling tracker follows every rolling deployment with polling on; with it off, only
	// those of services for which ECS reports no rollout state (and sends no events).
	polling := &controllers.PollingTracker{
		ECS:     opts.ECS,
		Sink:    rollouts,
		Log:     ctrl.Log.WithName("rollout-tracker"),
		Initial: opts.RolloutPollInterval,
		Max:     opts.RolloutPollMaxInterval,
	}
	if err := mgr.Add(polling); err != nil {
		return err
	}
	var tracker, steadyState controllers.RolloutTracker = polling, nil
	if !opts.RolloutPolling {
		tracker, steadyState = nil, polling
	}
	// Blue/green, linear and canary deployments send no completion events: they are followed
	// with DescribeServiceDeployments in both modes.
	hookRecorder := &controllers.HookRecorder{
		Cache: mgr.GetCache(), Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(), Recorder: mgr.GetEventRecorder("autodeploy"),
	}
	serviceDeployments := &controllers.ServiceDeploymentTracker{
		ECS:     opts.ECS,
		Sink:    rollouts,
		Hooks:   hookRecorder,
		Log:     ctrl.Log.WithName("service-deployment-tracker"),
		Initial: opts.RolloutPollInterval,
		Max:     opts.RolloutPollMaxInterval,
	}
	if err := mgr.Add(serviceDeployments); err != nil {
		return err
	}
	if err := (&controllers.EnvironmentReconciler{
		Tracker:                 tracker,
		SteadyState:             steadyState,
		ServiceDeployments:      serviceDeployments,
		Rollouts:                rollouts,
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("autodeploy"),
		ECS:                     opts.ECS,
		Now:                     opts.Now,
		MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
		RetryBaseDelay:          opts.RetryBaseDelay,
		RetryMaxDelay:           opts.RetryMaxDelay,
		Account:                 opts.Account,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := setupNotifications(mgr, opts); err != nil {
		return err
	}
	metrics.Shards.Set(float64(max(opts.Shard.Count, 1)))
	if opts.Shard.Sharded() {
		if err := (&shard.Labeler{Client: mgr.GetClient(), Shard: opts.Shard, Cache: opts.BaseCache}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	// ECS "Deployment State Change" events end rollouts without polling.
	if err := controllers.IndexDeploymentID(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	if err := controllers.IndexService(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	deployments := &controllers.DeploymentEvents{Cache: mgr.GetCache(), Live: mgr.GetAPIReader(), Rollouts: rollouts}
	opts.Receiver.EventRoutes = append(opts.Receiver.EventRoutes, deployments.Route())
	// ECS "Hook State Change" events show rollouts waiting at pause hooks.
	hooks := &controllers.HookEvents{Cache: mgr.GetCache(), Hooks: hookRecorder}
	opts.Receiver.EventRoutes = append(opts.Receiver.EventRoutes, hooks.Route())
	if err := addReceiver(mgr, opts); err != nil {
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
