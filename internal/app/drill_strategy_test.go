package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// drillClock is the simulator's clock: real time plus an offset the drill moves forward, so
// that bake times, rollouts and pause-hook timeouts (an hour of simulator time per configured
// minute) end only when the drill lets time pass.
type drillClock struct{ off atomic.Int64 }

func (c *drillClock) now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

func (c *drillClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// drillHookCalls counts the ContinueServiceDeployment calls the simulator got, per answer
// (action and hook id).
type drillHookCalls struct {
	mu    sync.Mutex
	calls map[string]int
	total int
}

func (d *drillHookCalls) observe(c ecssim.Call) {
	if c.Operation != "ContinueServiceDeployment" {
		return
	}
	var in struct {
		HookID string `json:"hookId"`
		Action string `json:"action"`
	}
	_ = json.Unmarshal(c.Body, &in)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.calls == nil {
		d.calls = map[string]int{}
	}
	d.calls[strings.ToLower(in.Action)+":"+in.HookID]++
	d.total++
}

func (d *drillHookCalls) snapshot() (map[string]int, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, v := range d.calls {
		out[k] = v
	}
	return out, d.total
}

// drillStrategySeeds returns the drill's fixed seeds, or the seeds AUTODEPLOY_DRILL_SEEDS lists
// (comma-separated).
func drillStrategySeeds(t *testing.T, fixed ...int64) []int64 {
	s := os.Getenv("AUTODEPLOY_DRILL_SEEDS")
	if s == "" {
		return fixed
	}
	var seeds []int64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil {
			t.Fatalf("AUTODEPLOY_DRILL_SEEDS=%q: %q is no seed: %v", s, f, err)
		}
		seeds = append(seeds, n)
	}
	return seeds
}

// drillConfig is a deployment configuration the drill gives the service.
func drillConfig(rng *rand.Rand) (string, *types.DeploymentConfiguration) {
	var cfg types.DeploymentConfiguration
	var name string
	switch rng.IntN(4) {
	case 0:
		name = "ROLLING"
		cfg.Strategy = types.DeploymentStrategyRolling
		cfg.DeploymentCircuitBreaker = &types.DeploymentCircuitBreaker{Enable: true, Rollback: true}
		cfg.LifecycleHooks = []types.DeploymentLifecycleHook{}
		return name, &cfg
	case 1:
		name = "BLUE_GREEN"
		cfg.Strategy = types.DeploymentStrategyBlueGreen
	case 2:
		name = "LINEAR"
		cfg.Strategy = types.DeploymentStrategyLinear
		cfg.LinearConfiguration = &types.LinearConfiguration{StepPercent: aws.Float64(50), StepBakeTimeInMinutes: aws.Int32(0)}
	default:
		name = "CANARY"
		cfg.Strategy = types.DeploymentStrategyCanary
		cfg.CanaryConfiguration = &types.CanaryConfiguration{CanaryPercent: aws.Float64(10), CanaryBakeTimeInMinutes: aws.Int32(0)}
	}
	cfg.BakeTimeInMinutes = aws.Int32(1)
	cfg.LifecycleHooks = []types.DeploymentLifecycleHook{}
	if rng.IntN(3) != 0 {
		action := types.DeploymentLifecycleHookActionRollback
		if rng.IntN(2) == 0 {
			action = types.DeploymentLifecycleHookActionContinue
		}
		stage := []types.DeploymentLifecycleHookStage{
			types.DeploymentLifecycleHookStagePostScaleUp, types.DeploymentLifecycleHookStagePostTestTrafficShift,
		}[rng.IntN(2)]
		cfg.LifecycleHooks = []types.DeploymentLifecycleHook{{
			TargetType:           types.DeploymentLifecycleHookTargetTypePause,
			LifecycleStages:      []types.DeploymentLifecycleHookStage{stage},
			TimeoutConfiguration: &types.DeploymentLifecycleHookTimeoutConfiguration{TimeoutInMinutes: aws.Int32(10), Action: action},
		}}
		name += fmt.Sprintf(" + pause at %s (timeout %s)", stage, action)
	}
	return name, &cfg
}

