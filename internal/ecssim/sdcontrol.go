package ecssim

import (
	"fmt"
	"slices"
	"time"
)

// ServiceDeploymentState is a snapshot of one service deployment.
type ServiceDeploymentState struct {
	ARN          string `json:"serviceDeploymentArn"`
	Strategy     string `json:"strategy"`
	Status       string `json:"status"`
	StatusReason string `json:"statusReason,omitempty"`
	// LifecycleStage is set for BLUE_GREEN, LINEAR and CANARY deployments.
	LifecycleStage string `json:"lifecycleStage,omitempty"`
	// ProductionTrafficWeight and TestTrafficWeight are the percentages of
	// traffic sent to the target revision (non-rolling strategies).
	ProductionTrafficWeight float64 `json:"productionTrafficWeight"`
	TestTrafficWeight       float64 `json:"testTrafficWeight"`
	TargetRevisionARN       string  `json:"targetServiceRevisionArn"`
	TargetTaskDefinition    string  `json:"targetTaskDefinition"`
	// SourceTaskDefinitions are the task definitions running when the
	// deployment started.
	SourceTaskDefinitions []string `json:"sourceTaskDefinitions,omitempty"`
	// RollbackTaskDefinition is the task definition a rollback returned (or
	// returns) the service to.
	RollbackTaskDefinition string `json:"rollbackTaskDefinition,omitempty"`
	// HooksAwaiting are the pause hooks waiting for ContinueServiceDeployment.
	HooksAwaiting []HookState `json:"hooksAwaiting,omitempty"`
	CreatedAt     time.Time   `json:"createdAt"`
	FinishedAt    time.Time   `json:"finishedAt,omitzero"`
}

// HookState is a snapshot of a pause hook waiting for an action.
type HookState struct {
	ID            string    `json:"hookId"`
	Stage         string    `json:"lifecycleStage"`
	ExpiresAt     time.Time `json:"expiresAt"`
	TimeoutAction string    `json:"timeoutAction"`
}

// Terminal reports whether the service deployment has ended.
func (s ServiceDeploymentState) Terminal() bool {
	switch s.Status {
	case SDSuccessful, SDStopped, SDRollbackSuccessful, SDRollbackFailed:
		return true
	}
	return false
}

// LatestServiceDeployment returns the newest service deployment of the
// snapshot.
func (s ServiceState) LatestServiceDeployment() (ServiceDeploymentState, bool) {
	if len(s.ServiceDeployments) == 0 {
		return ServiceDeploymentState{}, false
	}
	return s.ServiceDeployments[0], true
}

func (sd *serviceDeployment) snapshot() ServiceDeploymentState {
	st := ServiceDeploymentState{
		ARN:                  sd.arn,
		Strategy:             sd.strategy,
		Status:               sd.status,
		StatusReason:         sd.reason,
		TargetRevisionARN:    sd.target.arn,
		TargetTaskDefinition: sd.target.taskDefinition,
		CreatedAt:            sd.createdAt,
		FinishedAt:           sd.finishedAt,
	}
	if sd.engineDriven() {
		st.LifecycleStage = sd.stage
		st.ProductionTrafficWeight, st.TestTrafficWeight = sd.prodWeight, sd.testWeight
	}
	for _, rev := range sd.sources {
		st.SourceTaskDefinitions = append(st.SourceTaskDefinitions, rev.taskDefinition)
	}
	if sd.rollbackTo != nil {
		st.RollbackTaskDefinition = sd.rollbackTo.taskDefinition
	}
	for _, h := range sd.awaiting() {
		st.HooksAwaiting = append(st.HooksAwaiting, HookState{ID: h.id, Stage: h.stage, ExpiresAt: h.expiresAt, TimeoutAction: h.timeoutAction})
	}
	return st
}

