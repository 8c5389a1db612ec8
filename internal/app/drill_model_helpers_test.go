package app_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ktypes "k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/taskdef"
)

// drillCalls observes the simulator's wire calls for TestDrillRandomizedModel: it counts the
// successful UpdateService calls of each service, and runs a service's armed hook right after
// its next successful UpdateService, before the caller gets the answer (see truthAWatch: the
// observer runs inside the simulator's handler). A hook is armed per service (arming again
// replaces it), so that a test step knows which UpdateService its hook follows.
type drillCalls struct {
	mu      sync.Mutex
	updates map[string]int
	hooks   map[string]func() error
	touches map[string]int
	errs    []error
}

func (d *drillCalls) observe(c ecssim.Call) {
	if c.Operation != "UpdateService" || c.ErrorCode != "" {
		return
	}
	svc := drillCallService(c)
	if svc == "" {
		return
	}
	d.mu.Lock()
	if d.updates == nil {
		d.updates, d.touches = map[string]int{}, map[string]int{}
	}
	d.updates[svc]++
	hook := d.hooks[svc]
	delete(d.hooks, svc)
	d.mu.Unlock()
	if hook == nil {
		return
	}
	err := hook()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.touches[svc]++
	if err != nil {
		d.errs = append(d.errs, err)
	}
}

// armTouch runs do right after the next successful UpdateService of service.
func (d *drillCalls) armTouch(service string, do func() error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hooks == nil {
		d.hooks = map[string]func() error{}
	}
	d.hooks[service] = do
}

// updatesOf returns how many UpdateService calls of service succeeded.
func (d *drillCalls) updatesOf(service string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.updates[service]
}

// touchesOf returns how many hooks ran after an UpdateService of service.
func (d *drillCalls) touchesOf(service string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.touches[service]
}

// err returns the errors the hooks returned.
func (d *drillCalls) err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return errors.Join(d.errs...)
}

// drillCallService returns the service an UpdateService (or similar) call names.
func drillCallService(c ecssim.Call) string {
	var in struct {
		Service string `json:"service"`
	}
	if json.Unmarshal(c.Body, &in) != nil {
		return ""
	}
	return in.Service
}

// drillTouch is truthATouch for a hook that may fire after the Environment was deleted (a
// hook waits for the next UpdateService of a service, whenever that comes).
func drillTouch(key ktypes.NamespacedName) func() error {
	touch := truthATouch(key)
	return func() error {
		if err := touch(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	}
}

// drillRev is one task-definition revision: its web image and the build its provenance tags
// name ("" for none).
type drillRev struct{ image, build string }

// drillRevisions returns every revision of family, oldest first.
func (h *harness) drillRevisions(family string) []drillRev {
	h.t.Helper()
	var out []drillRev
	for rev := 1; rev <= h.sim.Revisions(family); rev++ {
		ref := fmt.Sprintf("%s:%d", family, rev)
		td, ok := h.sim.TaskDefinition(ref)
		h.g.Expect(ok).To(BeTrue(), ref)
		tags, _ := h.sim.TaskDefinitionTags(ref)
		out = append(out, drillRev{image: webImageOf(td), build: tags[taskdef.TagBuildID]})
	}
	return out
}

// drillRunningBuild returns the build the revision a service runs names ("" for none).
func (h *harness) drillRunningBuild(cluster, service string) string {
	svc, ok := h.sim.Service(cluster, service)
	if !ok {
		return ""
	}
	tags, _ := h.sim.TaskDefinitionTags(svc.TaskDefinitionARN)
	return tags[taskdef.TagBuildID]
}

// drillRollbackTarget returns what ECS rolls the service back to when its PRIMARY deployment,
// in progress, fails (ecssim.FailDeployment: the newest older deployment that did not fail),
// and that PRIMARY deployment; ok is false when there is no such deployment.
func (h *harness) drillRollbackTarget(cluster, service string) (primary ecssim.DeploymentState, img, build string, ok bool) {
	svc, found := h.sim.Service(cluster, service)
	if !found || len(svc.Deployments) < 2 {
		return primary, "", "", false
	}
	primary = svc.Deployments[0]
	if primary.Status != ecssim.DeploymentPrimary || primary.RolloutState != ecssim.RolloutInProgress {
		return primary, "", "", false
	}
	for _, d := range svc.Deployments[1:] {
		if d.RolloutState == ecssim.RolloutFailed {
			continue
		}
		td, found := h.sim.TaskDefinition(d.TaskDefinition)
		if !found {
			return primary, "", "", false
		}
		tags, _ := h.sim.TaskDefinitionTags(d.TaskDefinition)
		return primary, webImageOf(td), tags[taskdef.TagBuildID], true
	}
	return primary, "", "", false
}

// drillDescribeLast renders the newest deploy of the history, for failure messages.
func drillDescribeLast(e *deployv1.Environment) string {
	last := e.Status.LastDeploy()
	if last == nil {
		return "none"
	}
	return fmt.Sprintf("{image %s, trigger %s, deployment %s, result %s, rolledBack %v, previousImage %q}",
		last.Image, last.Trigger, last.DeploymentID, last.Result, last.RolledBack, last.PreviousImage)
}
