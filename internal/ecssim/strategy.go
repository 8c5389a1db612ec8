package ecssim

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// Deployment strategies (deploymentConfiguration.strategy).
const (
	StrategyRolling   = "ROLLING"
	StrategyBlueGreen = "BLUE_GREEN"
	StrategyLinear    = "LINEAR"
	StrategyCanary    = "CANARY"
)

// Lifecycle stages (ServiceDeployment.lifecycleStage and the stages
// lifecycle hooks attach to).
const (
	StageReconcileService           = "RECONCILE_SERVICE"
	StagePreScaleUp                 = "PRE_SCALE_UP"
	StageScaleUp                    = "SCALE_UP"
	StagePostScaleUp                = "POST_SCALE_UP"
	StageTestTrafficShift           = "TEST_TRAFFIC_SHIFT"
	StagePostTestTrafficShift       = "POST_TEST_TRAFFIC_SHIFT"
	StagePreProductionTrafficShift  = "PRE_PRODUCTION_TRAFFIC_SHIFT"
	StageProductionTrafficShift     = "PRODUCTION_TRAFFIC_SHIFT"
	StagePostProductionTrafficShift = "POST_PRODUCTION_TRAFFIC_SHIFT"
	StageBakeTime                   = "BAKE_TIME"
	StageCleanUp                    = "CLEAN_UP"
)

var strategies = []string{StrategyRolling, StrategyBlueGreen, StrategyLinear, StrategyCanary}

// Defaults of the strategy settings, as ECS documents them.
const (
	defaultLinearStepPercent      = 10.0
	defaultLinearStepBakeMinutes  = 6
	defaultCanaryPercent          = 5.0
	defaultCanaryBakeMinutes      = 10
	defaultBakeTimeMinutes        = 0 // the simulator's choice; ECS documents only the range
	maxBakeMinutes                = 1440
	defaultHookTimeoutMinutes     = 1440
	maxHookTimeoutMinutes         = 20160
	maxPauseHooks, maxLambdaHooks = 10, 10
)

// WithStageDuration sets how long each lifecycle stage of a BLUE_GREEN,
// LINEAR or CANARY deployment lasts on the simulator's clock, on top of any
// bake time (default 0: a stage ends on the first request after it began).
// A rollback lasts one stage duration too (two after StopServiceDeployment:
// ROLLBACK_REQUESTED, then ROLLBACK_IN_PROGRESS).
func WithStageDuration(d time.Duration) Option { return func(s *Server) { s.stageDuration = d } }

// WithDeploymentMinute sets how long one minute of deployment configuration
// (bakeTimeInMinutes, stepBakeTimeInMinutes, canaryBakeTimeInMinutes, a
// lifecycle hook's timeoutInMinutes) lasts on the simulator's clock
// (default time.Minute). Tests with a fake clock can keep the default and
// advance the clock; a local run can shrink minutes to seconds.
func WithDeploymentMinute(d time.Duration) Option { return func(s *Server) { s.minute = d } }

func (s *Server) minutes(n float64) time.Duration {
	m := s.minute
	if m == 0 {
		m = time.Minute
	}
	return time.Duration(n * float64(m))
}

// strategy returns the service's deployment strategy.
func (svc *service) strategy() string {
	if st, _ := svc.deployConfig["strategy"].(string); st != "" {
		return st
	}
	return StrategyRolling
}

// mergeConfig returns base with the fields of update replaced.
func mergeConfig(base, update map[string]any) map[string]any {
	out := copyMap(base)
	for k, v := range update {
		out[k] = deepCopy(v)
	}
	return out
}

// number reads a JSON number (json.Number or float64).
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	}
	return 0, false
}

// field returns a number field of m, def if absent; it fails naming path if
// the field is not a number or is outside [lo, hi].
func field(m map[string]any, key, path string, def, lo, hi float64) (float64, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return def, nil
	}
	f, ok := number(v)
	if !ok || math.IsNaN(f) || f < lo || f > hi {
		return 0, errInvalidParameter("%s must be a number between %v and %v; got %v.", path, lo, hi, v)
	}
	return f, nil
}

