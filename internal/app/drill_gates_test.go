package app_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/explain"
)

// The gates drill's services: staging's in cluster staging, prod's in cluster prod (the pin
// watcher looks in cluster prod).
const (
	gdStagingSvc = "api-staging"
	gdProdSvc    = "api-prod"
)

// TestDrillGates drives a staging Environment and a prod Environment promoted from it (approval
// required, mostly) with a random sequence of builds, completions and failures of rollouts on
// both (ECS's circuit breaker rolls a failure back), approvals of the waiting build and of stale
// builds (through the approve annotation, as autodeployctl approve writes it), freezes set and
// lifted (spec.freeze or the freeze annotation), deploy windows switched on and off, the
// manager's clock moved to just before the next opening of the window (the build a step then
// lets through waits for the opening), and pins and unpins of prod. After every step, once
// settled:
//   - both statuses agree with what ECS runs, and staging deploys its latest build;
//   - prod runs the newest build that completed on staging, unless it is pinned (then the pin),
//     its rollout failed on prod, or a gate holds it: AwaitingApproval until the approve
//     annotation names it, else Frozen while a freeze is in force;
//   - no lost or doubled deploy: one UpdateService per deploy in either history, and no deploy
//     of the same image and build twice in a row;
//   - no reverted pin: a pin seen deployed stays on the service while it is set (checked
//     continuously);
//   - a waiting build is never deployed: every deploy of prod but a pin went out with the
//     approval of its build (one the drill gave), none while a freeze was in force, and none
//     outside the window while windows were on;
//   - prod never runs (nor deploys) a build that did not complete on staging, and a build whose
//     rollout failed on prod is never deployed there again.
//
// AUTODEPLOY_DRILL_SEEDS=1,2,3 runs other seeds.
func TestDrillGates(t *testing.T) {
	for _, seed := range drillStrategySeeds(t, 31, 32) {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) { runGatesDrill(t, seed) })
	}
}

