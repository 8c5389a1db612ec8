package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// The drill's applications: every Environment starts on drillApp and may be switched to
// drillWebApp, whose builds have their own, smaller numbers.
const (
	drillApp    = "shop-api"
	drillWebApp = "shop-web"
)

// drillImage is the image reference of tag in app's repository.
func drillImage(app, tag string) string {
	if app == drillApp {
		return image(tag)
	}
	return "123456789012.dkr.ecr.us-east-1.amazonaws.com/" + app + ":" + tag
}

// drillWorld is what the models of all Environments share: the builds posted, and the images
// that are no build (the services' seed images and images only ever pinned).
type drillWorld struct {
	posted  []build
	byID    map[string]build
	noBuild map[string]bool
}

func (w *drillWorld) record(b build) {
	w.posted = append(w.posted, b)
	w.byID[b.ID] = b
}

// idsOf returns the builds a revision deployed for img may carry: none (""), or any build
// with that image (which one a pin is taken for is the controller's business).
func (w *drillWorld) idsOf(img string) []string {
	ids := []string{""}
	for _, b := range w.posted {
		if b.Image == img && !slices.Contains(ids, b.ID) {
			ids = append(ids, b.ID)
		}
	}
	return ids
}

// olderThan reports whether build id is an older build of the application of build running
// (numbers are compared only within one application).
func (w *drillWorld) olderThan(id, running string) bool {
	b, ok1 := w.byID[id]
	r, ok2 := w.byID[running]
	return ok1 && ok2 && b.App == r.App && b.ID != r.ID && b.Number < r.Number
}

// modelSvc is the reference model of one ECS service.
type modelSvc struct {
	name, family string
	// maybe holds every image the service may run at the next checkpoint, builds every build
	// ("" for none) the revision it runs may name: what ran at the last checkpoint and
	// whatever may have been deployed to it since.
	maybe, builds map[string]bool
	// decisions counts the deploy decisions that may have gone to the service: every change
	// of what its Environment wants while it is the target. Each registers at most one
	// revision and makes at most one UpdateService.
	decisions int
	// baseUpdates is the UpdateService calls of the set-up (the circuit breaker turned on).
	baseUpdates int
	// recreatedAt holds the family's revision counts when its Environment was deleted and
	// re-applied: a new Environment's first deploy registers anew, even the image of the
	// revision before it (a pin whose rollout failed, now asked for by a new Environment).
	recreatedAt map[int]bool
}

func (s *modelSvc) observed(img string, builds ...string) {
	s.maybe = map[string]bool{img: true}
	s.builds = map[string]bool{}
	for _, b := range builds {
		s.builds[b] = true
	}
}

// failure is a rollout the model failed (ECS rolled back): key is "build:<id>" for a build,
// "image:<ref>" for an image that is no build. It holds that build (image) until a retry.
type failure struct{ key, image string }

// modelEnv is the reference model of one Environment: its spec as the test set it, the build
// the receiver must have recorded, the rollouts the model failed, and what must (or may) be
// deployed where.
type modelEnv struct {
	world              *drillWorld
	name, branch, app  string
	svcs               [2]*modelSvc
	cur                int // spec.ecs.service is svcs[cur]
	auto               bool
	pin                string
	latest             *build
	retry              int    // the last retry-at value used
	retryValue         string // the retry-at annotation now ("" for none)
	failed             []failure
	maybe, maybeBuilds map[string]bool // what status.deployedImage / deployedBuild may show ("" for none)
	statusOn           map[int]bool    // the services status.target may name (-1 for none)
	lastKey            string
	heldPin            string
	heldStart          *metav1.Time
	heldHistory        int
}

func (m *modelEnv) svc() *modelSvc { return m.svcs[m.cur] }

func (m *modelEnv) follows(b build) bool { return m.branch == "" || m.branch == b.Branch }

// reset is a new Environment: nothing recorded, nothing deployed, no history.
func (m *modelEnv) reset() {
	m.latest, m.failed, m.retryValue = nil, nil, ""
	m.maybe, m.maybeBuilds = map[string]bool{"": true}, map[string]bool{"": true}
	m.statusOn = map[int]bool{-1: true}
	m.lastKey, m.heldPin = "", ""
}

func (m *modelEnv) isFailed(key string) bool {
	return slices.ContainsFunc(m.failed, func(f failure) bool { return f.key == key })
}

func (m *modelEnv) failedImage(img string) bool {
	return slices.ContainsFunc(m.failed, func(f failure) bool { return f.image == img })
}

func (m *modelEnv) unfail(key string) {
	m.failed = slices.DeleteFunc(m.failed, func(f failure) bool { return f.key == key })
}

// receive records b as the receiver does (receiver.decide) on an Environment that follows
// b's application and branch, and returns the outcome.
func (m *modelEnv) receive(b build) string {
	switch {
	case m.latest == nil, m.latest.App != m.app:
		// Nothing recorded, or a build of the application the Environment followed before.
	case m.latest.ID == b.ID:
		return "duplicate"
	case b.Number < m.latest.Number:
		return "stale"
	case b.Number == m.latest.Number:
		return "conflict"
	}
	nb := b
	m.latest = &nb
	return "recorded"
}