func (a *account) opStopServiceDeployment(body []byte) (any, error) {
	var req struct {
		ARN      string `json:"serviceDeploymentArn"`
		StopType string `json:"stopType"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.ARN == "" {
		return nil, errInvalidParameter("serviceDeploymentArn must be specified.")
	}
	if req.StopType == "" {
		req.StopType = "ROLLBACK"
	}
	if req.StopType != "ROLLBACK" && req.StopType != "ABORT" {
		return nil, errInvalidParameter("stopType must be ROLLBACK or ABORT; got %q.", req.StopType)
	}
	sd, ok := a.serviceDeploymentLocked(req.ARN)
	if !ok {
		return nil, errServiceDeploymentNotFound()
	}
	if sd.status != SDInProgress {
		return nil, errConflict("Service deployment %s is %s; only an IN_PROGRESS service deployment can be stopped.", sd.arn, sd.status)
	}
	now := a.now()
	if req.StopType == "ABORT" {
		sd.status, sd.reason = SDStopRequested, "Service deployment stopped by StopServiceDeployment."
		sd.rollbackEnds, sd.updatedAt = now.Add(a.srv.stageDuration), now
		sd.cancelHooks(now)
		if !sd.engineDriven() {
			sd.stopLocked(sd.reason, now)
		}
		return map[string]any{"serviceDeploymentArn": sd.arn}, nil
	}
	reason := "Service deployment rolled back by StopServiceDeployment."
	if sd.engineDriven() {
		sd.startRollbackLocked(a, reason, true, now)
	} else if err := a.rollBackRollingLocked(sd, reason, now); err != nil {
		return nil, err
	}
	return map[string]any{"serviceDeploymentArn": sd.arn}, nil
}

// rollBackRollingLocked returns a rolling deployment in progress to the
// previous deployment at once, as a circuit-breaker rollback does: a new
// PRIMARY deployment of the previous task definition, already COMPLETED.
func (a *account) rollBackRollingLocked(sd *serviceDeployment, reason string, now time.Time) error {
	svc := sd.svc
	p := svc.primary()
	if p != sd.d || p.rolloutState != RolloutInProgress {
		return errConflict("Service deployment %s is no longer the service's deployment in progress.", sd.arn)
	}
	previous := svc.previousDeployment()
	if previous == nil {
		return errConflict("Service deployment %s has no previous revision to roll back to.", sd.arn)
	}
	p.rolloutState, p.rolloutReason, p.updatedAt = RolloutFailed, reason, now
	p.status = DeploymentActive
	a.emitLocked(svc, p)
	rb := svc.newDeployment(previous.taskDefinition, now)
	rb.sd = sd
	rb.rolloutReason = "ECS deployment rolling back to deploymentId " + previous.id + "."
	svc.deployments = []*deployment{rb, p}
	svc.taskDefinition = previous.taskDefinition
	a.emitLocked(svc, rb)
	rb.complete(now)
	a.emitLocked(svc, rb)
	sd.status, sd.reason = SDRollbackSuccessful, reason
	sd.rollbackAt, sd.rollbackReason, sd.finishedAt, sd.updatedAt = now, reason, now, now
	if previous.sd != nil {
		sd.rollbackTo = previous.sd.revisionOf(previous)
	}
	return nil
}

// ServiceDeployment returns a snapshot of a service deployment by ARN.
// Like any request, it first lets due rollouts and stages advance.
func (v *AccountView) ServiceDeployment(arn string) (ServiceDeploymentState, bool) {
	v.s.lock()
	defer v.s.unlock()
	v.s.advanceLocked(v.s.clock())
	sd, ok := v.a.serviceDeploymentLocked(arn)
	if !ok {
		return ServiceDeploymentState{}, false
	}
	return sd.snapshot(), true
}

// FailRollback makes the service's rollback end ROLLBACK_FAILED: the one in
// progress (ROLLBACK_REQUESTED or ROLLBACK_IN_PROGRESS) at once, otherwise
// the next one of a BLUE_GREEN, LINEAR or CANARY deployment of the service.
// After ROLLBACK_FAILED the service stays on the target task definition
// with its deployment FAILED.
func (v *AccountView) FailRollback(cluster, service string) error {
	v.s.lock()
	defer v.s.unlock()
	now := v.s.clock()
	v.s.advanceLocked(now)
	svc, err := v.a.serviceLocked(cluster, service)
	if err != nil {
		return err
	}
	for _, sd := range svc.sds {
		if sd.status == SDRollbackRequested || sd.status == SDRollbackInProgress {
			sd.failRollback = true
			sd.finishRollbackLocked(v.a, now)
			return nil
		}
	}
	svc.failNextRollback = true
	return nil
}

// SetAlarm sets the state of a CloudWatch alarm of this account: in ALARM
// (true) or OK. A deployment in progress whose deploymentConfiguration.alarms
// is enabled and names the alarm fails when it goes into ALARM, unless it
// was in ALARM already when the deployment started (ECS ignores such an
// alarm for that deployment). A BLUE_GREEN, LINEAR or CANARY deployment then
// rolls back; a rolling one rolls back if alarms.rollback is set, and is
// otherwise stopped (its deployment FAILED).
func (v *AccountView) SetAlarm(name string, inAlarm bool) {
	v.s.lock()
	defer v.s.unlock()
	now := v.s.clock()
	v.s.advanceLocked(now)
	if v.a.alarms == nil {
		v.a.alarms = map[string]bool{}
	}
	was := v.a.alarms[name]
	v.a.alarms[name] = inAlarm
	if !inAlarm || was {
		return
	}
	for _, c := range v.a.clusters {
		for _, svc := range c.services {
			for _, sd := range svc.sds {
				if sd.status != SDInProgress || !sd.alarmsEnabled() ||
					!slices.Contains(sd.alarmNames(), name) || slices.Contains(sd.ignoredAlarms, name) {
					continue
				}
				sd.triggeredAlarms = append(sd.triggeredAlarms, name)
				reason := fmt.Sprintf("Service deployment failed: alarm %s is in ALARM state.", name)
				if sd.engineDriven() {
					_ = v.a.failStrategyLocked(sd, reason, now)
					continue
				}
				al, _ := sd.config["alarms"].(map[string]any)
				if rb, _ := al["rollback"].(bool); rb {
					if v.a.rollBackRollingLocked(sd, reason, now) == nil {
						continue
					}
				}
				if d := sd.d; d.rolloutState == RolloutInProgress {
					d.rolloutState, d.rolloutReason, d.updatedAt = RolloutFailed, reason, now
					v.a.emitLocked(svc, d)
				}
				sd.stopLocked(reason, now)
			}
		}
	}
}

// ServiceDeployment returns a service deployment of the default account;
// see AccountView.ServiceDeployment.
func (s *Server) ServiceDeployment(arn string) (ServiceDeploymentState, bool) {
	return s.DefaultAccount().ServiceDeployment(arn)
}

// FailRollback fails a rollback in the default account; see
// AccountView.FailRollback.
func (s *Server) FailRollback(cluster, service string) error {
	return s.DefaultAccount().FailRollback(cluster, service)
}

// SetAlarm sets a CloudWatch alarm of the default account; see
// AccountView.SetAlarm.
func (s *Server) SetAlarm(name string, inAlarm bool) { s.DefaultAccount().SetAlarm(name, inAlarm) }

// previousDeployment returns the newest deployment before the primary one that did not fail
// (the one a rollback returns to), or nil.
func (s *service) previousDeployment() *deployment {
	for _, d := range s.deployments[1:] {
		if d.rolloutState != RolloutFailed {
			return d
		}
	}
	return nil
}
