package taskdef

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"
)

func tag(k, v string) types.Tag { return types.Tag{Key: aws.String(k), Value: aws.String(v)} }

func TestProvenanceRoundTripsAndReplacesTheCopiedOne(t *testing.T) {
	g := NewWithT(t)
	copied := []types.Tag{tag("team", "shop"), tag(TagApplication, "shop-api"), tag(TagBuildID, "old"),
		tag(TagBuildNumber, "9"), tag(TagBuildSource, "ECR")}
	p := &Provenance{Application: "shop-api", Source: "Manifest", BuildID: "shop-api:build-10", BuildNumber: 10}
	tags := WithProvenance(copied, p)
	g.Expect(tags).To(HaveLen(5), "the copied provenance is replaced, not added to")
	g.Expect(tags[0]).To(Equal(tag("team", "shop")))
	got, ok := ProvenanceOf(tags)
	g.Expect(ok).To(BeTrue())
	g.Expect(got).To(Equal(*p))
	g.Expect(copied[2]).To(Equal(tag(TagBuildID, "old")), "the input is not modified")

	// No known build: the copied provenance goes, so the revision never claims a build it
	// does not carry.
	g.Expect(WithProvenance(copied, nil)).To(Equal([]types.Tag{tag("team", "shop")}))
	_, ok = ProvenanceOf([]types.Tag{tag("team", "shop")})
	g.Expect(ok).To(BeFalse())
	_, ok = ProvenanceOf([]types.Tag{tag(TagApplication, "a"), tag(TagBuildID, "b"), tag(TagBuildNumber, "x")})
	g.Expect(ok).To(BeFalse(), "a number that is no number is no provenance")
}

func TestProvenanceNeverMakesARegistrationFail(t *testing.T) {
	g := NewWithT(t)
	// A value ECS would refuse is left out.
	bad := &Provenance{Application: "shop-api", BuildID: "build#10", BuildNumber: 10}
	g.Expect(WithProvenance(nil, bad)).To(BeEmpty())
	long := &Provenance{Application: "shop-api", BuildID: strings.Repeat("x", 257), BuildNumber: 10}
	g.Expect(WithProvenance(nil, long)).To(BeEmpty())
	// ECS's limit of 50 tags is kept.
	var full []types.Tag
	for i := range 47 {
		full = append(full, tag(fmt.Sprintf("k%d", i), "v"))
	}
	ok := &Provenance{Application: "shop-api", Source: "CodeBuild", BuildID: "shop-api:1", BuildNumber: 1}
	g.Expect(WithProvenance(full, ok)).To(HaveLen(47))
	g.Expect(WithProvenance(full[:46], ok)).To(HaveLen(50))
}
