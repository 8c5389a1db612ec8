package ecssim

import "time"

// WithRollbackDuration makes a circuit-breaker rollback (FailDeployment on a service with
// rollback on) roll out the way ECS does: the rollback deployment is PRIMARY and
// IN_PROGRESS, its rolloutStateReason "ECS deployment circuit breaker: rolling back to
// deploymentId …", while the failed deployment stays listed as ACTIVE and FAILED; after d on
// the simulator's clock (or on CompleteDeployment) the rollback completes, with its COMPLETED
// event, and the failed deployment leaves the list. The default, 0, completes the rollback at
// once and keeps the failed deployment listed until the next deployment completes.
func WithRollbackDuration(d time.Duration) Option {
	return func(s *Server) { s.rollbackFor = d }
}

// SetRollbackDuration changes the rollback duration of WithRollbackDuration for the rollbacks
// that start from now on.
func (s *Server) SetRollbackDuration(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollbackFor = d
}
