package controllers

import (
	"fmt"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// The state space of TestDecideAgainstTheModel: every combination of these dimensions.
type (
	mPin      int // none, set
	mLatest   int // none, older than deployed, newer, same image as deployed (a new build), another application
	mDeployed int // none, the wanted image and build, another (image A, build 10)
	mRollout  int // history[0]: none, in progress, completed, failed, failed and rolled back
	mSubject  int // what history[0] deployed: the candidate, or an earlier pin Q
	mPending  int // none, the candidate, another image, a retry of the candidate, the candidate stalled, another stalled
	mTarget   int // same, changed
	mRetry    int // annotation: none, a new value, the value already handled
)

const (
	pinNone mPin = iota
	pinSet
)

const (
	latestNone mLatest = iota
	latestOlder
	latestNewer
	latestSameImage
	latestOtherApp
)

const (
	deployedNone mDeployed = iota
	deployedEqual
	deployedOther
)

const (
	rolloutNone mRollout = iota
	rolloutInProgress
	rolloutCompleted
	rolloutFailed
	rolloutRolledBack
)

const (
	subjectCandidate mSubject = iota
	subjectPinQ
)

const (
	pendingNone mPending = iota
	pendingSame
	pendingOther
	pendingRetry
	pendingStalledSame
	pendingStalledOther
)

const (
	targetSame mTarget = iota
	targetChanged
)

const (
	retryNone mRetry = iota
	retryNew
	retryHandled
)

type mState struct {
	pin      mPin
	auto     bool
	latest   mLatest
	deployed mDeployed
	rollout  mRollout
	subject  mSubject
	pending  mPending
	target   mTarget
	retry    mRetry
}

func (s mState) String() string {
	return fmt.Sprintf("pin=%d auto=%v latest=%d deployed=%d rollout=%d subject=%d pending=%d target=%d retry=%d",
		s.pin, s.auto, s.latest, s.deployed, s.rollout, s.subject, s.pending, s.target, s.retry)
}

// The images and builds of the model.
const (
	mRepo   = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api"
	mImageA = mRepo + ":a" // what runs in "deployed other" (build 10)
	mImageO = mRepo + ":o" // an older build (5)
	mImageB = mRepo + ":b" // a newer build (20)
	mImageW = mRepo + ":w" // a build of another application
	mImageP = mRepo + ":p" // the pin (no known build)
	mImageQ = mRepo + ":q" // an earlier pin
	mImageX = mRepo + ":x" // another pending deploy
)

var (
	mBuildA     = deployv1.Build{Application: "shop-api", ID: "a", Number: 10, Image: mImageA, Branch: "main"}
	mBuildOlder = deployv1.Build{Application: "shop-api", ID: "o", Number: 5, Image: mImageO, Branch: "main"}
	mBuildNewer = deployv1.Build{Application: "shop-api", ID: "b", Number: 20, Image: mImageB, Branch: "main"}
	mBuildSame  = deployv1.Build{Application: "shop-api", ID: "s", Number: 21, Image: mImageA, Branch: "main"}
	mBuildOther = deployv1.Build{Application: "shop-web", ID: "w", Number: 3, Image: mImageW, Branch: "main"}
)

// mThing is an image with its build (nil: no known build).
type mThing struct {
	image string
	build *deployv1.Build
}

func (t mThing) ref() *deployv1.BuildRef { return t.build.Ref() }

func (s mState) latestBuild() *deployv1.Build {
	switch s.latest {
	case latestOlder:
		return &mBuildOlder
	case latestNewer:
		return &mBuildNewer
	case latestSameImage:
		return &mBuildSame
	case latestOtherApp:
		return &mBuildOther
	}
	return nil
}

// rawWant is what the spec asks for, before any rule about what runs: the pin, else the
// latest build of the application with auto-deploy on. ok is false when it asks nothing.
func (s mState) rawWant() (mThing, bool) {
	if s.pin == pinSet {
		return mThing{image: mImageP}, true
	}
	if s.auto && s.latest != latestNone && s.latest != latestOtherApp {
		return mThing{image: s.latestBuild().Image, build: s.latestBuild()}, true
	}
	return mThing{}, false
}

// deployedThing is what the status says runs.
func (s mState) deployedThing() mThing {
	switch s.deployed {
	case deployedEqual:
		if w, ok := s.rawWant(); ok {
			return w
		}
		return mThing{image: mImageA, build: &mBuildA}
	case deployedOther:
		return mThing{image: mImageA, build: &mBuildA}
	}
	return mThing{}
}

// candidate is what history[0] and a "same" pending deploy are about: what the spec asks
// for, else what the status says runs, else the latest build, else A.
func (s mState) candidate() mThing {
	if w, ok := s.rawWant(); ok {
		return w
	}
	if d := s.deployedThing(); d.image != "" {
		return d
	}
	if b := s.latestBuild(); b != nil {
		return mThing{image: b.Image, build: b}
	}
	return mThing{image: mImageA, build: &mBuildA}
}

var (
	mTargetS1 = deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api", Container: "web"}
	mTargetS2 = deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api-v2", Container: "web"}
)

// env builds the Environment of s.
func (s mState) env() *deployv1.Environment {
	e := &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-api-prod", Namespace: "shop", Generation: 7},
		Spec: deployv1.EnvironmentSpec{
			Application: "shop-api", Branch: "main", AutoDeploy: s.auto, ECS: mTargetS1,
		},
	}
	if s.pin == pinSet {
		e.Spec.PinnedImage = mImageP
	}
	if b := s.latestBuild(); b != nil {
		c := *b
		e.Status.LatestBuild = &c
	}
	d := s.deployedThing()
	e.Status.DeployedImage, e.Status.DeployedBuild = d.image, d.ref()
	if d.image != "" || s.target == targetChanged {
		t := mTargetS1
		if s.target == targetChanged {
			t = mTargetS2 // the status describes another service than spec.ecs names
		}
		e.Status.Target = &t
	}
	c := s.candidate()
	if s.rollout != rolloutNone {
		h := deployv1.Deploy{Image: c.image, Build: c.ref(), Trigger: deployv1.TriggerBuild, DeploymentID: "ecs-svc/1",
			StartedAt: metav1.Unix(100, 0), PreviousImage: mImageA, PreviousBuild: mBuildA.Ref()}
		if s.subject == subjectPinQ {
			h.Image, h.Build, h.Trigger = mImageQ, nil, deployv1.TriggerPin
		} else if c.build == nil {
			h.Trigger = deployv1.TriggerPin
		}
		switch s.rollout {
		case rolloutInProgress:
			h.Result = deployv1.ResultInProgress
		case rolloutCompleted:
			h.Result = deployv1.ResultCompleted
		case rolloutFailed:
			h.Result, h.Reason = deployv1.ResultFailed, "tasks failed to start"
		case rolloutRolledBack:
			h.Result, h.Reason, h.RolledBack = deployv1.ResultFailed, "tasks failed to start", true
		}
		e.Status.History = []deployv1.Deploy{h}
	}
	switch s.pending {
	case pendingSame, pendingRetry, pendingStalledSame:
		e.Status.PendingDeploy = &deployv1.Deploy{Image: c.image, Build: c.ref(), Trigger: deployv1.TriggerBuild, StartedAt: metav1.Unix(200, 0)}
		if c.build == nil {
			e.Status.PendingDeploy.Trigger = deployv1.TriggerPin
		}
		if s.pending == pendingRetry {
			e.Status.PendingDeploy.Trigger = deployv1.TriggerRetry
		}
	case pendingOther, pendingStalledOther:
		e.Status.PendingDeploy = &deployv1.Deploy{Image: mImageX, Trigger: deployv1.TriggerBuild, StartedAt: metav1.Unix(200, 0)}
	}
	if s.pending == pendingStalledSame || s.pending == pendingStalledOther {
		e.Status.PendingDeploy.Result, e.Status.PendingDeploy.Reason = deployv1.ResultStalled, "ECS rejected the request"
		e.Status.Conditions = []metav1.Condition{{Type: deployv1.StalledCondition, Status: metav1.ConditionTrue,
			Reason: deployv1.ReasonInvalidRequest, ObservedGeneration: e.Generation}}
	}
	switch s.retry {
	case retryNew:
		e.Annotations = map[string]string{deployv1.RetryAnnotation: "2"}
		e.Status.RetryHandled = "1"
	case retryHandled:
		e.Annotations = map[string]string{deployv1.RetryAnnotation: "1"}
		e.Status.RetryHandled = "1"
	}
	return e
}

