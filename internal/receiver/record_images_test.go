package receiver

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

// A manifest's images are recorded as sent; a CodeBuild event's, named by variable, under the
// names of the containers the Environment manages; a build missing one of them is recorded
// and named incomplete.
func TestBuildFromRecordsImagesPerContainer(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	multi := &deployv1.EnvironmentSpec{Application: "shop-api", ECS: deployv1.ECSTarget{Containers: []string{"web", "log-router"}}}
	single := &deployv1.EnvironmentSpec{Application: "shop-api", ECS: deployv1.ECSTarget{Container: "web"}}

	m := &manifest.Manifest{Application: "shop-api", BuildID: "b1", BuildNumber: 1, Image: "r/web:1",
		Images: map[string]string{"log-router": "r/log:1", "other": "r/other:1"}}
	b := buildFrom(m, deployv1.SourceManifest, now, multi)
	g.Expect(b.Images).To(Equal(map[string]string{"log-router": "r/log:1", "other": "r/other:1"}))
	g.Expect(missingContainer(multi, b)).To(BeEmpty(), "web takes image, log-router images[log-router]")
	m.Images = map[string]string{"other": "r/other:1"}
	g.Expect(missingContainer(multi, buildFrom(m, deployv1.SourceManifest, now, multi))).To(Equal("log-router"))

	cb := &manifest.Manifest{Application: "shop-api", BuildID: "b2", BuildNumber: 2, Image: "r/web:2",
		Images: map[string]string{"LOG_ROUTER": "r/log:2", "WEB": "r/web-own:2", "UNMANAGED": "r/x:2"}}
	b = buildFrom(cb, deployv1.SourceCodeBuild, now, multi)
	g.Expect(b.Images).To(Equal(map[string]string{"web": "r/web-own:2", "log-router": "r/log:2"}))
	g.Expect(buildFrom(cb, deployv1.SourceCodeBuild, now, single).Images).To(Equal(map[string]string{"web": "r/web-own:2"}))
	g.Expect(missingContainer(single, b)).To(BeEmpty(), "a single container always has image")

	// Without images, nothing is recorded beside image: a build of every sender so far.
	g.Expect(buildFrom(&manifest.Manifest{Image: "r/web:3"}, deployv1.SourceManifest, now, multi).Images).To(BeNil())
}