// TestDrillStrategiesHooksAndEvents drives one Environment with a random sequence of builds,
// switches of the service's deploymentConfiguration between ROLLING (circuit breaker with
// rollback), BLUE_GREEN, LINEAR and CANARY (with or without a PAUSE hook), completions,
// failures (ECS rolls back; sometimes the rollback fails), hook answers through the
// hook-action annotation (continue, rollback, stale ids, invalid values), hook timeouts (time
// passes on the simulator's clock), and retry requests, once with the polling tracker and
// once in events mode, where rollouts and hooks are known only from the simulator's ECS
// events, delivered over HTTP by an EventBridge-like pump that retries 503s. After every step,
// once settled:
//   - status.deployedImage and deployedBuild are what the service runs in the simulator
//     (rolled back or not);
//   - the newest history entry follows the service's newest service deployment (in progress,
//     completed, or failed when ECS rolled it back or the rollback failed), and
//     status.rollout is that entry's result once it ended;
//   - Ready is AwaitingApproval exactly while the simulator waits at a pause hook, and names
//     that hook;
//   - every answer makes at most one ContinueServiceDeployment, and a valid answer exactly one;
//   - a build whose rollout failed is never deployed again but by a retry request; a build
//     the model knows failed is held, and a retry deploys it once;
//   - in events mode, no event was dropped.
//
// AUTODEPLOY_DRILL_SEEDS=1,2,3 runs other seeds.
func TestDrillStrategiesHooksAndEvents(t *testing.T) {
	for _, mode := range []struct {
		name   string
		events bool
		seeds  []int64
	}{
		{"polling", false, drillStrategySeeds(t, 11, 12)},
		{"events", true, drillStrategySeeds(t, 21, 22)},
	} {
		for _, seed := range mode.seeds {
			t.Run(fmt.Sprintf("%s/seed-%d", mode.name, seed), func(t *testing.T) {
				runStrategyDrill(t, seed, mode.events)
			})
		}
	}
}

