package receiver

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// ownWrites holds the Environments as the receiver's own latest status writes returned
// them, until the cache has caught up with each. Builds posted back to back for one
// Environment (a sender's burst, a fan-out posted twice) then start from the object the
// previous write made, not from a cached copy one write behind it: every such write would
// otherwise cost a refused write and a live read before the one that lands.
type ownWrites struct {
	mu sync.Mutex
	m  map[types.NamespacedName]ownWrite
}

type ownWrite struct {
	env *deployv1.Environment
	at  time.Time
}

const (
	// maxOwnWrites bounds what is held; past it, entries older than ownWriteTTL go, and if
	// none is that old, all do (each is only a shortcut: a write from an older copy costs
	// a conflict and a live read, never a wrong answer).
	maxOwnWrites = 1024
	ownWriteTTL  = 10 * time.Second
)

func newOwnWrites() *ownWrites {
	return &ownWrites{m: map[types.NamespacedName]ownWrite{}}
}

// newest returns cached, or the Environment the receiver's own last write returned when
// that is newer than cached (same object, higher resourceVersion). An entry the cache has
// caught up with, or one of another object of that name, is dropped.
func (o *ownWrites) newest(key types.NamespacedName, cached *deployv1.Environment) *deployv1.Environment {
	if o == nil {
		return cached
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.m[key]
	if !ok {
		return cached
	}
	if cached != nil && w.env.UID == cached.UID {
		if c, err := resourceversion.CompareResourceVersion(w.env.ResourceVersion, cached.ResourceVersion); err == nil && c > 0 {
			return w.env
		}
	}
	delete(o.m, key)
	return cached
}

// remember holds env, as the receiver's write just returned it.
func (o *ownWrites) remember(key types.NamespacedName, env *deployv1.Environment, now time.Time) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.m) >= maxOwnWrites {
		for k, w := range o.m {
			if now.Sub(w.at) > ownWriteTTL {
				delete(o.m, k)
			}
		}
		if len(o.m) >= maxOwnWrites {
			clear(o.m)
		}
	}
	o.m[key] = ownWrite{env: env, at: now}
}
