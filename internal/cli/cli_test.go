package cli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

const repo = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api"

// TestListShowsWhereEachEnvironmentIsAndWhy: list prints application, latest, deployed,
// rollout and the reason (the gate's when a build waits at one), per namespace or with -A.
func TestListShowsWhereEachEnvironmentIsAndWhy(t *testing.T) {
	g := NewWithT(t)
	ns, other := newNamespace(t), newNamespace(t)
	newEnv(t, ns, "staging", nil, func(st *deployv1.EnvironmentStatus) {
		st.LatestBuild, st.DeployedBuild, st.DeployedImage, st.Rollout = build(143, repo+":143"), ref(143), repo+":143", deployv1.ResultCompleted
		st.Conditions = ready(metav1.ConditionTrue, deployv1.ReasonDeployed, "ECS deployment d1 of build 143 completed")
	})
	newEnv(t, ns, "prod", nil, func(st *deployv1.EnvironmentStatus) {
		st.LatestBuild, st.DeployedBuild, st.DeployedImage, st.Rollout = build(143, repo+":143"), ref(142), repo+":142", deployv1.ResultCompleted
		st.Gate = &deployv1.Gate{Reason: deployv1.ReasonWaitingForUpstream, Message: "waiting for staging to complete build 143", Build: ref(143)}
		st.Conditions = ready(metav1.ConditionTrue, deployv1.ReasonWaitingForUpstream, st.Gate.Message)
	})
	newEnv(t, other, "dev", nil, nil)

	r := run("list", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	g.Expect(lines).To(HaveLen(3))
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "APPLICATION", "LATEST", "DEPLOYED", "ROLLOUT", "REASON"}))
	g.Expect(strings.Fields(lines[1])[:5]).To(Equal([]string{"prod", "shop-api", "143", "142", "Completed"}))
	g.Expect(lines[1]).To(HaveSuffix("WaitingForUpstream: waiting for staging to complete build 143"))
	g.Expect(strings.Fields(lines[2])[:5]).To(Equal([]string{"staging", "shop-api", "143", "143", "Completed"}))
	g.Expect(lines[2]).To(HaveSuffix("Deployed: ECS deployment d1 of build 143 completed"))

	r = run("get", "-A")
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(HavePrefix("NAMESPACE"))
	g.Expect(r.out).To(MatchRegexp(`(?m)^` + other + `\s+dev\s+shop-api\s+<none>\s+<none>\s+<none>\s+NotReconciled$`))
	g.Expect(r.out).To(MatchRegexp(`(?m)^` + ns + `\s+prod\s`))

	empty := newNamespace(t)
	r = run("list", "-n", empty)
	g.Expect(r.code).To(Equal(0))
	g.Expect(r.out).To(BeEmpty())
	g.Expect(r.err).To(Equal("No Environments found in namespace " + empty + ".\n"))
}

