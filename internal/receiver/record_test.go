package receiver

import (
	"testing"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

// TestDecideComparesNumbersOnlyWithinOneApplicationAndSender: the latest build of another
// application or branch than the spec follows now, or from another kind of sender, is
// replaced whatever the numbers; within one application and sender, numbers order builds.
func TestDecideComparesNumbersOnlyWithinOneApplicationAndSender(t *testing.T) {
	spec := &deployv1.EnvironmentSpec{Application: "shop-web", Branch: "main"}
	latest := func(app, source, branch string, n int64) *deployv1.Build {
		return &deployv1.Build{Application: app, Source: source, Branch: branch, ID: "old", Number: n}
	}
	m := &manifest.Manifest{Application: "shop-web", BuildID: "new", BuildNumber: 20, Branch: "main"}
	cases := []struct {
		name   string
		latest *deployv1.Build
		source string
		want   Outcome
	}{
		{"nothing recorded", nil, deployv1.SourceManifest, Recorded},
		{"a newer build", latest("shop-web", deployv1.SourceManifest, "main", 19), deployv1.SourceManifest, Recorded},
		{"an older build", latest("shop-web", deployv1.SourceManifest, "main", 21), deployv1.SourceManifest, Stale},
		{"the same number", latest("shop-web", deployv1.SourceManifest, "main", 20), deployv1.SourceManifest, Conflict},
		{"a build recorded before the source was", latest("", "", "main", 21), deployv1.SourceManifest, Stale},
		{"the latest build is of the application the spec followed before", latest("shop-api", deployv1.SourceManifest, "main", 500), deployv1.SourceManifest, Recorded},
		{"the latest build is of the branch the spec followed before", latest("shop-web", deployv1.SourceManifest, "release", 500), deployv1.SourceManifest, Recorded},
		{"the latest build came from ECR pushes, numbered by time", latest("shop-web", deployv1.SourceECR, "main", 1_764_000_000), deployv1.SourceCodeBuild, Recorded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(decide(spec, tc.latest, m, tc.source)).To(Equal(tc.want))
		})
	}
	dup := latest("shop-web", deployv1.SourceManifest, "main", 20)
	dup.ID = "new"
	NewWithT(t).Expect(decide(spec, dup, m, deployv1.SourceManifest)).To(Equal(Duplicate))
}
