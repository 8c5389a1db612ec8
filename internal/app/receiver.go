package app

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"golang.org/x/time/rate"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// ReceiverOptions configure the receiver beyond the cluster-wide manifest keys.
type ReceiverOptions struct {
	// EventKeys returns the cluster-wide EventBridge API keys (nil: /v1/events answers 401).
	EventKeys func() [][]byte
	// ImageVariable is the CodeBuild exported variable naming the image (IMAGE_URI if empty).
	ImageVariable string
	// TenantKeyTTL is how long a namespace's keys are cached: receiver.DefaultTenantKeyTTL
	// when zero, not at all when negative.
	TenantKeyTTL time.Duration
	// Rate and Burst limit each tenant's authenticated requests: receiver.DefaultRate and
	// receiver.DefaultBurst when zero; rate.Inf for no limit.
	Rate  rate.Limit
	Burst int
	// ReadHeaderTimeout is receiver.DefaultReadHeaderTimeout when zero.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is receiver.DefaultReadTimeout when zero.
	ReadTimeout time.Duration
	// TLSCertFile and TLSKeyFile serve HTTPS (reloaded when they change); EnableHTTP2 allows
	// HTTP/2.
	TLSCertFile, TLSKeyFile string
	EnableHTTP2             bool
	// EventRoutes add EventBridge event handlers (such as ECS "Deployment State Change").
	EventRoutes []receiver.EventRoute
}

// Uncached key lookups (a namespace's Secret) the receiver makes per second, server-wide, so
// that requests naming random namespaces cannot load the API server.
const (
	keyLookupRate  = 20
	keyLookupBurst = 100
)

func addReceiver(mgr ctrl.Manager, opts Options) error {
	ro := opts.Receiver
	log := ctrl.Log.WithName("receiver")
	r, burst := ro.Rate, ro.Burst
	if r == 0 {
		r = receiver.DefaultRate
	}
	if burst == 0 {
		burst = receiver.DefaultBurst
	}
	// A sharded manager caches one shard only; a build's Environments may be in any, so it
	// lists them from the API server by spec.application, a selectable field of the CRD.
	var envs client.Reader = mgr.GetCache()
	if opts.Shard.Sharded() {
		envs = watchedOnly{Reader: mgr.GetAPIReader(), namespaces: opts.BaseCache.DefaultNamespaces}
	}
	handler := &receiver.Handler{
		Cache:     envs,
		Live:      mgr.GetAPIReader(),
		Writer:    mgr.GetClient(),
		Keys:      opts.Keys,
		EventKeys: ro.EventKeys,
		Tenants: &receiver.SecretKeys{
			Reader:  mgr.GetAPIReader(),
			TTL:     ro.TenantKeyTTL,
			Lookups: rate.NewLimiter(keyLookupRate, keyLookupBurst),
			Log:     log,
			Now:     opts.Now,
		},
		Limiter:       &receiver.TenantLimiter{Rate: r, Burst: burst},
		ImageVariable: ro.ImageVariable,
		EventRoutes:   ro.EventRoutes,
		Recorder:      mgr.GetEventRecorder("autodeploy-receiver"),
		Log:           log,
		Now:           opts.Now,
	}
	return mgr.Add(&receiver.Server{
		Addr:              opts.ReceiverAddr,
		Listener:          opts.ReceiverListener,
		Handler:           receiver.NewMux(handler),
		Log:               log,
		ReadHeaderTimeout: ro.ReadHeaderTimeout,
		ReadTimeout:       ro.ReadTimeout,
		TLSCertFile:       ro.TLSCertFile,
		TLSKeyFile:        ro.TLSKeyFile,
		EnableHTTP2:       ro.EnableHTTP2,
	})
}

// watchedOnly lists from Reader within the watched namespaces only (all when namespaces is
// empty), as the manager's cache would: a list across namespaces becomes one list per
// watched namespace, and a list in an unwatched namespace finds nothing.
type watchedOnly struct {
	client.Reader
	namespaces map[string]cache.Config
}

func (w watchedOnly) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if len(w.namespaces) == 0 {
		return w.Reader.List(ctx, list, opts...)
	}
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	envs, ok := list.(*deployv1.EnvironmentList)
	if !ok {
		return fmt.Errorf("watchedOnly lists Environments only, not %T", list)
	}
	var namespaces []string
	if lo.Namespace != "" {
		if _, watched := w.namespaces[lo.Namespace]; watched {
			namespaces = []string{lo.Namespace}
		}
	} else {
		for ns := range w.namespaces {
			namespaces = append(namespaces, ns)
		}
		sort.Strings(namespaces)
	}
	envs.Items = nil
	for _, ns := range namespaces {
		part := &deployv1.EnvironmentList{}
		if err := w.Reader.List(ctx, part, append(slices.Clip(opts), client.InNamespace(ns))...); err != nil {
			return err
		}
		envs.Items = append(envs.Items, part.Items...)
	}
	return nil
}
