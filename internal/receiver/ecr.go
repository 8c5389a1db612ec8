package receiver

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

var (
	accountPattern = regexp.MustCompile(`^\d{12}$`)
	regionPattern  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d+$`)
	// ecrRepositoryPattern is ECR's repository name grammar.
	ecrRepositoryPattern = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
)

// ManifestFromECR maps an ECR "ECR Image Action" event to a build manifest. Only a successful
// PUSH is a build; anything else returns an error matching errIgnored. The application is the
// repository name (its last path segment: team/shop-api is shop-api), the image is
// <account>.dkr.ecr.<region>.amazonaws.com/<repository>@<digest>, the build id is the digest.
// ECR has no build number: the event time in Unix seconds orders the pushes, so a build
// pushed within the same second as another conflicts with it, and the numbers are not
// comparable with CodeBuild build numbers (an application takes builds from one sender).
func ManifestFromECR(ev *Event) (*manifest.Manifest, error) {
	detail, err := parseObject(ev.Detail, "detail")
	if err != nil {
		return nil, err
	}
	get := func(key string) (string, error) {
		s, _, err := detail.str(key)
		if err != nil {
			return "", fieldErr("detail."+key, err)
		}
		return s, nil
	}
	action, err := get("action-type")
	if err != nil {
		return nil, err
	}
	result, err := get("result")
	if err != nil {
		return nil, err
	}
	if action != "PUSH" || result != "SUCCESS" {
		return nil, ignored("action %q with result %q is not a successful PUSH", truncate(action), truncate(result))
	}
	repo, err := get("repository-name")
	if err != nil {
		return nil, err
	}
	digest, err := get("image-digest")
	if err != nil {
		return nil, err
	}
	switch {
	case !accountPattern.MatchString(ev.Account):
		return nil, &manifest.FieldError{Field: "account", Reason: "must be a 12-digit AWS account id"}
	case len(ev.Region) > 32 || !regionPattern.MatchString(ev.Region):
		return nil, &manifest.FieldError{Field: "region", Reason: "must be an AWS Region such as us-east-1"}
	case repo == "":
		return nil, &manifest.FieldError{Field: "detail.repository-name", Reason: "is required"}
	case len(repo) < 2 || len(repo) > 256 || !ecrRepositoryPattern.MatchString(repo):
		return nil, &manifest.FieldError{Field: "detail.repository-name", Reason: "is not an ECR repository name"}
	case digest == "":
		return nil, &manifest.FieldError{Field: "detail.image-digest", Reason: "is required"}
	}
	if ev.Time.Unix() <= 0 {
		return nil, &manifest.FieldError{Field: "time", Reason: "must be after 1970"}
	}
	domain := "amazonaws.com"
	if strings.HasPrefix(ev.Region, "cn-") {
		domain = "amazonaws.com.cn"
	}
	finished := ev.Time
	m := &manifest.Manifest{
		Application: repo[strings.LastIndexByte(repo, '/')+1:],
		BuildID:     digest,
		BuildNumber: ev.Time.Unix(),
		Image:       fmt.Sprintf("%s.dkr.ecr.%s.%s/%s@%s", ev.Account, ev.Region, domain, repo, digest),
		FinishedAt:  &finished,
	}
	if err := m.Validate(); err != nil {
		return nil, withOrigin(err, map[string]string{
			"application": "detail.repository-name",
			"buildId":     "detail.image-digest",
			"image":       "account, region, detail.repository-name and detail.image-digest",
		})
	}
	return m, nil
}
