package ecssim

import (
	"time"

	"golang.org/x/time/rate"
)

// Category is an ECS API throttling category: actions in one category share
// one token bucket per account and Region.
type Category string

// The throttling categories AWS documents for the ECS API.
const (
	CategoryServiceModify          Category = "ServiceModify"
	CategoryServiceRead            Category = "ServiceRead"
	CategoryTaskDefinitionModify   Category = "TaskDefinitionModify"
	CategoryTaskDefinitionRead     Category = "TaskDefinitionRead"
	CategoryServiceDeploymentsRead Category = "ServiceDeploymentRead"
)

// Bucket is a token bucket: Burst tokens at most, refilled at
// RefillPerSecond tokens per second. Every call takes one token.
type Bucket struct {
	Burst           int
	RefillPerSecond float64
}

// categories maps each throttled operation to its category.
var categories = map[string]Category{
	"CreateService":              CategoryServiceModify,
	"DeleteService":              CategoryServiceModify,
	"UpdateService":              CategoryServiceModify,
	"DescribeServices":           CategoryServiceRead,
	"ListServices":               CategoryServiceRead,
	"RegisterTaskDefinition":     CategoryTaskDefinitionModify,
	"DeregisterTaskDefinition":   CategoryTaskDefinitionModify,
	"DescribeTaskDefinition":     CategoryTaskDefinitionRead,
	"ListTaskDefinitions":        CategoryTaskDefinitionRead,
	"ListTaskDefinitionFamilies": CategoryTaskDefinitionRead,
	"DescribeServiceDeployments": CategoryServiceDeploymentsRead,
	"ListServiceDeployments":     CategoryServiceDeploymentsRead,
}

// CategoryOf returns the throttling category of an ECS operation, if it
// has one.
func CategoryOf(op string) (Category, bool) {
	c, ok := categories[op]
	return c, ok
}

// AWSBuckets returns the token buckets AWS publishes for the ECS API
// ("Request throttling for the Amazon ECS API").
func AWSBuckets() map[Category]Bucket {
	return map[Category]Bucket{
		CategoryServiceModify:          {Burst: 50, RefillPerSecond: 5},
		CategoryServiceRead:            {Burst: 100, RefillPerSecond: 20},
		CategoryTaskDefinitionModify:   {Burst: 20, RefillPerSecond: 1},
		CategoryTaskDefinitionRead:     {Burst: 50, RefillPerSecond: 20},
		CategoryServiceDeploymentsRead: {Burst: 50, RefillPerSecond: 20},
	}
}

// newLimiters builds one full limiter per bucket, as of now.
func newLimiters(buckets map[Category]Bucket, now time.Time) map[Category]*rate.Limiter {
	out := make(map[Category]*rate.Limiter, len(buckets))
	for c, b := range buckets {
		l := rate.NewLimiter(rate.Limit(b.RefillPerSecond), b.Burst)
		l.AllowN(now, 0) // anchor the bucket on the simulator's clock
		out[c] = l
	}
	return out
}

// throttleLocked takes a token for op at now and reports whether the call
// must be throttled.
func (s *Server) throttleLocked(op string, now time.Time) bool {
	c, ok := categories[op]
	if !ok {
		return false
	}
	l, ok := s.limiters[c]
	if !ok {
		return false
	}
	return !l.AllowN(now, 1)
}