func runGatesDrill(t *testing.T, seed int64) {
	t.Logf("seed %d (replay: AUTODEPLOY_DRILL_SEEDS=%d go test -race -run 'TestDrillGates' ./internal/app/)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x67617465))
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// The manager's clock starts ten minutes into tomorrow's window (09:00-10:00 Berlin); the
	// drill only ever moves it forward, to three seconds before a later day's opening.
	wall := time.Now()
	y, mo, d := wall.In(berlin).Date()
	day := d + 1
	var offset atomic.Int64
	offset.Store(int64(time.Date(y, mo, day, 9, 10, 0, 0, berlin).Sub(wall)))
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	window := deployv1.DeployWindow{Schedule: "0 9 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Europe/Berlin"}

	calls := &drillCalls{}
	h := newHarness(t, withClock(clock), withSim(ecssim.WithCallObserver(calls.observe), ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	seedImg := image("v1")
	h.seedService("staging", gdStagingSvc, seedImg)
	h.seedService("prod", gdProdSvc, seedImg)
	truthARollbackOn(h, "staging", gdStagingSvc)
	truthARollbackOn(h, "prod", gdProdSvc)
	baseStaging, baseProd := calls.updatesOf(gdStagingSvc), calls.updatesOf(gdProdSvc)
	approval := rng.IntN(4) != 0
	h.createEnv("staging", func(e *deployv1.Environment) { e.Spec.ECS.Cluster, e.Spec.ECS.Service = "staging", gdStagingSvc })
	h.createEnv("prod", func(e *deployv1.Environment) {
		e.Spec.ECS.Service = gdProdSvc
		e.Spec.Promotion = &deployv1.Promotion{Upstream: "staging"}
		if approval {
			e.Spec.Approval = deployv1.ApprovalRequired
		}
	})
	t.Logf("prod: promoted from staging, approval required: %v", approval)
	watcher := newPinWatcher(h)
	defer func() {
		if v := watcher.finish(); len(v) > 0 {
			t.Errorf("seed %d: a pinned service ran another image: %v", seed, v)
		}
	}()
	h.startManager()

	// The model.
	var (
		next         int64 = 100
		posted       []build
		latest       *build
		stagingState = map[string]string{} // build id -> the result the drill gave its rollout on staging
		completed    = map[string]bool{}   // builds whose rollout completed on staging
		prodFailed   = map[string]bool{}   // builds whose rollout failed on prod
		approveValue string                // the approve annotation
		approvedEver = map[int64]bool{}    // every build number the drill approved
		freeze       = ""                  // "", "spec" or "annotation"
		windowsOn    bool
		pin          string
		prodImages   = []string{seedImg} // images prod deployed, for pins
	)
	// promoted is the newest build that completed on staging.
	promoted := func() *build {
		var best *build
		for i := range posted {
			if b := &posted[i]; completed[b.ID] && (best == nil || b.Number > best.Number) {
				best = b
			}
		}
		return best
	}

	// Every deploy seen, per Environment (key: start, image, trigger), with the constraints it
	// was made under.
	seen := map[string]map[string]bool{"staging": {}, "prod": {}}
	type constraints struct{ frozen, windows bool }
	newDeploys := func(name string) []deployv1.Deploy {
		e := h.getEnv(name)
		var out []deployv1.Deploy
		for i := len(e.Status.History) - 1; i >= 0; i-- {
			dep := e.Status.History[i]
			k := fmt.Sprintf("%s|%s|%s", dep.StartedAt.UTC().Format(time.RFC3339Nano), dep.Image, dep.Trigger)
			if !seen[name][k] {
				seen[name][k] = true
				out = append(out, dep)
			}
		}
		return out
	}
	buildID := func(dep *deployv1.Deploy) string {
		if dep.Build == nil {
			return ""
		}
		return dep.Build.ID
	}

	settle := func(label string, during constraints) {
		t.Helper()
		w := promoted()
		g.Eventually(func(g Gomega) {
			st, pr := h.getEnv("staging"), h.getEnv("prod")
			for _, e := range []*deployv1.Environment{st, pr} {
				g.Expect(e.Status.ObservedGeneration).To(Equal(e.Generation), "%s observed its spec", e.Name)
				g.Expect(e.Status.PendingDeploy).To(BeNil(), "%s: no deploy pending", e.Name)
			}
			if latest != nil {
				g.Expect(st.Status.DeployedImage).To(Equal(h.webImage("staging", gdStagingSvc)), "staging's status says what runs")
				last := st.Status.LastDeploy()
				g.Expect(last).NotTo(BeNil())
				g.Expect(buildID(last)).To(Equal(latest.ID), "staging deploys its latest build")
				g.Expect(last.Result).To(Equal(stagingState[latest.ID]), "staging's rollout of %s", latest.ID)
			}
			if pr.Status.DeployedImage != "" || len(pr.Status.History) > 0 {
				g.Expect(pr.Status.DeployedImage).To(Equal(h.webImage("prod", gdProdSvc)), "prod's status says what runs")
			}
			running := h.drillRunningBuild("prod", gdProdSvc)
			g.Expect(running == "" || completed[running]).To(BeTrue(), "prod runs %s, which did not complete on staging", running)
			gate := gateOf(pr)
			switch {
			case pin != "":
				g.Expect(pr.Status.DeployedImage).To(Equal(pin), "prod runs its pin")
				g.Expect(gate).To(BeEmpty(), "a pin waits at no gate")
			case w == nil:
				g.Expect(pr.Status.History).To(BeEmpty(), "nothing completed on staging: prod deploys nothing")
			case prodFailed[w.ID]:
				g.Expect(pr.Status.Gate == nil || !slices.Contains([]string{deployv1.ReasonAwaitingApproval, deployv1.ReasonFrozen, deployv1.ReasonOutsideDeployWindow}, pr.Status.Gate.Reason)).
					To(BeTrue(), "a build held after its failed rollout waits at no gate: %s", gate)
			case pr.Status.DeployedBuild != nil && pr.Status.DeployedBuild.ID == w.ID:
				// Deployed: at most a newer build waits for staging.
				g.Expect(pr.Status.Gate == nil || pr.Status.Gate.Reason == deployv1.ReasonWaitingForUpstream || pr.Status.Gate.Reason == deployv1.ReasonNotPromoted).To(BeTrue(), "prod runs %s: %s", w.ID, gate)
			case approval && approveValue != strconv.FormatInt(w.Number, 10):
				g.Expect(gate).To(Equal(fmt.Sprintf("%s/%d", deployv1.ReasonAwaitingApproval, w.Number)))
			case freeze != "":
				g.Expect(gate).To(Equal(fmt.Sprintf("%s/%d", deployv1.ReasonFrozen, w.Number)))
			default:
				g.Expect(deployedNumber(pr)).To(Equal(w.Number), "prod deploys %s, which completed on staging (gate %q)", w.ID, gate)
			}
		}, timeout, poll).Should(Succeed(), "seed %d, step %s: settled", seed, label)

		// No lost or doubled deploy.
		for _, name := range []string{"staging", "prod"} {
			e := h.getEnv(name)
			hist := e.Status.History
			for i := 0; i+1 < len(hist); i++ {
				g.Expect(hist[i].Image == hist[i+1].Image && buildID(&hist[i]) == buildID(&hist[i+1])).To(BeFalse(),
					"seed %d, step %s: %s deployed %s twice in a row: %+v", seed, label, name, hist[i].Image, hist)
			}
		}
		for _, dep := range newDeploys("staging") {
			g.Expect(dep.Trigger).To(Equal(deployv1.TriggerBuild), "seed %d, step %s: staging deploys builds", seed, label)
		}
		g.Expect(calls.updatesOf(gdStagingSvc)-baseStaging).To(Equal(len(seen["staging"])), "seed %d, step %s: one UpdateService per staging deploy", seed, label)
		for _, dep := range newDeploys("prod") {
			t.Logf("prod deployed %s (trigger %s) at %s", dep.Image, dep.Trigger, dep.StartedAt.In(berlin).Format(time.DateTime))
			prodImages = append(prodImages, dep.Image)
			if dep.Trigger == deployv1.TriggerPin {
				continue
			}
			g.Expect(dep.Build).NotTo(BeNil(), "seed %d, step %s: prod deploys builds or pins: %+v", seed, label, dep)
			g.Expect(completed[dep.Build.ID]).To(BeTrue(), "seed %d, step %s: prod deployed %s, which did not complete on staging", seed, label, dep.Build.ID)
			g.Expect(prodFailed[dep.Build.ID]).To(BeFalse(), "seed %d, step %s: prod deployed %s again after its rollout failed there", seed, label, dep.Build.ID)
			if approval {
				g.Expect(dep.Approval).NotTo(BeNil(), "seed %d, step %s: %s went out without approval", seed, label, dep.Build.ID)
				g.Expect(dep.Approval.Build).To(Equal(dep.Build.Number), "seed %d, step %s: the approval is of the build deployed", seed, label)
				g.Expect(approvedEver[dep.Build.Number]).To(BeTrue(), "seed %d, step %s: %s was never approved", seed, label, dep.Build.ID)
				g.Expect(dep.Approval.By).To(Equal("drill@example.com"))
			}
			g.Expect(during.frozen).To(BeFalse(), "seed %d, step %s: %s deployed during a freeze", seed, label, dep.Build.ID)
			if during.windows {
				g.Expect(dep.StartedAt.In(berlin).Hour()).To(Equal(9), "seed %d, step %s: %s deployed outside the window, at %s", seed, label, dep.Build.ID, dep.StartedAt.In(berlin))
			}
		}
		g.Expect(calls.updatesOf(gdProdSvc)-baseProd).To(Equal(len(seen["prod"])), "seed %d, step %s: one UpdateService per prod deploy", seed, label)
		pr := h.getEnv("prod")
		// autodeployctl why tells the gate the reconciler wrote.
		if gt := pr.Status.Gate; gt != nil && pin == "" {
			why := explain.Why(pr, "autodeployctl", clock())
			phrase := map[string]string{
				deployv1.ReasonWaitingForUpstream: "waits for its upstream", deployv1.ReasonNotPromoted: "it is never promoted",
				deployv1.ReasonAwaitingApproval: "requires approval",
				deployv1.ReasonFrozen:           "is frozen", deployv1.ReasonOutsideDeployWindow: "is outside its deploy windows",
			}[gt.Reason]
			if why.Kind == explain.KindGate {
				g.Expect(why.Text).To(ContainSubstring(phrase), "seed %d, step %s: why of gate %s", seed, label, gt.Reason)
			} else {
				g.Expect(why.Kind).To(BeElementOf(explain.KindHeld, explain.KindRollingOut), "seed %d, step %s: why of gate %s: %s", seed, label, gt.Reason, why.Text)
			}
		}
		if pin != "" && pr.Status.DeployedImage == pin {
			watcher.hold(gdProdSvc, pin)
		}
		t.Logf("settled after %s: staging %s, prod %s (%s), gate %q", label, drillDescribeLast(h.getEnv("staging")), pr.Status.DeployedImage, drillDescribeLast(pr), gateOf(pr))
	}

	setApprove := func(n int64) {
		approveValue = strconv.FormatInt(n, 10)
		approvedEver[n] = true
		h.annotate("prod", map[string]string{deployv1.ApproveAnnotation: approveValue, deployv1.ApprovedByAnnotation: "drill@example.com"})
	}
	setFreeze := func(kind string) {
		switch {
		case kind == "spec" || freeze == "spec":
			var f *deployv1.Freeze
			if kind == "spec" {
				f = &deployv1.Freeze{Reason: "drill freeze"}
			}
			h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.Freeze = f })
		}
		switch {
		case kind == "annotation":
			h.annotate("prod", map[string]string{deployv1.FreezeAnnotation: "reason=drill freeze"})
		case freeze == "annotation":
			h.annotate("prod", map[string]string{deployv1.FreezeAnnotation: ""})
		}
		freeze = kind
	}
	lastOf := func(name string) *deployv1.Deploy { return h.getEnv(name).Status.LastDeploy() }
	// rolling reports whether the service's PRIMARY deployment is in progress in ECS.
	rolling := func(cluster, service string) bool {
		svc, ok := h.sim.Service(cluster, service)
		return ok && len(svc.Deployments) > 0 && svc.Deployments[0].Status == ecssim.DeploymentPrimary &&
			svc.Deployments[0].RolloutState == ecssim.RolloutInProgress
	}

	settle("start", constraints{})
	steps := 22 + rng.IntN(8)
	for step := 1; step <= steps; step++ {
		label := strconv.Itoa(step)
		before := constraints{frozen: freeze != "", windows: windowsOn}
		pr := h.getEnv("prod")
		waiting := pr.Status.Gate != nil && pr.Status.Gate.Reason == deployv1.ReasonAwaitingApproval && pr.Status.Gate.Build != nil
		switch r := rng.IntN(100); {
		case r < 16:
			b := newBuild(next)
			next++
			t.Logf("step %s: post build %s", label, b.ID)
			g.Expect(h.postSigned(b.body(), testKey, clock()).Code).To(Equal(http.StatusAccepted), "seed %d", seed)
			posted = append(posted, b)
			latest = &posted[len(posted)-1]
			stagingState[b.ID] = deployv1.ResultInProgress
		case r < 34 && latest != nil && stagingState[latest.ID] == deployv1.ResultInProgress && rolling("staging", gdStagingSvc):
			if rng.IntN(4) == 0 {
				t.Logf("step %s: the rollout of %s fails on staging", label, latest.ID)
				g.Expect(h.sim.FailDeployment("staging", gdStagingSvc, "drill: tasks failed to start")).To(Succeed())
				stagingState[latest.ID] = deployv1.ResultFailed
			} else {
				t.Logf("step %s: the rollout of %s completes on staging", label, latest.ID)
				g.Expect(h.sim.CompleteDeployment("staging", gdStagingSvc)).To(Succeed())
				stagingState[latest.ID], completed[latest.ID] = deployv1.ResultCompleted, true
			}
		case r < 44 && lastOf("prod") != nil && lastOf("prod").Result == deployv1.ResultInProgress && rolling("prod", gdProdSvc):
			last := lastOf("prod")
			if last.Trigger != deployv1.TriggerPin && rng.IntN(3) == 0 {
				t.Logf("step %s: the rollout of %s fails on prod", label, last.Image)
				g.Expect(h.sim.FailDeployment("prod", gdProdSvc, "drill: tasks failed to start")).To(Succeed())
				prodFailed[buildID(last)] = true
			} else {
				t.Logf("step %s: the rollout of %s completes on prod", label, last.Image)
				g.Expect(h.sim.CompleteDeployment("prod", gdProdSvc)).To(Succeed())
			}
		case r < 57 && waiting:
			t.Logf("step %s: approve the waiting build %d", label, pr.Status.Gate.Build.Number)
			setApprove(pr.Status.Gate.Build.Number)
		case r < 62 && len(posted) > 0:
			// A stale approval: a build that does not wait (older than the promoted one, or
			// one that never completed on staging).
			w := promoted()
			var stale []int64
			for _, b := range posted {
				if w == nil || b.Number < w.Number || !completed[b.ID] {
					stale = append(stale, b.Number)
				}
			}
			if len(stale) == 0 {
				t.Logf("step %s: checkpoint", label)
				break
			}
			n := stale[rng.IntN(len(stale))]
			t.Logf("step %s: approve build %d, which does not wait", label, n)
			setApprove(n)
		case r < 70:
			kinds := []string{"spec", "annotation"}
			switch {
			case freeze != "":
				t.Logf("step %s: lift the freeze (%s)", label, freeze)
				setFreeze("")
			default:
				k := kinds[rng.IntN(2)]
				t.Logf("step %s: freeze prod (%s)", label, k)
				setFreeze(k)
			}
		case r < 76:
			windowsOn = !windowsOn
			t.Logf("step %s: deploy windows on: %v", label, windowsOn)
			on := windowsOn
			h.updateEnv("prod", func(e *deployv1.Environment) {
				e.Spec.DeployWindows = nil
				if on {
					e.Spec.DeployWindows = []deployv1.DeployWindow{window}
				}
			})
		case r < 84:
			day++
			opening := time.Date(y, mo, day, 9, 0, 0, 0, berlin)
			offset.Store(int64(opening.Add(-3 * time.Second).Sub(time.Now())))
			t.Logf("step %s: the clock moves to 3s before the window opens at %s (windows on: %v)", label, opening, windowsOn)
			// Let a build through at once: it meets the closed window, and deploys at the opening.
			switch {
			case waiting:
				t.Logf("step %s: approve the waiting build %d", label, pr.Status.Gate.Build.Number)
				setApprove(pr.Status.Gate.Build.Number)
			case freeze != "":
				t.Logf("step %s: lift the freeze (%s)", label, freeze)
				setFreeze("")
			case pin != "":
				t.Logf("step %s: unpin prod", label)
				watcher.release(gdProdSvc)
				pin = ""
				h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = "" })
			}
		case r < 93:
			if pin != "" {
				t.Logf("step %s: unpin prod", label)
				watcher.release(gdProdSvc)
				pin = ""
				h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = "" })
				break
			}
			var cands []string
			for _, img := range prodImages {
				if img != h.webImage("prod", gdProdSvc) && !slices.Contains(cands, img) {
					cands = append(cands, img)
				}
			}
			if len(cands) == 0 {
				t.Logf("step %s: checkpoint", label)
				break
			}
			pin = cands[rng.IntN(len(cands))]
			t.Logf("step %s: pin prod to %s", label, pin)
			p := pin
			h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = p })
		default:
			t.Logf("step %s: checkpoint", label)
		}
		settle(label, constraints{frozen: before.frozen && freeze != "", windows: before.windows && windowsOn})
	}

	// At the end every gate opens: prod runs the newest build that completed on staging.
	if latest != nil && stagingState[latest.ID] == deployv1.ResultInProgress && rolling("staging", gdStagingSvc) {
		g.Expect(h.sim.CompleteDeployment("staging", gdStagingSvc)).To(Succeed())
		stagingState[latest.ID], completed[latest.ID] = deployv1.ResultCompleted, true
	}
	if pin != "" {
		watcher.release(gdProdSvc)
		pin = ""
		h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = "" })
	}
	if freeze != "" {
		setFreeze("")
	}
	settle("gates open", constraints{windows: windowsOn})
	if w := promoted(); w != nil && approval && !prodFailed[w.ID] && approveValue != strconv.FormatInt(w.Number, 10) {
		setApprove(w.Number)
		settle("final approval", constraints{windows: windowsOn})
	}
	if w := promoted(); w != nil && !prodFailed[w.ID] {
		g.Expect(deployedNumber(h.getEnv("prod"))).To(Equal(w.Number), "seed %d: prod runs the newest build that completed on staging", seed)
	}
	t.Logf("%d steps, builds up to %d, %d completed on staging, %d deploys on prod", steps, next-1, len(completed), len(seen["prod"]))
}
