package v1alpha1

import (
	"maps"
	"sort"
	"strings"
)

// JoinImages writes an image set as container=image pairs in container order, joined by sep
// ("web=…, worker=…"), for messages and tables.
func JoinImages(images map[string]string, sep string) string {
	names := make([]string, 0, len(images))
	for c := range images {
		names = append(names, c)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, c := range names {
		parts[i] = c + "=" + images[c]
	}
	return strings.Join(parts, sep)
}

// Primary returns the primary container: the first of containers, else container (empty
// when the task definition's only container is meant).
func (t *ECSTarget) Primary() string {
	if len(t.Containers) > 0 {
		return t.Containers[0]
	}
	return t.Container
}

// Multi reports whether the target manages more than one container: a deploy then sets the
// image of each of spec.ecs.containers, and the status records the images per container.
func (t *ECSTarget) Multi() bool { return len(t.Containers) > 1 }

// Equal reports whether t and o name the same service and the same containers
// (container: web and containers: [web] are the same).
func (t ECSTarget) Equal(o ECSTarget) bool {
	if t.Region != o.Region || t.Cluster != o.Cluster || t.Service != o.Service ||
		t.RoleARN != o.RoleARN || t.ExternalID != o.ExternalID || t.Primary() != o.Primary() ||
		len(t.Containers) > 1 != (len(o.Containers) > 1) {
		return false
	}
	if !t.Multi() {
		return true
	}
	if len(t.Containers) != len(o.Containers) {
		return false
	}
	for i := range t.Containers {
		if t.Containers[i] != o.Containers[i] {
			return false
		}
	}
	return true
}

// ImageFor returns the image b produced for container: images[container], else, for the
// primary container, image. ok is false when b names no image for it.
func (b *Build) ImageFor(container string, primary bool) (image string, ok bool) {
	if img, ok := b.Images[container]; ok && container != "" {
		return img, true
	}
	if primary {
		return b.Image, b.Image != ""
	}
	return "", false
}

// Pinned reports whether a pin (pinnedImage or pinnedImages) holds the Environment.
func (s *EnvironmentSpec) Pinned() bool {
	return s.PinnedImage != "" || len(s.PinnedImages) > 0
}

// PinText is what the pin names, for people: pinnedImage, or the pinnedImages set as
// JoinImages writes it ("" when nothing is pinned).
func (s *EnvironmentSpec) PinText() string {
	if s.PinnedImage != "" {
		return s.PinnedImage
	}
	return JoinImages(s.PinnedImages, ", ")
}

// SameImages reports whether two image sets (nil when one container is managed) are equal.
func SameImages(a, b map[string]string) bool {
	return maps.Equal(a, b)
}
