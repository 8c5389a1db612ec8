// Command autodeploy-bench compares autodeploy with the polling cron it replaces: the real
// manager and a model of the cron, each against a fresh ECS simulator enforcing AWS's API
// throttles, with N Environments on one local API server (envtest), under the same stream of
// builds over one simulated hour. See docs/benchmarks.md.
//
//	KUBEBUILDER_ASSETS="$(hack/setup-envtest.sh)" go run ./cmd/autodeploy-bench --n 100@60,1000@15 --out docs/benchmarks.md
//
// Each system runs in a process of its own: the benchmark starts its own executable again
// with bench.ChildArg, so that the system's CPU and memory are measured apart.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/autodeploy-dev/autodeploy/internal/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.ChildArg {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		ctrl.SetLogger(logr.Discard())
		if err := bench.RunChild(ctx, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "autodeploy-bench (system process):", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "autodeploy-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := bench.Config{Log: os.Stderr}
	var sizes, out, root string
	var appendOut, audit bool
	var speed float64
	var accounts int
	flag.StringVar(&sizes, "n", "100,1000", "Comma-separated sizes, each N[@speed][/accounts]: N services/Environments, run at time compression speed (default --speed) with the fleet spread over accounts AWS accounts (default --accounts). Example: 100@60,1000@15,10000@5/10.")
	flag.Float64Var(&speed, "speed", 60, "Default time compression: simulated seconds per real second (60: one simulated hour in one real minute). Throttle refills, the workload and every interval are scaled by it.")
	flag.IntVar(&accounts, "accounts", 1, "Default number of AWS accounts the fleet is spread over (by application; each with its own throttles, reached through a role).")
	flag.StringVar(&cfg.Tracking, "rollout-tracking", bench.TrackEvents, "How the manager follows rollouts: events (ECS Deployment State Change events posted to its receiver, --rollout-polling=false) or polling (the fallback tracker).")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()%1_000_000), "Seed of the fleet (pins) and of the build schedule.")
	flag.IntVar(&cfg.EnvsPerApp, "envs-per-app", 10, "Environments per application (a build fans out to them).")
	flag.IntVar(&cfg.Clusters, "clusters", 4, "Clusters the services are spread over.")
	flag.Float64Var(&cfg.PinnedShare, "pinned", 0.1, "Share of Environments pinned to an older image (rollbacks).")
	flag.DurationVar(&cfg.BuildInterval, "build-interval", 15*time.Minute, "Simulated: each application gets one build per interval, at a random offset.")
	flag.DurationVar(&cfg.Hour, "hour", time.Hour, "Simulated length of the stream of builds.")
	flag.DurationVar(&cfg.Drain, "drain", 20*time.Minute, "Simulated: longest wait after the hour for the last builds to be deployed.")
	flag.DurationVar(&cfg.Idle, "idle", 15*time.Minute, "Simulated quiet period in which idle calls are counted.")
	flag.DurationVar(&cfg.Settle, "settle", 5*time.Minute, "Simulated pause between the drain and the idle window, for the last rollouts to end (counted in the total).")
	flag.DurationVar(&cfg.PollInterval, "poll-interval", 5*time.Minute, "Simulated schedule of the polling cron.")
	flag.IntVar(&cfg.PollWorkers, "poll-workers", 8, "Environments the cron checks in parallel.")
	flag.DurationVar(&cfg.AWSLatency, "aws-latency", 40*time.Millisecond, "Simulated latency of every ECS and ECR call.")
	flag.DurationVar(&cfg.RolloutTime, "rollout", 2*time.Minute, "Simulated time an ECS deployment stays IN_PROGRESS.")
	flag.IntVar(&cfg.Reconcilers, "max-concurrent-reconciles", 4, "The manager's --max-concurrent-reconciles (its default is 4).")
	flag.DurationVar(&cfg.RecvDuration, "recv-duration", 5*time.Second, "Real time of each throughput measurement (receiver, raw patches).")
	flag.IntVar(&cfg.RecvWorkers, "recv-concurrency", 8, "Concurrent senders in the throughput measurement.")
	flag.BoolVar(&audit, "api-audit", true, "Run the API server with an audit log of the Environment status writes, Events and Environment reads, from which the manager's writes per deploy are counted (the logging costs the API server some CPU, counted in its CPU).")
	flag.StringVar(&out, "out", "", "Also write the results as Markdown to this file (docs/benchmarks.md).")
	flag.BoolVar(&appendOut, "append", false, "Append this run to the --out file instead of starting it afresh.")
	flag.StringVar(&root, "root", ".", "Repository root (config/crd/bases is read from it).")
	flag.Parse()

	var err error
	if cfg.Runs, err = bench.ParseRuns(sizes, speed, accounts); err != nil {
		return err
	}
	if cfg.Tracking != bench.TrackEvents && cfg.Tracking != bench.TrackPolling {
		return fmt.Errorf("--rollout-tracking: %q is neither %s nor %s", cfg.Tracking, bench.TrackEvents, bench.TrackPolling)
	}
	if cfg.EnvsPerApp < 1 || cfg.Clusters < 1 || cfg.PollWorkers < 1 || cfg.RecvWorkers < 1 {
		return errors.New("--envs-per-app, --clusters, --poll-workers and --recv-concurrency must be positive")
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run `make bench-compare`, or KUBEBUILDER_ASSETS=\"$(hack/setup-envtest.sh)\" go run ./cmd/autodeploy-bench")
	}
	ctrl.SetLogger(logr.Discard())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	started := time.Now()
	fmt.Fprintf(os.Stderr, "Machine: %s\nSeed: %d (replay with --seed %d)\n", bench.Machine(), cfg.Seed, cfg.Seed)
	api := &envtest.APIServer{}
	if audit {
		dir, err := os.MkdirTemp("", "autodeploy-bench-audit-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if cfg.AuditLog, err = bench.WithAudit(api, dir); err != nil {
			return err
		}
	}
	cp := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		ControlPlane:          envtest.ControlPlane{APIServer: api},
	}
	restCfg, err := cp.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() { _ = cp.Stop() }()
	cfg.KubeConfig = cp.KubeConfig
	k8s, err := client.New(restCfg, client.Options{Scheme: bench.Scheme})
	if err != nil {
		return err
	}

	results, err := bench.Run(ctx, cfg, restCfg, k8s)
	bench.WriteTable(os.Stdout, cfg, results)
	if err != nil {
		return err
	}
	if out != "" {
		mode := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if appendOut {
			mode = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		f, err := os.OpenFile(out, mode, 0o644)
		if err != nil {
			return err
		}
		bench.WriteMarkdown(f, cfg, commandLine(), started, time.Since(started), results, appendOut)
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "wrote", out)
	}
	return nil
}

// commandLine is the command as a user would rerun it.
func commandLine() string {
	args := []string{`KUBEBUILDER_ASSETS="$(hack/setup-envtest.sh)"`, "go", "run", "./cmd/autodeploy-bench"}
	args = append(args, os.Args[1:]...)
	return strings.Join(args, " ")
}