// TestHistoryShowsEveryDeploy: history prints the pending deploy and every deploy of the
// history with build, image, trigger, result and times.
func TestHistoryShowsEveryDeploy(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	t0 := metav1.NewTime(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(3 * time.Minute))
	newEnv(t, ns, "prod", nil, func(st *deployv1.EnvironmentStatus) {
		st.PendingDeploy = &deployv1.Deploy{Image: repo + ":144", Build: ref(144), Trigger: deployv1.TriggerBuild, StartedAt: t1}
		st.History = []deployv1.Deploy{
			{Image: repo + ":143", Build: ref(143), Trigger: deployv1.TriggerBuild, Result: deployv1.ResultFailed, Reason: "circuit breaker", RolledBack: true, StartedAt: t0, FinishedAt: &t1},
			{Image: repo + ":v1.4.2", Trigger: deployv1.TriggerPin, Result: deployv1.ResultCompleted, StartedAt: t0, FinishedAt: &t0},
		}
	})
	r := run("history", "prod", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	g.Expect(lines).To(HaveLen(4))
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"BUILD", "IMAGE", "TRIGGER", "RESULT", "STARTED", "FINISHED", "APPROVAL", "REASON"}))
	g.Expect(strings.Fields(lines[1])).To(Equal([]string{"144", repo + ":144", "Build", "Pending", "2026-11-27", "08:03:00Z", "-", "<none>"}))
	g.Expect(lines[2]).To(MatchRegexp(`^143\s+` + repo + `:143\s+Build\s+Failed \(rolled back\)\s+2026-11-27 08:00:00Z\s+2026-11-27 08:03:00Z\s+<none>\s+circuit breaker$`))
	g.Expect(strings.Fields(lines[3])[:4]).To(Equal([]string{"<none>", repo + ":v1.4.2", "Pin", "Completed"}))

	newEnv(t, ns, "fresh", nil, nil)
	r = run("history", "fresh", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(Equal("Environment " + ns + "/fresh has deployed nothing yet.\n"))

	r = run("history", "nope", "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.err).To(ContainSubstring(`Environment "nope" not found in namespace "` + ns + `"`))
}

// TestPinAndUnpin: an image or a build number (from the latest build or the history) sets
// spec.pinnedImage; a set of containers pins spec.pinnedImages; unpin clears both; bad input
// changes nothing and says what is wrong.
func TestPinAndUnpin(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	newEnv(t, ns, "prod", nil, func(st *deployv1.EnvironmentStatus) {
		st.LatestBuild = build(144, repo+":144")
		st.History = []deployv1.Deploy{
			{Image: repo + ":143", Build: ref(143), Trigger: deployv1.TriggerBuild, Result: deployv1.ResultCompleted, StartedAt: metav1.Now()},
			{Image: repo + ":142", Build: ref(142), Trigger: deployv1.TriggerBuild, Result: deployv1.ResultCompleted, StartedAt: metav1.Now()},
		}
	})
	r := run("pin", "prod", repo+":v1.4.2", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(ContainSubstring("Pinned Environment " + ns + "/prod to " + repo + ":v1.4.2"))
	g.Expect(r.err).To(BeEmpty(), "no GitOps warning for an Environment nothing GitOps manages")
	g.Expect(get(t, ns, "prod").Spec.PinnedImage).To(Equal(repo + ":v1.4.2"))

	r = run("pin", "prod", "142", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(ContainSubstring("to " + repo + ":142 (build 142)"))
	g.Expect(get(t, ns, "prod").Spec.PinnedImage).To(Equal(repo + ":142"))

	r = run("pin", "prod", "144", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "prod").Spec.PinnedImage).To(Equal(repo + ":144"))

	for _, bad := range []struct{ arg, msg string }{
		{"99", "build 99 is not known to Environment " + ns + "/prod: it is neither its latest build (144) nor in its history (143, 142)"},
		{"0", `bad build number "0"`},
		{"Not An Image", `"Not An Image" is neither a build number nor an image reference`},
		{"web=" + repo + ":1", "manages one container"},
	} {
		r = run("pin", "prod", bad.arg, "-n", ns)
		g.Expect(r.code).To(Equal(1), bad.arg)
		g.Expect(r.err).To(ContainSubstring(bad.msg))
		g.Expect(get(t, ns, "prod").Spec.PinnedImage).To(Equal(repo+":144"), "bad input changes nothing")
	}
	r = run("pin", "nope", "142", "-n", ns)
	g.Expect(r.err).To(ContainSubstring(`Environment "nope" not found in namespace "` + ns + `"`))

	r = run("unpin", "prod", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(Equal("Unpinned Environment " + ns + "/prod: it deploys its latest build (build 144).\n"))
	g.Expect(get(t, ns, "prod").Spec.Pinned()).To(BeFalse())
	r = run("unpin", "prod", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(ContainSubstring("is not pinned: nothing changed"))

	// Several containers: a build pins the set.
	newEnv(t, ns, "set", func(e *deployv1.Environment) {
		e.Spec.ECS.Container, e.Spec.ECS.Containers = "", []string{"web", "worker"}
	}, func(st *deployv1.EnvironmentStatus) {
		st.LatestBuild = build(144, repo+":144")
		st.LatestBuild.Images = map[string]string{"worker": repo + "-worker:144"}
		st.History = []deployv1.Deploy{{Image: repo + ":143", Images: map[string]string{"web": repo + ":143", "worker": repo + "-worker:143"}, Build: ref(143), Trigger: deployv1.TriggerBuild, StartedAt: metav1.Now()}}
	})
	r = run("pin", "set", "144", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "set").Spec.PinnedImages).To(Equal(map[string]string{"web": repo + ":144", "worker": repo + "-worker:144"}))
	r = run("pin", "set", "143", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "set").Spec.PinnedImages).To(Equal(map[string]string{"web": repo + ":143", "worker": repo + "-worker:143"}))
	r = run("pin", "set", "web="+repo+":1", "worker="+repo+"-worker:1", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "set").Spec.PinnedImages).To(Equal(map[string]string{"web": repo + ":1", "worker": repo + "-worker:1"}))
	r = run("pin", "set", repo+":2", "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.err).To(ContainSubstring("manages containers web, worker: pin a build number, or every container as web=<image> worker=<image>"))
	r = run("pin", "set", "web="+repo+":2", "-n", ns)
	g.Expect(r.err).To(ContainSubstring("give an image for worker too"))
	r = run("pin", "set", "web="+repo+":2", "worker=x:1", "sidecar=y:1", "-n", ns)
	g.Expect(r.err).To(ContainSubstring("manages no container sidecar"))
	g.Expect(get(t, ns, "set").Spec.PinnedImages).To(HaveKeyWithValue("web", repo+":1"))
	r = run("unpin", "set", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "set").Spec.PinnedImages).To(BeEmpty())
}

// TestPinWarnsWhenGitOpsManagesTheEnvironment: a field manager of Argo CD or a Flux label
// draws a warning on stderr that the pin belongs in Git; the pin is still made.
func TestPinWarnsWhenGitOpsManagesTheEnvironment(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	newEnv(t, ns, "argo", nil, nil, client.FieldOwner("argocd-controller"))
	newEnv(t, ns, "flux", func(e *deployv1.Environment) {
		e.Labels = map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
	}, nil)

	r := run("pin", "argo", repo+":v1", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.err).To(Equal("Warning: Environment " + ns + "/argo looks managed by GitOps (field manager argocd-controller): the next sync may undo this pin; make the pin in Git (spec.pinnedImage or spec.pinnedImages).\n"))
	g.Expect(get(t, ns, "argo").Spec.PinnedImage).To(Equal(repo + ":v1"))

	r = run("pin", "flux", repo+":v1", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.err).To(ContainSubstring("looks managed by GitOps (label kustomize.toolkit.fluxcd.io/name)"))
	r = run("unpin", "flux", "-n", ns)
	g.Expect(r.err).To(ContainSubstring("the next sync may undo this unpin"))
	g.Expect(get(t, ns, "flux").Spec.Pinned()).To(BeFalse())
}

// TestRetrySetsANewValue: every retry sets the retry annotation to a value it never had.
func TestRetrySetsANewValue(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	newEnv(t, ns, "prod", nil, func(st *deployv1.EnvironmentStatus) {
		st.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonRolloutFailed, "The rollout of build 143 failed")
	})
	r := run("retry", "prod", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	first := get(t, ns, "prod").Annotations[deployv1.RetryAnnotation]
	g.Expect(first).NotTo(BeEmpty())
	g.Expect(r.out).To(ContainSubstring("Set " + deployv1.RetryAnnotation + "=" + first))
	g.Expect(r.out).To(ContainSubstring("retries the failed deploy once"))
	r = run("retry", "prod", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "prod").Annotations[deployv1.RetryAnnotation]).NotTo(Equal(first))

	r = run("retry", "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.err).To(ContainSubstring("the Environment's name is required"))
}

// TestApproveTheWaitingBuild: approve sets the approve annotation to the waiting build and
// approved-by to the user the API server authenticated (a SelfSubjectReview), in one patch;
// another build is refused unless --force; nothing waiting is an error.
func TestApproveTheWaitingBuild(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	waiting := func(st *deployv1.EnvironmentStatus) {
		st.LatestBuild = build(144, repo+":144")
		st.Gate = &deployv1.Gate{Reason: deployv1.ReasonAwaitingApproval, Message: "build 144 waits for approval", Build: ref(144)}
		st.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonAwaitingApproval, st.Gate.Message)
	}
	newEnv(t, ns, "prod", nil, waiting)

	r := run("approve", "prod", "--build", "143", "-n", ns, "--wait", "0")
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.err).To(ContainSubstring("build 143 is not the build waiting for approval on Environment " + ns + "/prod (build 144 waits); --force approves it anyway"))
	g.Expect(get(t, ns, "prod").Annotations).NotTo(HaveKey(deployv1.ApproveAnnotation))

	r = run("approve", "prod", "-n", ns, "--wait", "0")
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(Equal("Approved build 144 of Environment " + ns + "/prod as " + approver + " (" + deployv1.ApproveAnnotation + "=144).\n"))
	env := get(t, ns, "prod")
	g.Expect(env.Annotations).To(HaveKeyWithValue(deployv1.ApproveAnnotation, "144"))
	g.Expect(env.Annotations).To(HaveKeyWithValue(deployv1.ApprovedByAnnotation, approver))
	// One patch: both annotations came with one write by the CLI.
	var cliWrites int
	for _, mf := range env.ManagedFields {
		if mf.Manager == "autodeployctl" {
			cliWrites++
			g.Expect(string(mf.FieldsV1.Raw)).To(ContainSubstring(deployv1.ApproveAnnotation))
			g.Expect(string(mf.FieldsV1.Raw)).To(ContainSubstring(deployv1.ApprovedByAnnotation))
		}
	}
	g.Expect(cliWrites).To(Equal(1))

	r = run("approve", "prod", "--build", "143", "--force", "-n", ns, "--wait", "0")
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "prod").Annotations).To(HaveKeyWithValue(deployv1.ApproveAnnotation, "143"))

	newEnv(t, ns, "staging", nil, func(st *deployv1.EnvironmentStatus) {
		st.Conditions = ready(metav1.ConditionTrue, deployv1.ReasonDeployed, "ECS deployment d1 of build 144 completed")
	})
	r = run("approve", "staging", "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.err).To(ContainSubstring("nothing waits for approval on Environment " + ns + "/staging: Deployed: ECS deployment d1 of build 144 completed"))
	newEnv(t, ns, "soaking", nil, func(st *deployv1.EnvironmentStatus) {
		st.Gate = &deployv1.Gate{Reason: deployv1.ReasonSoaking, Message: "soaking until 10:30 UTC", Build: ref(144)}
		st.Conditions = ready(metav1.ConditionTrue, deployv1.ReasonSoaking, st.Gate.Message)
	})
	r = run("approve", "soaking", "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.err).To(ContainSubstring("its build waits for something else (Soaking: soaking until 10:30 UTC)"))
	g.Expect(get(t, ns, "soaking").Annotations).NotTo(HaveKey(deployv1.ApproveAnnotation))
	r = run("approve", "nope", "-n", ns)
	g.Expect(r.err).To(ContainSubstring(`Environment "nope" not found`))
}

// TestApproveWaitsForTheController: with --wait, approve returns once the gate no longer
// holds the approved build, and says where the Environment is.
func TestApproveWaitsForTheController(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	newEnv(t, ns, "prod", nil, func(st *deployv1.EnvironmentStatus) {
		st.Gate = &deployv1.Gate{Reason: deployv1.ReasonAwaitingApproval, Message: "build 144 waits for approval", Build: ref(144)}
		st.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonAwaitingApproval, st.Gate.Message)
	})
	done := make(chan result, 1)
	go func() { done <- run("approve", "prod", "-n", ns, "--wait", "1m") }()
	// The controller's part: it sees the approval and deploys.
	g.Eventually(func() map[string]string { return get(t, ns, "prod").Annotations }, time.Minute).Should(HaveKeyWithValue(deployv1.ApproveAnnotation, "144"))
	env := get(t, ns, "prod")
	env.Status.Gate = nil
	env.Status.Conditions = ready(metav1.ConditionUnknown, deployv1.ReasonDeploying, "Deploying build 144")
	g.Expect(k8sClient.Status().Update(context.Background(), env)).To(Succeed())
	var r result
	g.Eventually(done, time.Minute).Should(Receive(&r))
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(HaveSuffix("Environment " + ns + "/prod: Deploying: Deploying build 144\n"))
}

