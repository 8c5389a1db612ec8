package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine describes where the benchmark ran.
func Machine() string {
	cpu := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (nproc), %s, %s %s/%s", runtime.NumCPU(), cpu, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

type row struct {
	metric, auto, poll, ratio string
}

func ratio(poll, auto float64) string {
	switch {
	case poll == 0 && auto == 0:
		return "="
	case auto == 0:
		return "∞ (autodeploy: 0)"
	case poll/auto < 0.1:
		return fmt.Sprintf("%.2f×", poll/auto)
	}
	return fmt.Sprintf("%.1f×", poll/auto)
}

func pct(ds []time.Duration, p float64) string {
	d, ok := percentile(ds, p)
	if !ok {
		return "n/a"
	}
	return fmtDur(d)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d < 2*time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f min", d.Minutes())
	}
}

func pctRatio(poll, auto []time.Duration, p float64) string {
	a, ok1 := percentile(auto, p)
	b, ok2 := percentile(poll, p)
	if !ok1 || !ok2 || a <= 0 {
		return ""
	}
	return fmt.Sprintf("%.1f×", float64(b)/float64(a))
}

func rows(r Result) []row {
	a, p := r.Auto, r.Poll
	ao, po := a.Outcome, p.Outcome
	simCPU := func(d time.Duration) string {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return []row{
		{"AWS calls, idle (per simulated hour)", fmt.Sprintf("%.0f", a.IdlePerHour), fmt.Sprintf("%.0f", p.IdlePerHour), ratio(p.IdlePerHour, a.IdlePerHour)},
		{"AWS calls, total (hour of builds + drain + settle)", fmt.Sprint(a.Calls), fmt.Sprint(p.Calls), ratio(float64(p.Calls), float64(a.Calls))},
		{"ThrottlingExceptions", fmt.Sprint(a.Throttled), fmt.Sprint(p.Throttled), ratio(float64(p.Throttled), float64(a.Throttled))},
		{"builds deployed / published", fmt.Sprintf("%d / %d", ao.Deployed, ao.Published), fmt.Sprintf("%d / %d", po.Deployed, po.Published), ""},
		{"builds not deployed everywhere: superseded by a newer build that was · lost", fmt.Sprintf("%d · %d", ao.Superseded, ao.Lost), fmt.Sprintf("%d · %d", po.Superseded, po.Lost), ""},
		{"rollbacks reverted (of pinned)", fmt.Sprintf("%d / %d", ao.Reverted, r.Pinned), fmt.Sprintf("%d / %d", po.Reverted, r.Pinned), ""},
		{"build → UpdateService, per Environment, p50", pct(ao.PairLatency, 0.5), pct(po.PairLatency, 0.5), pctRatio(po.PairLatency, ao.PairLatency, 0.5)},
		{"build → UpdateService, per Environment, p99", pct(ao.PairLatency, 0.99), pct(po.PairLatency, 0.99), pctRatio(po.PairLatency, ao.PairLatency, 0.99)},
		{"build → last UpdateService of its fan-out, p50", pct(ao.FanoutLatency, 0.5), pct(po.FanoutLatency, 0.5), pctRatio(po.FanoutLatency, ao.FanoutLatency, 0.5)},
		{"build → last UpdateService of its fan-out, p99", pct(ao.FanoutLatency, 0.99), pct(po.FanoutLatency, 0.99), pctRatio(po.FanoutLatency, ao.FanoutLatency, 0.99)},
		{"successful UpdateService calls", fmt.Sprint(ao.Updates), fmt.Sprint(po.Updates), ""},
		{"drain after the hour (simulated)", fmtDur(a.Drain), fmtDur(p.Drain), ""},
		{"start over N up-to-date Environments: AWS calls", fmt.Sprint(r.RestartCalls), fmt.Sprintf("%d (first tick)", r.PollFirstTickCalls), ""},
		{"start: time to ready", fmt.Sprintf("%s real (all reconciled)", fmtDur(r.RestartReady)), fmt.Sprintf("%s simulated (first tick)", fmtDur(r.PollFirstTick)), ""},
		{"CPU of the system's own process (manager or cron), real s", simCPU(a.CPU), simCPU(p.CPU), ratio(p.CPU.Seconds(), a.CPU.Seconds())},
		{"peak RSS of the system's own process (VmHWM)", mib(a.RSSKB << 10), mib(p.RSSKB << 10), ""},
		{"peak Go heap of the system's own process", mib(int64(a.PeakHeap)), mib(int64(p.PeakHeap)), ""},
		{"CPU of the benchmark process (simulator, build sender), real s", simCPU(a.BenchCPU), simCPU(p.BenchCPU), ""},
		{"kube-apiserver + etcd CPU over the run (real s)", simCPU(a.ChildCPU), simCPU(p.ChildCPU), ratio(p.ChildCPU.Seconds(), a.ChildCPU.Seconds())},
		{"kube-apiserver + etcd CPU per deploy (real ms)", cpuPerDeploy(a.ChildCPU, ao.Updates), cpuPerDeploy(p.ChildCPU, po.Updates),
			ratio(perDeployF(p.ChildCPU.Seconds(), po.Updates), perDeployF(a.ChildCPU.Seconds(), ao.Updates))},
		{"kube-apiserver · etcd CPU over the run (real s)", cpSplit(a.ControlPlane, simCPU), cpSplit(p.ControlPlane, simCPU), ""},
		{"kube-apiserver · etcd peak memory (VmRSS, sampled every 500 ms)", cpMem(a.ControlPlane), cpMem(p.ControlPlane), ""},
		{"AWS calls per deploy (all calls ÷ successful UpdateService, whole window)", perDeploy(a.Calls+a.IdleCalls, ao.Updates), perDeploy(p.Calls+p.IdleCalls, po.Updates),
			ratio(perDeployF(float64(p.Calls+p.IdleCalls), po.Updates), perDeployF(float64(a.Calls+a.IdleCalls), ao.Updates))},
		{"manager peak RSS over an empty namespace (its fixed cost) · per 1,000 Environments above it", rssText(a, r.N), "", ""},
		{"API-server status writes per deploy (receiver · reconciler · rollout recorder)", statusPerDeploy(a.API, ao.Updates), "0", ""},
		{"Events written per deploy (created + series updates)", apiPerDeploy(a.API, a.API.eventTotal(), ao.Updates), "0", ""},
		{"status writes refused with 409 Conflict, per deploy", apiPerDeploy(a.API, sum(a.API.Conflicts), ao.Updates), "0", ""},
		{"Environment reads past the cache (GET), per deploy", apiPerDeploy(a.API, a.API.LiveReads, ao.Updates), "0", ""},
		{"deployed Environment as stored (JSON), median · largest", storedText(a.Stored), "n/a", ""},
	}
}

// perDeployF is v per deploy; 0 when nothing was deployed.
func perDeployF(v float64, deploys int) float64 {
	if deploys == 0 {
		return 0
	}
	return v / float64(deploys)
}

func perDeploy(n, deploys int) string {
	if deploys == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(n)/float64(deploys))
}

