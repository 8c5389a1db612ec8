package ecssim

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// account is the state of one AWS account in the simulator's Region:
// clusters, services, task definitions, ECR repositories, call counters and
// throttling buckets (AWS's API limits apply per account per Region).
type account struct {
	srv       *Server
	id        string
	clusters  map[string]*cluster
	families  map[string][]*taskDef // family -> revisions, index revision-1
	repos     map[string]*repository
	limiters  map[Category]*rate.Limiter
	calls     map[string]int
	throttled map[string]int
	total     int
	described int             // services named by handled DescribeServices calls
	alarms    map[string]bool // CloudWatch alarm name -> in ALARM (SetAlarm)
}

func (s *Server) newAccount(id string) *account {
	return &account{
		srv:       s,
		id:        id,
		clusters:  map[string]*cluster{},
		families:  map[string][]*taskDef{},
		repos:     map[string]*repository{},
		limiters:  newLimiters(s.buckets, s.clock()),
		calls:     map[string]int{},
		throttled: map[string]int{},
	}
}

// accountLocked returns the state of account id, creating it if needed.
func (s *Server) accountLocked(id string) *account {
	a, ok := s.accounts[id]
	if !ok {
		a = s.newAccount(id)
		s.accounts[id] = a
	}
	return a
}

func (a *account) now() time.Time { return a.srv.clock() }

// arn returns the ECS ARN of resource in this account.
func (a *account) arn(resource string) string {
	return "arn:aws:ecs:" + a.srv.region + ":" + a.id + ":" + resource
}

// AccountView seeds and observes one account of the simulator. Every
// account has its own clusters, services, task definitions, ECR
// repositories, call counters and throttling buckets; wire requests act in
// the account of their credentials (see Server). The Server's own seeding
// and observation methods are those of its default account.
//
// An AccountView is cheap; all its methods are safe for concurrent use.
type AccountView struct {
	s *Server
	a *account
}

// Account returns the view of account id (a 12-digit AWS account id),
// creating the account, empty, if it does not exist yet.
func (s *Server) Account(id string) *AccountView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &AccountView{s: s, a: s.accountLocked(id)}
}

// DefaultAccount returns the view of the default account (see WithAccount),
// in which anonymous requests and requests signed with unknown long-term
// access keys act.
func (s *Server) DefaultAccount() *AccountView { return &AccountView{s: s, a: s.def} }

// Accounts returns the ids of all accounts the simulator knows.
func (s *Server) Accounts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.accounts))
	for id := range s.accounts {
		ids = append(ids, id)
	}
	return ids
}

// ID returns the account id.
func (v *AccountView) ID() string { return v.a.id }

// Calls returns how many wire calls of op were received in this account
// (including failed, faulted and throttled ones).
func (v *AccountView) Calls(op string) int {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return v.a.calls[op]
}

// TotalCalls returns how many wire calls were received in this account.
func (v *AccountView) TotalCalls() int {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return v.a.total
}

// Throttled returns how many calls of op were throttled in this account.
func (v *AccountView) Throttled(op string) int {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return v.a.throttled[op]
}

// DescribedServices returns how many services the DescribeServices calls
// handled in this account named in all (a call names 1 to 10; throttled,
// faulted and invalid calls name none), which shows how well a poller
// batches.
func (v *AccountView) DescribedServices() int {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return v.a.described
}

// ResetCalls sets this account's call, throttle and described-services
// counters to zero.
func (v *AccountView) ResetCalls() {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	clear(v.a.calls)
	clear(v.a.throttled)
	v.a.total = 0
	v.a.described = 0
}

// callCounts returns copies of the counters.
func (v *AccountView) callCounts() (calls, throttled map[string]int, total int) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	calls = make(map[string]int, len(v.a.calls))
	for k, n := range v.a.calls {
		calls[k] = n
	}
	throttled = make(map[string]int, len(v.a.throttled))
	for k, n := range v.a.throttled {
		throttled[k] = n
	}
	return calls, throttled, v.a.total
}