func runStrategyDrill(t *testing.T, seed int64, events bool) {
	t.Logf("seed %d, events mode %v (replay: AUTODEPLOY_DRILL_SEEDS=%d go test -race -run 'TestDrillStrategiesHooksAndEvents' ./internal/app/)", seed, events, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x68756b73))
	clock := &drillClock{}
	hooks := &drillHookCalls{}
	poster := &ecssim.EventPoster{APIKey: ecsEventKey, Header: receiver.APIKeyHeader,
		Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logf: t.Logf}
	simOpts := []ecssim.Option{
		ecssim.WithClock(clock.now), ecssim.WithCallObserver(hooks.observe),
		ecssim.WithStageDuration(20 * time.Millisecond), ecssim.WithDeploymentMinute(time.Hour),
		ecssim.WithRolloutDuration(time.Hour),
	}
	if events {
		simOpts = append(simOpts, ecssim.WithEventSink(poster.Enqueue))
	}
	opts := []harnessOption{withSim(simOpts...)}
	if events {
		opts = append(opts, withoutPolling())
	}
	h := newHarness(t, opts...)
	g := h.g
	keys := [][]byte{[]byte(ecsEventKey)}
	h.eventKeys.Store(&keys)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	cfgName, cfg := drillConfig(rng)
	t.Logf("service shop-api: %s", cfgName)
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: cfg})
	h.createEnv("prod", nil)
	h.startManager()
	// AWS moves deployments on whether or not anyone reads them.
	go h.sim.AdvanceRolloutsEvery(ctx, 10*time.Millisecond)
	if events {
		poster.SetURL(h.mgr.receiverURL + "/v1/events")
		go poster.Run(ctx)
	}

	var (
		next     int64 = 100
		latest   *build
		held     = map[string]bool{} // builds the model failed, until a retry
		answers  = map[string]bool{} // hook-action values set, valid or not
		valid    = map[string]bool{} // the answers ECS must have got (once)
		retries  int
		settled  int
		lastHook string // the last hook id seen awaited
	)

	// settle waits until the Environment's status agrees with the simulator, and checks the
	// drill's invariants.
	settle := func(label string) {
		t.Helper()
		settled++
		g.Eventually(func(g Gomega) {
			e := h.getEnv("prod")
			st, ok := h.sim.Service("prod", "shop-api")
			g.Expect(ok).To(BeTrue())
			g.Expect(e.Status.ObservedGeneration).To(Equal(e.Generation))
			// Until the first deploy the status describes nothing.
			if latest != nil {
				g.Expect(e.Status.DeployedImage).To(Equal(h.webImage("prod", "shop-api")), "status.deployedImage is what runs")
				var depBuild string
				if e.Status.DeployedBuild != nil {
					depBuild = e.Status.DeployedBuild.ID
				}
				g.Expect(depBuild).To(Equal(h.drillRunningBuild("prod", "shop-api")), "status.deployedBuild is what runs")
			} else {
				g.Expect(e.Status.DeployedImage).To(BeEmpty())
			}
			last := e.Status.LastDeploy()
			if latest != nil {
				g.Expect(last).NotTo(BeNil())
				g.Expect(last.Build).NotTo(BeNil())
				g.Expect(last.Build.ID).To(Equal(latest.ID), "the newest deploy is of the latest build")
			}
			sd, hasSD := st.LatestServiceDeployment()
			awaiting := ""
			// A rolling deploy known from ECS events alone records no service deployment ARN:
			// it is the newest service deployment when that one deploys its revision.
			follows := hasSD && last != nil && (last.ServiceDeploymentARN == sd.ARN ||
				last.ServiceDeploymentARN == "" && sd.TargetTaskDefinition == last.TaskDefinitionARN)
			if follows {
				switch {
				case sd.Status == ecssim.SDSuccessful:
					g.Expect(last.Result).To(Equal(deployv1.ResultCompleted), "ECS: %s", sd.Status)
				case sd.Status == ecssim.SDRollbackSuccessful || sd.Status == ecssim.SDRollbackFailed || sd.Status == ecssim.SDStopped:
					g.Expect(last.Result).To(Equal(deployv1.ResultFailed), "ECS: %s", sd.Status)
				default:
					g.Expect(last.Result).To(Equal(deployv1.ResultInProgress), "ECS: %s", sd.Status)
				}
				if len(sd.HooksAwaiting) > 0 && sd.Status == ecssim.SDInProgress {
					awaiting = sd.HooksAwaiting[0].ID
				}
			} else if last != nil {
				g.Expect(last.Result).NotTo(Equal(deployv1.ResultInProgress), "a deploy in progress follows the newest service deployment: %s, ECS's newest %s %s", last.ServiceDeploymentARN, sd.ARN, sd.Status)
			}
			if last != nil && last.Result != deployv1.ResultInProgress {
				g.Expect(e.Status.Rollout).To(Equal(last.Result), "status.rollout says how the newest deploy ended")
			}
			g.Expect(awaitedHookID(e)).To(Equal(awaiting), "the hook the status awaits is the one ECS waits at")
			if awaiting != "" {
				g.Expect(readyReason(e)).To(Equal("False/" + deployv1.ReasonAwaitingApproval))
			} else {
				g.Expect(readyReason(e)).NotTo(HaveSuffix("/" + deployv1.ReasonAwaitingApproval))
			}
			if latest != nil && held[latest.ID] {
				g.Expect(last.Result).To(Equal(deployv1.ResultFailed), "the model failed %s", latest.ID)
			}
		}, timeout, poll).Should(Succeed(), "seed %d, step %s: the status agrees with ECS", seed, label)

		e := h.getEnv("prod")
		// A failed build is deployed again only by a retry request (the history is newest
		// first).
		for i, d := range e.Status.History {
			if d.Result != deployv1.ResultFailed || d.Build == nil {
				continue
			}
			for _, later := range e.Status.History[:i] {
				if later.Build != nil && later.Build.ID == d.Build.ID {
					g.Expect(later.Trigger).To(Equal(deployv1.TriggerRetry),
						"seed %d, step %s: %s failed and was deployed again without a retry request: %+v", seed, label, d.Build.ID, later)
				}
			}
		}
		// At most one ContinueServiceDeployment per answer; exactly one per valid answer.
		calls, total := hooks.snapshot()
		for v, n := range calls {
			g.Expect(n).To(Equal(1), "seed %d, step %s: ContinueServiceDeployment %s sent %d times", seed, label, v, n)
			g.Expect(answers[v]).To(BeTrue(), "seed %d, step %s: ContinueServiceDeployment %s that nobody asked for", seed, label, v)
		}
		for v := range valid {
			g.Expect(calls[v]).To(Equal(1), "seed %d, step %s: the answer %s reached ECS", seed, label, v)
		}
		g.Expect(total).To(BeNumerically("<=", len(answers)))
		if events {
			g.Expect(poster.Dropped()).To(BeZero(), "seed %d: the receiver refused an ECS event", seed)
		}
		if id := awaitedHookID(e); id != "" {
			lastHook = id
		}
		t.Logf("settled after %s: deployed %s (%s), rollout %s, ready %s, awaiting %q",
			label, e.Status.DeployedImage, drillDescribeLast(e), e.Status.Rollout, readyReason(e), awaitedHookID(e))
	}

	latestSD := func() (ecssim.ServiceDeploymentState, bool) {
		st, _ := h.sim.Service("prod", "shop-api")
		return st.LatestServiceDeployment()
	}
	// failLatest marks the latest build failed when the newest service deployment is its
	// deployment and ended rolled back or failed.
	noteEnd := func() {
		if latest == nil {
			return
		}
		e := h.getEnv("prod")
		if last := e.Status.LastDeploy(); last != nil && last.Build != nil && last.Build.ID == latest.ID && last.Result == deployv1.ResultFailed {
			held[latest.ID] = true
		}
	}

	settle("start")
	steps := 16 + rng.IntN(8)
	for step := 1; step <= steps; step++ {
		label := strconv.Itoa(step)
		sd, hasSD := latestSD()
		inProgress := hasSD && !sd.Terminal()
		r := rng.IntN(100)
		if awaitedHookID(h.getEnv("prod")) != "" && rng.IntN(4) != 0 {
			r = 60 + rng.IntN(30) // mostly answer a hook ECS waits at, or let it time out
		}
		switch {
		case r < 25:
			b := newBuild(next)
			next++
			t.Logf("step %s: post build %s", label, b.ID)
			g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted), "seed %d", seed)
			latest = &b
		case r < 37 && !inProgress:
			name, cfg := drillConfig(rng)
			t.Logf("step %s: the service's deployment configuration becomes %s", label, name)
			_, err := h.sdk().UpdateService(ctx, &ecs.UpdateServiceInput{
				Cluster: aws.String("prod"), Service: aws.String("shop-api"), DeploymentConfiguration: cfg})
			g.Expect(err).NotTo(HaveOccurred())
		case r < 47 && inProgress && len(sd.HooksAwaiting) == 0:
			t.Logf("step %s: ECS completes the deployment", label)
			g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
		case r < 59 && inProgress && sd.Status == ecssim.SDInProgress:
			if sd.Strategy != "ROLLING" && rng.IntN(3) == 0 {
				t.Logf("step %s: the rollback will fail", label)
				g.Expect(h.sim.FailRollback("prod", "shop-api")).To(Succeed())
			}
			t.Logf("step %s: the deployment fails (%s, stage %s)", label, sd.Strategy, sd.LifecycleStage)
			g.Expect(h.sim.FailDeployment("prod", "shop-api", "drill: tasks failed to start")).To(Succeed())
			if latest != nil && h.getEnv("prod").Status.LastDeploy() != nil {
				if last := h.getEnv("prod").Status.LastDeploy(); last.ServiceDeploymentARN == sd.ARN && last.Build != nil {
					held[last.Build.ID] = true
				}
			}
		case r < 75:
			e := h.getEnv("prod")
			id := awaitedHookID(e)
			var v string
			switch {
			case id != "" && rng.IntN(4) != 0:
				action := deployv1.HookActionContinue
				if rng.IntN(2) == 0 {
					action = deployv1.HookActionRollback
				}
				v = deployv1.HookActionValue(action, id)
			case lastHook != "" && rng.IntN(2) == 0:
				v = deployv1.HookActionValue(deployv1.HookActionContinue, lastHook) // maybe stale
			case rng.IntN(2) == 0:
				v = "continue:ecs-pause-of-another-deployment"
			default:
				v = "approve"
			}
			_, before := hooks.snapshot()
			fresh := !answers[v] && id != "" && strings.HasSuffix(v, ":"+id) && !strings.HasSuffix(v, "another-deployment")
			t.Logf("step %s: annotate hook-action=%s (awaiting %q, a new valid answer: %v)", label, v, id, fresh)
			answers[v] = true
			h.setHookAction("prod", v)
			g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(hookHandled, Equal(v)), "seed %d: the answer %s is handled", seed, v)
			if fresh {
				valid[v] = true
				g.Eventually(func() int { _, n := hooks.snapshot(); return n }, timeout, poll).Should(Equal(before+1),
					"seed %d: the answer %s reached ECS", seed, v)
				if strings.HasPrefix(v, deployv1.HookActionRollback+":") && latest != nil {
					held[latest.ID] = true
				}
			}
		case r < 83:
			t.Logf("step %s: eleven hours pass (bake times end, rolling deployments complete, pause hooks time out)", label)
			clock.advance(11 * time.Hour)
			h.sim.AdvanceRollouts()
			settle(label + " (time passed)")
			noteEnd()
		case r < 91 && latest != nil && held[latest.ID]:
			retries++
			v := strconv.Itoa(retries)
			prev := h.getEnv("prod").Status.LastDeploy().DeploymentID
			t.Logf("step %s: retry-at=%s for the held build %s", label, v, latest.ID)
			h.updateEnv("prod", func(e *deployv1.Environment) { truthASetRetry(e, v) })
			l := *latest
			g.Eventually(func(g Gomega) {
				e := h.getEnv("prod")
				g.Expect(e.Status.RetryHandled).To(Equal(v))
				last := e.Status.LastDeploy()
				g.Expect(last.DeploymentID).NotTo(Equal(prev))
				g.Expect(last.Trigger).To(Equal(deployv1.TriggerRetry))
				g.Expect(last.Image).To(Equal(l.Image))
			}, timeout, poll).Should(Succeed(), "seed %d: the retry deploys %s again", seed, l.ID)
			delete(held, l.ID)
		default:
			t.Logf("step %s: checkpoint", label)
		}
		settle(label)
		noteEnd()
	}
	// At the end, time passes and everything ends.
	clock.advance(11 * time.Hour)
	h.sim.AdvanceRollouts()
	settle("final")
	t.Logf("%d steps, %d settles, builds up to %d, %d answers", steps, settled, next-1, len(answers))
}