func cpuPerDeploy(d time.Duration, deploys int) string {
	if deploys == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)/float64(deploys))
}

func cpSplit(u ControlPlaneUse, f func(time.Duration) string) string {
	if len(u.CPU) == 0 {
		return "n/a"
	}
	return f(u.CPU["kube-apiserver"]) + " · " + f(u.CPU["etcd"])
}

func cpMem(u ControlPlaneUse) string {
	if len(u.PeakKB) == 0 {
		return "n/a"
	}
	return mib(u.PeakKB["kube-apiserver"]<<10) + " · " + mib(u.PeakKB["etcd"]<<10)
}

// perThousand is the system's peak RSS above its fixed cost, per 1,000 Environments.
func perThousand(s SystemResult, n int) string {
	if s.RSSKB == 0 || s.BaseRSSKB == 0 || n == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(s.RSSKB-s.BaseRSSKB)/1024/float64(n)*1000)
}

func rssText(s SystemResult, n int) string {
	if s.BaseRSSKB == 0 {
		return "n/a"
	}
	return mib(s.BaseRSSKB<<10) + " · " + perThousand(s, n)
}

func apiPerDeploy(w APIWrites, n, deploys int) string {
	if !w.Audited {
		return "not counted (--api-audit=false)"
	}
	return perDeploy(n, deploys)
}

