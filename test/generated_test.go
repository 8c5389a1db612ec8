// Package test holds repository-wide checks.
package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

// TestGeneratedFilesMatchMarkers regenerates the CRD, the RBAC role and the DeepCopy code from
// the kubebuilder markers and fails when the committed files differ: run `make generate
// manifests` and commit the result.
func TestGeneratedFilesMatchMarkers(t *testing.T) {
	g := NewWithT(t)
	root, err := filepath.Abs("..")
	g.Expect(err).NotTo(HaveOccurred())
	out := t.TempDir()

	run := func(args ...string) []byte {
		cmd := exec.Command("go", append([]string{"tool", "controller-gen"}, args...)...)
		cmd.Dir = root
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		g.Expect(err).NotTo(HaveOccurred(), "controller-gen %v", args)
		return b
	}
	run("rbac:roleName=manager-role", "crd", "paths=./...",
		"output:crd:artifacts:config="+filepath.Join(out, "crd"),
		"output:rbac:artifacts:config="+filepath.Join(out, "rbac"))
	deepcopy := run("object:headerFile=hack/boilerplate.go.txt", "paths=./api/...", "output:object:stdout")

	compare := func(generated []byte, committed string) {
		want, err := os.ReadFile(filepath.Join(root, committed))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(generated)).To(Equal(string(want)), "%s is out of date: run `make generate manifests`", committed)
	}
	entries, err := os.ReadDir(filepath.Join(out, "crd"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(entries).NotTo(BeEmpty())
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(out, "crd", e.Name()))
		g.Expect(err).NotTo(HaveOccurred())
		compare(b, filepath.Join("config", "crd", "bases", e.Name()))
	}
	committedCRDs, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(committedCRDs).To(HaveLen(len(entries)), "a committed CRD has no markers left")
	role, err := os.ReadFile(filepath.Join(out, "rbac", "role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	compare(role, filepath.Join("config", "rbac", "role.yaml"))
	compare(deepcopy, filepath.Join("api", "v1alpha1", "zz_generated.deepcopy.go"))
}
