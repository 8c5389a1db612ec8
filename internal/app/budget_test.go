package app_test

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// simBuckets converts the controller's budget to the simulator's throttles, so both enforce
// the same limits.
func simBuckets(limits map[awsecs.Category]awsecs.Bucket) map[ecssim.Category]ecssim.Bucket {
	cat := map[awsecs.Category]ecssim.Category{
		awsecs.ServiceModify:         ecssim.CategoryServiceModify,
		awsecs.ServiceRead:           ecssim.CategoryServiceRead,
		awsecs.TaskDefinitionModify:  ecssim.CategoryTaskDefinitionModify,
		awsecs.TaskDefinitionRead:    ecssim.CategoryTaskDefinitionRead,
		awsecs.ServiceDeploymentRead: ecssim.CategoryServiceDeploymentsRead,
	}
	out := map[ecssim.Category]ecssim.Bucket{}
	for c, b := range limits {
		out[cat[c]] = ecssim.Bucket{Burst: b.Burst, RefillPerSecond: b.PerSecond}
	}
	return out
}

// fanOut seeds n services with an Environment each, sends one build and waits until every
// service was updated. It returns how long that took after the manifest was accepted.
func fanOut(tb testing.TB, h *harness, n int, wait time.Duration) time.Duration {
	g := NewWithT(tb)
	h.fleet(n, nil)
	h.startManager()
	b := newBuild(1)
	start := time.Now()
	r := h.post(b)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(HaveLen(n))
	g.Eventually(func() int { return h.sim.Calls("UpdateService") - h.sim.Throttled("UpdateService") }, wait, poll).Should(Equal(n))
	return time.Since(start)
}

// TestFanOutStaysWithinTheAPIBudget: a build fanned out to more services than the
// RegisterTaskDefinition bucket holds is deployed everywhere with no ThrottlingException,
// because every Environment waits its turn in the shared client-side budget.
func TestFanOutStaysWithinTheAPIBudget(t *testing.T) {
	limits := awsecs.AWSLimits()
	limits[awsecs.TaskDefinitionModify] = awsecs.Bucket{Burst: 5, PerSecond: 25}
	limits[awsecs.ServiceModify] = awsecs.Bucket{Burst: 5, PerSecond: 25}
	h := newHarness(t, withSim(ecssim.WithThrottling(simBuckets(limits))), withBudget(awsecs.ScaleLimits(limits, awsecs.DefaultBudgetShare)))
	const n = 40
	fanOut(t, h, n, timeout)
	g := h.g
	for i := range n {
		svc := fmt.Sprintf("svc-%04d", i)
		g.Eventually(h.env(svc), timeout, poll).Should(WithTransform(deployedImage, Equal(newBuild(1).Image)), svc)
		g.Expect(h.sim.Revisions("prod-" + svc)).To(Equal(2))
	}
	for _, op := range []string{"RegisterTaskDefinition", "UpdateService", "DescribeServices", "DescribeTaskDefinition"} {
		g.Expect(h.sim.Throttled(op)).To(BeZero(), op)
	}
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(n))
}

// BenchmarkFanOut1000 fans one build out to 1,000 services in one account with the simulator
// enforcing AWS's ECS limits, scaled by AUTODEPLOY_BENCH_SCALE (default 20, so the run takes
// about half a minute; 1 is the real limits and about 16 minutes). It reports the time to the
// last UpdateService against the RegisterTaskDefinition token-bucket bound, and throttles.
//
//	make bench-fanout
func BenchmarkFanOut1000(b *testing.B) {
	scale := 20.0
	if v := os.Getenv("AUTODEPLOY_BENCH_SCALE"); v != "" {
		var err error
		if scale, err = strconv.ParseFloat(v, 64); err != nil {
			b.Fatal(err)
		}
	}
	const n = 1000
	limits := awsecs.ScaleLimits(awsecs.AWSLimits(), scale)
	reg := limits[awsecs.TaskDefinitionModify]
	bound := time.Duration(math.Max(0, float64(n-reg.Burst)) / reg.PerSecond * float64(time.Second))
	for b.Loop() {
		h := newHarness(b, withSim(ecssim.WithThrottling(simBuckets(limits))),
			withBudget(awsecs.ScaleLimits(limits, awsecs.DefaultBudgetShare)), withMaxConcurrent(64))
		elapsed := fanOut(b, h, n, bound*3+time.Minute)
		throttled := 0
		for _, op := range []string{"RegisterTaskDefinition", "UpdateService", "DescribeServices", "DescribeTaskDefinition"} {
			throttled += h.sim.Throttled(op)
		}
		b.ReportMetric(elapsed.Seconds(), "s-to-last-update")
		b.ReportMetric(bound.Seconds(), "s-bound")
		b.ReportMetric(elapsed.Seconds()/bound.Seconds(), "x-bound")
		b.ReportMetric(float64(throttled), "throttles")
	}
}
