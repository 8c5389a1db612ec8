// Command ecssim serves the ECS API simulator (internal/ecssim) over HTTP so
// that processes outside the test binary, such as the manager, can use it as
// their ECS endpoint (for example via AWS_ENDPOINT_URL_ECS). The same address
// serves STS AssumeRole/GetCallerIdentity (AWS_ENDPOINT_URL_STS) and ECR
// DescribeImages (AWS_ENDPOINT_URL_ECR).
//
// Usage:
//
//	ecssim [--listen 127.0.0.1:4566] [--seed FILE] [--aws-throttling] [--rollout-duration 30s]
//	       [--account 123456789012] [--role ARN[,EXTERNAL_ID]]...
//	       [--events-url URL [--events-api-key KEY]]
//
// With --events-url, every ECS "Deployment State Change" event is POSTed to
// URL as an EventBridge API destination would (Content-Type
// application/json; charset=utf-8, User-Agent Amazon/EventBridge/ApiDestinations,
// and the header X-Autodeploy-Api-Key: KEY), in order, retrying 401, 407,
// 409, 429, 5xx and connection errors a few times; and rollouts are advanced
// every 500ms so COMPLETED events arrive without reads.
//
// The admin surface is served under /_sim/ on the same address.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

func main() {
	if err := run(); err != nil {
		log.Fatalf("ecssim: %v", err)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:4566", "address to listen on")
	seed := flag.String("seed", "", "JSON seed file with clusters, taskDefinitions and services")
	awsThrottling := flag.Bool("aws-throttling", false, "throttle calls with AWS's published ECS token buckets")
	rollout := flag.Duration("rollout-duration", 0, "how long new deployments stay IN_PROGRESS (0: until the next request)")
	account := flag.String("account", "", "default AWS account id (default 123456789012)")
	var roles []string
	flag.Func("role", "assumable IAM role `ARN[,EXTERNAL_ID]` (repeatable)", func(v string) error {
		roles = append(roles, v)
		return nil
	})
	eventsURL := flag.String("events-url", "", "POST every ECS Deployment State Change event to this URL")
	eventsKey := flag.String("events-api-key", "", "value of the X-Autodeploy-Api-Key header sent with events")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	opts := []ecssim.Option{ecssim.WithRolloutDuration(*rollout)}
	if *awsThrottling {
		opts = append(opts, ecssim.WithAWSThrottling())
	}
	if *account != "" {
		opts = append(opts, ecssim.WithAccount(*account))
	}
	for _, r := range roles {
		arn, externalID, _ := strings.Cut(r, ",")
		if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":role/") {
			return fmt.Errorf("--role %q: want arn:aws:iam::<account>:role/<name>[,<external id>]", r)
		}
		opts = append(opts, ecssim.WithRole(arn, externalID))
	}
	var poster *eventPoster
	if *eventsURL != "" {
		poster = newEventPoster(*eventsURL, *eventsKey)
		opts = append(opts, ecssim.WithEventSink(poster.enqueue))
	}
	sim := ecssim.New(opts...)
	if *seed != "" {
		f, err := os.Open(*seed)
		if err != nil {
			return err
		}
		err = sim.LoadSeed(f)
		_ = f.Close()
		if err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("ecssim: serving the ECS, ECR and STS APIs at http://%s (admin under /_sim/)", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if poster != nil {
		log.Printf("ecssim: posting deployment events to %s", *eventsURL)
		go poster.run(ctx)
		go func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					sim.AdvanceRollouts()
				}
			}
		}()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Printf("ecssim: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// eventPoster delivers events to an HTTP endpoint from one goroutine, in
// order, so that the simulator's requests never wait on the endpoint (unless
// the queue is full).
type eventPoster struct {
	url, apiKey string
	client      *http.Client
	queue       chan []byte
}

func newEventPoster(url, apiKey string) *eventPoster {
	return &eventPoster{url: url, apiKey: apiKey, client: &http.Client{Timeout: 5 * time.Second},
		queue: make(chan []byte, 10000)}
}

func (p *eventPoster) enqueue(event []byte) { p.queue <- event }

func (p *eventPoster) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-p.queue:
			p.post(ctx, e)
		}
	}
}

// post sends one event, retrying what EventBridge API destinations retry
// (401, 407, 409, 429, 5xx, connection errors) up to 5 attempts.
func (p *eventPoster) post(ctx context.Context, event []byte) {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		status, err := p.send(ctx, event)
		retry := err != nil || status == 401 || status == 407 || status == 409 || status == 429 || status >= 500
		if !retry {
			if status >= 300 {
				log.Printf("ecssim: event rejected by %s: HTTP %d", p.url, status)
			}
			return
		}
		if attempt == 5 || ctx.Err() != nil {
			log.Printf("ecssim: giving up on event after %d attempts: status %d, err %v", attempt, status, err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func (p *eventPoster) send(ctx context.Context, event []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(event))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Amazon/EventBridge/ApiDestinations")
	if p.apiKey != "" {
		req.Header.Set("X-Autodeploy-Api-Key", p.apiKey)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
