// Command ecssim serves the ECS API simulator (internal/ecssim) over HTTP so
// that processes outside the test binary, such as the manager, can use it as
// their ECS endpoint (for example via AWS_ENDPOINT_URL_ECS). The same address
// serves STS AssumeRole/GetCallerIdentity (AWS_ENDPOINT_URL_STS) and ECR
// DescribeImages (AWS_ENDPOINT_URL_ECR).
//
// Usage:
//
//	ecssim [--listen 127.0.0.1:4566] [--seed FILE] [--aws-throttling] [--rollout-duration 30s]
//	       [--stage-duration 2s] [--deployment-minute 1m]
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
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
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
	stageDuration := flag.Duration("stage-duration", 2*time.Second, "how long each lifecycle stage of a BLUE_GREEN, LINEAR or CANARY deployment lasts")
	deploymentMinute := flag.Duration("deployment-minute", time.Minute, "how long one minute of bake time or hook timeout lasts")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	opts := []ecssim.Option{ecssim.WithRolloutDuration(*rollout), ecssim.WithStageDuration(*stageDuration),
		ecssim.WithDeploymentMinute(*deploymentMinute)}
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
	var poster *ecssim.EventPoster
	if *eventsURL != "" {
		// One worker: in order, as the events happened; five attempts each.
		poster = &ecssim.EventPoster{APIKey: *eventsKey, Header: receiver.APIKeyHeader, Workers: 1,
			Backoff: 200 * time.Millisecond, MaxAttempts: 5, Logf: log.Printf}
		poster.SetURL(*eventsURL)
		opts = append(opts, ecssim.WithEventSink(poster.Enqueue))
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
		go poster.Run(ctx)
		go sim.AdvanceRolloutsEvery(ctx, 500*time.Millisecond)
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
