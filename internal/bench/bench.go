// Package bench compares autodeploy with the polling cron it replaces, on the same fleet and
// the same stream of builds, against one local API server (envtest) and the ECS simulator
// enforcing AWS's API throttles. Time is compressed: one simulated hour runs in 60/Speed
// minutes, and every rate (the throttles' refills, the workload, the pollers' intervals, the
// SDK's retry backoff, the controller's retry and rollout-poll intervals, AWS's latency) is
// scaled by the same factor, so the relative load is that of the real hour.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// Scheme holds the Kubernetes types the benchmark uses.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(deployv1.AddToScheme(Scheme))
}

// Rollout tracking modes of the manager (Config.Tracking).
const (
	// TrackEvents: rollouts end through ECS "Deployment State Change" events, delivered to
	// the receiver as an EventBridge API destination would (--rollout-polling=false).
	TrackEvents = "events"
	// TrackPolling: the fallback tracker's batched DescribeServices (--rollout-polling=true).
	TrackPolling = "polling"
)

// RunSpec is one size of a benchmark run, with the time compression and the number of AWS
// accounts it runs at.
type RunSpec struct {
	N        int     // the number of services/Environments
	Speed    float64 // time compression: simulated seconds per real second
	Accounts int     // AWS accounts the fleet is spread over
}

// Config is one benchmark run.
type Config struct {
	Runs []RunSpec `json:"-"`
	// Speed and Accounts are those of the size being run.
	Speed    float64
	Accounts int
	Seed     uint64
	Tracking string // TrackEvents or TrackPolling

	EnvsPerApp    int           // Environments per application
	Clusters      int           // clusters the services are spread over
	PinnedShare   float64       // share of Environments pinned to an older image
	BuildInterval time.Duration // simulated; each application gets one build per interval
	Hour          time.Duration // simulated length of the workload
	Drain         time.Duration // simulated; longest wait for the last deploys after the hour
	Idle          time.Duration // simulated quiet period measured for idle calls
	Settle        time.Duration // simulated; between the drain and the idle window
	PollInterval  time.Duration // simulated; the cron's schedule
	PollWorkers   int           // the cron's parallelism
	AWSLatency    time.Duration // simulated latency of every AWS call
	RolloutTime   time.Duration // simulated; how long an ECS deployment stays IN_PROGRESS
	Reconcilers   int           // the manager's --max-concurrent-reconciles
	RecvDuration  time.Duration // real; length of each throughput measurement
	RecvWorkers   int
	// AuditLog is the API server's audit log (written with AuditPolicy), from which the
	// manager's writes are counted; "" when the API server runs without one.
	AuditLog string

	Log io.Writer `json:"-"` // progress
	// KubeConfig reaches the API server (for the manager's process); restCfg is the same for
	// the benchmark process.
	KubeConfig []byte       `json:"-"`
	restCfg    *rest.Config `json:"-"`
}

// sim converts a simulated duration to real time.
func (c *Config) real(d time.Duration) time.Duration { return time.Duration(float64(d) / c.Speed) }

// Result is the outcome for one N.
type Result struct {
	N, Apps, Pinned, Builds int
	Speed                   float64
	Accounts                int
	Auto, Poll              SystemResult
	// Controller start over N up-to-date Environments.
	RestartCalls       int
	RestartReady       time.Duration // real
	PollFirstTickCalls int
	PollFirstTick      time.Duration // simulated
	// Receiver against raw status patches (real time, same API server).
	RecvPerSec, PatchPerSec float64
	RecvErrors              int
}

