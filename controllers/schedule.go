package controllers

import (
	"context"
	"sync"
	"time"

	ktypes "k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// schedule holds what a polling tracker follows: one item of type I per Environment, in groups
// keyed by G that one look serves. A group is looked at first initial after an item joins it,
// then at intervals that double up to max. With nothing followed, run waits without a timer.
type schedule[G comparable, I any] struct {
	once         sync.Once
	initial, max time.Duration
	now          func() time.Time

	mu     sync.Mutex
	groups map[G]*schedGroup[I]
	byEnv  map[ktypes.NamespacedName]G
	wake   chan struct{}
}

// schedGroup is the items one look serves, and when it is next due.
type schedGroup[I any] struct {
	target   deployv1.ECSTarget
	items    map[ktypes.NamespacedName]I
	interval time.Duration
	next     time.Time
}

// setup fills in the defaults of the tracker's timing (5s initial, 2m max, time.Now) once,
// and makes the schedule use them.
func (s *schedule[G, I]) setup(initial, maxInterval *time.Duration, now *func() time.Time) *schedule[G, I] {
	s.once.Do(func() {
		if *now == nil {
			*now = time.Now
		}
		if *initial <= 0 {
			*initial = 5 * time.Second
		}
		if *maxInterval < *initial {
			*maxInterval = 2 * time.Minute
		}
		s.initial, s.max, s.now = *initial, *maxInterval, *now
		s.groups = map[G]*schedGroup[I]{}
		s.byEnv = map[ktypes.NamespacedName]G{}
		s.wake = make(chan struct{}, 1)
	})
	return s
}

// add follows item for key in group gk. When key already follows an item in gk for which
// same is true, nothing changes; otherwise item replaces what key followed, the group gets a
// look soon and its interval starts again.
func (s *schedule[G, I]) add(key ktypes.NamespacedName, gk G, target deployv1.ECSTarget, item I, same func(I) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byEnv[key]; ok {
		if old == gk && same(s.groups[gk].items[key]) {
			return
		}
		s.removeLocked(key)
	}
	g := s.groups[gk]
	if g == nil {
		g = &schedGroup[I]{target: target, items: map[ktypes.NamespacedName]I{}}
		s.groups[gk] = g
	}
	g.items[key] = item
	s.byEnv[key] = gk
	g.interval = s.initial
	if next := s.now().Add(s.initial); g.next.IsZero() || next.Before(g.next) {
		g.next = next
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// remove stops following key.
func (s *schedule[G, I]) remove(key ktypes.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(key)
}

// removeIf stops following key if what it follows is still one for which current is true.
func (s *schedule[G, I]) removeIf(key ktypes.NamespacedName, current func(I) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gk, ok := s.byEnv[key]; ok && current(s.groups[gk].items[key]) {
		s.removeLocked(key)
	}
}

// update changes in place the item key follows, if it follows one.
func (s *schedule[G, I]) update(key ktypes.NamespacedName, change func(*I)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gk, ok := s.byEnv[key]
	if !ok {
		return
	}
	g := s.groups[gk]
	if cur, ok := g.items[key]; ok {
		change(&cur)
		g.items[key] = cur
	}
}

func (s *schedule[G, I]) removeLocked(key ktypes.NamespacedName) {
	gk, ok := s.byEnv[key]
	if !ok {
		return
	}
	delete(s.byEnv, key)
	if g := s.groups[gk]; g != nil {
		delete(g.items, key)
		if len(g.items) == 0 {
			delete(s.groups, gk)
		}
	}
}

// run hands each group to look when it is due, until ctx is done.
func (s *schedule[G, I]) run(ctx context.Context, look func(context.Context, schedGroup[I])) error {
	for {
		wait, ok := s.untilNext()
		var timer <-chan time.Time
		var tm *time.Timer
		if ok {
			tm = time.NewTimer(wait)
			timer = tm.C
		}
		select {
		case <-ctx.Done():
			if tm != nil {
				tm.Stop()
			}
			return nil
		case <-s.wake:
			if tm != nil {
				tm.Stop()
			}
			continue
		case <-timer:
		}
		for _, g := range s.takeDue() {
			look(ctx, g)
		}
	}
}

// untilNext returns how long until the next group is due; false when there is none.
func (s *schedule[G, I]) untilNext() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, g := range s.groups {
		if next.IsZero() || g.next.Before(next) {
			next = g.next
		}
	}
	if next.IsZero() {
		return 0, false
	}
	return max(next.Sub(s.now()), 0), true
}

// takeDue returns copies of the groups due now and schedules their next look.
func (s *schedule[G, I]) takeDue() []schedGroup[I] {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var due []schedGroup[I]
	for _, g := range s.groups {
		if g.next.After(now) {
			continue
		}
		items := make(map[ktypes.NamespacedName]I, len(g.items))
		for k, v := range g.items {
			items[k] = v
		}
		due = append(due, schedGroup[I]{target: g.target, items: items})
		g.interval = min(g.interval*2, s.max)
		g.next = now.Add(g.interval)
	}
	return due
}
