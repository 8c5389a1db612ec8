// Command manager runs the autodeploy controller: the Environment reconciler (leader-elected)
// and the build manifest receiver (on every replica).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"
	// The zone database, for deploy windows in a minimal image.
	_ "time/tzdata"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
	"github.com/autodeploy-dev/autodeploy/internal/kubeapi"
	"github.com/autodeploy-dev/autodeploy/internal/shard"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(deployv1.AddToScheme(scheme))
}

// accountID is an AWS account id.
var accountID = regexp.MustCompile(`^[0-9]{12}$`)

func main() {
	var (
		metricsAddr, probeAddr, receiverAddr, secretFile string
		leaderElect                                      bool
		leaderElectionNamespace                          string
		maxConcurrent                                    int
		retryBase, retryMax                              time.Duration
		rollout                                          app.Options
		budgetScale                                      float64
		sdReadBurst                                      int
		sdReadRate                                       float64
		kubeQPS                                          float64
		kubeBurst                                        int
		shards                                           int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health probes bind to.")
	flag.StringVar(&receiverAddr, "receiver-bind-address", ":9292", "Address the build manifest receiver binds to.")
	flag.StringVar(&secretFile, "manifest-secret-file", "", "File holding the cluster-wide manifest signing key (one key per line; two during a rotation). Optional: without it /v1/manifests answers 401 and only namespaced routes work.")
	recvFlags := bindReceiverFlags(flag.CommandLine)
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that one replica reconciles; every replica receives manifests.")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	flag.IntVar(&shards, "shards", 1, "Split the Environments among this many replicas by namespace: each replica claims one shard's Lease, reconciles and caches only that shard's Environments, and finds a build's Environments with the API server's field selector. Implies --leader-elect (on the shard Leases). Run at least this many replicas (more are standbys). Needs --rollout-polling. 1: no sharding.")
	var watchNamespaces string
	var leaseDuration, renewDeadline, retryPeriod time.Duration
	flag.StringVar(&watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces whose Environments this controller handles (default: all).")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a non-leader waits before taking over a lease that was not renewed.")
	flag.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it steps down.")
	flag.DurationVar(&retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often leader election is tried.")
	flag.StringVar(&rollout.Account, "aws-account-id", "",
		"The controller's own AWS account (12 digits), where Environments without spec.ecs.roleARN deploy: with it, an Environment naming a service by name and one naming it by ARN are seen to share it (one of them deploys).")
	flag.IntVar(&maxConcurrent, "max-concurrent-reconciles", 4, "Environments deployed in parallel.")
	flag.DurationVar(&retryBase, "retry-base-delay", time.Second, "First delay after a transient ECS error; it doubles per failure.")
	flag.DurationVar(&retryMax, "retry-max-delay", 5*time.Minute, "Longest delay between retries after transient ECS errors.")
	flag.BoolVar(&rollout.RolloutPolling, "rollout-polling", true,
		"Follow rollouts with DescribeServices (batched, only while one is in progress). Turn off when ECS Deployment State Change events reach the receiver.")
	flag.DurationVar(&rollout.RolloutPollInterval, "rollout-poll-interval", 5*time.Second, "First interval between two looks at a rollout; it doubles after each look.")
	flag.DurationVar(&rollout.RolloutPollMaxInterval, "rollout-poll-max-interval", 2*time.Minute, "Longest interval between two looks at a rollout.")
	flag.Float64Var(&budgetScale, "ecs-api-budget-scale", awsecs.DefaultBudgetShare,
		"Share of AWS's published ECS API rate limits the controller allows itself per account and Region (lower it when other tools use the same account).")
	sdRead := awsecs.AWSLimits()[awsecs.ServiceDeploymentRead]
	flag.IntVar(&sdReadBurst, "ecs-service-deployment-read-burst", sdRead.Burst,
		"Burst of the ECS \"service deployment read\" throttle bucket (ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions) per account and Region, before --ecs-api-budget-scale.")
	flag.Float64Var(&sdReadRate, "ecs-service-deployment-read-rate", sdRead.PerSecond,
		"Refill per second of the ECS \"service deployment read\" throttle bucket, before --ecs-api-budget-scale.")
	flag.Float64Var(&kubeQPS, "kube-api-qps", defaultKubeAPIQPS,
		"Requests per second the manager's Kubernetes client may make (status writes, Events, reads); raise it for fleets of thousands of Environments with frequent builds.")
	flag.IntVar(&kubeBurst, "kube-api-burst", defaultKubeAPIBurst, "Requests the manager's Kubernetes client may make at once above --kube-api-qps.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	if a := rollout.Account; a != "" && !accountID.MatchString(a) {
		fmt.Fprintf(os.Stderr, "--aws-account-id must be a 12-digit AWS account id, not %q\n", a)
		os.Exit(2)
	}
	if shards < 1 {
		fmt.Fprintf(os.Stderr, "--shards must be at least 1, not %d\n", shards)
		os.Exit(2)
	}
	if shards > 1 && !rollout.RolloutPolling {
		// ECS events are matched against the receiving replica's cache, which holds one shard.
		fmt.Fprintln(os.Stderr, "--shards above 1 needs --rollout-polling: a replica's cache holds only its own shard's Environments, so ECS events cannot be matched to the others'")
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

	keys, recvOpts, err := recvFlags.load(secretFile)
	if err != nil {
		setupLog.Error(err, "Configuring the receiver failed")
		os.Exit(1)
	}

	cfg := ctrl.GetConfigOrDie()
	if err := setKubeAPILimits(cfg, kubeQPS, kubeBurst); err != nil {
		setupLog.Error(err, "Invalid flags")
		os.Exit(1)
	}
	// Checked before the wait for the API server, so that a bad flag is reported at once.
	if budgetScale <= 0 {
		setupLog.Error(errors.New("--ecs-api-budget-scale must be positive"), "Invalid flags")
		os.Exit(1)
	}
	if sdReadBurst < 1 || sdReadRate <= 0 {
		setupLog.Error(errors.New("--ecs-service-deployment-read-burst must be at least 1 and --ecs-service-deployment-read-rate positive"), "Invalid flags")
		os.Exit(1)
	}
	limits := awsecs.AWSLimits()
	limits[awsecs.ServiceDeploymentRead] = awsecs.Bucket{Burst: sdReadBurst, PerSecond: sdReadRate}
	ctx := ctrl.SetupSignalHandler()
	gate, err := kubeapi.New(cfg, ctrl.Log.WithName("kube-apiserver"))
	if err != nil {
		setupLog.Error(err, "Configuring the Kubernetes API server's client failed")
		os.Exit(1)
	}
	// The probes and the metrics are served from here on, for the life of the process: also
	// while it waits for the API server and while a manager that lost its lease is replaced.
	p := &probes{gate: gate}
	if err := serve(ctx, probeAddr, p.handler(), setupLog); err != nil {
		setupLog.Error(err, "Serving the health probes failed")
		os.Exit(1)
	}
	if err := serve(ctx, metricsAddr, metricsHandler(), setupLog); err != nil {
		setupLog.Error(err, "Serving the metrics failed")
		os.Exit(1)
	}
	identity, err := leaseIdentity()
	if err != nil {
		setupLog.Error(err, "Making the leader election identity failed")
		os.Exit(1)
	}
	const leaderElectionID = "autodeploy.deploy.autodeploy.dev"
	baseCache := app.CacheOptions(namespaces(watchNamespaces))
	// The informers wait out an API-server outage on its /readyz, not on client-go's
	// reflector backoff (package kubeapi).
	baseCache.NewInformer = gate.NewInformer
	// With shards, each manager first claims a shard's Lease, then keeps it with the leader
	// election (on that Lease), and caches that shard's Environments only.
	var claimer *shard.Claimer
	if shards > 1 {
		ns, err := leaseNamespace(leaderElectionNamespace)
		if err != nil {
			setupLog.Error(err, "Finding the namespace of the shard Leases failed")
			os.Exit(1)
		}
		coord, err := coordinationv1client.NewForConfig(rest.AddUserAgent(rest.CopyConfig(cfg), "shard-claim"))
		if err != nil {
			setupLog.Error(err, "Configuring the shard Leases' client failed")
			os.Exit(1)
		}
		leaderElect, leaderElectionNamespace = true, ns
		claimer = &shard.Claimer{
			Leases: coord, Namespace: ns, Prefix: leaderElectionID, Identity: identity, Count: shards,
			LeaseDuration: leaseDuration, RetryPeriod: retryPeriod, Log: ctrl.Log.WithName("shard"),
		}
	}
	// held is the shard the newest manager holds, for runOne below (the zero value: none).
	var held shard.Assignment
	newManager := func(generation int) (ctrl.Manager, error) {
		electionID, cacheOptions := leaderElectionID, baseCache
		if claimer != nil {
			a, err := claimer.Claim(ctx)
			if err != nil {
				return nil, err
			}
			held, electionID, cacheOptions = a, shard.LeaseName(leaderElectionID, a), app.ShardCacheOptions(baseCache, a)
		}
		o := ctrl.Options{
			Scheme:                  scheme,
			Metrics:                 metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress:  "0",
			LeaderElection:          leaderElect,
			LeaderElectionID:        electionID,
			LeaderElectionNamespace: leaderElectionNamespace,
			// The lease is given up on a clean stop so the next replica takes over at once.
			LeaderElectionReleaseOnCancel: true,
			LeaseDuration:                 &leaseDuration,
			RenewDeadline:                 &renewDeadline,
			RetryPeriod:                   &retryPeriod,
			Cache:                         cacheOptions,
		}
		if leaderElect {
			lock, err := newLeaseLock(cfg, leaderElectionNamespace, electionID, identity, renewDeadline)
			if err != nil {
				return nil, err
			}
			o.LeaderElectionResourceLockInterface = lock
		}
		if generation > 1 {
			// The previous manager's controllers, of the same names, have stopped.
			o.Controller.SkipNameValidation = ptr.To(true)
		}
		return ctrl.NewManager(cfg, o)
	}

	// app.Setup needs discovery (the field indexes map the Environment kind), so a manager
	// started while the API server is unreachable would exit at once and crash-loop, its
	// restarts spaced ever further apart by the kubelet, well past the API server's return.
	// It waits instead, its probes served (alive, not ready).
	wait := func(ctx context.Context) error { return waitForAPIServer(ctx, cfg, setupLog) }
	ecsClients, err := awsecs.New(ctx, awsecs.Options{Limits: awsecs.ScaleLimits(limits, budgetScale)})
	if err != nil {
		setupLog.Error(err, "Configuring the ECS clients failed")
		os.Exit(1)
	}
	appOpts := rollout
	appOpts.Keys, appOpts.Receiver = keys, recvOpts
	appOpts.MaxConcurrentReconciles, appOpts.RetryBaseDelay, appOpts.RetryMaxDelay = maxConcurrent, retryBase, retryMax
	appOpts.ECS = func(_ context.Context, target deployv1.ECSTarget) (controllers.ECSAPI, error) {
		return ecsClients.For(target.Region, target.RoleARN, target.ExternalID), nil
	}
	appOpts.ReceiverAddr = receiverAddr
	runOne := func(ctx context.Context, generation int, mgr ctrl.Manager) error {
		if generation > 1 {
			if err := waitAddressFree(ctx, receiverAddr); err != nil {
				return fmt.Errorf("the receiver's address %s: %w", receiverAddr, err)
			}
		}
		opts := appOpts
		opts.Shard, opts.BaseCache = held, baseCache
		return run(ctx, mgr, opts)
	}
	if err := runManagers(ctx, setupLog, p, newManager, wait, runOne); err != nil {
		setupLog.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

// run sets the manager up and starts it; it returns when the manager stops.
func run(ctx context.Context, mgr ctrl.Manager, opts app.Options) error {
	if err := app.Setup(ctx, mgr, opts); err != nil {
		return err
	}
	collector := controllers.NewEnvironmentCollector(mgr.GetCache())
	if err := ctrlmetrics.Registry.Register(collector); err != nil {
		return err
	}
	defer ctrlmetrics.Registry.Unregister(collector)
	return mgr.Start(ctx)
}

// namespaces turns a comma-separated list into the cache's namespace set; nil means all.
func namespaces(list string) map[string]cache.Config {
	var out map[string]cache.Config
	for _, ns := range strings.Split(list, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			if out == nil {
				out = map[string]cache.Config{}
			}
			out[ns] = cache.Config{}
		}
	}
	return out
}

// apiServerBackoff spaces the attempts to reach the API server before a manager sets up: 0.5 s,
// then 1 s apart (so that a manager is set up within about a second of the API server's
// return; a refused connection a second costs the API server nothing) (plus up to 10 % jitter, so that replicas restarted together spread out).
// Steps only bounds the doublings; Until below never gives up on its own. (Not
// wait.ExponentialBackoffWithContext: it returns ErrWaitTimeout as soon as the Cap is reached,
// about 1 s in.)
var apiServerBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Cap: time.Second, Steps: math.MaxInt32}

// apiServerAttemptTimeout bounds one attempt, for an API server that does not even refuse
// connections (a host or a network that is down).
const apiServerAttemptTimeout = 10 * time.Second

// waitForAPIServer returns once the API server maps the Environment kind, which is what
// app.Setup needs discovery for, retrying with apiServerBackoff and logging each failed
// attempt. It returns ctx's error when ctx ends first (SIGTERM), without waiting for the
// attempt in flight.
func waitForAPIServer(ctx context.Context, cfg *rest.Config, log logr.Logger) error {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = apiServerAttemptTimeout
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	var lastErr error
	next := apiServerBackoff.DelayFunc()
	// With sliding (and immediate) Until, the delay is asked for once after each failed
	// attempt, so this logs each failure once, with the time to the next attempt.
	delay := func() time.Duration {
		d := next()
		log.Info("Waiting for the Kubernetes API server", "error", lastErr, "retryIn", d)
		return d
	}
	return wait.DelayFunc(delay).Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		lastErr = mapEnvironment(ctx, cfg, httpClient)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return lastErr == nil, nil
	})
}

// mapEnvironment maps the Environment kind as the manager's RESTMapper will in app.Setup: a
// fresh dynamic RESTMapper's discovery (the API groups, and the group's resources).
func mapEnvironment(ctx context.Context, cfg *rest.Config, httpClient *http.Client) error {
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return err
	}
	gvk := deployv1.GroupVersion.WithKind("Environment")
	done := make(chan error, 1)
	go func() { // RESTMapping takes no context; the attempt ends within apiServerAttemptTimeout
		_, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// controller-runtime's own client limits, the defaults of --kube-api-qps and --kube-api-burst.
const (
	defaultKubeAPIQPS   = 20
	defaultKubeAPIBurst = 30
)

// setKubeAPILimits sets the Kubernetes client's rate limit from --kube-api-qps and
// --kube-api-burst.
func setKubeAPILimits(cfg *rest.Config, qps float64, burst int) error {
	if qps <= 0 || math.IsInf(qps, 0) || math.IsNaN(qps) {
		return fmt.Errorf("--kube-api-qps must be a positive number of requests per second, not %v", qps)
	}
	if burst < 1 {
		return fmt.Errorf("--kube-api-burst must be at least 1, not %d", burst)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	return nil
}