// validateDeploymentConfiguration checks the strategy settings and lifecycle
// hooks of a (merged) deploymentConfiguration.
func validateDeploymentConfiguration(dc map[string]any) error {
	st := StrategyRolling
	if v, ok := dc["strategy"]; ok && v != nil {
		st, _ = v.(string)
		if !slices.Contains(strategies, st) {
			return errInvalidParameter("deploymentConfiguration.strategy must be one of ROLLING, BLUE_GREEN, LINEAR, CANARY; got %v.", v)
		}
	}
	if _, err := field(dc, "bakeTimeInMinutes", "deploymentConfiguration.bakeTimeInMinutes", 0, 0, maxBakeMinutes); err != nil {
		return err
	}
	if lc, ok := dc["linearConfiguration"].(map[string]any); ok {
		if _, err := field(lc, "stepPercent", "deploymentConfiguration.linearConfiguration.stepPercent", defaultLinearStepPercent, 3, 100); err != nil {
			return err
		}
		if _, err := field(lc, "stepBakeTimeInMinutes", "deploymentConfiguration.linearConfiguration.stepBakeTimeInMinutes", 0, 0, maxBakeMinutes); err != nil {
			return err
		}
	}
	if cc, ok := dc["canaryConfiguration"].(map[string]any); ok {
		if _, err := field(cc, "canaryPercent", "deploymentConfiguration.canaryConfiguration.canaryPercent", defaultCanaryPercent, 0.1, 100); err != nil {
			return err
		}
		if _, err := field(cc, "canaryBakeTimeInMinutes", "deploymentConfiguration.canaryConfiguration.canaryBakeTimeInMinutes", 0, 0, maxBakeMinutes); err != nil {
			return err
		}
	}
	_, err := parseHooks(dc)
	return err
}

// step is one lifecycle stage of a strategy's plan.
type step struct {
	stage string
	dur   time.Duration
	prod  float64 // production weight on the target once the stage begins; -1 keeps it
	test  float64 // test weight likewise
}

// planFor builds the stages a non-rolling deployment goes through:
//
//	RECONCILE_SERVICE, PRE_SCALE_UP, SCALE_UP, POST_SCALE_UP,
//	TEST_TRAFFIC_SHIFT (test traffic 100% to the target), POST_TEST_TRAFFIC_SHIFT,
//	then per production step: PRE_PRODUCTION_TRAFFIC_SHIFT,
//	  PRODUCTION_TRAFFIC_SHIFT (the step's weight; lasts the step's bake time),
//	  POST_PRODUCTION_TRAFFIC_SHIFT,
//	BAKE_TIME (bakeTimeInMinutes), CLEAN_UP.
//
// Production steps: BLUE_GREEN 100; CANARY canaryPercent (baking
// canaryBakeTimeInMinutes) then 100; LINEAR stepPercent, 2×stepPercent, …
// (each baking stepBakeTimeInMinutes) up to 100.
func (s *Server) planFor(sd *serviceDeployment) []step {
	dc := sd.config
	stage := s.stageDuration
	bake, _ := field(dc, "bakeTimeInMinutes", "", defaultBakeTimeMinutes, 0, maxBakeMinutes)
	type shift struct {
		weight float64
		bake   time.Duration
	}
	var shifts []shift
	switch sd.strategy {
	case StrategyCanary:
		cc, _ := dc["canaryConfiguration"].(map[string]any)
		pct, _ := field(cc, "canaryPercent", "", defaultCanaryPercent, 0.1, 100)
		b, _ := field(cc, "canaryBakeTimeInMinutes", "", defaultCanaryBakeMinutes, 0, maxBakeMinutes)
		if pct < 100 {
			shifts = append(shifts, shift{pct, s.minutes(b)})
		}
		shifts = append(shifts, shift{100, 0})
	case StrategyLinear:
		lc, _ := dc["linearConfiguration"].(map[string]any)
		pct, _ := field(lc, "stepPercent", "", defaultLinearStepPercent, 3, 100)
		b, _ := field(lc, "stepBakeTimeInMinutes", "", defaultLinearStepBakeMinutes, 0, maxBakeMinutes)
		for w := pct; w < 100; w += pct {
			shifts = append(shifts, shift{math.Round(w*100) / 100, s.minutes(b)})
		}
		shifts = append(shifts, shift{100, 0})
	default: // BLUE_GREEN
		shifts = []shift{{100, 0}}
	}
	plan := []step{
		{StageReconcileService, stage, -1, -1},
		{StagePreScaleUp, stage, -1, -1},
		{StageScaleUp, stage, -1, -1},
		{StagePostScaleUp, stage, -1, -1},
		{StageTestTrafficShift, stage, -1, 100},
		{StagePostTestTrafficShift, stage, -1, -1},
	}
	for _, sh := range shifts {
		plan = append(plan,
			step{StagePreProductionTrafficShift, stage, -1, -1},
			step{StageProductionTrafficShift, stage + sh.bake, sh.weight, -1},
			step{StagePostProductionTrafficShift, stage, -1, -1})
	}
	return append(plan,
		step{StageBakeTime, s.minutes(bake), -1, -1},
		step{StageCleanUp, stage, -1, -1})
}

// enterStepLocked moves the deployment into plan[i] at time at (past the
// end of the plan: the deployment succeeds) and starts the stage's pause
// hooks.
func (sd *serviceDeployment) enterStepLocked(a *account, i int, at time.Time) {
	sd.idx, sd.stepStart, sd.updatedAt = i, at, at
	if i >= len(sd.plan) {
		sd.succeedLocked(a, at)
		return
	}
	st := sd.plan[i]
	sd.stage = st.stage
	if st.prod >= 0 {
		sd.prodWeight = st.prod
	}
	if st.test >= 0 {
		sd.testWeight = st.test
	}
	sd.startHooksLocked(a, at)
}