func statusPerDeploy(w APIWrites, deploys int) string {
	if !w.Audited {
		return "not counted (--api-audit=false)"
	}
	parts := make([]string, len(writers))
	for i, k := range writers {
		parts[i] = perDeploy(w.Status[k], deploys)
	}
	return perDeploy(w.statusTotal(), deploys) + " (" + strings.Join(parts, " · ") + ")"
}

func storedText(s StoredSize) string {
	if s.Count == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s · %s (status %s · %s; managedFields %s; history %d · %d entries)",
		kb(s.Object), kb(s.MaxObject), kb(s.Status), kb(s.MaxStatus), kb(s.ManagedFields), s.History, s.MaxHistory)
}

func kb(b int) string { return fmt.Sprintf("%.1f KiB", float64(b)/1024) }

// opsPerDeploy lists the calls of each operation per deploy.
func opsPerDeploy(m map[string]int, deploys int) string {
	if deploys == 0 {
		return "n/a (nothing deployed)"
	}
	per := map[string]float64{}
	for op, n := range m {
		per[op] = float64(n) / float64(deploys)
	}
	return listOf(per, "%.2f")
}

// eventsPerDeploy lists the Events created per deploy, by reason, most first.
func eventsPerDeploy(w APIWrites, deploys int) string {
	if !w.Audited {
		return "not counted (--api-audit=false)"
	}
	if deploys == 0 {
		return "n/a (nothing deployed)"
	}
	reasons := make([]string, 0, len(w.Events))
	for k := range w.Events {
		reasons = append(reasons, k)
	}
	slices.SortFunc(reasons, func(x, y string) int {
		if w.Events[x] != w.Events[y] {
			return w.Events[y] - w.Events[x]
		}
		return strings.Compare(x, y)
	})
	parts := make([]string, 0, len(reasons)+1)
	for _, k := range reasons {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(w.Events[k])/float64(deploys)))
	}
	parts = append(parts, fmt.Sprintf("series updates %.2f", float64(w.EventPatches)/float64(deploys)))
	return strings.Join(parts, ", ")
}

