package devenv_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/devenv"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLocalRunShowsADeploy runs what `make run` runs: the control plane, the seeded ECS
// simulator and the manager; the demo applies the samples and the webhook Notification, sends
// a build and approves it for prod with the CLI. Staging deploys the build; prod waits for
// staging's rollout, then for the approval, and deploys after it; the local webhook receiver
// gets and prints the signed notifications. A second run starts clean.
func TestLocalRunShowsADeploy(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	for run := 1; run <= 2; run++ {
		g := NewWithT(t)
		out := &syncBuffer{}
		ready := make(chan devenv.Info, 1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- devenv.Run(ctx, devenv.Options{
				AssetsDir: assets, RootDir: root, RunDir: runDir,
				ReceiverAddr: "127.0.0.1:0", ECSAddr: "127.0.0.1:0",
				Demo: true, Out: out,
				OnReady: func(i devenv.Info) { ready <- i },
			})
		}()
		var info devenv.Info
		select {
		case info = <-ready:
		case err := <-done:
			cancel()
			t.Fatalf("run %d stopped early: %v\n%s", run, err, out.String())
		case <-time.After(2 * time.Minute):
			cancel()
			t.Fatalf("run %d not ready within 2 minutes:\n%s", run, out.String())
		}

		// What the user saw.
		text := out.String()
		g.Expect(text).To(ContainSubstring("Receiver answered 202"))
		// The rollout ended through the simulator's ECS event, posted with the events key.
		g.Expect(text).To(MatchRegexp(`The receiver accepted [1-9][0-9]* ECS event\(s\) at .*/v1/events`))
		g.Expect(info.EventsKeyFile).To(BeAnExistingFile())
		// Prod waited for staging's rollout, then for a person, and the paragraph of `why`
		// said so before the approval.
		g.Expect(text).To(ContainSubstring("shop-api-prod: WaitingForUpstream: Waiting for shop-api-staging to complete build 143"))
		waiting := regexp.MustCompile(`shop-api-prod\s+shop-api\s+true\s+<none>\s+143\s+<none>\s+<none>\s+<none>\s+False\s+AwaitingApproval\s+AwaitingApproval`).FindStringIndex(text)
		why := regexp.MustCompile(`\$ autodeployctl why shop-api-prod\n(?:  \[webhook\].*\n)*  Environment default/shop-api-prod requires approval: build 143 waits`).FindStringIndex(text)
		approve := strings.Index(text, "$ autodeployctl approve shop-api-prod")
		approved := strings.Index(text, "Approved build 143 of Environment default/shop-api-prod as developer")
		g.Expect(waiting).NotTo(BeNil(), text)
		g.Expect(why).NotTo(BeNil(), text)
		g.Expect(approve).To(BeNumerically(">", why[0]), text)
		g.Expect(why[0]).To(BeNumerically(">", waiting[0]), text)
		g.Expect(approved).To(BeNumerically(">", approve), text)
		g.Expect(text).To(ContainSubstring("shop-api-prod deployed build 143; its history entry records the approval: build 143 by developer."))
		// After the approval both Environments run build 143.
		after := text[approved:]
		g.Expect(after).To(MatchRegexp(`shop-api-staging\s+shop-api\s+true\s+<none>\s+143\s+143\s+Completed\s+…/shop-api:v1\.5\.0\s+True\s+Deployed`))
		g.Expect(after).To(MatchRegexp(`shop-api-prod\s+shop-api\s+true\s+<none>\s+143\s+143\s+Completed\s+…/shop-api:v1\.5\.0\s+True\s+Deployed`))
		g.Expect(after).To(MatchRegexp(`staging/shop-api\s+task definition shop-api-staging:2`))
		g.Expect(after).To(MatchRegexp(`prod/shop-api\s+task definition shop-api-prod:2`))
		g.Expect(text).To(ContainSubstring("kubectl --kubeconfig " + info.Kubeconfig))

		// The webhook receiver got, verified and printed every notification, prod's in the
		// order of the story: held for staging, awaiting approval, then deployed.
		g.Expect(text).To(MatchRegexp(`\[webhook\] shop-api-staging\s+RolloutCompleted\s+The rollout of build 143`))
		g.Expect(text).To(MatchRegexp(`\[webhook\] shop-api-prod\s+AwaitingApproval\s+Build 143 awaits approval`))
		g.Expect(text).To(MatchRegexp(`\[webhook\] shop-api-prod\s+RolloutCompleted\s+The rollout of build 143`))
		outcomes := func(env string) []string {
			var got []string
			for _, p := range info.Notifications() {
				g.Expect(p.Notification).To(Equal("default/deploys-to-webhook"))
				if p.Environment == env && p.Build != nil && p.Build.Number == 143 {
					got = append(got, p.Outcome)
				}
			}
			return got
		}
		g.Expect(outcomes("shop-api-staging")).To(Equal([]string{deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutCompleted}))
		g.Expect(outcomes("shop-api-prod")).To(Equal([]string{deployv1.OutcomeHeld, deployv1.OutcomeAwaitingApproval,
			deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutCompleted}))
		// It answers only what is signed with the Notification's key.
		forged, err := http.NewRequestWithContext(ctx, http.MethodPost, info.WebhookURL, strings.NewReader(`{"id":"x","outcome":"RolloutCompleted"}`))
		g.Expect(err).NotTo(HaveOccurred())
		forged.Header.Set(manifest.TimestampHeader, strconv.FormatInt(time.Now().Unix(), 10))
		forged.Header.Set(manifest.SignatureHeader, manifest.Sign([]byte("not the key"), time.Now(), []byte(`{"id":"x","outcome":"RolloutCompleted"}`)))
		resp, err := http.DefaultClient.Do(forged)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))

		// What the control plane holds, through the kubeconfig the user is given.
		scheme := runtime.NewScheme()
		utilruntime.Must(deployv1.AddToScheme(scheme))
		c, err := client.New(info.RestConfig, client.Options{Scheme: scheme})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(info.Kubeconfig).To(BeAnExistingFile())
		staging, prod := &deployv1.Environment{}, &deployv1.Environment{}
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "shop-api-staging"}, staging)).To(Succeed())
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "shop-api-prod"}, prod)).To(Succeed())
		g.Expect(staging.Status.DeployedImage).To(Equal(devenv.DemoBuild.Image))
		g.Expect(prod.Spec.Promotion).NotTo(BeNil())
		g.Expect(prod.Spec.Promotion.Upstream).To(Equal("shop-api-staging"))
		g.Expect(prod.Spec.Approval).To(Equal(deployv1.ApprovalRequired))
		g.Expect(prod.Status.DeployedImage).To(Equal(devenv.DemoBuild.Image))
		g.Expect(prod.Status.DeployedBuild.Number).To(Equal(int64(143)))
		g.Expect(prod.Status.Gate).To(BeNil())
		// The CLI approved as the API server knows the user, and the history records it.
		g.Expect(prod.Annotations).To(HaveKeyWithValue(deployv1.ApproveAnnotation, "143"))
		g.Expect(prod.Annotations).To(HaveKeyWithValue(deployv1.ApprovedByAnnotation, "developer"))
		last := prod.Status.LastDeploy()
		g.Expect(last).NotTo(BeNil())
		g.Expect(last.Result).To(Equal(deployv1.ResultCompleted))
		g.Expect(last.Approval).NotTo(BeNil())
		g.Expect(last.Approval.Build).To(Equal(int64(143)))
		g.Expect(last.Approval.By).To(Equal("developer"))

		// The printed notify path works with the key file it wrote.
		raw, err := os.ReadFile(info.KeyFile)
		g.Expect(err).NotTo(HaveOccurred())
		keys, err := receiver.ParseKeys(raw)
		g.Expect(err).NotTo(HaveOccurred())
		next := manifest.Manifest{Application: "shop-api", BuildID: "shop-api:200", BuildNumber: 200, Branch: "main",
			Image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api:b200"}
		reply, err := notify.Send(ctx, http.DefaultClient, info.ReceiverURL, keys[0], &next, time.Now())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(reply.Status).To(Equal(http.StatusAccepted), reply.Body)
		g.Eventually(func() string {
			e := &deployv1.Environment{}
			_ = c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "shop-api-staging"}, e)
			return e.Status.DeployedImage
		}, 30*time.Second, 50*time.Millisecond).Should(Equal(next.Image))
		// Prod does not take the newer build without its own approval.
		g.Eventually(func() *deployv1.Gate {
			e := &deployv1.Environment{}
			_ = c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "shop-api-prod"}, e)
			return e.Status.Gate
		}, 30*time.Second, 50*time.Millisecond).Should(And(Not(BeNil()),
			HaveField("Reason", deployv1.ReasonAwaitingApproval), HaveField("Build.Number", int64(200))))
		g.Eventually(func() bool {
			for _, p := range info.Notifications() {
				if p.Environment == "shop-api-prod" && p.Outcome == deployv1.OutcomeAwaitingApproval && p.Build != nil && p.Build.Number == 200 {
					return true
				}
			}
			return false
		}, 30*time.Second, 50*time.Millisecond).Should(BeTrue())
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "shop-api-prod"}, prod)).To(Succeed())
		g.Expect(prod.Status.DeployedBuild.Number).To(Equal(int64(143)))

		// Ctrl-C stops everything cleanly.
		cancel()
		select {
		case err := <-done:
			g.Expect(err).NotTo(HaveOccurred(), "run %d", run)
		case <-time.After(time.Minute):
			t.Fatalf("run %d did not stop within a minute", run)
		}
		g.Expect(out.String()).To(ContainSubstring("Stopping"))
	}
}
