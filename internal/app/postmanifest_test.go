package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// postManifestScript is the CI helper under test, relative to this package's directory.
var postManifestScript = filepath.Join("..", "..", "hack", "post-manifest.sh")

// postManifestVars are the variables the script reads; the test controls all of them.
var postManifestVars = []string{
	"AUTODEPLOY_URL", "AUTODEPLOY_KEY", "AUTODEPLOY_KEY_FILE", "APPLICATION", "BUILD_ID",
	"BUILD_NUMBER", "IMAGE", "IMAGE_URI", "IMAGES", "COMMIT", "BRANCH", "FINISHED_AT",
}

type scriptResult struct {
	exitCode       int
	stdout, stderr string
}

func (r scriptResult) String() string {
	return fmt.Sprintf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.exitCode, r.stdout, r.stderr)
}

// runPostManifest runs the script with shell and the given variables on top of an environment
// cleared of CodeBuild's variables, the script's own and proxies.
func runPostManifest(t *testing.T, shell string, vars map[string]string) scriptResult {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		drop := strings.HasPrefix(name, "CODEBUILD_") || strings.HasSuffix(strings.ToLower(name), "_proxy")
		for _, v := range postManifestVars {
			drop = drop || name == v
		}
		if !drop {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell, postManifestScript)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := scriptResult{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			t.Fatalf("running %s %s: %v\n%s", shell, postManifestScript, err, res)
		}
		res.exitCode = exitErr.ExitCode()
	}
	return res
}

// scriptVars returns the variables that post build b to url with testKey, as a CodeBuild
// post_build step would.
func scriptVars(url string, b build) map[string]string {
	return map[string]string{
		"AUTODEPLOY_URL": url,
		"AUTODEPLOY_KEY": string(testKey),
		"APPLICATION":    b.App,
		"BUILD_ID":       b.ID,
		"BUILD_NUMBER":   strconv.FormatInt(b.Number, 10),
		"IMAGE_URI":      b.Image,
		"COMMIT":         "3f2c9e1",
		"BRANCH":         b.Branch,
		"FINISHED_AT":    "2026-11-25T10:00:00Z",
	}
}

func requireShellTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"sh", "openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
}

func TestPostManifestScriptDeploysAndFailsTheBuildOnRejection(t *testing.T) {
	requireShellTools(t)
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	// The script's post is accepted and recorded exactly, then deployed.
	b := newBuild(142)
	r := runPostManifest(t, "sh", scriptVars(h.mgr.receiverURL, b))
	g.Expect(r.exitCode).To(BeZero(), r.String())
	g.Expect(r.stdout).To(ContainSubstring("HTTP 202"))
	g.Expect(r.stdout).To(ContainSubstring(`"updated":["` + h.ns + `/prod"]`))
	env := h.getEnv("prod")
	g.Expect(env.Status.LatestBuild).NotTo(BeNil())
	got := *env.Status.LatestBuild
	g.Expect(got.ID).To(Equal(b.ID))
	g.Expect(got.Number).To(Equal(int64(142)))
	g.Expect(got.Image).To(Equal(b.Image))
	g.Expect(got.Commit).To(Equal("3f2c9e1"))
	g.Expect(got.Branch).To(Equal("main"))
	g.Expect(got.FinishedAt).NotTo(BeNil())
	g.Expect(got.FinishedAt.Time).To(BeTemporally("==", time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))

	// Sending the same build again is a duplicate: 200, and the build still passes.
	r = runPostManifest(t, "sh", scriptVars(h.mgr.receiverURL, b))
	g.Expect(r.exitCode).To(BeZero(), r.String())
	g.Expect(r.stdout).To(ContainSubstring("HTTP 200"))
	g.Expect(r.stdout).To(ContainSubstring(`"duplicate":["` + h.ns + `/prod"]`))

	// A wrong key: 401, and the build fails.
	b143 := newBuild(143)
	vars := scriptVars(h.mgr.receiverURL, b143)
	vars["AUTODEPLOY_KEY"] = "another-key-0123456789abcdef"
	r = runPostManifest(t, "sh", vars)
	g.Expect(r.exitCode).NotTo(BeZero(), r.String())
	g.Expect(r.stdout).To(ContainSubstring("HTTP 401"))
	g.Expect(r.stderr).To(ContainSubstring("authentication failed"))

	// Another build with a number already taken: 409, and the build fails.
	clash := newBuild(142)
	clash.ID = "shop-api:another-142"
	r = runPostManifest(t, "sh", scriptVars(h.mgr.receiverURL, clash))
	g.Expect(r.exitCode).NotTo(BeZero(), r.String())
	g.Expect(r.stdout).To(ContainSubstring("HTTP 409"))
	g.Expect(r.stderr).To(ContainSubstring("another build already has number 142"))

	// A bad field the receiver rejects: 400 naming it, and the build fails.
	vars = scriptVars(h.mgr.receiverURL, b143)
	vars["IMAGE_URI"] = "shop-api" // no tag or digest
	r = runPostManifest(t, "sh", vars)
	g.Expect(r.exitCode).NotTo(BeZero(), r.String())
	g.Expect(r.stdout).To(ContainSubstring("HTTP 400"))
	g.Expect(r.stdout).To(ContainSubstring(`\"image\"`))

	g.Expect(h.getEnv("prod").Status.LatestBuild.ID).To(Equal(b.ID), "no rejected post recorded anything")

	// A key with awkward printable characters (a leading dash, quotes, $, backtick, %,
	// spaces), read from a file with surrounding whitespace as the manager's key file has: the
	// script signs exactly what the receiver verifies, under sh and bash alike.
	awkward := `-k"ey' $(x) ` + "`" + `%s \n 0123456789`
	keys := [][]byte{testKey, []byte(awkward)}
	h.keys.Store(&keys)
	keyFile := filepath.Join(t.TempDir(), "key")
	g.Expect(os.WriteFile(keyFile, []byte("\n  "+awkward+"  \n\n"), 0o600)).To(Succeed())
	shells := []string{"sh"}
	if _, err := exec.LookPath("bash"); err == nil {
		shells = append(shells, "bash")
	}
	n := int64(150)
	for _, shell := range shells {
		n++
		bn := newBuild(n)
		vars := scriptVars(h.mgr.receiverURL+"/", bn) // a trailing slash is tolerated
		delete(vars, "AUTODEPLOY_KEY")
		vars["AUTODEPLOY_KEY_FILE"] = keyFile
		delete(vars, "FINISHED_AT") // defaults to now
		// The script's clock has whole seconds: the default lies within the run's seconds.
		before := time.Now().Truncate(time.Second)
		r := runPostManifest(t, shell, vars)
		after := time.Now()
		g.Expect(r.exitCode).To(BeZero(), "%s: %s", shell, r)
		g.Expect(r.stdout).To(ContainSubstring("HTTP 202"), shell)
		env := h.getEnv("prod")
		g.Expect(env.Status.LatestBuild.Number).To(Equal(n), shell)
		g.Expect(env.Status.LatestBuild.FinishedAt).NotTo(BeNil(), shell)
		g.Expect(env.Status.LatestBuild.FinishedAt.Time).To(And(BeTemporally(">=", before), BeTemporally("<=", after)), shell)
	}
	last := newBuild(n)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(last.Image)))
	g.Expect(h.getEnv("prod").Status.LastDeploy().Build).To(Equal(&deployv1.BuildRef{Application: "shop-api", Source: "Manifest", ID: last.ID, Number: n}))
}