// mExpect is the model's answer.
type mExpect struct {
	action  Action
	image   string // the image deployed (ActionDeploy only)
	trigger string // ActionDeploy only
	force   bool
	held    bool
}

// model is the reference: the deploy rules of the README, stated over the dimensions.
func model(s mState) mExpect {
	deployed := s.deployedThing()
	knownTarget := s.target == targetSame
	retryAsked := s.retry == retryNew

	// 1. What is wanted: the pin; else the latest build of this application with auto-deploy;
	// else, on a new target, what ran on the old one; else nothing.
	want, ok := s.rawWant()
	trigger := deployv1.TriggerBuild
	switch {
	case s.pin == pinSet:
		trigger = deployv1.TriggerPin
	case ok && s.rollout != rolloutNone && s.subject == subjectPinQ:
		trigger = deployv1.TriggerUnpin // the last deploy was a pin, now removed
	}
	if !ok && !knownTarget && deployed.image != "" {
		want, ok = deployed, true
	}
	if ok && !knownTarget {
		trigger = deployv1.TriggerTarget
	}

	// 2. Never an older build over a newer one of the same application (pins excepted).
	if ok && s.pin == pinNone && knownTarget && want.build != nil && deployed.build != nil &&
		want.build.Application == deployed.build.Application && want.build.Number < deployed.build.Number {
		ok = false
	}

	// 3. A wanted build whose last rollout failed is held, unless a retry is asked for or one
	// is under way.
	force, held := false, false
	c := s.candidate()
	if ok && s.subject == subjectCandidate && (s.rollout == rolloutFailed || s.rollout == rolloutRolledBack) && c == want {
		if retryAsked || s.pending == pendingRetry {
			force, trigger = true, deployv1.TriggerRetry
		} else {
			ok, held = false, true
		}
	}

	// 4. Is it what runs? A pin is an image; a build is a build.
	needs := ok && (!knownTarget || force || want.image != deployed.image ||
		(s.pin == pinNone && want.build != nil && (deployed.build == nil || want.build.ID != deployed.build.ID)))

	// 5. The pending deploy.
	pendingIsWant := ok && (s.pending == pendingSame || s.pending == pendingRetry || s.pending == pendingStalledSame) &&
		c == want && force == (s.pending == pendingRetry)
	stalled := s.pending == pendingStalledSame || s.pending == pendingStalledOther
	e := mExpect{held: held}
	switch {
	case s.pending == pendingNone:
		if needs {
			e.action = ActionDeploy
		}
	case pendingIsWant && stalled && !retryAsked:
		e.action = ActionNone // stalled, and nothing changed since
	case pendingIsWant:
		e.action = ActionDeploy
		if s.pending == pendingSame || s.pending == pendingStalledSame {
			// The pending deploy keeps its own trigger.
			trigger = deployv1.TriggerBuild
			if c.build == nil {
				trigger = deployv1.TriggerPin
			}
		}
	case needs:
		e.action = ActionDeploy
	case stalled:
		e.action = ActionWithdraw
	default:
		e.action = ActionObserve
	}
	if e.action == ActionDeploy {
		e.image, e.trigger, e.force = want.image, trigger, force
	}
	return e
}