// TestApproveContinuesAPauseHook: on an Environment whose rollout waits at an ECS pause hook,
// approve continues the hook (as continue does); with a build waiting too, it asks which.
func TestApproveContinuesAPauseHook(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	hooked := func(st *deployv1.EnvironmentStatus) {
		st.History = []deployv1.Deploy{{Image: repo + ":143", Build: ref(143), Trigger: deployv1.TriggerBuild, Result: deployv1.ResultInProgress, StartedAt: metav1.Now(),
			AwaitingHook: &deployv1.AwaitingHook{ServiceDeploymentARN: "arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/prod/x", HookID: "hook-1", Since: metav1.Now()}}}
		st.Conditions = ready(metav1.ConditionFalse, deployv1.ReasonAwaitingApproval, "waits at pause hook hook-1")
	}
	newEnv(t, ns, "prod", nil, hooked)
	r := run("approve", "prod", "-n", ns, "--wait", "0")
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "prod").Annotations).To(HaveKeyWithValue(deployv1.HookActionAnnotation, "continue:hook-1"))
	g.Expect(get(t, ns, "prod").Annotations).NotTo(HaveKey(deployv1.ApproveAnnotation))

	newEnv(t, ns, "both", nil, func(st *deployv1.EnvironmentStatus) {
		hooked(st)
		st.Gate = &deployv1.Gate{Reason: deployv1.ReasonAwaitingApproval, Message: "build 144 waits for approval", Build: ref(144)}
	})
	r = run("approve", "both", "-n", ns, "--wait", "0")
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.err).To(ContainSubstring("build 144 waits for approval and the rollout of the newest deploy waits at pause hook hook-1; say which"))
	g.Expect(get(t, ns, "both").Annotations).To(BeEmpty())
	r = run("approve", "both", "--build", "144", "-n", ns, "--wait", "0")
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(get(t, ns, "both").Annotations).To(HaveKeyWithValue(deployv1.ApproveAnnotation, "144"))
	g.Expect(get(t, ns, "both").Annotations).NotTo(HaveKey(deployv1.HookActionAnnotation))

	// continue and rollback answer the hook as before.
	newEnv(t, ns, "rb", nil, hooked)
	r = run("rollback", "rb", "-n", ns, "--wait", "0")
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(Equal("Set " + deployv1.HookActionAnnotation + "=rollback:hook-1 on Environment " + ns + "/rb\n"))
	g.Expect(get(t, ns, "rb").Annotations).To(HaveKeyWithValue(deployv1.HookActionAnnotation, "rollback:hook-1"))
}

