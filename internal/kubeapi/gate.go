// Package kubeapi follows the Kubernetes API server through its outages on the manager's
// behalf: it says whether the API server can serve (the manager's readiness), and it has the
// manager's informers wait for the API server's own readiness during an outage instead of
// client-go's reflector backoff.
//
// A reflector whose list or watch fails with "connection refused" retries after a backoff
// that doubles from 0.8 s to a cap of [30 s, 60 s) and is reset only after 2 minutes without
// a failure. An outage of more than a few seconds therefore leaves every informer up to a
// minute behind the API server's return, and every change made in that minute (a build the
// receiver recorded) waits for it. client-go does not let the informers of a
// SharedIndexInformer choose that backoff (ReflectorOptions.Backoff is not reachable from an
// informer); controller-runtime lets a cache choose how its informers are made
// (cache.Options.NewInformer). Gate.NewInformer makes them with a list-watch that, when a
// list or watch fails because the API server is away, waits until the API server answers its
// /readyz again (one shared look every PollInterval for the whole process, however many
// informers wait) and then tries again at once, so that the reflector never sees the outage
// and its backoff never grows. Errors of an API server that is ready (a 429 of API priority
// and fairness, a 410 for an expired resource version) reach the reflector unchanged and
// keep its backoff and relist semantics.
package kubeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// PollInterval is how often a waiting Gate asks the API server's /readyz (with up to 20 %
// jitter, so that the replicas of a Deployment spread out when the API server returns).
const PollInterval = 500 * time.Millisecond

// probeTimeout bounds one look at /readyz: an API server that does not answer within it is
// not ready. It is below the readiness probe's timeoutSeconds in config/manager.
const probeTimeout = 2 * time.Second

// Gate knows whether the API server of one rest.Config is ready.
type Gate struct {
	url    string
	client *http.Client
	log    logr.Logger

	mu sync.Mutex
	// back is closed when a look after an outage finds the API server ready again; nil
	// while nothing waits.
	back chan struct{}
	// since is when the current outage was seen first; zero when the API server is ready.
	since time.Time
}

// New returns a Gate for the API server cfg points at, reached with cfg's credentials.
func New(cfg *rest.Config, log logr.Logger) (*Gate, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = probeTimeout
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("the Kubernetes API server's client: %w", err)
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("the Kubernetes API server's address: %w", err)
	}
	base.Path = "/readyz"
	return &Gate{url: base.String(), client: client, log: log}, nil
}

// probe asks the API server's /readyz once.
func (g *Gate) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url, nil)
	if err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %s", g.url, resp.StatusCode, body)
	}
	return nil
}

// Check is a readiness check (a controller-runtime healthz.Checker): it fails while the API
// server does not answer its /readyz, as the manager can then neither record a build nor
// deploy one.
func (g *Gate) Check(req *http.Request) error {
	if err := g.probe(req.Context()); err != nil {
		if req.Context().Err() == nil {
			g.down(err)
		}
		return fmt.Errorf("the Kubernetes API server is not ready: %w", err)
	}
	g.mu.Lock()
	if g.back == nil {
		g.since = time.Time{}
	}
	g.mu.Unlock()
	return nil
}

// Down reports since when the API server has been seen away; zero when it was not.
func (g *Gate) Down() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.since
}

func (g *Gate) down(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.since.IsZero() {
		g.since = time.Now()
		g.log.Info("The Kubernetes API server is away; list and watch wait for its /readyz", "error", err.Error())
	}
}

// Wait returns once the API server answers its /readyz after the call, or ctx's error.
func (g *Gate) Wait(ctx context.Context) error {
	g.mu.Lock()
	if g.back == nil {
		g.back = make(chan struct{})
		go g.poll(g.back)
	}
	back := g.back
	g.mu.Unlock()
	select {
	case <-back:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// poll looks at /readyz every PollInterval until it answers, then closes back.
func (g *Gate) poll(back chan struct{}) {
	for {
		time.Sleep(PollInterval + rand.N(PollInterval/5))
		err := g.probe(context.Background())
		if err != nil {
			g.down(err)
			continue
		}
		g.mu.Lock()
		if !g.since.IsZero() {
			g.log.Info("The Kubernetes API server is back; list and watch resume", "away", time.Since(g.since).Round(time.Millisecond).String())
		}
		g.since, g.back = time.Time{}, nil
		g.mu.Unlock()
		close(back)
		return
	}
}

// away tells whether err, from a list or watch, means the API server cannot serve now: a
// network error or a 5xx or 429 answer, confirmed by a look at its /readyz (a 429 from a ready
// API server is throttling, for the reflector's backoff). Answers about the request itself
// (410 Expired, 403, 404, ...) are not.
func (g *Gate) away(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := status.Status().Code
		if code < 500 && code != http.StatusTooManyRequests {
			return false
		}
	}
	perr := g.probe(ctx)
	if perr == nil || ctx.Err() != nil {
		return false
	}
	g.down(perr)
	return true
}

// NewInformer is a cache.Options.NewInformer: a SharedIndexInformer whose list and watch wait
// out an outage of the API server (see the package comment).
func (g *Gate) NewInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	return toolscache.NewSharedIndexInformer(&gatedListWatch{gate: g, lw: toolscache.ToListerWatcherWithContext(lw)}, obj, resync, indexers)
}

// gatedListWatch retries a list or watch that failed because the API server was away, once
// it is ready again, for as long as its context lasts.
type gatedListWatch struct {
	gate *Gate
	lw   toolscache.ListerWatcherWithContext
}

func (l *gatedListWatch) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	for {
		obj, err := l.lw.ListWithContext(ctx, opts)
		if !l.gate.away(ctx, err) {
			return obj, err
		}
		if l.gate.Wait(ctx) != nil {
			return obj, err
		}
	}
}

func (l *gatedListWatch) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	for {
		w, err := l.lw.WatchWithContext(ctx, opts)
		if !l.gate.away(ctx, err) {
			return w, err
		}
		if l.gate.Wait(ctx) != nil {
			return w, err
		}
	}
}

// List and Watch serve the callers that pass no context.
func (l *gatedListWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), opts)
}

func (l *gatedListWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), opts)
}
