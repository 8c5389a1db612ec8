package app_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// BenchmarkBlueGreenFleet deploys one build to a fleet of blue/green services (100, or
// AUTODEPLOY_BENCH_BLUEGREEN_N) under AWS's ECS limits scaled ×20, with rollouts followed by
// polling and with ECS events, and reports the ECS calls per rollout, from the manifest to the
// last rollout completed (stages of 20 ms, bake time 1 deployment minute = 200 ms).
//
//	make bench-fanout
func BenchmarkBlueGreenFleet(b *testing.B) {
	n := benchSize(b, "AUTODEPLOY_BENCH_BLUEGREEN_N", 100)
	for _, mode := range []string{"polling", "events"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				limits := awsecs.ScaleLimits(awsecs.AWSLimits(), 20)
				opts := []harnessOption{
					withSim(ecssim.WithThrottling(simBuckets(limits)), ecssim.WithStageDuration(20*time.Millisecond), ecssim.WithDeploymentMinute(200*time.Millisecond)),
					withBudget(awsecs.ScaleLimits(limits, awsecs.DefaultBudgetShare)), withMaxConcurrent(16),
				}
				if mode == "events" {
					opts = append(opts, withoutPolling())
				}
				h := newHarness(b, opts...)
				g := NewWithT(b)
				names := h.fleet(n, nil)
				for _, svc := range names {
					_, err := h.sdk().UpdateService(context.Background(), &ecs.UpdateServiceInput{
						Cluster: aws.String("prod"), Service: aws.String(svc),
						DeploymentConfiguration: &types.DeploymentConfiguration{Strategy: types.DeploymentStrategyBlueGreen, BakeTimeInMinutes: aws.Int32(1)},
					})
					g.Expect(err).NotTo(HaveOccurred())
				}
				h.startManager()
				h.sim.ResetCalls()
				r := h.post(newBuild(1))
				g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
				for _, svc := range names {
					g.Eventually(h.env(svc), 5*time.Minute, 50*time.Millisecond).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)), svc)
				}
				ops := []string{"DescribeServices", "DescribeTaskDefinition", "RegisterTaskDefinition", "UpdateService",
					"ListServiceDeployments", "DescribeServiceDeployments", "DescribeServiceRevisions"}
				total, throttled := 0, 0
				var parts []string
				for _, op := range ops {
					c := h.sim.Calls(op)
					total += c
					throttled += h.sim.Throttled(op)
					b.ReportMetric(float64(c)/float64(n), op+"/rollout")
					parts = append(parts, fmt.Sprintf("%s %.2f", op, float64(c)/float64(n)))
				}
				sort.Strings(parts)
				b.Logf("%s, N=%d: %.2f ECS calls per rollout (%v)", mode, n, float64(total)/float64(n), parts)
				b.ReportMetric(float64(total)/float64(n), "calls/rollout")
				b.ReportMetric(float64(throttled), "throttles")
				h.stopManager()
			}
		})
	}
}

// benchSize is the size a benchmark's environment variable sets, or def when it is unset.
func benchSize(b *testing.B, variable string, def int) int {
	v := os.Getenv(variable)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("%s=%q: not a number: %v", variable, v, err)
	}
	return n
}
