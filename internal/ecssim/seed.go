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
func (s *Server) SeedCluster(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.createClusterLocked(name)
	return err
}

// SeedTaskDefinition registers a task definition from a
// RegisterTaskDefinition request body and returns the new revision's ARN.
func (s *Server) SeedTaskDefinition(rawJSON []byte) (arn string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	td, err := s.registerLocked(rawJSON)
	if err != nil {
		return "", err
	}
	return td.arn, nil
}

// SeedService creates a service, like CreateService, whose single PRIMARY
// deployment of taskDefinition (family, family:revision or ARN) is
// COMPLETED with desiredCount tasks running. The cluster must exist.
func (s *Server) SeedService(cluster, name, taskDefinition string, desiredCount int) error {
	body, err := json.Marshal(map[string]any{
		"cluster":        cluster,
		"serviceName":    name,
		"taskDefinition": taskDefinition,
		"desiredCount":   desiredCount,
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.createServiceLocked(body)
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
}

// SeedServiceSpec describes one service of a Seed.
type SeedServiceSpec struct {
	Cluster        string `json:"cluster"`
	Name           string `json:"name"`
	TaskDefinition string `json:"taskDefinition"`
	DesiredCount   int    `json:"desiredCount"`
}

// LoadSeed reads a Seed document (JSON) and applies it: clusters first, then
// task definitions, then services. It stops at the first error; what was
// applied before it stays.
func (s *Server) LoadSeed(r io.Reader) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var seed Seed
	if err := dec.Decode(&seed); err != nil {
		return fmt.Errorf("ecssim: parse seed: %w", err)
	}
	for _, c := range seed.Clusters {
		if err := s.SeedCluster(c); err != nil {
			return fmt.Errorf("ecssim: seed cluster %q: %w", c, err)
		}
	}
	for i, td := range seed.TaskDefinitions {
		if _, err := s.SeedTaskDefinition(td); err != nil {
			return fmt.Errorf("ecssim: seed taskDefinitions[%d]: %w", i, err)
		}
	}
	for _, svc := range seed.Services {
		if err := s.SeedService(svc.Cluster, svc.Name, svc.TaskDefinition, svc.DesiredCount); err != nil {
			return fmt.Errorf("ecssim: seed service %s/%s: %w", svc.Cluster, svc.Name, err)
		}
	}
	return nil
}
