// Command ecssim serves the ECS API simulator (internal/ecssim) over HTTP so
// that processes outside the test binary, such as the manager, can use it as
// their ECS endpoint (for example via AWS_ENDPOINT_URL_ECS).
//
// Usage:
//
//	ecssim [--listen 127.0.0.1:4566] [--seed FILE] [--aws-throttling] [--rollout-duration 30s]
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
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	opts := []ecssim.Option{ecssim.WithRolloutDuration(*rollout)}
	if *awsThrottling {
		opts = append(opts, ecssim.WithAWSThrottling())
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
	log.Printf("ecssim: serving the ECS API at http://%s (admin under /_sim/)", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
