package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/util/uuid"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/autodeploy-dev/autodeploy/internal/kubeapi"
)

// The process, not one manager, serves the health probes and the metrics: a manager that
// lost its leader lease is replaced by a new one in the same process (see runManagers), and
// one waiting for the API server to set up has not started yet. The liveness probe says the
// process is alive, whatever the API server does; the readiness probe says whether it can
// serve: the API server answers its /readyz and the running manager's informers are synced.
type probes struct {
	gate    *kubeapi.Gate
	current atomic.Pointer[ctrl.Manager]
}

// informerSyncWait bounds how long a readiness check waits for the informers to sync.
const informerSyncWait = time.Second

func (p *probes) informersSynced(req *http.Request) error {
	m := p.current.Load()
	if m == nil {
		return errors.New("the manager is not running yet: it waits for the Kubernetes API server")
	}
	ctx, cancel := context.WithTimeout(req.Context(), informerSyncWait)
	defer cancel()
	if !(*m).GetCache().WaitForCacheSync(ctx) {
		return errors.New("informer caches not synced")
	}
	return nil
}

// handler serves /healthz and /readyz (and their per-check paths, such as
// /readyz/kube-apiserver) as controller-runtime's manager does.
func (p *probes) handler() http.Handler {
	live := &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}
	ready := &healthz.Handler{Checks: map[string]healthz.Checker{"kube-apiserver": p.gate.Check, "informers": p.informersSynced}}
	mux := http.NewServeMux()
	mux.Handle("/healthz", http.StripPrefix("/healthz", live))
	mux.Handle("/healthz/", http.StripPrefix("/healthz", live))
	mux.Handle("/readyz", http.StripPrefix("/readyz", ready))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", ready))
	return mux
}

// metricsHandler serves controller-runtime's registry (its metrics and autodeploy's).
func metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(ctrlmetrics.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	return mux
}

// serve listens on addr ("" or "0": not at all) at once, so that a port in use is reported at
// start, and serves h until ctx ends.
func serve(ctx context.Context, addr string, h http.Handler, log logr.Logger) error {
	if addr == "" || addr == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "Serving failed", "address", addr)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	return nil
}

// errLeaderElectionLost is the text of the error controller-runtime's manager returns from
// Start when it could not renew its lease (it has no exported value for it).
const errLeaderElectionLost = "leader election lost"

// runManagers runs a manager made by newManager until ctx ends. A manager that loses its
// leader lease (it could not renew it within the renew deadline, as when the API server is
// away) has stopped its reconcilers, which is what keeps two leaders from deploying at once.
// Instead of ending the process (and having the kubelet restart it, its back-off growing
// through a long outage), runManagers makes a new manager in the process: it waits for the
// API server, sets up, lists afresh and competes for the lease again, with the process's
// one identity, so that once the API server is back it takes its own lease back at once
// unless another replica took it over in the meantime. Any other error ends runManagers.
func runManagers(ctx context.Context, log logr.Logger, p *probes, newManager func(generation int) (ctrl.Manager, error),
	wait func(context.Context) error, run func(context.Context, int, ctrl.Manager) error) error {
	for generation := 1; ; generation++ {
		if err := wait(ctx); err != nil {
			if ctx.Err() != nil {
				log.Info("Stopped while waiting for the Kubernetes API server")
				return nil
			}
			return fmt.Errorf("waiting for the Kubernetes API server: %w", err)
		}
		mgr, err := newManager(generation)
		if err != nil {
			if ctx.Err() != nil {
				log.Info("Stopped while waiting for a shard")
				return nil
			}
			return fmt.Errorf("creating the manager: %w", err)
		}
		p.current.Store(&mgr)
		err = run(ctx, generation, mgr)
		p.current.Store(nil)
		if ctx.Err() != nil {
			return err
		}
		if err == nil || err.Error() != errLeaderElectionLost {
			return err
		}
		log.Info("Lost the leader lease: the reconcilers stopped; starting a new manager in this process",
			"generation", generation+1)
	}
}

// leaseIdentity is the process's leader election identity, as controller-runtime makes one:
// the host name (the pod's name) and a UUID.
func leaseIdentity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", err
	}
	return host + "_" + string(uuid.NewUUID()), nil
}

const inClusterNamespacePath = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// leaseNamespace is namespace, or the pod's own when it is empty.
func leaseNamespace(namespace string) (string, error) {
	if namespace != "" {
		return namespace, nil
	}
	ns, err := os.ReadFile(inClusterNamespacePath)
	if err != nil {
		return "", fmt.Errorf("--leader-election-namespace is needed outside a pod (%w)", err)
	}
	return strings.TrimSpace(string(ns)), nil
}

// newLeaseLock is the Lease lock controller-runtime would make, with the given identity: the
// process keeps one identity across its managers.
func newLeaseLock(cfg *rest.Config, namespace, name, identity string, renewDeadline time.Duration) (resourcelock.Interface, error) {
	namespace, err := leaseNamespace(namespace)
	if err != nil {
		return nil, err
	}
	cfg = rest.AddUserAgent(rest.CopyConfig(cfg), "leader-election")
	// As controller-runtime: one hung request must not cost the lease.
	cfg.Timeout = max(renewDeadline/2, time.Second)
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	coord, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return resourcelock.New(resourcelock.LeasesResourceLock, namespace, name, core, coord, resourcelock.ResourceLockConfig{Identity: identity})
}

// waitAddressFree returns once addr can be listened on again, or after listenRetryFor: the
// receiver of a manager that just stopped closes its listener as it shuts down, which may be
// after the manager's Start has returned.
func waitAddressFree(ctx context.Context, addr string) error {
	deadline := time.Now().Add(listenRetryFor)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln.Close()
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const listenRetryFor = 15 * time.Second
