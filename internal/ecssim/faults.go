package ecssim

import (
	"net/http"
	"time"
)

// Fault is an error response injected for an operation.
type Fault struct {
	// Status is the HTTP status; 0 means 500 for ServerException and 400
	// for any other code.
	Status int
	// Code is the ECS error code (X-Amzn-ErrorType / __type); "" means
	// "ServerException".
	Code string
	// Message is the error message; "" means a generic one.
	Message string
	// Times is how many calls fail; 0 means every call until ClearFaults.
	Times int
	// AfterWork makes the operation take effect before the error is answered: the call's
	// answer is lost after the work was done (as when a connection drops or a gateway times
	// out), so a caller that retries does the work twice.
	AfterWork bool
}

type faultState struct {
	fault     Fault
	remaining int // -1: unlimited
}

// InjectFault makes the next f.Times calls of op (all calls if f.Times is 0)
// fail with f, replacing any fault already set for op. Faulted calls are
// counted like any other call; throttling is applied before faults.
func (s *Server) InjectFault(op string, f Fault) {
	if f.Code == "" {
		f.Code = "ServerException"
	}
	if f.Status == 0 {
		f.Status = http.StatusBadRequest
		if f.Code == "ServerException" {
			f.Status = http.StatusInternalServerError
		}
	}
	if f.Message == "" {
		f.Message = "Injected fault."
	}
	remaining := f.Times
	if remaining <= 0 {
		remaining = -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[op] = &faultState{fault: f, remaining: remaining}
}

// ClearFaults removes all injected faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// SetLatency delays every call of op by d (real time, before the call is
// handled); 0 removes the delay.
func (s *Server) SetLatency(op string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.latency, op)
		return
	}
	s.latency[op] = d
}

// faultLocked consumes and returns the injected fault for op, if any, and whether it is
// answered after the operation took effect.
func (s *Server) faultLocked(op string) (after bool, err error) {
	fs, ok := s.faults[op]
	if !ok {
		return false, nil
	}
	if fs.remaining > 0 {
		fs.remaining--
		if fs.remaining == 0 {
			delete(s.faults, op)
		}
	}
	f := fs.fault
	return f.AfterWork, &apiError{Status: f.Status, Code: f.Code, Message: f.Message}
}