// SystemResult is what one system did over the workload.
type SystemResult struct {
	Calls, Throttled int // during the hour and the drain
	IdleCalls        int // during the idle window
	IdlePerHour      float64
	ByOp             map[string]int
	// ByOpAll counts the calls by operation over the whole window, idle window included (as
	// Outcome.Updates does): the per-deploy figures divide one by the other.
	ByOpAll map[string]int
	Outcome outcome
	Drain   time.Duration // simulated time after the hour until the last deploy landed
	// CPU over the hour, drain, settle and idle window: the system's own process (the
	// manager or the cron), the benchmark process (simulator and build sender) and the API
	// server with etcd.
	CPU, BenchCPU, ChildCPU time.Duration
	PeakHeap                uint64 // the system process's peak Go heap (objects)
	RSSKB                   int64  // the system process's peak RSS (VmHWM)
	// BaseRSSKB is the peak RSS of the same manager over an empty namespace (autodeploy
	// only): its fixed cost, which RSS per 1,000 Environments is counted above.
	BaseRSSKB     int64
	SkippedChecks int // poller: Environments skipped after an error
	// autodeploy with TrackEvents: ECS events delivered to the receiver, redeliveries, and
	// events given up on.
	EventsDelivered, EventRetries, EventsDropped int
	// ControlPlane is kube-apiserver's and etcd's CPU and peak memory over the same window;
	// API the manager's requests to the API server over it, from the audit log (autodeploy
	// only); Stored the Environments' size as stored after it (autodeploy only).
	ControlPlane ControlPlaneUse
	API          APIWrites
	Stored       StoredSize
	// from and to bound the window measured (the first build to the end of the idle window).
	from, to time.Time
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "%s  "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
}

// simBuckets are AWS's published buckets with their refill compressed by Speed (a bucket's
// burst is a number of calls, not a rate: it stays).
func (c *Config) simBuckets() map[ecssim.Category]ecssim.Bucket {
	out := ecssim.AWSBuckets()
	for k, b := range out {
		b.RefillPerSecond *= c.Speed
		out[k] = b
	}
	return out
}

// newSim starts a simulator seeded with the fleet, recording calls into rec, that completes
// deployments on time whether or not anyone reads them (as ECS does). stop ends it.
func (c *Config) newSim(f *fleet, rec *recorder, opts ...ecssim.Option) (sim *ecssim.Server, url string, stop func(), err error) {
	opts = append(opts, ecssim.WithThrottling(c.simBuckets()), ecssim.WithRolloutDuration(c.real(c.RolloutTime)),
		ecssim.WithCallObserver(rec.observe))
	for _, acct := range f.accounts() {
		if acct != defaultAccount {
			opts = append(opts, ecssim.WithRole(roleARN(acct), ""))
		}
	}
	sim = ecssim.New(opts...)
	if err := f.seed(sim); err != nil {
		return nil, "", nil, err
	}
	lat := c.real(c.AWSLatency)
	for _, op := range []string{"DescribeServices", "DescribeTaskDefinition", "RegisterTaskDefinition", "UpdateService", "DescribeImages"} {
		sim.SetLatency(op, lat)
	}
	if url, err = sim.Start(); err != nil {
		return nil, "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go sim.AdvanceRolloutsEvery(ctx, c.real(time.Second))
	return sim, url, func() { cancel(); sim.Close() }, nil
}

// scaledBackoff is the SDK's default exponential jittered backoff, compressed by speed.
type scaledBackoff struct {
	inner retry.BackoffDelayer
	speed float64
}

func (b scaledBackoff) BackoffDelay(attempt int, err error) (time.Duration, error) {
	d, err := b.inner.BackoffDelay(attempt, err)
	return time.Duration(float64(d) / b.speed), err
}

// awsConfig is the SDK configuration both systems use: the default (standard) retryer with
// its backoff compressed by Speed.
func (c *Config) awsConfig() aws.Config {
	return aws.Config{
		Region: "us-east-1",
		// Long-term keys the simulator does not know act in its default account; roles of the
		// other accounts are assumed from them.
		Credentials: credentials.NewStaticCredentialsProvider("AKIDAUTODEPLOYBENCH", "not-checked-by-the-simulator", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.Backoff = scaledBackoff{inner: retry.NewExponentialJitterBackoff(o.MaxBackoff), speed: c.Speed}
			})
		},
	}
}