type wantKind int

const (
	// wantNothing: nothing new is wanted (auto-deploy off, no build of the application, or
	// the wanted build is held): what runs stays.
	wantNothing wantKind = iota
	// wantDeploy: image (of build, when set) runs on the current service and the status says so.
	wantDeploy
	// wantStay: the current service runs a newer build than the wanted one; it keeps it, and
	// the status says what runs.
	wantStay
	// wantOpen: the model cannot tell whether alts are deployed or what runs stays.
	wantOpen
)

// want is what the deploy rules make of the model's inputs.
type want struct {
	kind         wantKind
	image, build string
	ids          []string // the builds the revision deployed may name
	alts         []string // wantOpen: the images that may be deployed
	// held: the wanted build's (image's) rollout failed; it is not deployed, and Ready is not
	// True. heldImage and heldKey are what a retry deploys.
	held               bool
	heldImage, heldKey string
	why                string
}

func (w want) String() string {
	names := [...]string{"nothing", "deploy", "stay", "open"}
	s := names[w.kind]
	if w.image != "" {
		s += " " + w.image
	}
	if w.build != "" {
		s += " (" + w.build + ")"
	}
	if len(w.alts) > 0 {
		s += fmt.Sprintf(" %v", w.alts)
	}
	if w.held {
		s += " held " + w.heldKey
	}
	if w.why != "" {
		s += ": " + w.why
	}
	return s
}

