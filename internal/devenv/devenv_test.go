package devenv_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
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
// simulator and the manager; the demo applies the samples and sends a build. The unpinned
// Environment deploys it and the pinned one does not. A second run starts clean.
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
		g.Expect(text).To(MatchRegexp(`shop-api-staging\s+shop-api\s+true\s+<none>\s+143\s+143\s+Completed\s+` + devenv.DemoBuild.Image))
		g.Expect(text).To(MatchRegexp(`staging/shop-api\s+task definition shop-api-staging:2`))
		g.Expect(text).To(MatchRegexp(`prod/shop-api\s+task definition shop-api-prod:1`))
		g.Expect(text).To(ContainSubstring("kubectl --kubeconfig " + info.Kubeconfig))

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
		g.Expect(prod.Status.LatestBuild.Number).To(Equal(int64(143)))
		g.Expect(prod.Status.DeployedImage).To(Equal(prod.Spec.PinnedImage))

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
