package ecssim

import "time"

// Call describes one wire call (ECS, ECR or STS) as the simulator handled it, for
// WithCallObserver.
type Call struct {
	// Time is the simulator's clock when the call was received (before any injected latency).
	Time time.Time
	// Account is the account the call acted in.
	Account string
	// Operation is the operation name (for example "UpdateService"); "" if the request named
	// none.
	Operation string
	// Body is the request body as received. The observer must not modify it.
	Body []byte
	// ErrorCode is the error code of the response ("ThrottlingException", ...), "" on success.
	ErrorCode string
}

// WithCallObserver calls observe once for every wire call, after the call was handled and
// before its answer is sent (the answer is held back until observe returns, whatever its
// size), outside the simulator's lock (observe may call the Server). Tests use it to make
// something happen deterministically between a call and its answer. Admin requests under
// /_sim/ are not observed. Calls are observed concurrently; observe must be safe for
// concurrent use and should return quickly, as it holds up the caller's response.
//
// Together with the counters (Calls, Throttled), it lets a benchmark put a time on each call,
// for example to measure how long after a build the first UpdateService came.
func WithCallObserver(observe func(Call)) Option {
	return func(s *Server) { s.observer = observe }
}
