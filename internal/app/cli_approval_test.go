package app_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/cli"
)

// cliUser writes a kubeconfig of a user the API server authenticates as name (in
// system:masters), for autodeployctl.
func cliUser(t *testing.T, name string) string {
	t.Helper()
	user, err := testEnv.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("adding user %s: %v", name, err)
	}
	raw, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig of %s: %v", name, err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// autodeployctl runs the CLI in process with kubeconfig, returning its output, errors and exit code.
func autodeployctl(kubeconfig string, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	code := cli.Main(context.Background(), "autodeployctl", append(args, "--kubeconfig", kubeconfig), streams)
	return out.String(), errOut.String(), code
}

// TestCLIApproveThenHistoryShowsTheApprover: a build waits for approval (status.gate written by
// the reconciler); `autodeployctl approve` approves it as the user the API server
// authenticated; the controller deploys it and records the approval in
// status.history[].approval; `autodeployctl history` shows that user in the APPROVAL column
// of the deploy, and none for a deploy that needed no approval.
func TestCLIApproveThenHistoryShowsTheApprover(t *testing.T) {
	const approver = "carol@example.com"
	kubeconfig := cliUser(t, approver)
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	// Build 143 deploys with no approval; then approval becomes required and 144 waits.
	g.Expect(h.post(newBuild(143)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedNumber, Equal(int64(143))), WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.Approval = deployv1.ApprovalRequired })
	g.Expect(h.post(newBuild(144)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(gateOf, Equal("AwaitingApproval/144")))

	out, errOut, code := autodeployctl(kubeconfig, "approve", "prod", "-n", h.ns, "--wait", "30s")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(HavePrefix("Approved build 144 of Environment " + h.ns + "/prod as " + approver))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedNumber, Equal(int64(144))), WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	last := h.getEnv("prod").Status.LastDeploy()
	g.Expect(last.Approval).NotTo(BeNil())
	g.Expect(last.Approval.By).To(Equal(approver))

	out, errOut, code = autodeployctl(kubeconfig, "history", "prod", "-n", h.ns)
	g.Expect(code).To(Equal(0), errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	g.Expect(lines).To(HaveLen(3), out)
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"BUILD", "IMAGE", "TRIGGER", "RESULT", "STARTED", "FINISHED", "APPROVAL", "REASON"}))
	at := last.Approval.At.UTC().Format("2006-01-02 15:04Z")
	g.Expect(lines[1]).To(MatchRegexp(`^144\s.*\sCompleted\s.*\s`+regexp.QuoteMeta(approver+" "+at)+`\s`), "the approver of 144, read from history[].approval")
	g.Expect(lines[2]).To(MatchRegexp(`^143\s.*\sCompleted\s.*\s<none>\s`), "143 needed no approval")
}