// Run runs the benchmark for every size of cfg.Runs, against the API server of restCfg (and
// cfg.KubeConfig).
func Run(ctx context.Context, cfg Config, restCfg *rest.Config, k8s client.Client) ([]Result, error) {
	var out []Result
	cfg.restCfg = restCfg
	for _, run := range cfg.Runs {
		c := cfg
		c.Speed, c.Accounts = run.Speed, run.Accounts
		r, err := runSize(ctx, &c, k8s, run.N)
		if err != nil {
			return out, fmt.Errorf("N=%d: %w", run.N, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func runSize(ctx context.Context, cfg *Config, k8s client.Client, n int) (Result, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(n)))
	f := newFleet(n, cfg.EnvsPerApp, cfg.Clusters, cfg.Accounts, cfg.PinnedShare, rng)
	builds := workload(f, cfg.Hour, cfg.BuildInterval, rng)
	res := Result{N: n, Apps: len(f.Apps), Pinned: f.pinned(), Builds: len(builds), Speed: cfg.Speed, Accounts: cfg.Accounts}
	cfg.logf("N=%d (speed ×%g, %d account(s), rollouts tracked by %s): %d applications, %d pinned Environments, %d builds in the simulated hour",
		n, cfg.Speed, cfg.Accounts, cfg.Tracking, len(f.Apps), res.Pinned, len(builds))

	if err := runAutodeploy(ctx, cfg, k8s, f, builds, &res); err != nil {
		return res, fmt.Errorf("autodeploy: %w", err)
	}
	if err := runPolling(ctx, cfg, f, builds, &res); err != nil {
		return res, fmt.Errorf("polling: %w", err)
	}
	return res, nil
}

// phases drives the common part of a run: the hour of builds, the drain and the idle window.
// publish sends one build; done reports whether every application's last build is deployed.
// sys is the system's process, measured on its own; start, if not nil, starts its work.
func (c *Config) phases(ctx context.Context, builds []published, sys *child, start func() error, publish func(build) error, rec *recorder, sim *ecssim.Server, f *fleet) (SystemResult, error) {
	var sr SystemResult
	u0, sys0 := readUsage(sys.pid()), sys.cpu()
	cps := startControlPlaneSampler()
	t0 := time.Now()
	sr.from = t0
	rec.on.Store(true)
	if start != nil {
		if err := start(); err != nil {
			return sr, err
		}
	}
	errs := make(chan error, len(builds))
	for i := range builds {
		if err := sleepUntil(ctx, t0.Add(c.real(builds[i].At))); err != nil {
			return sr, err
		}
		builds[i].t = time.Now()
		go func(b build) { errs <- publish(b) }(builds[i].build)
	}
	for range builds {
		if err := <-errs; err != nil {
			return sr, err
		}
	}
	hourEnd := t0.Add(c.real(c.Hour))
	if err := sleepUntil(ctx, hourEnd); err != nil {
		return sr, err
	}
	c.logf("  hour done; draining")
	// Drain: until the last build of every application is deployed everywhere, or Drain.
	last := map[string]published{}
	for _, b := range builds {
		last[b.App] = b
	}
	lastBuilds := make([]published, 0, len(last))
	for _, b := range last {
		lastBuilds = append(lastBuilds, b)
	}
	cache := images{}
	drainEnd := hourEnd.Add(c.real(c.Drain))
	for time.Now().Before(drainEnd) {
		o := analyse(f, lastBuilds, updates(rec.snapshot(), sim, f, cache), c.Speed)
		if o.Deployed == len(lastBuilds) {
			break
		}
		if err := sleepUntil(ctx, time.Now().Add(200*time.Millisecond)); err != nil {
			return sr, err
		}
	}
	sr.Drain = simDur(time.Since(hourEnd), c.Speed)
	// Settle: rollouts started by the last deploys end (and their tracking with them) before
	// the idle window; calls meanwhile count in the total.
	idleStart := time.Now().Add(c.real(c.Settle))
	c.logf("  drained after %s (simulated); settling for %s, then idle window", sr.Drain.Round(time.Second), c.Settle)
	if err := sleepUntil(ctx, idleStart); err != nil {
		return sr, err
	}
	idleEnd := idleStart.Add(c.real(c.Idle))
	if err := sleepUntil(ctx, idleEnd); err != nil {
		return sr, err
	}
	rec.on.Store(false)
	sr.to = time.Now()
	sr.ControlPlane = cps.Stop()
	u1, sys1 := readUsage(sys.pid()), sys.cpu()
	sr.CPU, sr.BenchCPU, sr.ChildCPU = sys1-sys0, u1.cpu-u0.cpu, u1.children-u0.children
	sr.RSSKB = sys.peakRSSKB()
	st, err := sys.stats(ctx)
	if err != nil {
		return sr, fmt.Errorf("the system's process: %w", err)
	}
	sr.PeakHeap = st.PeakHeap

	calls := rec.snapshot()
	sr.Calls, sr.Throttled = window(calls, t0, idleStart)
	sr.IdleCalls, _ = window(calls, idleStart, idleEnd)
	sr.IdlePerHour = float64(sr.IdleCalls) * float64(time.Hour) / float64(c.Idle)
	sr.ByOp, sr.ByOpAll = map[string]int{}, map[string]int{}
	for _, cl := range calls {
		if cl.t.Before(idleStart) {
			sr.ByOp[cl.op]++
		}
		sr.ByOpAll[cl.op]++
	}
	sr.Outcome = analyse(f, builds, updates(calls, sim, f, cache), c.Speed)
	return sr, nil
}

func toPublished(builds []build) []published {
	out := make([]published, len(builds))
	for i, b := range builds {
		out[i] = published{build: b}
	}
	return out
}

func runPolling(ctx context.Context, cfg *Config, f *fleet, builds []build, res *Result) error {
	rec := &recorder{}
	sim, url, stopSim, err := cfg.newSim(f, rec)
	if err != nil {
		return err
	}
	defer stopSim()
	cfg.logf("polling N=%d: cron every %s (simulated), %d workers", len(f.Envs), cfg.PollInterval, cfg.PollWorkers)
	cron, err := startChild(ctx, childSpec{Role: roleCron, Config: *cfg, N: len(f.Envs), SimURL: url})
	if err != nil {
		return err
	}
	defer func() { _ = cron.stop() }()
	pub := toPublished(builds)
	sr, err := cfg.phases(ctx, pub, cron, func() error { return cron.start(ctx) }, func(b build) error {
		return f.pushImage(sim, b.App, b.Image[strings.LastIndex(b.Image, ":")+1:])
	}, rec, sim, f)
	if err != nil {
		return err
	}
	st, err := cron.stats(ctx)
	if err != nil {
		return err
	}
	for _, t := range st.Ticks {
		sr.SkippedChecks += t.Skipped
	}
	if len(st.Ticks) > 0 {
		first := st.Ticks[0]
		res.PollFirstTick = simDur(first.Duration, cfg.Speed)
		res.PollFirstTickCalls, _ = window(rec.snapshot(), first.Start, first.Start.Add(first.Duration))
	}
	res.Poll = sr
	return nil
}

// newPoller builds the cron with the real ECS and ECR clients (default retries, no budget), one
// pair per account: the default account's with the long-term keys, the others' through an
// assumed role.
func (c *Config) newPoller(f *fleet, simURL string) *poller {
	base := c.awsConfig()
	stsClient := sts.NewFromConfig(base, func(o *sts.Options) { o.BaseEndpoint = aws.String(simURL) })
	p := &poller{
		clients:  map[string]accountClients{},
		fleet:    f,
		workers:  c.PollWorkers,
		interval: c.real(c.PollInterval),
	}
	for _, acct := range f.accounts() {
		cfg := base.Copy()
		if acct != defaultAccount {
			cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, roleARN(acct)))
		}
		p.clients[acct] = accountClients{
			ecs: ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(simURL) }),
			ecr: ecr.NewFromConfig(cfg, func(o *ecr.Options) { o.BaseEndpoint = aws.String(simURL) }),
		}
	}
	return p
}

// ParseRuns reads a list of sizes (the command's --n): comma-separated N[@speed][/accounts],
// with speed and accounts taken from the defaults when left out.
func ParseRuns(list string, speed float64, accounts int) ([]RunSpec, error) {
	var out []RunSpec
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		r := RunSpec{Speed: speed, Accounts: accounts}
		rest, acc, hasAcc := strings.Cut(item, "/")
		nStr, sp, hasSpeed := strings.Cut(rest, "@")
		n, err := strconv.Atoi(nStr)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--n: %q: the size must be a positive number of Environments", item)
		}
		r.N = n
		if hasSpeed {
			if r.Speed, err = strconv.ParseFloat(sp, 64); err != nil || r.Speed <= 0 {
				return nil, fmt.Errorf("--n: %q: the speed after @ must be a positive number", item)
			}
		}
		if hasAcc {
			if r.Accounts, err = strconv.Atoi(acc); err != nil || r.Accounts < 1 {
				return nil, fmt.Errorf("--n: %q: the number of accounts after / must be a positive integer", item)
			}
		}
		if r.Speed <= 0 || r.Accounts < 1 {
			return nil, errors.New("--speed and --accounts must be positive")
		}
		out = append(out, r)
	}
	return out, nil
}
