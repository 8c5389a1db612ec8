// Package taskdef derives a new ECS task-definition revision from an existing one, changing
// nothing but the images of the chosen containers.
package taskdef

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// ContainerNotFoundError says that the chosen container is not in the task definition, or
// that none was chosen and the task definition has more than one.
type ContainerNotFoundError struct {
	Wanted    string
	Available []string
}

func (e *ContainerNotFoundError) Error() string {
	if e.Wanted == "" {
		return fmt.Sprintf("the task definition has %d containers (%s): set spec.ecs.container to the one to deploy",
			len(e.Available), strings.Join(e.Available, ", "))
	}
	return fmt.Sprintf("container %q is not in the task definition (it has: %s): fix spec.ecs.container or spec.ecs.containers",
		e.Wanted, strings.Join(e.Available, ", "))
}

// Container returns the container definition named name, or the only one when name is empty.
func Container(td *types.TaskDefinition, name string) (*types.ContainerDefinition, error) {
	names := make([]string, 0, len(td.ContainerDefinitions))
	for i := range td.ContainerDefinitions {
		c := &td.ContainerDefinitions[i]
		if name != "" && aws.ToString(c.Name) == name {
			return c, nil
		}
		names = append(names, aws.ToString(c.Name))
	}
	if name == "" && len(td.ContainerDefinitions) == 1 {
		return &td.ContainerDefinitions[0], nil
	}
	sort.Strings(names)
	return nil, &ContainerNotFoundError{Wanted: name, Available: names}
}

// RegisterInput returns the RegisterTaskDefinition input that recreates td with the image of
// container replaced by image. Every writable field and the tags are copied; the read-only
// fields (ARN, revision, status, compatibilities, requiresAttributes, registration times) are
// left out. td is not modified.
func RegisterInput(td *types.TaskDefinition, tags []types.Tag, container, image string) (*ecs.RegisterTaskDefinitionInput, error) {
	return RegisterInputImages(td, tags, map[string]string{container: image})
}

// RegisterInputImages is RegisterInput for several containers at once: images maps each
// container name to its new image (the empty name is the task definition's only container).
// Every container named must be in td; one that is not is a *ContainerNotFoundError naming
// it, and nothing is derived.
func RegisterInputImages(td *types.TaskDefinition, tags []types.Tag, images map[string]string) (*ecs.RegisterTaskDefinitionInput, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("no container image to set")
	}
	names := make([]string, 0, len(images))
	for name := range images {
		names = append(names, name)
	}
	sort.Strings(names)
	byName := make(map[string]string, len(images))
	for _, name := range names {
		target, err := Container(td, name)
		if err != nil {
			return nil, err
		}
		byName[aws.ToString(target.Name)] = images[name]
	}
	containers := make([]types.ContainerDefinition, len(td.ContainerDefinitions))
	copy(containers, td.ContainerDefinitions)
	for i := range containers {
		if img, ok := byName[aws.ToString(containers[i].Name)]; ok {
			containers[i].Image = aws.String(img)
		}
	}
	in := &ecs.RegisterTaskDefinitionInput{
		Family:                  td.Family,
		ContainerDefinitions:    containers,
		TaskRoleArn:             td.TaskRoleArn,
		ExecutionRoleArn:        td.ExecutionRoleArn,
		NetworkMode:             td.NetworkMode,
		Volumes:                 td.Volumes,
		PlacementConstraints:    td.PlacementConstraints,
		RequiresCompatibilities: td.RequiresCompatibilities,
		Cpu:                     td.Cpu,
		Memory:                  td.Memory,
		PidMode:                 td.PidMode,
		IpcMode:                 td.IpcMode,
		ProxyConfiguration:      td.ProxyConfiguration,
		InferenceAccelerators:   td.InferenceAccelerators,
		EphemeralStorage:        td.EphemeralStorage,
		RuntimePlatform:         td.RuntimePlatform,
		EnableFaultInjection:    td.EnableFaultInjection,

		TrustedExecutionConfiguration: td.TrustedExecutionConfiguration,
	}
	if len(tags) > 0 {
		in.Tags = tags
	}
	return in, nil
}

// Image returns the image of container in td.
func Image(td *types.TaskDefinition, container string) (string, error) {
	c, err := Container(td, container)
	if err != nil {
		return "", err
	}
	return aws.ToString(c.Image), nil
}

// Images returns the image of every container named in td, by name. A container that is not
// in td is a *ContainerNotFoundError naming it.
func Images(td *types.TaskDefinition, containers []string) (map[string]string, error) {
	out := make(map[string]string, len(containers))
	for _, name := range containers {
		c, err := Container(td, name)
		if err != nil {
			return nil, err
		}
		out[name] = aws.ToString(c.Image)
	}
	return out, nil
}

// Equivalent reports whether registering a and b would create the same task definition.
func Equivalent(a, b *ecs.RegisterTaskDefinitionInput) bool {
	return reflect.DeepEqual(a, b)
}