func (w want) key(m *modelEnv) string {
	k := fmt.Sprintf("%d|%s|%s|%v|%s|%d", w.kind, w.image, w.build, w.alts, w.heldKey, m.cur)
	if w.kind == wantOpen && m.latest != nil {
		k += "|" + m.latest.ID // a new build may decide it
	}
	return k
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// want applies the deploy rules: a pin wins (held when the model failed its rollout); else
// the latest build of spec.application when auto-deploy is on (held when the model failed its
// rollout, kept out when the service runs a newer build); else nothing new, but an
// Environment whose status describes another service than spec.ecs takes what it ran there
// along.
func (m *modelEnv) want() want {
	s := m.svc()
	if m.pin != "" {
		w := want{kind: wantDeploy, image: m.pin, ids: m.world.idsOf(m.pin), why: "pinned"}
		switch {
		case m.world.noBuild[m.pin] && m.isFailed("image:"+m.pin):
			return want{held: true, heldImage: m.pin, heldKey: "image:" + m.pin, why: "the pin's rollout failed"}
		case !m.world.noBuild[m.pin] && m.failedImage(m.pin):
			w.kind, w.alts, w.image = wantOpen, []string{m.pin}, ""
			w.why = "pinned to the image of a build whose rollout failed"
		}
		return w
	}
	if l := m.latest; m.auto && l != nil && l.App == m.app {
		if key := "build:" + l.ID; m.isFailed(key) {
			return want{held: true, heldImage: l.Image, heldKey: key, why: "the rollout of the latest build failed"}
		}
		return m.overRunning(l.Image, l.ID, s, "the latest build")
	}
	moved, sure := false, true
	for i := range m.statusOn {
		if i >= 0 && i != m.cur {
			moved = true
		} else {
			sure = false
		}
	}
	if !moved {
		return want{}
	}
	if !sure || len(m.maybe) != 1 || len(m.maybeBuilds) != 1 {
		return want{kind: wantOpen, alts: sortedKeys(m.maybe), ids: sortedKeys(m.maybeBuilds), why: "what ran on the other service may be carried along"}
	}
	d, db := sortedKeys(m.maybe)[0], sortedKeys(m.maybeBuilds)[0]
	switch {
	case d == "":
		return want{}
	case db != "" && m.isFailed("build:"+db):
		return want{held: true, heldImage: d, heldKey: "build:" + db, why: "what ran on the other service failed"}
	case db == "" && m.isFailed("image:"+d):
		return want{held: true, heldImage: d, heldKey: "image:" + d, why: "what ran on the other service failed"}
	case db == "" && m.failedImage(d):
		return want{kind: wantOpen, alts: []string{d}, ids: m.world.idsOf(d), why: "carried along, maybe held"}
	case db == "":
		return want{kind: wantDeploy, image: d, ids: m.world.idsOf(d), why: "carried along from the other service"}
	}
	return m.overRunning(d, db, s, "carried along from the other service")
}

// overRunning is the deploy of build id (image img) to s, unless s runs a newer build.
func (m *modelEnv) overRunning(img, id string, s *modelSvc, why string) want {
	older := 0
	for r := range s.builds {
		if m.world.olderThan(id, r) {
			older++
		}
	}
	switch {
	case older == 0:
		return want{kind: wantDeploy, image: img, build: id, ids: []string{id}, why: why}
	case older == len(s.builds):
		return want{kind: wantStay, image: img, build: id, why: why + ", older than what the service runs"}
	}
	return want{kind: wantOpen, alts: []string{img}, ids: []string{id}, why: why + ", maybe older than what the service runs"}
}

// changed updates the bookkeeping after a step: what the current service and the status may
// show by the next checkpoint, and the deploy decisions the controller may take.
func (m *modelEnv) changed() {
	w := m.want()
	s := m.svc()
	add := func(img string, ids []string) {
		m.maybe[img], s.maybe[img] = true, true
		for _, id := range ids {
			m.maybeBuilds[id], s.builds[id] = true, true
		}
	}
	stay := func() {
		for img := range s.maybe {
			m.maybe[img] = true
		}
		for id := range s.builds {
			m.maybeBuilds[id] = true
		}
	}
	switch w.kind {
	case wantDeploy:
		add(w.image, w.ids)
		m.statusOn[m.cur] = true
	case wantStay:
		stay()
		m.statusOn[m.cur] = true
	case wantOpen:
		for _, img := range w.alts {
			add(img, append(m.world.idsOf(img), w.ids...))
		}
		stay()
		m.statusOn[m.cur] = true
	}
	if k := w.key(m); k != m.lastKey {
		s.decisions++
		m.lastKey = k
	}
}

// pinWatcher checks, as often as it can, that a service whose pin was seen deployed runs
// nothing else for as long as the pin is unchanged.
type pinWatcher struct {
	h          *harness
	mu         sync.Mutex
	held       map[string]string // service -> pinned image
	violations []string
	stop, done chan struct{}
}

func newPinWatcher(h *harness) *pinWatcher {
	w := &pinWatcher{h: h, held: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			w.mu.Lock()
			for svc, pin := range w.held {
				if img := h.webImage("prod", svc); img != pin && len(w.violations) < 20 {
					w.violations = append(w.violations, fmt.Sprintf("%s ran %s while pinned to %s", svc, img, pin))
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *pinWatcher) hold(svc, pin string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held[svc] = pin
}

func (w *pinWatcher) release(svc string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.held, svc)
}

func (w *pinWatcher) finish() []string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.violations
}

// TestDrillRandomizedModel drives the manager with a random sequence of manifests of two
// applications (in order, out of order, concurrent bursts, duplicates, conflicting numbers,
// same-tag rebuilds, on two branches), pins to earlier images, unpins, auto-deploy toggles,
// switches of spec.application and of spec.ecs.service between two services per
// Environment, failed rollouts (ECS's circuit breaker rolls back), retry requests (whose
// status write after UpdateService may conflict), deletes and re-applies of an Environment,
// and manager restarts, and checks it against the reference model at quiescent checkpoints:
//   - every Environment records the build the receiver's rules say (and every answer's status
//     and updated list are the model's);
//   - status.deployedImage is what the service the current spec.ecs names runs (or Ready is
//     not True, when the status still describes the other service of a held build), and
//     both are the model's: the pin, the latest build of spec.application (the build itself:
//     the revision's provenance names it), what runs when that is a newer build, what ECS
//     rolled back to while a failed build is held, or, when the model leaves it open, one of
//     the images that may have been deployed since the last checkpoint; no service runs an
//     image that was never deployed to it;
//   - a pinned Environment whose pin was seen deployed never runs anything else (checked
//     continuously) and is never deployed again while the pin stays, unless the model
//     itself failed the pin's rollout;
//   - no revision of a family is registered twice in a row for one build (for one image,
//     when it is no build), and no service gets more revisions or UpdateService calls than
//     the deploy decisions the model allows; a retry request makes exactly one UpdateService.
//
// A failure prints the seed; AUTODEPLOY_DRILL_SEED=<seed> replays the same sequence.
func TestDrillRandomizedModel(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("AUTODEPLOY_DRILL_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("AUTODEPLOY_DRILL_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay: AUTODEPLOY_DRILL_SEED=%d go test -race -run TestDrillRandomizedModel ./internal/app/)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6472696c6c))

	// Rollouts stay in progress until the drill completes or fails them.
	calls := &drillCalls{}
	h := newHarness(t, withSim(ecssim.WithCallObserver(calls.observe), ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	ctx := context.Background()
	seedA, seedB := image("v1"), image("v0")
	world := &drillWorld{byID: map[string]build{}, noBuild: map[string]bool{
		seedA: true, seedB: true, image("pin-1"): true, image("pin-2"): true,
	}}

	all := []*modelEnv{
		{name: "main", branch: "main"},
		{name: "any", branch: ""},
		{name: "release", branch: "release"},
	}
	envs := all[:2+rng.IntN(2)]
	for _, m := range envs {
		m.world, m.app = world, drillApp
		for i, suffix := range []string{"a", "b"} {
			s := &modelSvc{name: "svc-" + m.name + "-" + suffix}
			img := []string{seedA, seedB}[i]
			s.family = h.seedService("prod", s.name, img)
			truthARollbackOn(h, "prod", s.name)
			s.baseUpdates = calls.updatesOf(s.name)
			s.observed(img, "")
			m.svcs[i] = s
		}
		m.auto = rng.IntN(4) != 0
		m.reset()
		h.createEnv(m.name, func(e *deployv1.Environment) {
			e.Spec.Branch = m.branch
			e.Spec.AutoDeploy = m.auto
			e.Spec.ECS.Service = m.svc().name
		})
		m.changed()
	}
	keyOf := func(m *modelEnv) types.NamespacedName { return types.NamespacedName{Namespace: h.ns, Name: m.name} }
	watcher := newPinWatcher(h)
	defer func() {
		if v := watcher.finish(); len(v) > 0 {
			t.Errorf("a pinned service ran another image (seed %d): %v", seed, v)
		}
	}()
	h.startManager()

	// Builds. shop-api's numbers start at 100, shop-web's at 1.
	type skip struct {
		app string
		n   int64
	}
	var skipped []skip
	next := map[string]int64{drillApp: 100, drillWebApp: 1}
	branches := []string{"main", "main", "release"}
	mkBuild := func(app string, n int64, variant int) build {
		b := build{App: app, Number: n, Branch: branches[rng.IntN(len(branches))],
			ID: fmt.Sprintf("%s:build-%d", app, n), Image: drillImage(app, fmt.Sprintf("b%d", n))}
		if variant > 0 {
			b.ID = fmt.Sprintf("%s:build-%d-again-%d", app, n, variant)
			b.Image = drillImage(app, fmt.Sprintf("b%d-again-%d", n, variant))
		}
		return b
	}
	randomApp := func() string {
		if rng.IntN(3) == 0 {
			return drillWebApp
		}
		return drillApp
	}
	signed := map[string]bool{} // body and signing second of every post so far
	post := func(kind string, b build) {
		t.Helper()
		wantCode, updated := http.StatusOK, []string{}
		conflict := false
		var recorded []*modelEnv
		for _, m := range envs {
			if m.app != b.App || !m.follows(b) {
				continue
			}
			switch m.receive(b) {
			case "recorded":
				updated = append(updated, h.ns+"/"+m.name)
				recorded = append(recorded, m)
			case "conflict":
				conflict = true
			}
		}
		switch {
		case conflict:
			wantCode = http.StatusConflict
		case len(updated) > 0:
			wantCode = http.StatusAccepted
		}
		sort.Strings(updated)
		// Every post is signed anew, as a sender sends each request: the same body signed
		// in a second already used would be the same signed request, answered as a replay.
		// The newest unused second at or before now is taken.
		body, at := b.body(), time.Now()
		for signed[string(body)+"\x00"+strconv.FormatInt(at.Unix(), 10)] {
			at = at.Add(-time.Second)
		}
		signed[string(body)+"\x00"+strconv.FormatInt(at.Unix(), 10)] = true
		r := h.postSigned(body, testKey, at)
		t.Logf("post %s build %d %s (%s, %s): %d", kind, b.Number, b.ID, b.Branch, b.Image, r.Code)
		g.Expect(r.Code).To(Equal(wantCode), "seed %d: %s", seed, r.Raw)
		got := []string{}
		if list, ok := r.Body["updated"].([]any); ok {
			for _, v := range list {
				got = append(got, fmt.Sprint(v))
			}
		}
		sort.Strings(got)
		g.Expect(got).To(Equal(updated), "seed %d: %s", seed, r.Raw)
		world.record(b)
		for _, m := range recorded {
			m.changed()
		}
	}
	// burst posts a few new builds of one application at once, in no particular order: each
	// is answered 2xx, and the highest is recorded wherever it applies (no numbers are shared,
	// so the outcome does not depend on the order the receiver sees them in; the model
	// records them in increasing order, which counts every decision the controller may take
	// on the way).
	burst := func() {
		app := randomApp()
		n := 2 + rng.IntN(3)
		bs := make([]build, n)
		for i := range bs {
			bs[i] = mkBuild(app, next[app]+int64(i), 0)
		}
		next[app] += int64(n)
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i, b := range rng.Perm(n) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = postManifestCode(h.mgr.receiverURL, bs[b])
			}()
		}
		wg.Wait()
		t.Logf("burst of %s builds %d-%d: %v", app, bs[0].Number, bs[n-1].Number, codes)
		for _, c := range codes {
			g.Expect(c).To(BeElementOf(http.StatusOK, http.StatusAccepted), "seed %d", seed)
		}
		for _, b := range bs {
			world.record(b)
			for _, m := range envs {
				if m.app == b.App && m.follows(b) && m.receive(b) == "recorded" {
					m.changed()
				}
			}
		}
	}
	postFresh := func(app string) {
		n := next[app] + int64(rng.IntN(3)) // sometimes skip numbers, posted later out of order
		for s := next[app]; s < n; s++ {
			skipped = append(skipped, skip{app, s})
		}
		next[app] = n + 1
		b, kind := mkBuild(app, n, 0), "fresh"
		switch r := rng.IntN(8); {
		case r < 2:
			b.Image, kind = drillImage(app, "main"), "same-tag rebuild" // a mutable tag
		case r < 3:
			var earlier []build
			for _, p := range world.posted {
				if p.App == app {
					earlier = append(earlier, p)
				}
			}
			if len(earlier) > 0 {
				b.Image, kind = earlier[rng.IntN(len(earlier))].Image, "rebuild of an earlier image"
			}
		}
		if rng.IntN(5) == 0 {
			// The status write after the next UpdateService of some service conflicts.
			m := envs[rng.IntN(len(envs))]
			calls.armTouch(m.svc().name, drillTouch(keyOf(m)))
			t.Logf("the status write after the next UpdateService of %s conflicts", m.svc().name)
		}
		post(kind, b)
	}

	// Spec changes.
	setSpec := func(m *modelEnv, what string, mutate func(*modelEnv)) {
		oldPin := m.pin
		mutate(m)
		if m.pin != oldPin {
			watcher.release(m.svc().name) // before the spec changes
			m.heldPin = ""
		}
		t.Logf("%s %s: auto=%v pin=%q", what, m.name, m.auto, m.pin)
		auto, pin := m.auto, m.pin
		h.updateEnv(m.name, func(e *deployv1.Environment) {
			e.Spec.AutoDeploy = auto
			e.Spec.PinnedImage = pin
		})
		m.changed()
	}
	pinCandidates := func(m *modelEnv) []string {
		c := []string{seedA, seedB, image("pin-1"), image("pin-2")}
		for _, b := range world.posted {
			if m.follows(b) && !slices.Contains(c, b.Image) {
				c = append(c, b.Image)
			}
		}
		return c
	}
	specStep := func() {
		m := envs[rng.IntN(len(envs))]
		switch r := rng.IntN(10); {
		case r < 4:
			c := pinCandidates(m)
			img := c[rng.IntN(len(c))]
			setSpec(m, "pin", func(m *modelEnv) { m.pin = img })
		case r < 7 && m.pin != "":
			setSpec(m, "unpin", func(m *modelEnv) { m.pin = "" })
		default:
			setSpec(m, "toggle auto-deploy of", func(m *modelEnv) { m.auto = !m.auto })
		}
	}
	// retarget points spec.ecs.service at the Environment's other service.
	retarget := func() {
		m := envs[rng.IntN(len(envs))]
		watcher.release(m.svc().name)
		m.heldPin = ""
		m.cur = 1 - m.cur
		// The controller may look at the new service and record what runs there.
		m.statusOn[m.cur] = true
		svc := m.svc().name
		t.Logf("retarget %s to %s", m.name, svc)
		h.updateEnv(m.name, func(e *deployv1.Environment) { e.Spec.ECS.Service = svc })
		m.changed()
	}
	// switchApp switches spec.application between the two applications.
	switchApp := func() {
		m := envs[rng.IntN(len(envs))]
		m.app = map[string]string{drillApp: drillWebApp, drillWebApp: drillApp}[m.app]
		app := m.app
		t.Logf("switch %s to application %s", m.name, app)
		h.updateEnv(m.name, func(e *deployv1.Environment) { e.Spec.Application = app })
		// The reconciler saw the new spec, so the receiver's cache indexes it under app.
		truthBObserved(h, m.name)
		m.changed()
	}
	completeRollout := func() {
		m := envs[rng.IntN(len(envs))]
		s := m.svcs[rng.IntN(2)]
		st, _ := h.sim.Service("prod", s.name)
		if p, ok := st.Primary(); !ok || p.RolloutState != ecssim.RolloutInProgress {
			t.Logf("nothing rolls out on %s", s.name)
			return
		}
		t.Logf("complete the rollout on %s", s.name)
		g.Expect(h.sim.CompleteDeployment("prod", s.name)).To(Succeed())
	}

	checkpoints := 0
	checkpoint := func(label string) {
		t.Helper()
		checkpoints++
		g.Expect(calls.err()).To(Succeed(), "seed %d: the conflict hooks", seed)
		for _, m := range envs {
			w := m.want()
			s := m.svc()
			var latestID string
			if m.latest != nil {
				latestID = m.latest.ID
			}
			g.Eventually(func(g Gomega) {
				e := &deployv1.Environment{}
				g.Expect(k8sClient.Get(ctx, keyOf(m), e)).To(Succeed())
				got := ""
				if e.Status.LatestBuild != nil {
					got = e.Status.LatestBuild.ID
				}
				g.Expect(got).To(Equal(latestID), "latest build")
				g.Expect(e.Status.ObservedGeneration).To(Equal(e.Generation), "observed generation")
				g.Expect(e.Status.RetryHandled).To(Equal(m.retryValue), "retry request answered")
				g.Expect(e.Status.PendingDeploy).To(BeNil(), "pending deploy")
				dep := e.Status.DeployedImage
				running := h.webImage("prod", s.name)
				onCur := e.Status.Target == nil || e.Status.Target.Service == s.name
				ready := condition(e, deployv1.ReadyCondition)
				readyTrue := ready != nil && ready.Status == metav1.ConditionTrue
				switch w.kind {
				case wantDeploy:
					g.Expect(dep).To(Equal(w.image), "deployed image")
					g.Expect(running).To(Equal(w.image), "service image")
					g.Expect(onCur).To(BeTrue(), "status.target")
					rb := h.drillRunningBuild("prod", s.name)
					if w.build != "" {
						g.Expect(e.Status.DeployedBuild).NotTo(BeNil(), "deployed build")
						g.Expect(e.Status.DeployedBuild.ID).To(Equal(w.build), "deployed build")
						g.Expect(rb).To(Equal(w.build), "the build the running revision names")
					} else {
						g.Expect(w.ids).To(ContainElement(rb), "the build the running revision names")
					}
				case wantStay:
					g.Expect(onCur).To(BeTrue(), "status.target")
					g.Expect(dep).To(Equal(running), "deployed image is what runs")
				}
				if w.held {
					g.Expect(readyTrue).To(BeFalse(), "Ready while the wanted build is held")
				}
				// status.deployedImage is what the service spec.ecs names runs, or Ready is
				// not True.
				switch {
				case dep != "" && onCur:
					g.Expect(running).To(Equal(dep), "the service runs status.deployedImage (Ready %s; history[0] %s)",
						truthAReady(e), drillDescribeLast(e))
				case dep != "":
					g.Expect(readyTrue).To(BeFalse(), "Ready while status.deployedImage describes %s", e.Status.Target.Service)
				}
			}, timeout, poll).Should(Succeed(), "seed %d, checkpoint %s, Environment %s (model: app=%s service=%s auto=%v pin=%q latest=%q want %v)",
				seed, label, m.name, m.app, s.name, m.auto, m.pin, latestID, w)

			e := h.getEnv(m.name)
			dep := e.Status.DeployedImage
			depBuild := ""
			if e.Status.DeployedBuild != nil {
				depBuild = e.Status.DeployedBuild.ID
			}
			tgt := -1
			if e.Status.Target != nil {
				for i, sv := range m.svcs {
					if sv.name == e.Status.Target.Service {
						tgt = i
					}
				}
			}
			// What the status says runs was wanted since the last checkpoint, or it is what the
			// service was seen running (a deploy withdrawn before it reached the service leaves
			// the status saying what runs there).
			if !m.maybe[dep] && !(tgt >= 0 && m.svcs[tgt].maybe[dep] && dep == h.webImage("prod", m.svcs[tgt].name)) {
				g.Expect(m.maybe).To(HaveKey(dep), "seed %d, checkpoint %s, %s: deployed %q was never wanted (%v)", seed, label, m.name, dep, sortedKeys(m.maybe))
			}
			g.Expect(m.statusOn).To(HaveKey(tgt), "seed %d, checkpoint %s, %s: status.target %v", seed, label, m.name, e.Status.Target)

			for i, sv := range m.svcs {
				img := h.webImage("prod", sv.name)
				g.Expect(sv.maybe).To(HaveKey(img), "seed %d, checkpoint %s: %s runs %q, never deployed to it (%v)", seed, label, sv.name, img, sortedKeys(sv.maybe))
				// Registrations and updates: never the same build twice in a row, never more
				// than decided.
				revs := h.drillRevisions(sv.family)
				for j := 1; j < len(revs); j++ {
					a, b := revs[j-1], revs[j]
					if sv.recreatedAt[j] {
						continue
					}
					same := a.build != "" && a.build == b.build || a.build == "" && b.build == "" && a.image == b.image
					g.Expect(same).To(BeFalse(), "seed %d, %s: revisions %d and %d both deploy %+v: %+v", seed, sv.family, j, j+1, b, revs)
				}
				updates := calls.updatesOf(sv.name) - sv.baseUpdates
				g.Expect(len(revs)-1).To(BeNumerically("<=", sv.decisions), "seed %d, %s: %d registrations for %d decisions: %+v",
					seed, sv.name, len(revs)-1, sv.decisions, revs)
				g.Expect(updates).To(BeNumerically("<=", sv.decisions), "seed %d, %s: %d UpdateService calls for %d decisions",
					seed, sv.name, updates, sv.decisions)
				builds := []string{h.drillRunningBuild("prod", sv.name)}
				if i == tgt {
					builds = append(builds, depBuild)
				}
				sv.observed(img, builds...)
				t.Logf("checkpoint %s: %s runs %s, revisions=%d updates=%d decisions=%d", label, sv.name, img, len(revs), updates, sv.decisions)
			}

			// A pin seen deployed stays deployed, and nothing deploys over or again.
			if m.pin != "" && dep == m.pin && tgt == m.cur && h.webImage("prod", s.name) == m.pin {
				var start *metav1.Time
				if last := e.Status.LastDeploy(); last != nil {
					start = last.StartedAt.DeepCopy()
				}
				if m.heldPin == m.pin {
					g.Expect(len(e.Status.History) == m.heldHistory && (start == nil) == (m.heldStart == nil) &&
						(start == nil || start.Equal(m.heldStart))).To(BeTrue(),
						"seed %d, checkpoint %s, %s: redeployed while pinned: %+v", seed, label, m.name, e.Status.History)
				} else {
					m.heldPin, m.heldStart, m.heldHistory = m.pin, start, len(e.Status.History)
					watcher.hold(s.name, m.pin)
				}
			}
			// A status that names another service than the current one may still move to it.
			m.maybe, m.maybeBuilds, m.statusOn = map[string]bool{dep: true}, map[string]bool{depBuild: true}, map[int]bool{tgt: true, m.cur: true}
			t.Logf("checkpoint %s: %s app=%s service=%s auto=%v pin=%q latest=%q deployed=%q want %v",
				label, m.name, m.app, s.name, m.auto, m.pin, latestID, dep, w)
		}
	}

	// failRollout fails, at a quiescent point, the rollout an Environment follows on its
	// service: ECS rolls back to the previous deployment, and the model holds what failed.
	failRollout := func(label string) {
		checkpoint(label + ", before failing a rollout")
		type candidate struct {
			m               *modelEnv
			last            deployv1.Deploy
			primary         ecssim.DeploymentState
			img, build, key string
		}
		var cands []candidate
		for _, m := range envs {
			s := m.svc()
			e := h.getEnv(m.name)
			last := e.Status.LastDeploy()
			if last == nil || last.Result != deployv1.ResultInProgress || e.Status.Target == nil ||
				e.Status.Target.Service != s.name || e.Status.DeployedImage != last.Image {
				continue
			}
			primary, img, b, ok := h.drillRollbackTarget("prod", s.name)
			if !ok || primary.ID != last.DeploymentID {
				continue
			}
			c := candidate{m: m, last: *last.DeepCopy(), primary: primary, img: img, build: b}
			switch {
			case last.Build != nil && last.Trigger != deployv1.TriggerPin:
				c.key = "build:" + last.Build.ID
			case last.Build == nil && world.noBuild[last.Image]:
				c.key = "image:" + last.Image
			default:
				continue // a pin taken for a build: which build it holds is the controller's business
			}
			cands = append(cands, c)
		}
		if len(cands) == 0 {
			t.Logf("no rollout to fail")
			return
		}
		c := cands[rng.IntN(len(cands))]
		m, s := c.m, c.m.svc()
		t.Logf("fail the rollout of %s (%s, trigger %s) on %s, deployment %s: ECS rolls back to %s",
			c.last.Image, c.key, c.last.Trigger, s.name, c.primary.ID, c.img)
		watcher.release(s.name)
		m.heldPin = ""
		if rng.IntN(2) == 0 {
			// The tracker looks only once the rollback completed and the failed deployment left
			// the list (its interval grew, or ECS did not answer meanwhile).
			t.Logf("the failed deployment leaves the list before the tracker looks")
			h.sim.InjectFault("DescribeServices", ecssim.Fault{Status: 500, Code: "ServerException", Message: "drill: tracker blinded"})
			h.sim.SetRollbackDuration(time.Hour)
			g.Expect(h.sim.FailDeployment("prod", s.name, "tasks failed to start")).To(Succeed())
			g.Expect(h.sim.CompleteDeployment("prod", s.name)).To(Succeed())
			h.sim.SetRollbackDuration(0)
			h.sim.ClearFaults()
		} else {
			g.Expect(h.sim.FailDeployment("prod", s.name, "tasks failed to start")).To(Succeed())
		}
		m.failed = append(m.failed, failure{key: c.key, image: c.last.Image})
		g.Eventually(func(g Gomega) {
			e := &deployv1.Environment{}
			g.Expect(k8sClient.Get(ctx, keyOf(m), e)).To(Succeed())
			i := slices.IndexFunc(e.Status.History, func(d deployv1.Deploy) bool { return d.DeploymentID == c.primary.ID })
			g.Expect(i).NotTo(Equal(-1), "the failed deploy in the history")
			g.Expect(e.Status.History[i].Result).To(Equal(deployv1.ResultFailed))
			g.Expect(e.Status.History[i].RolledBack).To(BeTrue())
		}, timeout, poll).Should(Succeed(), "seed %d: the failed rollout of %s is recorded", seed, c.last.Image)
		prev := ""
		if c.last.PreviousBuild != nil {
			prev = c.last.PreviousBuild.ID
		}
		s.observed(c.img, c.build)
		m.maybe, m.maybeBuilds = map[string]bool{c.img: true}, map[string]bool{c.build: true, prev: true}
		m.changed()
	}

	// requestRetry sets the retry annotation to a new value at a quiescent point, and makes
	// the status write after the retry's UpdateService conflict (mostly): a held build is
	// deployed again, once; otherwise the request is only answered.
	requestRetry := func(label string) {
		checkpoint(label + ", before a retry request")
		// Mostly an Environment that holds a failed build, when there is one.
		var held []*modelEnv
		for _, m := range envs {
			if m.want().held {
				held = append(held, m)
			}
		}
		m := envs[rng.IntN(len(envs))]
		if len(held) > 0 && rng.IntN(4) != 0 {
			m = held[rng.IntN(len(held))]
		}
		w := m.want()
		if w.kind == wantOpen {
			t.Logf("no retry request for %s: the model cannot tell whether it holds a build (%v)", m.name, w)
			return
		}
		s := m.svc()
		m.retry++
		val := strconv.Itoa(m.retry)
		conflict := rng.IntN(4) != 0
		before, touchesBefore := calls.updatesOf(s.name), calls.touchesOf(s.name)
		if conflict {
			calls.armTouch(s.name, drillTouch(keyOf(m)))
		}
		var prevID string
		if last := h.getEnv(m.name).Status.LastDeploy(); last != nil {
			prevID = last.DeploymentID
		}
		t.Logf("retry-at=%s on %s (want %v; conflicting status write: %v)", val, m.name, w, conflict)
		h.updateEnv(m.name, func(e *deployv1.Environment) { truthASetRetry(e, val) })
		m.retryValue = val
		if !w.held {
			return
		}
		g.Eventually(func(g Gomega) {
			e := &deployv1.Environment{}
			g.Expect(k8sClient.Get(ctx, keyOf(m), e)).To(Succeed())
			g.Expect(e.Status.RetryHandled).To(Equal(val))
			g.Expect(e.Status.PendingDeploy).To(BeNil())
			last := e.Status.LastDeploy()
			g.Expect(last).NotTo(BeNil())
			g.Expect(last.DeploymentID).NotTo(Equal(prevID), "a new deploy")
			g.Expect(last.Trigger).To(Equal(deployv1.TriggerRetry))
			g.Expect(last.Image).To(Equal(w.heldImage))
		}, timeout, poll).Should(Succeed(), "seed %d: the retry of %s on %s", seed, w.heldImage, m.name)
		if conflict {
			g.Expect(calls.touchesOf(s.name)).To(Equal(touchesBefore+1), "seed %d: the status write after the retry's UpdateService conflicted", seed)
		}
		g.Expect(calls.updatesOf(s.name)).To(Equal(before+1), "seed %d: one ECS deployment for one retry request", seed)
		m.unfail(w.heldKey)
		m.changed()
	}

	// recreate deletes an Environment and re-applies it with the same spec at a quiescent
	// point; mostly, an older build of its application is then delivered late.
	recreate := func(label string) {
		checkpoint(label + ", before a delete")
		m := envs[rng.IntN(len(envs))]
		s := m.svc()
		old := h.getEnv(m.name)
		watcher.release(s.name)
		t.Logf("delete %s and re-apply it (app=%s service=%s auto=%v pin=%q)", m.name, m.app, s.name, m.auto, m.pin)
		for _, sv := range m.svcs { // the new Environment knows nothing of either service
			if sv.recreatedAt == nil {
				sv.recreatedAt = map[int]bool{}
			}
			sv.recreatedAt[len(h.drillRevisions(sv.family))] = true
		}
		g.Expect(k8sClient.Delete(ctx, old)).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, keyOf(m), &deployv1.Environment{}))
		}, timeout, poll).Should(BeTrue())
		app, branch, auto, pin, svc := m.app, m.branch, m.auto, m.pin, s.name
		h.createEnv(m.name, func(e *deployv1.Environment) {
			e.Spec.Application, e.Spec.Branch, e.Spec.AutoDeploy, e.Spec.PinnedImage = app, branch, auto, pin
			e.Spec.ECS.Service = svc
		})
		// The reconciler saw the new Environment (so the receiver's cache has it).
		g.Eventually(h.env(m.name), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) bool {
			return e != nil && e.UID != old.UID && e.Status.ObservedGeneration == e.Generation
		}, BeTrue()))
		m.reset()
		m.changed()
		if running, ok := world.byID[h.drillRunningBuild("prod", s.name)]; ok && rng.IntN(3) != 0 {
			var older []build
			for _, b := range world.posted {
				if b.App == m.app && b.App == running.App && m.follows(b) && b.Number < running.Number {
					older = append(older, b)
				}
			}
			if len(older) > 0 {
				post("late, after the re-apply,", older[rng.IntN(len(older))])
			}
		}
	}

	steps := 70 + rng.IntN(41)
	restarts := 0
	for step := 1; step <= steps; step++ {
		label := strconv.Itoa(step)
		switch r := rng.IntN(100); {
		case r < 16:
			postFresh(randomApp())
		case r < 20:
			burst()
		case r < 25 && len(skipped) > 0:
			i := rng.IntN(len(skipped))
			sk := skipped[i]
			skipped = slices.Delete(skipped, i, i+1)
			post("late", mkBuild(sk.app, sk.n, 0))
		case r < 30 && len(world.posted) > 0:
			post("duplicate", world.posted[rng.IntN(len(world.posted))])
		case r < 34 && len(world.posted) > 0:
			b := world.posted[rng.IntN(len(world.posted))]
			post("conflicting", mkBuild(b.App, b.Number, 1+rng.IntN(1000)))
		case r < 51:
			specStep()
		case r < 56:
			retarget()
		case r < 60:
			switchApp()
		case r < 65:
			failRollout(label)
		case r < 70:
			requestRetry(label)
		case r < 73:
			recreate(label)
		case r < 76:
			completeRollout()
		case r < 80 && restarts < 3:
			restarts++
			t.Logf("restart %d", restarts)
			h.stopManager()
			if rng.IntN(2) == 0 {
				specStep() // while no manager runs
			}
			h.startManager()
		case r < 92:
			checkpoint(label)
		default:
			postFresh(drillApp)
		}
	}
	checkpoint("final")
	t.Logf("%d steps, %d builds posted, %d restarts, %d checkpoints", steps, len(world.posted), restarts, checkpoints)
}
