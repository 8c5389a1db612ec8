package manifest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

const (
	webRef    = repo + ":1.5.0"
	workerRef = repo + "-worker:1.5.0"
)

func TestParseImagesPerContainer(t *testing.T) {
	g := NewWithT(t)
	m, err := manifest.Parse([]byte(body(set("images", `{"web":`+str(webRef)+`,"worker":`+str(workerRef)+`}`))))
	g.Expect(err).NotTo(HaveOccurred())
	want := example()
	want.Images = map[string]string{"web": webRef, "worker": workerRef}
	g.Expect(*m).To(Equal(want))

	// Without images (every manifest so far), nothing changes; null is the same.
	for _, b := range []string{body(), body(set("images", `null`)), body(set("images", `{}`))} {
		m, err := manifest.Parse([]byte(b))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(m.Images).To(BeEmpty())
		g.Expect(m.Image).To(Equal(repo + "@" + digest))
	}
}

func TestParseImagesInvalidNamesTheField(t *testing.T) {
	many := make([]string, 11)
	for i := range many {
		many[i] = fmt.Sprintf(`"c%d":%s`, i, str(webRef))
	}
	tests := []struct {
		name, images, field, reason string
	}{
		{"not an object", `["web"]`, "images", "must be an object of container names to image references"},
		{"a string", `"web"`, "images", "must be an object"},
		{"a number value", `{"web":1}`, "images.web", "must be a string"},
		{"an object value", `{"web":{}}`, "images.web", "must be a string"},
		{"a key twice", `{"worker":` + str(workerRef) + `,"worker":` + str(webRef) + `}`, "images.worker", "appears more than once"},
		{"an empty image", `{"worker":""}`, "images.worker", "is required"},
		{"no tag or digest", `{"worker":` + str(repo+"-worker") + `}`, "images.worker", "must name a tag or a digest"},
		{"not a reference", `{"worker":"Not A Ref"}`, "images.worker", "is not a valid image reference"},
		{"too long an image", `{"worker":` + str(repo+":"+strings.Repeat("a", 1100)) + `}`, "images.worker", "is longer than 1024 characters"},
		{"an empty name", `{"":` + str(webRef) + `}`, "images", "a container name is empty"},
		{"a name with a space", `{"my worker":` + str(webRef) + `}`, "images.my worker", "is not a container name"},
		{"too long a name", `{"` + strings.Repeat("w", 256) + `":` + str(webRef) + `}`, "images." + strings.Repeat("w", 64) + "…", "is not a container name"},
		{"more containers than a task definition holds", "{" + strings.Join(many, ",") + "}", "images", "names 11 containers; a task definition has at most 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			m, err := manifest.Parse([]byte(body(set("images", tc.images))))
			g.Expect(m).To(BeNil())
			var fe *manifest.FieldError
			g.Expect(errors.As(err, &fe)).To(BeTrue(), "%v", err)
			g.Expect(fe.Field).To(Equal(tc.field))
			g.Expect(fe.Reason).To(ContainSubstring(tc.reason))
		})
	}
}

// The signature covers the body, images included: a manifest whose images were changed after
// signing is refused.
func TestSignatureCoversImages(t *testing.T) {
	g := NewWithT(t)
	signed := []byte(body(set("images", `{"web":`+str(webRef)+`,"worker":`+str(workerRef)+`}`)))
	sig := manifest.Sign(newKey, now, signed)
	g.Expect(manifest.Verify([][]byte{newKey}, ts(now), sig, signed, now)).To(Succeed())

	tampered := []byte(body(set("images", `{"web":`+str(webRef)+`,"worker":`+str(repo+"-evil:1")+`}`)))
	_, err := manifest.Parse(tampered)
	g.Expect(err).NotTo(HaveOccurred(), "the tampered body is a valid manifest: only the signature tells")
	g.Expect(manifest.Verify([][]byte{newKey}, ts(now), sig, tampered, now)).To(MatchError(manifest.ErrBadSignature))
}
