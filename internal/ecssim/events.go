package ecssim

import (
	"context"
	"encoding/json"
	"time"
)

// ECS "Deployment State Change" EventBridge event names
// (detail.eventName), see AWS's "Amazon ECS service deployment state change
// events".
const (
	EventDeploymentInProgress = "SERVICE_DEPLOYMENT_IN_PROGRESS"
	EventDeploymentCompleted  = "SERVICE_DEPLOYMENT_COMPLETED"
	EventDeploymentFailed     = "SERVICE_DEPLOYMENT_FAILED"

	// DeploymentEventDetailType is the events' detail-type.
	DeploymentEventDetailType = "ECS Deployment State Change"
)

// DeploymentEvent is the EventBridge envelope of an ECS "Deployment State
// Change" event, exactly as AWS delivers it:
//
//	{"version":"0","id":"…","detail-type":"ECS Deployment State Change","source":"aws.ecs",
//	 "account":"111122223333","time":"2020-05-23T12:31:14Z","region":"us-west-2",
//	 "resources":["arn:aws:ecs:us-west-2:111122223333:service/default/servicetest"],
//	 "detail":{"eventType":"INFO","eventName":"SERVICE_DEPLOYMENT_COMPLETED",
//	           "deploymentId":"ecs-svc/123","updatedAt":"2020-05-23T11:11:11Z",
//	           "reason":"ECS deployment ecs-svc/123 completed."}}
type DeploymentEvent = Event[DeploymentEventDetail]

// Event is the EventBridge envelope of an event ECS sends, with its detail D.
type Event[D any] struct {
	Version    string   `json:"version"`
	ID         string   `json:"id"`
	DetailType string   `json:"detail-type"`
	Source     string   `json:"source"`
	Account    string   `json:"account"`
	Time       string   `json:"time"`
	Region     string   `json:"region"`
	Resources  []string `json:"resources"`
	Detail     D        `json:"detail"`
}

// queueEventLocked queues an ECS event of detailType about resource, sent at.
func queueEventLocked[D any](a *account, detailType string, at time.Time, resource string, detail D) {
	b, err := json.Marshal(Event[D]{
		Version:    "0",
		ID:         newRequestID(),
		DetailType: detailType,
		Source:     "aws.ecs",
		Account:    a.id,
		Time:       at.UTC().Format(time.RFC3339),
		Region:     a.srv.region,
		Resources:  []string{resource},
		Detail:     detail,
	})
	if err != nil {
		return // cannot happen: only strings
	}
	a.srv.events = append(a.srv.events, b)
}

// DeploymentEventDetail is the detail of a DeploymentEvent.
type DeploymentEventDetail struct {
	// EventType is INFO, or ERROR for SERVICE_DEPLOYMENT_FAILED.
	EventType    string `json:"eventType"`
	EventName    string `json:"eventName"`
	DeploymentID string `json:"deploymentId"` // matches the service's deployments[].id
	UpdatedAt    string `json:"updatedAt"`
	Reason       string `json:"reason"`
}

// WithEventSink makes the simulator report every change of a deployment's
// rolloutState as an ECS "Deployment State Change" event (a JSON-encoded
// DeploymentEvent): SERVICE_DEPLOYMENT_IN_PROGRESS when a deployment starts
// (UpdateService, CreateService, a circuit-breaker rollback),
// SERVICE_DEPLOYMENT_COMPLETED when it completes (lazily on a request after
// the rollout duration, on AdvanceRollouts, or on CompleteDeployment) and
// SERVICE_DEPLOYMENT_FAILED on FailDeployment. Seeded services send none,
// and neither do services behind a Classic Load Balancer, for which ECS
// reports no rolloutState.
//
// sink is called in event order, never with the simulator's lock held (it
// may call the Server), by the goroutine whose request or method caused the
// event, before that request is answered or that method returns — unless
// another goroutine is delivering events at the time, in which case that
// one delivers them. sink must not block for long: it holds up the caller.
func WithEventSink(sink func(event []byte)) Option {
	return func(s *Server) { s.sink = sink }
}

// AdvanceRollouts completes every IN_PROGRESS deployment, in every account,
// whose rollout duration has passed on the simulator's clock, sending their
// COMPLETED events, and returns how many it completed. Requests do the same
// lazily; AdvanceRollouts lets a test or a ticker drive rollouts (and their
// events) without reads.
func (s *Server) AdvanceRollouts() int {
	s.lock()
	defer s.unlock()
	return s.advanceLocked(s.clock())
}

// AdvanceRolloutsEvery calls AdvanceRollouts every d until ctx ends, as AWS completes
// deployments on its own whether or not anyone reads them.
func (s *Server) AdvanceRolloutsEvery(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.AdvanceRollouts()
		}
	}
}

// advanceLocked completes due rollouts in all accounts.
func (s *Server) advanceLocked(now time.Time) int {
	n := 0
	for _, a := range s.accounts {
		n += a.advanceLocked(now)
	}
	return n
}

// lock takes the server's lock; unlock releases it and then delivers the
// deployment events queued meanwhile.
func (s *Server) lock() { s.mu.Lock() }

func (s *Server) unlock() {
	pending := len(s.events) > 0 && !s.delivering
	s.mu.Unlock()
	if pending {
		s.deliverEvents()
	}
}

// deliverEvents hands queued events to the sink until the queue is empty.
// Only one goroutine delivers at a time, which keeps the order; events
// queued meanwhile (also by the sink itself) are delivered by it too.
func (s *Server) deliverEvents() {
	s.mu.Lock()
	if s.delivering {
		s.mu.Unlock()
		return
	}
	s.delivering = true
	for len(s.events) > 0 {
		batch := s.events
		s.events = nil
		s.mu.Unlock()
		for _, e := range batch {
			s.sink(e)
		}
		s.mu.Lock()
	}
	s.delivering = false
	s.mu.Unlock()
}

// emitLocked queues the event for d's current rolloutState.
func (a *account) emitLocked(svc *service, d *deployment) {
	s := a.srv
	if s.sink == nil || svc.classicLB() || d.sd.engineDriven() {
		return
	}
	detail := DeploymentEventDetail{
		EventType:    "INFO",
		DeploymentID: d.id,
		UpdatedAt:    d.updatedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		Reason:       d.rolloutReason,
	}
	switch d.rolloutState {
	case RolloutInProgress:
		detail.EventName = EventDeploymentInProgress
	case RolloutCompleted:
		detail.EventName = EventDeploymentCompleted
	case RolloutFailed:
		detail.EventType, detail.EventName = "ERROR", EventDeploymentFailed
	default:
		return
	}
	queueEventLocked(a, DeploymentEventDetailType, d.updatedAt, svc.arn, detail)
}
