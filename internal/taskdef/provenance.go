package taskdef

import (
	"regexp"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// Tag keys of the provenance autodeploy writes on every revision it registers: the build the
// revision carries. They show in the AWS console, and they tell a later deploy (of a
// re-created Environment, say) which build the service runs.
const (
	TagApplication = "autodeploy.dev/application"
	TagBuildID     = "autodeploy.dev/build-id"
	TagBuildNumber = "autodeploy.dev/build-number"
	TagBuildSource = "autodeploy.dev/build-source"
)

// maxTags is ECS's limit of tags on one resource.
const maxTags = 50

// tagValue is what ECS accepts in a tag value: up to 256 letters, digits, spaces and
// _ . : / = + - @.
var tagValue = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,256}$`)

// Provenance is the build a task-definition revision carries.
type Provenance struct {
	Application string
	// Source is the kind of sender the build came from; empty when not known.
	Source      string
	BuildID     string
	BuildNumber int64
}

// ProvenanceOf reads the provenance tags; ok is false when the revision has none (it was not
// registered by autodeploy, or not for a known build).
func ProvenanceOf(tags []types.Tag) (p Provenance, ok bool) {
	var number string
	for _, t := range tags {
		switch aws.ToString(t.Key) {
		case TagApplication:
			p.Application = aws.ToString(t.Value)
		case TagBuildID:
			p.BuildID = aws.ToString(t.Value)
		case TagBuildNumber:
			number = aws.ToString(t.Value)
		case TagBuildSource:
			p.Source = aws.ToString(t.Value)
		}
	}
	n, err := strconv.ParseInt(number, 10, 64)
	if err != nil || p.Application == "" || p.BuildID == "" {
		return Provenance{}, false
	}
	p.BuildNumber = n
	return p, true
}

// WithProvenance returns tags with the provenance tags set to p (replacing any copied from
// the revision the new one derives from) or removed when p is nil. A value ECS would refuse
// is left out, and so are all three when they would take the revision past ECS's tag limit:
// provenance never makes a registration fail.
func WithProvenance(tags []types.Tag, p *Provenance) []types.Tag {
	out := make([]types.Tag, 0, len(tags)+3)
	for _, t := range tags {
		switch aws.ToString(t.Key) {
		case TagApplication, TagBuildID, TagBuildNumber, TagBuildSource:
			continue
		}
		out = append(out, t)
	}
	if p == nil || len(out)+4 > maxTags || !tagValue.MatchString(p.Application) || !tagValue.MatchString(p.BuildID) {
		return out
	}
	out = append(out,
		types.Tag{Key: aws.String(TagApplication), Value: aws.String(p.Application)},
		types.Tag{Key: aws.String(TagBuildID), Value: aws.String(p.BuildID)},
		types.Tag{Key: aws.String(TagBuildNumber), Value: aws.String(strconv.FormatInt(p.BuildNumber, 10))},
	)
	if p.Source != "" && tagValue.MatchString(p.Source) {
		out = append(out, types.Tag{Key: aws.String(TagBuildSource), Value: aws.String(p.Source)})
	}
	return out
}
