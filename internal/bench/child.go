package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// ChildArg, as the first argument of the benchmark's own executable, makes it run one of the
// two systems (the autodeploy manager or the polling cron) as a process of its own (RunChild),
// so that the system's CPU and memory are measured apart from the simulator's and the build
// sender's, which stay in the benchmark process.
const ChildArg = "__bench-system"

// Roles of a child process.
const (
	roleAutodeploy = "autodeploy"
	roleCron       = "cron"
)

// childSpec is what a child reads on its standard input.
type childSpec struct {
	Role       string `json:"role"`
	Config     Config `json:"config"`
	N          int    `json:"n"`
	KubeConfig []byte `json:"kubeconfig,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	SimURL     string `json:"simURL"`
	Key        []byte `json:"key,omitempty"`
	EventKey   []byte `json:"eventKey,omitempty"`
	// Unlimited lifts the receiver's per-tenant rate limit (throughput measurement).
	Unlimited bool `json:"unlimited,omitempty"`
}

// childHello is the first line a child writes on its standard output once it is ready.
type childHello struct {
	Receiver string `json:"receiver,omitempty"` // the manager's receiver
	Control  string `json:"control"`            // GET /stats, POST /start (cron)
}

// childStats is what a child's GET /stats answers.
type childStats struct {
	Reconciles float64    `json:"reconciles"` // the manager's Environment reconciles so far
	PeakHeap   uint64     `json:"peakHeap"`   // peak Go heap objects since the child started
	Ticks      []tickStat `json:"ticks,omitempty"`
}

// RunChild runs the system described on stdin until ctx ends (SIGTERM).
func RunChild(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var spec childSpec
	if err := json.NewDecoder(stdin).Decode(&spec); err != nil {
		return fmt.Errorf("reading the child's spec: %w", err)
	}
	cfg := &spec.Config
	hs := startHeapSampler()
	defer hs.Stop()
	mux := http.NewServeMux()
	var hello childHello
	var ticks func() []tickStat
	switch spec.Role {
	case roleAutodeploy:
		restCfg, err := clientcmd.RESTConfigFromKubeConfig(spec.KubeConfig)
		if err != nil {
			return err
		}
		m, err := cfg.startManager(ctx, restCfg, spec.Namespace, spec.SimURL, spec.Key, spec.EventKey, spec.Unlimited)
		if err != nil {
			return err
		}
		defer func() { _ = m.stop() }()
		hello.Receiver = m.url
	case roleCron:
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(spec.N)))
		f := newFleet(spec.N, cfg.EnvsPerApp, cfg.Clusters, cfg.Accounts, cfg.PinnedShare, rng)
		p := cfg.newPoller(f, spec.SimURL)
		var once sync.Once
		done := make(chan struct{})
		defer func() { <-done }()
		mux.HandleFunc("POST /start", func(w http.ResponseWriter, _ *http.Request) {
			once.Do(func() {
				go func() {
					defer close(done)
					p.run(ctx)
				}()
			})
		})
		defer once.Do(func() { close(done) })
		ticks = p.stats
	default:
		return fmt.Errorf("unknown role %q", spec.Role)
	}
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		st := childStats{Reconciles: metrics.EnvironmentReconciles(), PeakHeap: max(hs.peak.Load(), heapInUse())}
		if ticks != nil {
			st.Ticks = ticks()
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	hello.Control = "http://" + ln.Addr().String()
	if err := json.NewEncoder(stdout).Encode(hello); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// child is a system running in a child process.
type child struct {
	cmd   *exec.Cmd
	hello childHello
	done  chan error
	log   *tailBuffer
	hc    *http.Client
}

// startChild starts the benchmark's own executable as a child running spec and waits until
// it is ready.
func startChild(ctx context.Context, spec childSpec) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, ChildArg)
	cmd.Stdin = bytes.NewReader(in)
	c := &child{cmd: cmd, done: make(chan error, 1), log: &tailBuffer{max: 64 << 10}, hc: &http.Client{Timeout: 30 * time.Second}}
	cmd.Stderr = c.log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	hello := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &c.hello)
		}
		hello <- err
		_, _ = io.Copy(io.Discard, out)
		c.done <- cmd.Wait()
	}()
	select {
	case err := <-hello:
		if err != nil {
			c.kill()
			return nil, fmt.Errorf("the %s process did not start: %w\n%s", spec.Role, err, c.log)
		}
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	case <-time.After(5 * time.Minute):
		c.kill()
		return nil, fmt.Errorf("the %s process was not ready within 5 minutes\n%s", spec.Role, c.log)
	}
	return c, nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
}

// stop ends the child with SIGTERM (a clean stop) and waits for it.
func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			return fmt.Errorf("%w\n%s", err, c.log)
		}
		return nil
	case <-time.After(60 * time.Second):
		c.kill()
		return fmt.Errorf("the child did not stop within 60s\n%s", c.log)
	}
}

func (c *child) stats(ctx context.Context) (childStats, error) {
	var st childStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.hello.Control+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (c *child) start(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.hello.Control+"/start", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("start: %s", resp.Status)
	}
	return nil
}

// reconciles reads the child's reconcile counter; -1 if it cannot be read.
func (c *child) reconciles(ctx context.Context) float64 {
	st, err := c.stats(ctx)
	if err != nil {
		return -1
	}
	return st.Reconciles
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// cpu is the child's CPU time so far (utime + stime of /proc/<pid>/stat).
func (c *child) cpu() time.Duration { return procCPU(c.pid()) }

// peakRSSKB returns the child's peak RSS (VmHWM) in KiB.
func (c *child) peakRSSKB() int64 { return procPeakRSSKB(c.pid()) }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
