package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/controllers"
)

// TestIAMPolicyGrantsExactlyTheECSCalls checks that the policy in docs/iam.md grants every ECS
// action the controller calls (the methods of controllers.ECSAPI) and ecs:TagResource (the
// provenance tags on the revisions it registers), and no other ECS action.
func TestIAMPolicyGrantsExactlyTheECSCalls(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join("..", "docs", "iam.md"))
	g.Expect(err).NotTo(HaveOccurred())
	doc := string(raw)
	start := strings.Index(doc, "## The policy")
	g.Expect(start).To(BeNumerically(">=", 0), "docs/iam.md has a section \"The policy\"")
	block := doc[start:]
	open := strings.Index(block, "```json\n")
	g.Expect(open).To(BeNumerically(">=", 0))
	block = block[open+len("```json\n"):]
	block = block[:strings.Index(block, "```")]

	var policy struct {
		Statement []struct {
			Action json.RawMessage
		}
	}
	g.Expect(json.Unmarshal([]byte(block), &policy)).To(Succeed(), "the policy is valid JSON")
	var granted []string
	for _, st := range policy.Statement {
		var one string
		var many []string
		if json.Unmarshal(st.Action, &one) == nil {
			many = []string{one}
		} else {
			g.Expect(json.Unmarshal(st.Action, &many)).To(Succeed())
		}
		for _, a := range many {
			if strings.HasPrefix(a, "ecs:") {
				granted = append(granted, a)
			}
		}
	}

	api := reflect.TypeFor[controllers.ECSAPI]()
	want := []string{"ecs:TagResource"}
	for i := range api.NumMethod() {
		want = append(want, "ecs:"+api.Method(i).Name)
	}
	sort.Strings(granted)
	sort.Strings(want)
	g.Expect(granted).To(Equal(want))
}
