package test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

const module = "github.com/autodeploy-dev/autodeploy"

// deps returns, for every package of the module, the packages of the module it depends on
// (directly or not, tests excluded).
func deps(t *testing.T) map[string]map[string]bool {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	all := map[string]map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(fields[0], module)
		all[pkg] = map[string]bool{}
		for _, d := range fields[1:] {
			if strings.HasPrefix(d, module) {
				all[pkg][strings.TrimPrefix(d, module)] = true
			}
		}
	}
	return all
}

// TestDataFlowsOneWay checks the layout: the receiver and the reconciler never import each
// other (what both need lives beneath them), the API types import nothing of the project,
// and no production code pulls in the ECS simulator (only the simulator's own command, the
// local run and the benchmark do).
func TestDataFlowsOneWay(t *testing.T) {
	g := NewWithT(t)
	all := deps(t)
	g.Expect(all).To(HaveKey("/controllers"))
	g.Expect(all["/controllers"]).NotTo(HaveKey("/internal/receiver"), "controllers must not import internal/receiver")
	g.Expect(all["/internal/receiver"]).NotTo(HaveKey("/controllers"), "internal/receiver must not import controllers")
	g.Expect(all["/api/v1alpha1"]).To(BeEmpty(), "the API types must import nothing of the project")
	simulatorUsers := map[string]bool{
		"/internal/ecssim": true, "/cmd/ecssim": true, "/internal/devenv": true,
		"/internal/bench": true, "/cmd/autodeploy-bench": true, "/cmd/autodeployctl": true,
	}
	for pkg, d := range all {
		if !simulatorUsers[pkg] {
			g.Expect(d).NotTo(HaveKey("/internal/ecssim"), "%s must not import the ECS simulator", pkg)
		}
	}
	g.Expect(all["/cmd/manager"]).NotTo(HaveKey("/internal/ecssim"), "the manager must not contain the ECS simulator")
}
