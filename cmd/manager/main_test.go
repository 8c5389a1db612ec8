package main

import (
	"math"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
)

func TestSetKubeAPILimits(t *testing.T) {
	g := NewWithT(t)
	cfg := &rest.Config{QPS: 20, Burst: 30}
	g.Expect(setKubeAPILimits(cfg, 75.5, 150)).To(Succeed())
	g.Expect(cfg.QPS).To(Equal(float32(75.5)))
	g.Expect(cfg.Burst).To(Equal(150))

	for _, c := range []struct {
		qps   float64
		burst int
		want  string
	}{
		{0, 30, "--kube-api-qps must be a positive number"},
		{-1, 30, "--kube-api-qps must be a positive number"},
		{math.Inf(1), 30, "--kube-api-qps must be a positive number"},
		{math.NaN(), 30, "--kube-api-qps must be a positive number"},
		{20, 0, "--kube-api-burst must be at least 1, not 0"},
	} {
		cfg := &rest.Config{QPS: 20, Burst: 30}
		g.Expect(setKubeAPILimits(cfg, c.qps, c.burst)).To(MatchError(ContainSubstring(c.want)))
		g.Expect(cfg.QPS).To(Equal(float32(20)), "a refused value changes nothing")
		g.Expect(cfg.Burst).To(Equal(30))
	}
}