// rssSlopes is the growth of the manager's peak RSS per 1,000 Environments between the
// consecutive sizes of a run.
func rssSlopes(results []Result) []string {
	var out []string
	for i := 1; i < len(results); i++ {
		a, b := results[i-1], results[i]
		if b.N == a.N || a.Auto.RSSKB == 0 || b.Auto.RSSKB == 0 {
			continue
		}
		slope := float64(b.Auto.RSSKB-a.Auto.RSSKB) / 1024 / float64(b.N-a.N) * 1000
		out = append(out, fmt.Sprintf("%.1f MiB per 1,000 Environments from N = %d to %d", slope, a.N, b.N))
	}
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// runTitle names one size of a run.
func runTitle(r Result) string {
	acc := "one account"
	if r.Accounts > 1 {
		acc = fmt.Sprintf("%d accounts", r.Accounts)
	}
	return fmt.Sprintf("N = %d (speed ×%g, %s)", r.N, r.Speed, acc)
}

// WriteTable prints the results as plain text.
func WriteTable(w io.Writer, cfg Config, results []Result) {
	for _, r := range results {
		fmt.Fprintf(w, "\n%s: %d services (%d applications × %d Environments, %d pinned), %d builds in one simulated hour, rollouts tracked by %s, seed %d\n",
			runTitle(r), r.N, r.Apps, cfg.EnvsPerApp, r.Pinned, r.Builds, cfg.Tracking, cfg.Seed)
		rs := rows(r)
		fmt.Fprintf(w, "  %-50s %-28s %-28s %s\n", "metric", "autodeploy", "polling (cron)", "polling/autodeploy")
		for _, x := range rs {
			fmt.Fprintf(w, "  %-50s %-28s %-28s %s\n", x.metric, x.auto, x.poll, x.ratio)
		}
		fmt.Fprintf(w, "  receiver: %.0f signed manifests/s vs %.0f raw status patches/s on the same API server (ratio %.2f; %d non-2xx)\n",
			r.RecvPerSec, r.PatchPerSec, r.RecvPerSec/r.PatchPerSec, r.RecvErrors)
		fmt.Fprintf(w, "  calls by operation, autodeploy: %v\n  calls by operation, polling:    %v\n", r.Auto.ByOp, r.Poll.ByOp)
		fmt.Fprintf(w, "  AWS calls per deploy, by operation (whole window): autodeploy %s; polling %s\n", opsPerDeploy(r.Auto.ByOpAll, r.Auto.Outcome.Updates), opsPerDeploy(r.Poll.ByOpAll, r.Poll.Outcome.Updates))
		fmt.Fprintf(w, "  Events per deploy, by reason: %s\n", eventsPerDeploy(r.Auto.API, r.Auto.Outcome.Updates))
	}
	for _, l := range rssSlopes(results) {
		fmt.Fprintf(w, "  manager peak RSS grows %s\n", l)
	}
}

// WriteMarkdown writes one run as Markdown. Without appending it starts the document (title
// and method) first; appending adds the run to an existing document.
func WriteMarkdown(w io.Writer, cfg Config, command string, started time.Time, elapsed time.Duration, results []Result, appending bool) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	if !appending {
		p("# Benchmarks: autodeploy against the polling cron it replaces\n\n")
		p("Generated by `cmd/autodeploy-bench` (`make bench-compare`); each run below says the exact command\n")
		p("that made it. The headline is the ratios (polling / autodeploy), not the absolute times, which\n")
		p("depend on the machine. How it is measured, and the limits of the method, come first; the runs\n")
		p("follow, newest last.\n")
		writeMethod(w, cfg)
	}
	sizes := make([]string, len(results))
	for i, r := range results {
		sizes[i] = fmt.Sprintf("%d (×%g)", r.N, r.Speed)
	}
	p("\n## Run: N = %s, rollouts tracked by %s\n\n", strings.Join(sizes, ", "), cfg.Tracking)
	p("```sh\n%s\n```\n\n", command)
	p("- Date: %s (the run took %s real)\n", started.UTC().Format("2006-01-02 15:04 MST"), elapsed.Round(time.Second))
	p("- Machine: %s\n", Machine())
	p("- Settings: seed %d, %d Environments per application over %d clusters, %.0f%% pinned, one build per application every %s at a random offset, cron every %s with %d workers, AWS latency %s per call, ECS rollouts take %s, %d concurrent reconciles, rollouts tracked by %s.\n\n",
		cfg.Seed, cfg.EnvsPerApp, cfg.Clusters, cfg.PinnedShare*100, cfg.BuildInterval,
		cfg.PollInterval, cfg.PollWorkers, cfg.AWSLatency, cfg.RolloutTime, cfg.Reconcilers, trackingText(cfg.Tracking))
	p("| N | receiver / raw status patch | AWS calls per deploy, polling : autodeploy | API-server writes per deploy: status · Events | kube-apiserver + etcd CPU per deploy, polling : autodeploy | manager peak RSS (per 1,000 Environments above its fixed cost) | Environment stored, median | idle AWS calls/h, polling : autodeploy | total AWS calls, polling / autodeploy | ThrottlingExceptions, polling : autodeploy | builds deployed (lost), autodeploy · polling | rollbacks reverted, autodeploy · polling | p50 / p99 build → UpdateService, autodeploy · polling |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		n := fmt.Sprintf("%d ×%g", r.N, r.Speed)
		if r.Accounts > 1 {
			n += fmt.Sprintf(", %d accounts", r.Accounts)
		}
		a, q := r.Auto, r.Poll
		idle := ratio(q.IdlePerHour, a.IdlePerHour)
		if a.IdlePerHour == 0 {
			idle = "∞"
		}
		writes := "not counted"
		if a.API.Audited {
			writes = perDeploy(a.API.statusTotal(), a.Outcome.Updates) + " · " + perDeploy(a.API.eventTotal(), a.Outcome.Updates)
		}
		stored := "n/a"
		if a.Stored.Count > 0 {
			stored = kb(a.Stored.Object)
		}
		p("| %s | **%.2f** | %s : %s | %s | %s : %s (%s) | %s (%s) | %s | %.0f : %.0f (%s) | %s | %d : %d | %d/%d (%d) · %d/%d (%d) | %d · %d of %d | %s / %s · %s / %s |\n",
			n, r.RecvPerSec/r.PatchPerSec,
			perDeploy(q.Calls+q.IdleCalls, q.Outcome.Updates), perDeploy(a.Calls+a.IdleCalls, a.Outcome.Updates),
			writes,
			cpuPerDeploy(q.ChildCPU, q.Outcome.Updates), cpuPerDeploy(a.ChildCPU, a.Outcome.Updates),
			ratio(perDeployF(q.ChildCPU.Seconds(), q.Outcome.Updates), perDeployF(a.ChildCPU.Seconds(), a.Outcome.Updates)),
			mib(a.RSSKB<<10), perThousand(a, r.N), stored,
			q.IdlePerHour, a.IdlePerHour, idle,
			ratio(float64(q.Calls), float64(a.Calls)), q.Throttled, a.Throttled,
			a.Outcome.Deployed, a.Outcome.Published, a.Outcome.Lost, q.Outcome.Deployed, q.Outcome.Published, q.Outcome.Lost,
			a.Outcome.Reverted, q.Outcome.Reverted, r.Pinned,
			pct(a.Outcome.PairLatency, 0.5), pct(a.Outcome.PairLatency, 0.99),
			pct(q.Outcome.PairLatency, 0.5), pct(q.Outcome.PairLatency, 0.99))
	}
	if slopes := rssSlopes(results); len(slopes) > 0 {
		p("\nThe manager's peak RSS grows %s.\n", strings.Join(slopes, "; "))
	}
	for _, r := range results {
		p("\n### %s\n\n%d services (%d applications × %d Environments, %d pinned to an older image), %d builds in the simulated hour; one simulated hour ran in %s.\n\n",
			runTitle(r), r.N, r.Apps, cfg.EnvsPerApp, r.Pinned, r.Builds, (time.Duration(float64(time.Hour) / r.Speed)).Round(time.Second))
		p("| metric | autodeploy | polling (cron) | polling / autodeploy |\n|---|---|---|---|\n")
		for _, x := range rows(r) {
			p("| %s | %s | %s | %s |\n", x.metric, x.auto, x.poll, x.ratio)
		}
		p("| receiver: signed manifests/s (%d senders) vs raw status patches/s (%d writers), real time | %.0f | %.0f (raw patches) | receiver / raw = %.2f |\n",
			cfg.RecvWorkers, cfg.RecvWorkers, r.RecvPerSec, r.PatchPerSec, r.RecvPerSec/r.PatchPerSec)
		p("\nCalls by operation (hour, drain and settle): autodeploy %s; polling %s.\n", opList(r.Auto.ByOp), opList(r.Poll.ByOp))
		p("AWS calls per deploy, by operation (whole window): autodeploy %s; polling %s.\n", opsPerDeploy(r.Auto.ByOpAll, r.Auto.Outcome.Updates), opsPerDeploy(r.Poll.ByOpAll, r.Poll.Outcome.Updates))
		p("Events per deploy, by reason (from the API server's audit log): %s.\n", eventsPerDeploy(r.Auto.API, r.Auto.Outcome.Updates))
		if r.Auto.EventsDelivered > 0 {
			p("autodeploy received %d ECS Deployment State Change events on its receiver (%d redeliveries, %d given up).\n", r.Auto.EventsDelivered, r.Auto.EventRetries, r.Auto.EventsDropped)
		}
		if r.Poll.SkippedChecks > 0 {
			p("The cron skipped %d Environment checks after an error (throttled after the SDK's retries).\n", r.Poll.SkippedChecks)
		}
	}
}