// succeedLocked ends the deployment SUCCESSFUL: the target deployment has
// all its tasks and every older deployment is gone.
func (sd *serviceDeployment) succeedLocked(a *account, at time.Time) {
	svc := sd.svc
	sd.status, sd.reason = SDSuccessful, ""
	sd.finishedAt, sd.updatedAt = at, at
	sd.prodWeight, sd.testWeight = 100, 100
	if sd.stage == "" {
		sd.stage = StageCleanUp
	}
	if svc.primary() == sd.d {
		sd.d.complete(at)
		svc.deployments = []*deployment{sd.d}
	}
}

// startRollbackLocked starts rolling back to the source revision at time at.
// requested makes it pass through ROLLBACK_REQUESTED first
// (StopServiceDeployment).
func (sd *serviceDeployment) startRollbackLocked(a *account, reason string, requested bool, at time.Time) {
	sd.cancelHooks(at)
	if sd.svc.failNextRollback {
		sd.failRollback, sd.svc.failNextRollback = true, false
	}
	sd.reason, sd.rollbackReason, sd.rollbackAt, sd.updatedAt = reason, reason, at, at
	if sd.source != nil && sd.source.sd != nil {
		sd.rollbackTo = sd.source.sd.revisionOf(sd.source)
	}
	d := a.srv.stageDuration
	if requested {
		sd.status = SDRollbackRequested
		sd.rollbackEnds = at.Add(2 * d)
	} else {
		sd.status = SDRollbackInProgress
		sd.rollbackEnds = at.Add(d)
	}
	sd.d.rolloutState, sd.d.rolloutReason, sd.d.updatedAt = RolloutFailed, reason, at
}

// finishRollbackLocked ends a rollback at time at: ROLLBACK_SUCCESSFUL with
// the service back on the source revision, or ROLLBACK_FAILED (FailRollback)
// with the service left where it was.
func (sd *serviceDeployment) finishRollbackLocked(a *account, at time.Time) {
	svc := sd.svc
	sd.finishedAt, sd.updatedAt = at, at
	if sd.failRollback {
		sd.status = SDRollbackFailed
		return
	}
	sd.status = SDRollbackSuccessful
	sd.prodWeight, sd.testWeight = 0, 0
	if svc.primary() != sd.d || sd.source == nil {
		return
	}
	src := sd.source
	if !slices.Contains(svc.deployments, src) {
		src = svc.newDeployment(src.taskDefinition, at)
		src.sd = sd
	}
	src.status = DeploymentPrimary
	src.desired = svc.desiredCount
	src.complete(at)
	svc.deployments = []*deployment{src}
	svc.taskDefinition = src.taskDefinition
}

// advanceLocked moves a non-rolling deployment on to time now, stage by
// stage, and reports whether it changed.
func (sd *serviceDeployment) advanceLocked(a *account, now time.Time) bool {
	changed := false
	for {
		switch sd.status {
		case SDRollbackRequested:
			mid := sd.rollbackEnds.Add(-a.srv.stageDuration)
			if now.Before(mid) {
				return changed
			}
			sd.status, sd.updatedAt, changed = SDRollbackInProgress, mid, true
			continue
		case SDRollbackInProgress:
			if now.Before(sd.rollbackEnds) {
				return changed
			}
			sd.finishRollbackLocked(a, sd.rollbackEnds)
			return true
		case SDStopRequested:
			if now.Before(sd.rollbackEnds) {
				return changed
			}
			sd.stopLocked(sd.reason, sd.rollbackEnds)
			return true
		case SDInProgress:
		default:
			return changed
		}
		if h := sd.firstExpiringHook(); h != nil {
			if now.Before(h.expiresAt) {
				return changed
			}
			sd.timeoutHookLocked(a, h)
			changed = true
			continue
		}
		end := sd.stepStart.Add(sd.plan[sd.idx].dur)
		if now.Before(end) {
			return changed
		}
		sd.enterStepLocked(a, sd.idx+1, end)
		changed = true
	}
}

// advanceStrategiesLocked moves every non-rolling deployment of svc on to
// now and returns how many changed.
func (a *account) advanceStrategiesLocked(svc *service, now time.Time) int {
	n := 0
	for _, sd := range svc.sds {
		if sd.engineDriven() && !sd.terminal() && sd.advanceLocked(a, now) {
			n++
		}
	}
	return n
}

// failStrategyLocked fails a non-rolling deployment in progress: it rolls
// back (blue/green, linear and canary deployments always do).
func (a *account) failStrategyLocked(sd *serviceDeployment, reason string, now time.Time) error {
	if sd.status != SDInProgress {
		return fmt.Errorf("ecssim: service deployment %s is %s, not IN_PROGRESS", sd.arn, sd.status)
	}
	if reason == "" {
		reason = "Service deployment failed: tasks failed to start."
	}
	sd.startRollbackLocked(a, reason, false, now)
	return nil
}
