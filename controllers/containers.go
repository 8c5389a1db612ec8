package controllers

import (
	"maps"

	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/taskdef"
)

// An Environment that manages several containers (spec.ecs.containers) deploys them as a set:
// one build gives an image to each, one revision carries them all, one UpdateService starts
// them. Image fields keep the primary container's image; the Images fields beside them hold
// every managed container's image, and are nil when only one container is managed, so that
// a single-container Environment behaves, and is recorded, exactly as before.

// sameSet reports whether two (primary image, image set) pairs are the same.
func sameSet(image string, images map[string]string, otherImage string, otherImages map[string]string) bool {
	return image == otherImage && deployv1.SameImages(images, otherImages)
}

// buildImages returns the images b gives the containers t manages: the primary image, and
// the set (nil unless t manages several). missing names a managed container b has no image
// for.
func buildImages(t *deployv1.ECSTarget, b *deployv1.Build) (image string, images map[string]string, missing string) {
	if !t.Multi() {
		img, ok := b.ImageFor(t.Primary(), true)
		if !ok {
			return "", nil, t.Primary()
		}
		return img, nil, ""
	}
	images = make(map[string]string, len(t.Containers))
	for i, c := range t.Containers {
		img, ok := b.ImageFor(c, i == 0)
		if !ok {
			return "", nil, c
		}
		images[c] = img
	}
	return images[t.Containers[0]], images, ""
}

// pinImages returns the pin of spec: the primary image and the set (nil unless several
// containers are managed). missing names a managed container the pin has no image for
// (the API server refuses such a spec; this guards against one written before it did).
func pinImages(spec *deployv1.EnvironmentSpec) (image string, images map[string]string, missing string) {
	if len(spec.PinnedImages) == 0 {
		return spec.PinnedImage, nil, ""
	}
	return buildImages(&spec.ECS, &deployv1.Build{Image: spec.PinnedImage, Images: spec.PinnedImages})
}

// pinned reports whether image and images are the pin of spec.
func pinned(spec *deployv1.EnvironmentSpec, image string, images map[string]string) bool {
	if !spec.Pinned() {
		return false
	}
	pin, pins, missing := pinImages(spec)
	return missing == "" && sameSet(pin, pins, image, images)
}

// readImages returns the images the containers t manages have in td: the primary image and
// the set (nil unless t manages several). A managed container that is not in td is a
// *taskdef.ContainerNotFoundError naming it.
func readImages(td *types.TaskDefinition, t *deployv1.ECSTarget) (string, map[string]string, error) {
	if !t.Multi() {
		img, err := taskdef.Image(td, t.Primary())
		return img, nil, err
	}
	images, err := taskdef.Images(td, t.Containers)
	if err != nil {
		return "", nil, err
	}
	return images[t.Containers[0]], images, nil
}

// imagesToSet returns the container images a revision for req sets.
func imagesToSet(req deployRequest) map[string]string {
	if req.images != nil {
		return maps.Clone(req.images)
	}
	return map[string]string{req.target.Primary(): req.image}
}