// TestWhyExplainsTheDecision: why prints the explanation of the persisted status.
func TestWhyExplainsTheDecision(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	newEnv(t, ns, "prod", nil, func(st *deployv1.EnvironmentStatus) {
		st.DeployedImage, st.DeployedBuild = repo+":142", ref(142)
		st.Gate = &deployv1.Gate{Reason: deployv1.ReasonFrozen, Message: "frozen: release week", Build: ref(144), Until: &metav1.Time{Time: time.Date(2030, 1, 6, 0, 0, 0, 0, time.UTC)}}
		st.Conditions = ready(metav1.ConditionTrue, deployv1.ReasonFrozen, st.Gate.Message)
	})
	r := run("why", "prod", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(HavePrefix("Environment " + ns + "/prod is frozen: build 144 waits until 2030-01-06 00:00 UTC"))
	g.Expect(r.out).To(ContainSubstring("(frozen: release week)"))
	g.Expect(r.out).To(ContainSubstring("`autodeployctl pin prod -n " + ns + " <image|build>`"))
	g.Expect(strings.Count(r.out, "\n")).To(Equal(1), "one paragraph")

	r = runAs("/usr/local/bin/kubectl-autodeploy", "why", "prod", "-n", ns)
	g.Expect(r.out).To(ContainSubstring("`kubectl autodeploy pin prod -n " + ns))

	r = run("why", "nope", "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.err).To(Equal(`autodeployctl: Environment "nope" not found in namespace "` + ns + `" (list them with ` + "`autodeployctl list`)\n"))
}

// TestKubectlPluginBinary: the binary kubectl runs for `kubectl autodeploy` (kubectl-autodeploy
// on PATH) answers as "kubectl autodeploy" and works against the API server.
func TestKubectlPluginBinary(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubectl-autodeploy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-autodeploy")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))

	help := exec.Command(bin, "--help")
	out, err = help.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	g.Expect(string(out)).To(ContainSubstring("kubectl autodeploy [command]"))
	g.Expect(string(out)).To(ContainSubstring("approve"))
	g.Expect(string(out)).NotTo(ContainSubstring("ecs-service"), "the plugin has the CLI's commands only")

	ns := newNamespace(t)
	newEnv(t, ns, "prod", nil, nil)
	list := exec.Command(bin, "list", "-n", ns, "--kubeconfig", kubeconfig)
	out, err = list.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	g.Expect(string(out)).To(MatchRegexp(`(?m)^prod\s+shop-api\s`))

	pin := exec.Command(bin, "pin", "prod", "0", "-n", ns, "--kubeconfig", kubeconfig)
	out, err = pin.CombinedOutput()
	g.Expect(err).To(HaveOccurred())
	g.Expect(string(out)).To(HavePrefix(`kubectl-autodeploy: bad build number "0"`))

	// The same dispatch in process: the name a binary is invoked by decides what it answers to.
	g.Expect(runRaw("autodeployctl", "--help").out).To(ContainSubstring("autodeployctl [command]"))
	g.Expect(runRaw(filepath.Join(string(os.PathSeparator), "opt", "kubectl-autodeploy"), "pin", "--help").out).To(ContainSubstring("kubectl autodeploy pin <environment>"))
}