// Service returns a snapshot of a service (cluster and service may be names
// or ARNs). Like any request, it first lets due rollouts complete.
func (v *AccountView) Service(cluster, name string) (ServiceState, bool) {
	v.s.lock()
	defer v.s.unlock()
	v.s.advanceLocked(v.s.clock())
	svc, err := v.a.serviceLocked(cluster, name)
	if err != nil {
		return ServiceState{}, false
	}
	return svc.snapshot(), true
}

// CompleteDeployment completes the service's IN_PROGRESS PRIMARY deployment
// now, whatever the rollout duration: all its tasks run and older
// deployments disappear. It is a no-op if the deployment already completed
// and an error if it failed.
func (v *AccountView) CompleteDeployment(cluster, service string) error {
	v.s.lock()
	defer v.s.unlock()
	svc, err := v.a.serviceLocked(cluster, service)
	if err != nil {
		return err
	}
	if p := svc.primary(); p.sd.engineDriven() {
		if p.sd.status == SDInProgress {
			p.sd.succeedLocked(v.a, v.s.clock())
		}
		return nil
	}
	switch p := svc.primary(); p.rolloutState {
	case RolloutCompleted:
		return nil
	case RolloutFailed:
		return fmt.Errorf("ecssim: deployment %s of service %s failed", p.id, svc.name)
	}
	v.a.completeLocked(svc, v.s.clock())
	return nil
}

// FailDeployment fails the service's IN_PROGRESS PRIMARY deployment with
// the given reason (rolloutState FAILED, its tasks counted as failed).
//
// If the service's deployment circuit breaker has rollback enabled and an
// older deployment exists, ECS rolls back: the service returns to that
// deployment's task definition with a new PRIMARY deployment that is already
// COMPLETED, and the failed deployment stays listed as ACTIVE/FAILED until
// the next deployment completes. With WithRollbackDuration the rollback
// deployment is IN_PROGRESS instead (its rolloutStateReason says it rolls
// back) and completes like any other; the failed deployment then leaves the
// list, as in ECS. Without rollback the failed deployment remains PRIMARY and
// the older ones stay ACTIVE.
//
// With the default rollout duration of 0 a deployment completes on the next
// request, so tests that fail deployments should use WithRolloutDuration.
func (v *AccountView) FailDeployment(cluster, service, reason string) error {
	v.s.lock()
	defer v.s.unlock()
	svc, err := v.a.serviceLocked(cluster, service)
	if err != nil {
		return err
	}
	p := svc.primary()
	if p.sd.engineDriven() {
		return v.a.failStrategyLocked(p.sd, reason, v.s.clock())
	}
	if p.rolloutState != RolloutInProgress {
		return fmt.Errorf("ecssim: service %s has no deployment in progress (PRIMARY %s is %s)", svc.name, p.id, p.rolloutState)
	}
	if reason == "" {
		reason = "ECS deployment circuit breaker: tasks failed to start."
	}
	now := v.s.clock()
	p.rolloutState = RolloutFailed
	p.rolloutReason = reason
	p.failed += p.desired
	p.running, p.pending = 0, 0
	p.updatedAt = now
	v.a.emitLocked(svc, p)

	if !svc.rollbackEnabled() {
		p.sd.rollingDoneLocked(true, reason, nil, now)
		return nil
	}
	previous := svc.previousDeployment()
	if previous == nil {
		p.sd.rollingDoneLocked(true, reason, nil, now)
		return nil
	}
	p.status = DeploymentActive
	p.sd.rollingDoneLocked(true, reason, previous, now)
	rb := svc.newDeployment(previous.taskDefinition, now)
	rb.sd = p.sd
	rb.rolloutReason = "ECS deployment circuit breaker: rolling back to deploymentId " + previous.id + "."
	svc.deployments = []*deployment{rb, p}
	svc.taskDefinition = previous.taskDefinition
	v.a.emitLocked(svc, rb)
	if v.s.rollbackFor > 0 {
		rb.completionTime = now.Add(v.s.rollbackFor)
		return nil
	}
	rb.complete(now)
	v.a.emitLocked(svc, rb)
	return nil
}

// TaskDefinition returns a copy of the stored task definition document
// (including the read-only fields ECS adds) for a family, family:revision or
// ARN. Tags are not part of it; see TaskDefinitionTags.
func (v *AccountView) TaskDefinition(ref string) (map[string]any, bool) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	td, ok := v.a.lookupTaskDefLocked(ref)
	if !ok {
		return nil, false
	}
	return copyMap(td.body), true
}

