package receiver

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// seenSet remembers keys (signatures, event ids) for a fixed time, bounded in size: when full,
// the oldest key is forgotten first. All keys live equally long, so insertion order is
// expiry order.
type seenSet struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	index map[string]*list.Element
	order list.List // of seenEntry, oldest first
}

type seenEntry struct {
	key     string
	expires time.Time
}

func newSeenSet(ttl time.Duration, max int) *seenSet {
	return &seenSet{ttl: ttl, max: max, index: map[string]*list.Element{}}
}

// Seen reports whether key was added within the last ttl.
func (s *seenSet) Seen(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	_, ok := s.index[key]
	return ok
}

// Add remembers key until now+ttl.
func (s *seenSet) Add(key string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if e, ok := s.index[key]; ok {
		s.order.Remove(e)
	}
	s.index[key] = s.order.PushBack(seenEntry{key: key, expires: now.Add(s.ttl)})
	for s.order.Len() > s.max {
		s.drop(s.order.Front())
	}
}

// Len is the number of keys remembered.
func (s *seenSet) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

func (s *seenSet) expire(now time.Time) {
	for e := s.order.Front(); e != nil && !now.Before(e.Value.(seenEntry).expires); e = s.order.Front() {
		s.drop(e)
	}
}

func (s *seenSet) drop(e *list.Element) {
	delete(s.index, e.Value.(seenEntry).key)
	s.order.Remove(e)
}

// Rate limit defaults: per tenant (namespace, or "*" for the cluster-wide routes).
const (
	DefaultRate  = 10
	DefaultBurst = 50
)

// TenantLimiter is a token bucket per tenant. Only authenticated requests take tokens, so a
// caller without the key cannot use up a tenant's budget.
type TenantLimiter struct {
	Rate  rate.Limit
	Burst int

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// maxTenantLimiters bounds the map (tenants are authenticated, so this is a backstop).
const maxTenantLimiters = 10000

// Reserve takes a token for tenant at now. When none is available it takes nothing and
// returns how long to wait.
func (l *TenantLimiter) Reserve(tenant string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil || l.Rate == rate.Inf {
		return true, 0
	}
	l.mu.Lock()
	lim, found := l.limiters[tenant]
	if !found {
		if l.limiters == nil || len(l.limiters) >= maxTenantLimiters {
			l.limiters = map[string]*rate.Limiter{}
		}
		lim = rate.NewLimiter(l.Rate, l.Burst)
		l.limiters[tenant] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// retryAfterSeconds rounds d up to whole seconds, at least one, for a Retry-After header.
func retryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		return 1
	}
	return s
}
