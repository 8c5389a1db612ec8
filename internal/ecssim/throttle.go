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

	// CategoryECRDescribeImages is the ECR DescribeImages rate quota. ECR
	// quotas are plain per-second rates per account and Region, modelled as
	// a bucket whose burst equals its refill rate.
	CategoryECRDescribeImages Category = "ECRDescribeImages"
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
	// AWS's throttling page could not be read for these three; the
	// simulator puts the revision read with the deployment reads and the
	// two deployment controls with the service modifications.
	"DescribeServiceRevisions":  CategoryServiceDeploymentsRead,
	"StopServiceDeployment":     CategoryServiceModify,
	"ContinueServiceDeployment": CategoryServiceModify,
	"DescribeImages":            CategoryECRDescribeImages, // ECR
}

// CategoryOf returns the throttling category of an ECS (or ECR) operation,
// if it has one.
func CategoryOf(op string) (Category, bool) {
	c, ok := categories[op]
	return c, ok
}

// AWSBuckets returns the token buckets AWS publishes for the ECS API
// ("Request throttling for the Amazon ECS API"), plus one for ECR
// DescribeImages.
//
// The ECR bucket (10 requests per second, burst 10) is the simulator's
// choice, not a published number: AWS's "Amazon ECR service quotas" page
// lists per-second rate quotas only for the registry authentication and
// image push/pull APIs (GetAuthorizationToken, BatchCheckLayerAvailability,
// InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload, PutImage,
// BatchGetImage, GetDownloadUrlForLayer), not for DescribeImages. 10/s is
// the lowest rate on that page (InitiateLayerUpload, CompleteLayerUpload),
// a deliberately conservative stand-in so that a polling benchmark does not
// assume more headroom than AWS guarantees. Override it with WithThrottling.
func AWSBuckets() map[Category]Bucket {
	return map[Category]Bucket{
		CategoryServiceModify:          {Burst: 50, RefillPerSecond: 5},
		CategoryServiceRead:            {Burst: 100, RefillPerSecond: 20},
		CategoryTaskDefinitionModify:   {Burst: 20, RefillPerSecond: 1},
		CategoryTaskDefinitionRead:     {Burst: 50, RefillPerSecond: 20},
		CategoryServiceDeploymentsRead: {Burst: 50, RefillPerSecond: 20},
		CategoryECRDescribeImages:      {Burst: 10, RefillPerSecond: 10},
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
func (a *account) throttleLocked(op string, now time.Time) bool {
	c, ok := categories[op]
	if !ok {
		return false
	}
	l, ok := a.limiters[c]
	if !ok {
		return false
	}
	return !l.AllowN(now, 1)
}
