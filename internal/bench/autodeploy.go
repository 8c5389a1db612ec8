package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// manager is a running autodeploy manager (reconciler, rollout tracker and receiver), wired
// as cmd/manager and internal/devenv wire it. It runs in a child process (RunChild).
type manager struct {
	cancel context.CancelFunc
	done   chan error
	url    string
}

func (m *manager) stop() error {
	m.cancel()
	select {
	case err := <-m.done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("the manager did not stop within 30s")
	}
}

// startManager starts a manager watching ns, with the production defaults compressed by
// Speed: the client-side ECS budget (AWS's limits × 0.97, refill × Speed), the reconciler's
// retry delays (1 s .. 5 min) and the rollout tracker's intervals (5 s .. 2 min) divided by
// Speed, and the Kubernetes client's QPS (controller-runtime's 20, burst 30) multiplied by it.
// Rollouts are followed by the polling tracker, or, with Tracking "events", only by the ECS
// events posted to the receiver's /v1/events with eventKey.
//
// The receiver's per-tenant rate limit (10/s, burst 50) is compressed too, unless unlimited,
// which lifts it for the throughput measurement.
func (c *Config) startManager(ctx context.Context, restCfg *rest.Config, ns, simURL string, key, eventKey []byte, unlimited bool) (*manager, error) {
	kcfg := rest.CopyConfig(restCfg)
	kcfg.QPS, kcfg.Burst = float32(20*c.Speed), int(30*c.Speed)
	mgr, err := ctrl.NewManager(kcfg, ctrl.Options{
		Scheme:                 Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The cache as cmd/manager configures it (what the manager does not read is dropped).
		Cache:  app.CacheOptions(map[string]cache.Config{ns: {}}),
		Logger: logr.Discard(),
	})
	if err != nil {
		return nil, err
	}
	// The manager's budget (cmd/manager's default share of AWS's limits), refill compressed.
	limits := awsecs.ScaleLimits(awsecs.AWSLimits(), awsecs.DefaultBudgetShare)
	for k, b := range limits {
		b.PerSecond *= c.Speed
		limits[k] = b
	}
	clients := awsecs.NewFromConfig(c.awsConfig(), awsecs.Options{
		Limits: limits,
		ECS:    []func(*ecs.Options){func(o *ecs.Options) { o.BaseEndpoint = aws.String(simURL) }},
		STS:    []func(*sts.Options){func(o *sts.Options) { o.BaseEndpoint = aws.String(simURL) }},
	})
	recvOpts := app.ReceiverOptions{Rate: rate.Limit(receiver.DefaultRate * c.Speed), Burst: receiver.DefaultBurst}
	if unlimited {
		recvOpts.Rate = rate.Inf
	}
	if len(eventKey) > 0 {
		recvOpts.EventKeys = func() [][]byte { return [][]byte{eventKey} }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	if err := app.Setup(mctx, mgr, app.Options{
		ReceiverListener: ln,
		Keys:             func() [][]byte { return [][]byte{key} },
		Receiver:         recvOpts,
		ECS: func(_ context.Context, t deployv1.ECSTarget) (controllers.ECSAPI, error) {
			return clients.For(t.Region, t.RoleARN, t.ExternalID), nil
		},
		RolloutPolling:          c.Tracking != TrackEvents,
		RolloutPollInterval:     c.real(5 * time.Second),
		RolloutPollMaxInterval:  c.real(2 * time.Minute),
		MaxConcurrentReconciles: c.Reconcilers,
		RetryBaseDelay:          c.real(time.Second),
		RetryMaxDelay:           c.real(5 * time.Minute),
	}); err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	m := &manager{cancel: cancel, done: make(chan error, 1), url: "http://" + ln.Addr().String()}
	go func() { m.done <- mgr.Start(mctx) }()
	if !mgr.GetCache().WaitForCacheSync(mctx) {
		cancel()
		return nil, errors.Join(errors.New("caches did not sync"), <-m.done)
	}
	return m, nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		if err := sleepUntil(ctx, time.Now().Add(20*time.Millisecond)); err != nil {
			return err
		}
	}
	return nil
}

func recvApp(i int) string { return fmt.Sprintf("recv-%02d", i) }

// createEnvironments creates the fleet's Environments, plus one record-only Environment (auto
// deploy off) per receiver worker, 16 at a time.
func createEnvironments(ctx context.Context, k8s client.Client, ns string, f *fleet, recv int) error {
	objs := make([]*deployv1.Environment, 0, len(f.Envs)+recv)
	for _, e := range f.Envs {
		env := &deployv1.Environment{
			ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: ns},
			Spec: deployv1.EnvironmentSpec{
				Application: e.App, Branch: "main", AutoDeploy: true,
				ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: e.Cluster, Service: e.Service, Container: container, RoleARN: e.RoleARN},
			},
		}
		if e.Pinned {
			env.Spec.PinnedImage = e.initialImage()
		}
		objs = append(objs, env)
	}
	for i := range recv {
		objs = append(objs, &deployv1.Environment{
			ObjectMeta: metav1.ObjectMeta{Name: recvApp(i), Namespace: ns},
			Spec: deployv1.EnvironmentSpec{
				Application: recvApp(i), Branch: "main", AutoDeploy: false,
				ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "recv", Service: recvApp(i), Container: container},
			},
		})
	}
	return parallel(16, len(objs), func(i int) error { return k8s.Create(ctx, objs[i]) })
}