func trackingText(t string) string {
	if t == TrackEvents {
		return "ECS events (--rollout-polling=false)"
	}
	return "the polling tracker (--rollout-polling=true)"
}

func writeMethod(w io.Writer, cfg Config) {
	fmt.Fprintf(w, `
## How it is measured

**Setup, per N.** One local control plane (envtest: kube-apiserver and etcd, as `+"`"+`make test`+"`"+`), and
for each system a fresh ECS simulator (`+"`"+`internal/ecssim`+"`"+`) seeded with the same fleet: N services
spread over %[1]d clusters, grouped into applications of %[2]d Environments (a build fans out to all
of them), each service running `+"`"+`<app>:v1`+"`"+`, the newest image of its ECR repository; about
%.0[3]f%% of the Environments (never the first of an application) were rolled back to `+"`"+`<app>:v0`+"`"+`
and are pinned there (`+"`"+`spec.pinnedImage`+"`"+`). The fleet is in one AWS account, or, where a run says
so, dealt out by application over several accounts, each reached through an IAM role
(`+"`"+`spec.ecs.roleARN`+"`"+`, STS AssumeRole answered by the simulator) and each with its own throttles, as
AWS applies them per account and Region. The simulator enforces AWS's published ECS throttles
(`+"`"+`ecssim.AWSBuckets()`+"`"+`: service modify 50 + 5/s, service read 100 + 20/s, task-definition modify
20 + 1/s, task-definition read 50 + 20/s, and ECR DescribeImages 10/s), answers every call after a
simulated AWS latency of %[4]s, and keeps a deployment IN_PROGRESS for %[5]s, completing it on
time whether or not anyone looks (as AWS does).

**Workload.** One simulated hour; every application gets one build in every %[6]s slot at a
random offset (same seed, same builds, for both systems). A build is published to autodeploy as a
signed manifest (`+"`"+`internal/notify.Send`+"`"+` to the receiver over HTTP) and to the cron as an image
push to ECR (not an API call). Then a drain (until the last build of every application was
deployed everywhere, at most %[7]s), a settle pause of %[8]s (the last rollouts end; calls count in
the total), and a quiet window of %[9]s with no builds for idle calls.

**Time compression ×S.** Each size runs at its own compression S (its title says which), chosen
so that the machine keeps up with the load: one simulated hour runs in 60/S real minutes. Every
rate and interval is scaled by S so that the relative load is that of the real hour: the
throttles' refill rates (a bucket's burst is a number of calls and stays), the controller's
client-side budget (AWS's limits × 0.97, refill ×S), the build schedule, the cron's schedule, the
simulated AWS latency, the rollout duration, the SDK's retry backoff (the default standard
retryer, its jittered exponential backoff divided by S), the manager's retry delays
(1 s..5 min), rollout-poll intervals (5 s..2 min), Kubernetes client QPS (20, burst 30, ×S) and
the receiver's per-tenant rate limit (10/s, ×S). All reported durations are simulated unless
marked real.

**autodeploy** is the real manager (`+"`"+`app.Setup`+"`"+`, as `+"`"+`cmd/manager`+"`"+` and `+"`"+`make run`+"`"+` wire it) running
in a **process of its own** (the benchmark's executable started again as a child), with its
default %[10]d concurrent reconciles and cmd/manager's cache options (`+"`"+`app.CacheOptions`+"`"+`:
managedFields and kubectl's last-applied copy dropped as objects enter the cache), talking to
the simulator through the real `+"`"+`aws-sdk-go-v2`+"`"+` ECS and STS clients with the `+"`"+`internal/awsecs`+"`"+`
budget. Rollouts are followed by %[11]s.
With ECS events, the simulator's ECS Deployment State Change events are posted to the
manager's `+"`"+`/v1/events`+"`"+` as an EventBridge API destination would (API key header, retried until
accepted), and the manager makes no DescribeServices call to follow them.

**Polling (the baseline)** models the cron autodeploy replaces, also in a process of its own:
every %[12]s, for each Environment (%[13]d in parallel), ECR DescribeImages of its repository
(newest tagged image by push time) and ECS DescribeServices + DescribeTaskDefinition; when the
running image differs, it registers a revision with the newest image (`+"`"+`internal/taskdef`+"`"+`) and
calls UpdateService. It knows nothing of pins, so it reverts rollbacks; on any error
(ThrottlingException included, after the SDK's default 3 attempts) it skips that Environment
until the next tick; a tick that overruns the next is skipped (concurrencyPolicy Forbid). It uses
the real ECS and ECR SDK clients with default retries and no client-side budget, and assumes a
role per account like autodeploy.

**Metrics.**
- AWS calls: every ECS and ECR wire call the simulator received, throttled ones and SDK retries
  included, timestamped by the simulator's call observer (`+"`"+`ecssim.WithCallObserver`+"`"+`). Total:
  from the first build to the idle window. Idle: the quiet window's calls scaled to one hour.
- Builds deployed: a build counts when a successful UpdateService put its image on every
  unpinned Environment of its application after it was published (a later build may have
  replaced it since). A build that was not is *superseded* when a newer build of its
  application was deployed everywhere (both systems deploy the newest build they know of, so a
  build followed closely by the next one may be skipped on some Environments), and *lost*
  otherwise. Rollbacks reverted: pinned Environments whose service was updated to any
  other image.
- Latency: from publishing the build to the successful UpdateService with its image, per
  (build, Environment) and per build to the last Environment of its fan-out; deployed ones only.
- Start: after the hour the manager's process is stopped and a new one started over the same N
  (all up to date, plus %[14]d record-only Environments of the throughput test): ECS calls until
  2 s after every Environment was reconciled once (`+"`"+`controller_runtime_reconcile_total`+"`"+`), and the
  real time from starting the process until then. The cron's counterpart is its first tick (3
  calls per Environment at least).
- Receiver throughput: %[14]d senders post signed manifests for %[14]d record-only Environments
  (auto-deploy off: each manifest is one status write, no deploy) for %[15]s real, against %[14]d
  writers merge-patching `+"`"+`status.latestBuild`+"`"+` of the same Environments directly (no client-side
  limit), on the same API server in the same run. The receiver's per-tenant rate limit is lifted
  for this measurement (its default, 10/s with burst 50, would cap it at 10/s).
- CPU and memory, over the hour, drain, settle and idle window: the system's own process
  (/proc/<pid>/stat utime + stime; peak RSS is its VmHWM, which includes the start and warm-up
  over the N Environments; peak Go heap is runtime/metrics
  `+"`"+`/memory/classes/heap/objects:bytes`+"`"+` sampled every 100 ms); the benchmark process, which holds
  the simulator and the senders (getrusage); and kube-apiserver with etcd (/proc/<pid>/stat),
  together and apart, with their peak resident set (VmRSS sampled every 500 ms). The same
  kube-apiserver and etcd serve every size of a run and both systems, so their memory at a
  size includes the Environments that earlier sizes left behind.
- Per deploy: a figure over the whole window, from the first build to the end of the idle
  window, divided by the successful UpdateService calls in it (every deploy ends in one; for
  the cron too, so that its polling is spread over its deploys; a deploy that lands in the
  idle window counts with its calls). AWS calls per deploy are all
  AWS calls over that count, in total and by operation (for autodeploy, a deploy's ECS calls:
  a fresh rolling deploy makes four); kube-apiserver + etcd CPU per deploy is their CPU over
  the window over it. The ratio column is polling / autodeploy, as everywhere: below 1 where
  autodeploy costs more.
- API-server writes per deploy, counted from the API server's own audit log (`+"`"+`--api-audit`+"`"+`, on
  by default, policy `+"`"+`bench.AuditPolicy`+"`"+`: Environment status writes and Event writes logged with
  their request bodies, GETs of Environments without): the requests about the run's namespace
  received from the first build to the end of the idle window. Status writes accepted (2xx)
  are told apart by writer from what the merge patch sets: status.latestBuild alone, the
  receiver; status.pendingDeploy set or cleared, the reconciler (also every write that
  touches neither pendingDeploy nor history: conditions, gates, observedGeneration);
  status.history without pendingDeploy, the rollout recorder (a rollout's end). Also
  counted: status writes refused with 409 Conflict, Events created by reason and Event
  series updates (writes to an existing Event), and GETs of single Environments (reads past
  the cache, such as the rollout recorder's live read before its write). The cron writes
  nothing to the API server. The audit log costs kube-apiserver some CPU, which its CPU
  figures include; with `+"`"+`--api-audit=false`+"`"+` nothing is logged and writes are not counted.
- Manager memory per Environment: the peak RSS of the manager over N, and its fixed cost, the
  peak RSS of the same manager (same process setup) started over the run's namespace while
  it is still empty and stopped 1 s after its caches synced. Per 1,000 Environments is
  (peak − fixed cost) / N × 1,000; a run of several sizes also gives the growth of the peak
  between consecutive sizes, per 1,000 Environments.
- Environment stored: after the idle window, every deployed (unpinned) Environment of the
  fleet is listed from the API server and its JSON measured (etcd holds custom resources as
  JSON): the median and largest object, status and managedFields, in bytes, and the entries
  of status.history (at most 10; a build every %[6]s gives each about one deploy per build).
- Receiver / raw status patch, the headline ratio of the summary table, is the receiver
  throughput above.

**Limits of the method.** Compression speeds up the workload but not the machine: at ×S a
reconcile that takes 100 ms of real CPU shows as S/10 simulated seconds, so autodeploy's latencies
(bound by CPU, API-server writes and the task-definition bucket) are inflated at high speed,
while the cron's (bound by its schedule) are not; conversely the cron, issuing calls as fast as
two cores allow, sends fewer calls per simulated second than a real one would, so it meets fewer
throttles here than it would in AWS. Both biases favour polling. The API server, etcd, the
simulator and the system share the machine's cores.
`, cfg.Clusters, cfg.EnvsPerApp, cfg.PinnedShare*100, cfg.AWSLatency, cfg.RolloutTime, cfg.BuildInterval,
		cfg.Drain, cfg.Settle, cfg.Idle, cfg.Reconcilers, trackingText(cfg.Tracking),
		cfg.PollInterval, cfg.PollWorkers, cfg.RecvWorkers, cfg.RecvDuration)
}

func opList(m map[string]int) string {
	f := make(map[string]float64, len(m))
	for k, v := range m {
		f[k] = float64(v)
	}
	return listOf(f, "%.0f")
}

// listOf lists the operations of m with their values (in format), the ECS and ECR
// operations first, in the order of a deploy.
func listOf(m map[string]float64, format string) string {
	known := []string{"DescribeImages", "DescribeServices", "DescribeTaskDefinition", "RegisterTaskDefinition", "UpdateService"}
	var parts []string
	for _, op := range known {
		if m[op] > 0 {
			parts = append(parts, op+" "+fmt.Sprintf(format, m[op]))
		}
	}
	var others []string
	for op := range m {
		if !slices.Contains(known, op) && m[op] > 0 {
			others = append(others, op)
		}
	}
	slices.Sort(others)
	for _, op := range others {
		parts = append(parts, op+" "+fmt.Sprintf(format, m[op]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
