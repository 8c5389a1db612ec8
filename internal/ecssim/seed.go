package ecssim

import (
	"encoding/json"
	"fmt"
	"io"
)

// Seeding methods set up state directly. They apply the same validation as
// the corresponding wire operations (errors read like the wire's, e.g.
// "ClientException: ...") but are not counted as API calls and are never
// throttled or faulted.

// SeedCluster creates a cluster, like CreateCluster (idempotent).
func (v *AccountView) SeedCluster(name string) error {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	_, err := v.a.createClusterLocked(name)
	return err
}

// SeedTaskDefinition registers a task definition from a
// RegisterTaskDefinition request body and returns the new revision's ARN.
func (v *AccountView) SeedTaskDefinition(rawJSON []byte) (arn string, err error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	td, err := v.a.registerLocked(rawJSON)
	if err != nil {
		return "", err
	}
	return td.arn, nil
}

// SeedService creates a service, like CreateService, whose single PRIMARY
// deployment of taskDefinition (family, family:revision or ARN) is
// COMPLETED with desiredCount tasks running. The cluster must exist. No
// deployment events are sent for seeded services.
func (v *AccountView) SeedService(cluster, name, taskDefinition string, desiredCount int) error {
	return v.seedServiceSpec(SeedServiceSpec{Cluster: cluster, Name: name, TaskDefinition: taskDefinition, DesiredCount: desiredCount})
}

func (v *AccountView) seedServiceSpec(spec SeedServiceSpec) error {
	req := map[string]any{
		"cluster":        spec.Cluster,
		"serviceName":    spec.Name,
		"taskDefinition": spec.TaskDefinition,
		"desiredCount":   spec.DesiredCount,
	}
	if spec.DeploymentController != "" {
		req["deploymentController"] = map[string]any{"type": spec.DeploymentController}
	}
	if spec.DeploymentConfiguration != nil {
		req["deploymentConfiguration"] = spec.DeploymentConfiguration
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	_, err = v.a.createServiceLocked(body, false)
	return err
}

// Seed is the document LoadSeed reads.
type Seed struct {
	// Clusters are cluster names.
	Clusters []string `json:"clusters"`
	// TaskDefinitions are RegisterTaskDefinition request bodies, registered
	// in order.
	TaskDefinitions []json.RawMessage `json:"taskDefinitions"`
	// Services are created after the clusters and task definitions.
	Services []SeedServiceSpec `json:"services"`
	// Images are ECR image pushes, applied last, in order.
	Images []SeedImage `json:"images,omitempty"`
}

// SeedImage is one ECR image push of a Seed (see PushImage).
type SeedImage struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
}

// SeedServiceSpec describes one service of a Seed.
type SeedServiceSpec struct {
	Cluster        string `json:"cluster"`
	Name           string `json:"name"`
	TaskDefinition string `json:"taskDefinition"`
	DesiredCount   int    `json:"desiredCount"`
	// DeploymentController is ECS (default), CODE_DEPLOY or EXTERNAL.
	DeploymentController string `json:"deploymentController,omitempty"`
	// DeploymentConfiguration is a CreateService deploymentConfiguration
	// (strategy, canaryConfiguration, lifecycleHooks, …).
	DeploymentConfiguration map[string]any `json:"deploymentConfiguration,omitempty"`
}

// LoadSeed applies a Seed document to the default account; see
// AccountView.LoadSeed.
func (s *Server) LoadSeed(r io.Reader) error { return s.DefaultAccount().LoadSeed(r) }

// LoadSeed reads a Seed document (JSON) and applies it: clusters first, then
// task definitions, then services, then images. It stops at the first
// error; what was applied before it stays.
func (v *AccountView) LoadSeed(r io.Reader) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var seed Seed
	if err := dec.Decode(&seed); err != nil {
		return fmt.Errorf("ecssim: parse seed: %w", err)
	}
	for _, c := range seed.Clusters {
		if err := v.SeedCluster(c); err != nil {
			return fmt.Errorf("ecssim: seed cluster %q: %w", c, err)
		}
	}
	for i, td := range seed.TaskDefinitions {
		if _, err := v.SeedTaskDefinition(td); err != nil {
			return fmt.Errorf("ecssim: seed taskDefinitions[%d]: %w", i, err)
		}
	}
	for _, svc := range seed.Services {
		if err := v.seedServiceSpec(svc); err != nil {
			return fmt.Errorf("ecssim: seed service %s/%s: %w", svc.Cluster, svc.Name, err)
		}
	}
	for _, img := range seed.Images {
		if err := v.PushImage(img.Repository, img.Tag, img.Digest); err != nil {
			return fmt.Errorf("ecssim: seed image %s:%s: %w", img.Repository, img.Tag, err)
		}
	}
	return nil
}
