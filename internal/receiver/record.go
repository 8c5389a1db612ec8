package receiver

import (
	"context"
	"fmt"
	"maps"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// Outcome is what recording a build did to one Environment.
type Outcome string

// Outcomes of recording a build on an Environment.
const (
	Recorded  Outcome = "recorded"
	Duplicate Outcome = "duplicate"
	Stale     Outcome = "stale"
	Conflict  Outcome = "conflict"
)

// conflictBackoff bounds the retries of a status write that lost an optimistic-concurrency
// race; many concurrent manifests for one Environment each get through.
var conflictBackoff = wait.Backoff{Steps: 30, Duration: 5 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: 500 * time.Millisecond}

// decide compares an incoming build from source with the recorded latest build of spec.
// Numbers order the builds of one application from one kind of sender only: a latest build
// of another application or branch than the spec now follows (the spec changed), or from
// another kind of sender (ECR push times against CodeBuild build numbers), is replaced
// whatever the numbers say.
func decide(spec *deployv1.EnvironmentSpec, latest *deployv1.Build, m *manifest.Manifest, source string) Outcome {
	switch {
	case latest == nil, !spec.Accepts(latest), latest.Source != "" && latest.Source != source:
		return Recorded
	case latest.ID == m.BuildID:
		return Duplicate
	case m.BuildNumber < latest.Number:
		return Stale
	case m.BuildNumber == latest.Number:
		return Conflict
	default:
		return Recorded
	}
}

// record sets status.latestBuild of one Environment from m, writing with optimistic
// concurrency and retrying on conflict. The first write starts from cached, the Environment as
// the cache listed it, so a build recorded on an Environment nobody else writes costs one
// request; the live object is read after a conflict, and to confirm an answer that needs no
// write (duplicate, stale, conflict), since the cache may lag behind a re-created Environment.
// It also returns the latest build the Environment had, and the Environment its write
// returned (nil when it wrote nothing).
func record(ctx context.Context, reader client.Reader, writer client.StatusClient, key types.NamespacedName, cached *deployv1.Environment, m *manifest.Manifest, source string, now time.Time) (Outcome, *deployv1.Build, *deployv1.Environment, error) {
	var outcome Outcome
	var current *deployv1.Build
	var written *deployv1.Environment
	first := true
	err := retry.OnError(conflictBackoff, apierrors.IsConflict, func() error {
		var env *deployv1.Environment
		why := "conflict"
		if first && cached != nil {
			env, why = cached.DeepCopy(), "confirm"
			if decide(&env.Spec, env.Status.LatestBuild, m, source) != Recorded {
				env = nil
			}
		}
		first = false
		if env == nil {
			if cached != nil {
				metrics.ReceiverLiveReads.WithLabelValues(why).Inc()
			}
			env = &deployv1.Environment{}
			if err := reader.Get(ctx, key, env); err != nil {
				return err
			}
		}
		current = env.Status.LatestBuild
		outcome = decide(&env.Spec, env.Status.LatestBuild, m, source)
		if outcome != Recorded {
			return nil
		}
		base := env.DeepCopy()
		env.Status.LatestBuild = buildFrom(m, source, now, &env.Spec)
		if err := writer.Status().Patch(ctx, env, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return err
		}
		written = env
		return nil
	})
	if err != nil {
		return "", nil, nil, fmt.Errorf("recording build %s on Environment %s: %w", m.BuildID, key, err)
	}
	return outcome, current, written, nil
}

// buildFrom is the build m describes, as recorded on an Environment of spec. A manifest's
// images are recorded as sent; a CodeBuild event's, named by variable (WORKER for
// AUTODEPLOY_IMAGE_WORKER), are recorded under the names of the containers spec manages.
func buildFrom(m *manifest.Manifest, source string, now time.Time, spec *deployv1.EnvironmentSpec) *deployv1.Build {
	b := &deployv1.Build{
		Application: m.Application,
		Source:      source,
		ID:          m.BuildID,
		Number:      m.BuildNumber,
		Image:       m.Image,
		Commit:      m.Commit,
		Branch:      m.Branch,
		ReceivedAt:  metav1.NewTime(now),
	}
	if m.FinishedAt != nil {
		t := metav1.NewTime(*m.FinishedAt)
		b.FinishedAt = &t
	}
	switch {
	case len(m.Images) == 0:
	case source == deployv1.SourceCodeBuild:
		for _, c := range managedContainers(spec) {
			if img, ok := m.Images[eventbridge.ContainerVariableKey(c)]; ok {
				if b.Images == nil {
					b.Images = map[string]string{}
				}
				b.Images[c] = img
			}
		}
	default:
		b.Images = maps.Clone(m.Images)
	}
	return b
}

// managedContainers lists the containers whose images a deploy of spec sets, when they are
// named.
func managedContainers(spec *deployv1.EnvironmentSpec) []string {
	if len(spec.ECS.Containers) > 0 {
		return spec.ECS.Containers
	}
	if spec.ECS.Container != "" {
		return []string{spec.ECS.Container}
	}
	return nil
}

// missingContainer names a container spec manages (with spec.ecs.containers) that b has no
// image for: the Environment records b but does not deploy it.
func missingContainer(spec *deployv1.EnvironmentSpec, b *deployv1.Build) string {
	for i, c := range spec.ECS.Containers {
		if _, ok := b.ImageFor(c, i == 0); !ok {
			return c
		}
	}
	return ""
}