func allStates() []mState {
	var out []mState
	for pin := pinNone; pin <= pinSet; pin++ {
		for _, auto := range []bool{false, true} {
			for latest := latestNone; latest <= latestOtherApp; latest++ {
				for deployed := deployedNone; deployed <= deployedOther; deployed++ {
					for rollout := rolloutNone; rollout <= rolloutRolledBack; rollout++ {
						for subject := subjectCandidate; subject <= subjectPinQ; subject++ {
							for pending := pendingNone; pending <= pendingStalledOther; pending++ {
								for target := targetSame; target <= targetChanged; target++ {
									for retry := retryNone; retry <= retryHandled; retry++ {
										out = append(out, mState{pin, auto, latest, deployed, rollout, subject, pending, target, retry})
									}
								}
							}
						}
					}
				}
			}
		}
	}
	return out
}

// TestDecideAgainstTheModel checks Decide on every combination of pin, auto-deploy, latest
// build, what runs, the last rollout, the pending deploy, the target and the retry
// annotation against the reference model, and checks the invariants that hold whatever the
// rules: nothing is deployed that no input asks for, a pin that runs is never replaced, a
// build of another application or an older build is never deployed, a held build is never
// deployed, and Decide changes nothing.
func TestDecideAgainstTheModel(t *testing.T) {
	states := allStates()
	failures := 0
	for _, s := range states {
		env := s.env()
		before := env.DeepCopy()
		got := Decide(env)
		want := model(s)
		fail := func(format string, args ...any) {
			t.Helper()
			if failures++; failures <= 20 {
				t.Errorf("%s: %s\n  got %+v", s, fmt.Sprintf(format, args...), got)
			}
		}
		if !equalEnv(env, before) {
			fail("Decide modified the Environment")
		}
		image, trigger := "", ""
		if got.Action == ActionDeploy {
			image, trigger = got.Image, got.Trigger
		}
		if g := (mExpect{action: got.Action, image: image, trigger: trigger, force: got.Force && got.Action == ActionDeploy, held: got.Held}); g != want {
			fail("model says %+v", want)
		}

		// Invariants, independent of the model.
		deployed := s.deployedThing()
		if got.Action == ActionDeploy {
			asked := s.pin == pinSet && (deployed.image != mImageP || s.target == targetChanged) || // a pin not yet applied
				s.auto && (s.latest == latestNewer || s.latest == latestSameImage || s.latest == latestOlder) || // a build
				s.retry == retryNew || s.pending == pendingRetry || // a retry request
				s.target == targetChanged || // a change of target
				s.pending == pendingSame || s.pending == pendingStalledSame // the deploy under way
			if !asked {
				fail("deploys %s though no input asks for it", got.Image)
			}
			if s.pin == pinSet && got.Image != mImageP {
				fail("deploys %s over the pin", got.Image)
			}
			if got.Image == mImageW {
				fail("deploys a build of another application")
			}
			if s.pin == pinNone && s.latest == latestOlder && deployed.build != nil && s.target == targetSame && got.Image == mImageO && deployed.build.Number > mBuildOlder.Number {
				fail("deploys an older build over a newer one")
			}
			if got.Held {
				fail("deploys a held build")
			}
		}
		if s.pin == pinSet && deployed.image == mImageP && s.target == targetSame && s.pending == pendingNone &&
			got.Action != ActionNone && s.retry != retryNew {
			fail("a pin that runs is not left alone")
		}
		if got.Action == ActionObserve || got.Action == ActionWithdraw {
			if s.pending == pendingNone {
				fail("observes or withdraws with nothing pending")
			}
		}
		if got.Action == ActionNone && got.Reason != "" && got.Message == "" {
			fail("reason %s without a message", got.Reason)
		}
		// The conditions written for the decision are valid: every one has a reason and a
		// message (the API server refuses an empty reason, and the write would be lost).
		settled := env.DeepCopy()
		setSettledConditions(settled, got)
		for _, typ := range []string{deployv1.ReadyCondition, deployv1.ReconcilingCondition, deployv1.StalledCondition} {
			c := meta.FindStatusCondition(settled.Status.Conditions, typ)
			if c == nil || c.Reason == "" || c.Message == "" {
				fail("condition %s without a reason or message: %+v", typ, c)
			}
		}
		if c := meta.FindStatusCondition(settled.Status.Conditions, deployv1.ReadyCondition); c != nil && c.Status == metav1.ConditionTrue &&
			(s.target == targetChanged && settled.Status.DeployedImage != "" || got.Action == ActionDeploy || got.Action == ActionObserve) {
			fail("Ready is True while %s", map[bool]string{true: "the target changed", false: "a deploy is to be made"}[s.target == targetChanged])
		}
	}
	t.Logf("%d states checked", len(states))
	if failures > 20 {
		t.Errorf("... and %d more", failures-20)
	}
}

func equalEnv(a, b *deployv1.Environment) bool { return reflect.DeepEqual(a, b) }