func parallel(workers, n int, fn func(i int) error) error {
	var (
		next atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func runAutodeploy(ctx context.Context, cfg *Config, k8s client.Client, f *fleet, builds []build, res *Result) error {
	rec := &recorder{}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := []byte(hex.EncodeToString(raw))
	_, _ = rand.Read(raw)
	eventKey := []byte(hex.EncodeToString(raw))
	// ECS events reach the receiver as through an EventBridge API destination (its retry
	// backoff compressed).
	events := &ecssim.EventPoster{APIKey: string(eventKey), Header: receiver.APIKeyHeader, Workers: 8,
		Backoff: cfg.real(time.Second), MaxBackoff: cfg.real(time.Minute), MaxAttempts: 185}
	var simOpts []ecssim.Option
	if cfg.Tracking == TrackEvents {
		simOpts = append(simOpts, ecssim.WithEventSink(events.Enqueue))
	}
	sim, simURL, stopSim, err := cfg.newSim(f, rec, simOpts...)
	if err != nil {
		return err
	}
	defer stopSim()
	if cfg.Tracking == TrackEvents {
		ectx, stopEvents := context.WithCancel(ctx)
		defer stopEvents()
		go events.Run(ectx)
	}

	ns := fmt.Sprintf("bench-n%d-%d", len(f.Envs), time.Now().Unix())
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	// The manager's fixed cost: the same manager over the namespace while it is still empty.
	empty, err := startChild(ctx, childSpec{Role: roleAutodeploy, Config: *cfg, KubeConfig: cfg.KubeConfig, Namespace: ns, SimURL: simURL, Key: key})
	if err != nil {
		return err
	}
	_ = sleepUntil(ctx, time.Now().Add(time.Second))
	baseRSS := empty.peakRSSKB()
	if err := empty.stop(); err != nil {
		return err
	}
	total := len(f.Envs) + cfg.RecvWorkers
	cfg.logf("autodeploy N=%d: creating %d Environments in namespace %s", len(f.Envs), total, ns)
	if err := createEnvironments(ctx, k8s, ns, f, cfg.RecvWorkers); err != nil {
		return err
	}

	spec := childSpec{Role: roleAutodeploy, Config: *cfg, N: len(f.Envs), KubeConfig: cfg.KubeConfig, Namespace: ns, SimURL: simURL, Key: key}
	if cfg.Tracking == TrackEvents {
		spec.EventKey = eventKey
	}
	m, err := startChild(ctx, spec)
	if err != nil {
		return err
	}
	defer func() {
		if m != nil {
			_ = m.stop()
		}
	}()
	events.SetURL(m.hello.Receiver + "/v1/events")
	// Warm-up: the new Environments are reconciled (pinned ones check their pin once), then
	// the simulator goes quiet.
	if err := waitFor(ctx, 10*time.Minute, func() bool { return m.reconciles(ctx) >= float64(total) }); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := quiet(ctx, sim, time.Second); err != nil {
		return err
	}
	cfg.logf("  warm-up done (%d ECS calls for the pinned Environments); the hour starts", totalCalls(sim))
	resetCalls(sim)

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	pub := toPublished(builds)
	sr, err := cfg.phases(ctx, pub, m, nil, func(b build) error {
		_ = f.pushImage(sim, b.App, b.Image[strings.LastIndex(b.Image, ":")+1:])
		now := time.Now()
		rep, err := notify.Send(ctx, hc, m.hello.Receiver, key, &manifest.Manifest{
			Application: b.App, BuildID: fmt.Sprintf("%s:%d", b.App, b.Number), BuildNumber: b.Number,
			Image: b.Image, Commit: "0123abc", Branch: "main", FinishedAt: &now,
		}, now)
		if err != nil {
			return err
		}
		if !rep.OK() {
			return fmt.Errorf("receiver answered %d: %s", rep.Status, rep.Body)
		}
		return nil
	}, rec, sim, f)
	if err != nil {
		return err
	}
	sr.EventsDelivered, sr.EventRetries, sr.EventsDropped = events.Delivered(), events.Retried(), events.Dropped()
	sr.BaseRSSKB = baseRSS
	if cfg.AuditLog != "" {
		if sr.API, err = readAudit(cfg.AuditLog, ns, sr.from, sr.to); err != nil {
			return err
		}
	}
	deployed := map[string]bool{}
	for _, e := range f.Envs {
		if !e.Pinned {
			deployed[e.Name] = true
		}
	}
	if sr.Stored, err = storedSizes(ctx, k8s, ns, deployed); err != nil {
		return fmt.Errorf("measuring the stored Environments: %w", err)
	}
	cfg.logf("  API server: %d status writes %v, %d Events %v; Environment stored: median %d bytes (status %d)",
		sr.API.statusTotal(), sr.API.Status, sr.API.eventTotal(), sr.API.Events, sr.Stored.Object, sr.Stored.Status)
	res.Auto = sr

	// Controller start over N up-to-date Environments.
	if err := m.stop(); err != nil {
		return err
	}
	m = nil
	if err := quiet(ctx, sim, time.Second); err != nil {
		return err
	}
	resetCalls(sim)
	start := time.Now()
	spec.Unlimited = true
	if m, err = startChild(ctx, spec); err != nil {
		return err
	}
	events.SetURL(m.hello.Receiver + "/v1/events")
	if err := waitFor(ctx, 10*time.Minute, func() bool { return m.reconciles(ctx) >= float64(total) }); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	res.RestartReady = time.Since(start)
	_ = sleepUntil(ctx, time.Now().Add(2*time.Second))
	res.RestartCalls = totalCalls(sim)
	cfg.logf("  restart: %d reconciles in %s, %d ECS calls", total, res.RestartReady.Round(time.Millisecond), res.RestartCalls)

	// Receiver throughput against raw status patches, same API server, same concurrency.
	res.RecvPerSec, res.RecvErrors, err = cfg.receiverThroughput(ctx, hc, m.hello.Receiver, key)
	if err != nil {
		return err
	}
	res.PatchPerSec, err = cfg.patchThroughput(ctx, cfg.restCfg, ns)
	if err != nil {
		return err
	}
	cfg.logf("  receiver %.0f manifests/s, raw status patches %.0f/s", res.RecvPerSec, res.PatchPerSec)
	return nil
}

// quiet waits until the simulator saw no call for d.
func quiet(ctx context.Context, sim *ecssim.Server, d time.Duration) error {
	last, since := totalCalls(sim), time.Now()
	return waitFor(ctx, 5*time.Minute, func() bool {
		if n := totalCalls(sim); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= d
	})
}

var buildCounter atomic.Int64

// receiverThroughput posts signed manifests, each recorded on one Environment, from RecvWorkers
// senders for RecvDuration and returns the accepted manifests per second.
func (c *Config) receiverThroughput(ctx context.Context, hc *http.Client, url string, key []byte) (float64, int, error) {
	var ok, bad atomic.Int64
	deadline := time.Now().Add(c.RecvDuration)
	start := time.Now()
	err := parallel(c.RecvWorkers, c.RecvWorkers, func(w int) error {
		for time.Now().Before(deadline) {
			n := 1_000_000 + buildCounter.Add(1)
			img := imageRef(recvApp(w), fmt.Sprintf("b%d", n))
			rep, err := notify.Send(ctx, hc, url, key, &manifest.Manifest{
				Application: recvApp(w), BuildID: fmt.Sprintf("%s:%d", recvApp(w), n), BuildNumber: n, Image: img, Branch: "main",
			}, time.Now())
			if err != nil {
				return err
			}
			if rep.OK() {
				ok.Add(1)
			} else {
				bad.Add(1)
			}
		}
		return nil
	})
	return float64(ok.Load()) / time.Since(start).Seconds(), int(bad.Load()), err
}

// patchThroughput merge-patches status.latestBuild of the same Environments directly, from
// RecvWorkers goroutines with no client-side rate limit, for RecvDuration.
func (c *Config) patchThroughput(ctx context.Context, restCfg *rest.Config, ns string) (float64, error) {
	kcfg := rest.CopyConfig(restCfg)
	kcfg.QPS, kcfg.Burst = -1, 0
	cl, err := client.New(kcfg, client.Options{Scheme: Scheme})
	if err != nil {
		return 0, err
	}
	var ok atomic.Int64
	deadline := time.Now().Add(c.RecvDuration)
	start := time.Now()
	err = parallel(c.RecvWorkers, c.RecvWorkers, func(w int) error {
		for time.Now().Before(deadline) {
			n := 1_000_000 + buildCounter.Add(1)
			patch, _ := json.Marshal(map[string]any{"status": map[string]any{"latestBuild": map[string]any{
				"id": fmt.Sprintf("%s:%d", recvApp(w), n), "number": n, "image": imageRef(recvApp(w), fmt.Sprintf("b%d", n)),
				"branch": "main", "receivedAt": time.Now().UTC().Format(time.RFC3339),
			}}})
			env := &deployv1.Environment{ObjectMeta: metav1.ObjectMeta{Name: recvApp(w), Namespace: ns}}
			if err := cl.Status().Patch(ctx, env, client.RawPatch(types.MergePatchType, patch)); err != nil {
				return err
			}
			ok.Add(1)
		}
		return nil
	})
	return float64(ok.Load()) / time.Since(start).Seconds(), err
}