// TaskDefinitionTags returns the tags of a task definition as a key/value
// map.
func (v *AccountView) TaskDefinitionTags(ref string) (map[string]string, bool) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	td, ok := v.a.lookupTaskDefLocked(ref)
	if !ok {
		return nil, false
	}
	out := make(map[string]string, len(td.tags))
	for _, t := range td.tags {
		m, _ := t.(map[string]any)
		k, _ := m["key"].(string)
		val, _ := m["value"].(string)
		out[k] = val
	}
	return out, true
}

// Revisions returns how many revisions of family have been registered
// (ACTIVE or not), which is also the number of the latest one.
func (v *AccountView) Revisions(family string) int {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return len(v.a.families[family])
}

// ---- the Server's methods act on the default account ----

// Calls returns how many wire calls of op were received in the default
// account (including failed, faulted and throttled ones).
func (s *Server) Calls(op string) int { return s.DefaultAccount().Calls(op) }

// TotalCalls returns how many wire calls were received in the default
// account (anonymous requests, requests with unknown long-term keys, and
// requests with credentials for a role in the default account).
func (s *Server) TotalCalls() int { return s.DefaultAccount().TotalCalls() }

// Throttled returns how many calls of op were throttled in the default account.
func (s *Server) Throttled(op string) int { return s.DefaultAccount().Throttled(op) }

// DescribedServices returns how many services the default account's
// DescribeServices calls named; see AccountView.DescribedServices.
func (s *Server) DescribedServices() int { return s.DefaultAccount().DescribedServices() }

// ResetCalls sets the default account's call and throttle counters to zero.
func (s *Server) ResetCalls() { s.DefaultAccount().ResetCalls() }

// Service returns a snapshot of a service of the default account; see
// AccountView.Service.
func (s *Server) Service(cluster, name string) (ServiceState, bool) {
	return s.DefaultAccount().Service(cluster, name)
}

// CompleteDeployment completes a deployment in the default account; see
// AccountView.CompleteDeployment.
func (s *Server) CompleteDeployment(cluster, service string) error {
	return s.DefaultAccount().CompleteDeployment(cluster, service)
}

// FailDeployment fails a deployment in the default account; see
// AccountView.FailDeployment.
func (s *Server) FailDeployment(cluster, service, reason string) error {
	return s.DefaultAccount().FailDeployment(cluster, service, reason)
}

// TaskDefinition returns a task definition of the default account; see
// AccountView.TaskDefinition.
func (s *Server) TaskDefinition(ref string) (map[string]any, bool) {
	return s.DefaultAccount().TaskDefinition(ref)
}

// TaskDefinitionTags returns the tags of a task definition of the default
// account as a key/value map.
func (s *Server) TaskDefinitionTags(ref string) (map[string]string, bool) {
	return s.DefaultAccount().TaskDefinitionTags(ref)
}

// Revisions returns how many revisions of family have been registered in
// the default account.
func (s *Server) Revisions(family string) int { return s.DefaultAccount().Revisions(family) }

// SeedCluster creates a cluster in the default account; see
// AccountView.SeedCluster.
func (s *Server) SeedCluster(name string) error { return s.DefaultAccount().SeedCluster(name) }

// SeedTaskDefinition registers a task definition in the default account;
// see AccountView.SeedTaskDefinition.
func (s *Server) SeedTaskDefinition(rawJSON []byte) (arn string, err error) {
	return s.DefaultAccount().SeedTaskDefinition(rawJSON)
}

// SeedService creates a service in the default account; see
// AccountView.SeedService.
func (s *Server) SeedService(cluster, name, taskDefinition string, desiredCount int) error {
	return s.DefaultAccount().SeedService(cluster, name, taskDefinition, desiredCount)
}

// PushImage records an image push in the default account; see
// AccountView.PushImage.
func (s *Server) PushImage(repo, tag, digest string) error {
	return s.DefaultAccount().PushImage(repo, tag, digest)
}

// SeedRepository creates an empty ECR repository in the default account.
func (s *Server) SeedRepository(name string) error { return s.DefaultAccount().SeedRepository(name) }