func TestPostManifestScriptRejectsBadConfigurationWithoutSending(t *testing.T) {
	requireShellTools(t)
	g := NewWithT(t)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	valid := scriptVars(srv.URL, newBuild(7))
	cases := []struct {
		name  string
		edit  func(map[string]string)
		names string // the variable the message must name
	}{
		{"no URL", func(v map[string]string) { delete(v, "AUTODEPLOY_URL") }, "AUTODEPLOY_URL"},
		{"no key", func(v map[string]string) { delete(v, "AUTODEPLOY_KEY") }, "AUTODEPLOY_KEY"},
		{"no application", func(v map[string]string) { delete(v, "APPLICATION") }, "APPLICATION"},
		{"no build id", func(v map[string]string) { delete(v, "BUILD_ID") }, "BUILD_ID"},
		{"no build number", func(v map[string]string) { delete(v, "BUILD_NUMBER") }, "BUILD_NUMBER"},
		{"no image", func(v map[string]string) { delete(v, "IMAGE_URI") }, "IMAGE"},
		{"empty application", func(v map[string]string) { v["APPLICATION"] = "" }, "APPLICATION"},
		{"both key sources", func(v map[string]string) { v["AUTODEPLOY_KEY_FILE"] = "/dev/null" }, "AUTODEPLOY_KEY_FILE"},
		{"short key", func(v map[string]string) { v["AUTODEPLOY_KEY"] = "short" }, "AUTODEPLOY_KEY"},
		{"URL without scheme", func(v map[string]string) { v["AUTODEPLOY_URL"] = strings.TrimPrefix(srv.URL, "http://") }, "AUTODEPLOY_URL"},
		{"non-numeric build number", func(v map[string]string) { v["BUILD_NUMBER"] = "142a" }, "BUILD_NUMBER"},
		{"JSON in build number", func(v map[string]string) { v["BUILD_NUMBER"] = `1,"x":2` }, "BUILD_NUMBER"},
		{"quote in commit", func(v map[string]string) { v["COMMIT"] = `3f2c"9e1` }, "COMMIT"},
		{"backslash in branch", func(v map[string]string) { v["BRANCH"] = `main\u0022` }, "BRANCH"},
		{"newline in image", func(v map[string]string) { v["IMAGE_URI"] += "\nx" }, "IMAGE"},
		{"tab in build id", func(v map[string]string) { v["BUILD_ID"] += "\tx" }, "BUILD_ID"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			vars := map[string]string{}
			for k, v := range valid {
				vars[k] = v
			}
			tc.edit(vars)
			r := runPostManifest(t, "sh", vars)
			g.Expect(r.exitCode).NotTo(BeZero(), r.String())
			g.Expect(r.stderr).To(ContainSubstring(tc.names))
		})
	}
	g.Expect(requests.Load()).To(BeZero(), "no invalid configuration sent anything")

	// The valid configuration does reach the server, so the zero above means something.
	r := runPostManifest(t, "sh", valid)
	g.Expect(r.exitCode).To(BeZero(), r.String())
	g.Expect(requests.Load()).To(Equal(int64(1)))
}
