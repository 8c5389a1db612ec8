package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

// Exported environment variables read from a CodeBuild build (env.exported-variables in the
// buildspec).
const (
	// DefaultImageVariable names the image the build pushed, unless configured otherwise.
	DefaultImageVariable = "IMAGE_URI"
	// ApplicationVariable, when exported, is the application; otherwise the project name is.
	ApplicationVariable = "AUTODEPLOY_APPLICATION"
	// BranchVariable, when exported, is the branch built.
	BranchVariable = "AUTODEPLOY_BRANCH"
	// ContainerImageVariablePrefix and a container's name, upper-cased with every character
	// other than a letter or digit as _, name the image the build produced for that container
	// (AUTODEPLOY_IMAGE_WORKER for container worker), for Environments that deploy several
	// containers of one build (spec.ecs.containers). The prefix is autodeploy's own, so no
	// variable a build exports for another purpose (IMAGE_TAG, say) is taken for an image.
	ContainerImageVariablePrefix = eventbridge.ContainerImageVariablePrefix
)

// maxSafeBuildNumber bounds build numbers: CodeBuild sends build-number as a float64, which
// holds every integer below 2^53 exactly; from 2^53 on, two numbers may read as one
// (9007199254740993 reads as 9007199254740992).
const maxSafeBuildNumber = 1 << 53

// ManifestFromCodeBuild maps a CodeBuild "Build State Change" event to a build manifest. Only
// a SUCCEEDED build is a build to record; any other status returns an error matching
// errIgnored. The image is the exported variable imageVariable; the application is the
// exported variable AUTODEPLOY_APPLICATION, else the project name; the branch is the exported
// variable AUTODEPLOY_BRANCH, if any; every exported AUTODEPLOY_IMAGE_<CONTAINER> gives
// images[<CONTAINER>] (matched to an Environment's containers when it is recorded); the build number, id, source version and event time
// give buildNumber, buildId, commit and finishedAt. A wrong field is a *manifest.FieldError.
func ManifestFromCodeBuild(ev *Event, imageVariable string) (*manifest.Manifest, error) {
	if imageVariable == "" {
		imageVariable = DefaultImageVariable
	}
	detail, err := parseObject(ev.Detail, "detail")
	if err != nil {
		return nil, err
	}
	status, _, err := detail.str("build-status")
	if err != nil {
		return nil, fieldErr("detail.build-status", err)
	}
	if status != "SUCCEEDED" {
		return nil, ignored("build status %q is not SUCCEEDED", truncate(status))
	}
	project, _, err := detail.str("project-name")
	if err != nil {
		return nil, fieldErr("detail.project-name", err)
	}
	buildID, _, err := detail.str("build-id")
	if err != nil {
		return nil, fieldErr("detail.build-id", err)
	}
	info, err := detail.obj("additional-information")
	if err != nil {
		return nil, fieldErr("detail.additional-information", err)
	}
	if info == nil {
		return nil, &manifest.FieldError{Field: "detail.additional-information", Reason: "is required"}
	}
	number, err := buildNumber(info["build-number"])
	if err != nil {
		return nil, err
	}
	vars, err := exportedVariables(info["exported-environment-variables"])
	if err != nil {
		return nil, err
	}
	commit, _, err := info.str("source-version")
	if err != nil {
		return nil, fieldErr("detail.additional-information.source-version", err)
	}
	finished := ev.Time
	m := &manifest.Manifest{
		Application: project,
		BuildID:     buildID,
		BuildNumber: number,
		Image:       vars[imageVariable],
		Commit:      commit,
		Branch:      vars[BranchVariable],
		FinishedAt:  &finished,
	}
	for name, value := range vars {
		if key, ok := strings.CutPrefix(name, ContainerImageVariablePrefix); ok {
			if m.Images == nil {
				m.Images = map[string]string{}
			}
			m.Images[key] = value
		}
	}
	origin := map[string]string{
		"application": "detail.project-name",
		"buildId":     "detail.build-id",
		"buildNumber": "detail.additional-information.build-number",
		"image":       "exported variable " + imageVariable,
		"commit":      "detail.additional-information.source-version",
		"branch":      "exported variable " + BranchVariable,
	}
	for key := range m.Images {
		origin["images."+key] = "exported variable " + ContainerImageVariablePrefix + key
	}
	origin["images"] = "exported variables " + ContainerImageVariablePrefix + "*"
	if app, ok := vars[ApplicationVariable]; ok {
		m.Application = app
		origin["application"] = "exported variable " + ApplicationVariable
	}
	// The source version is informational (for an S3 source it is an object version, not a
	// commit): one that is no valid commit is dropped rather than losing the build.
	if err := m.Validate(); err != nil {
		var fe *manifest.FieldError
		if errors.As(err, &fe) && fe.Field == "commit" {
			m.Commit = ""
			err = m.Validate()
		}
		if err != nil {
			return nil, withOrigin(err, origin)
		}
	}
	return m, nil
}

// buildNumber reads CodeBuild's build-number, a JSON number such as 55.0, as a positive
// integer.
func buildNumber(raw json.RawMessage) (int64, error) {
	const field = "detail.additional-information.build-number"
	if len(raw) == 0 || string(raw) == "null" {
		return 0, &manifest.FieldError{Field: field, Reason: "is required"}
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return 0, &manifest.FieldError{Field: field, Reason: "must be a number"}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, &manifest.FieldError{Field: field, Reason: "is not a representable number"}
	}
	if f != math.Trunc(f) || f < 1 || f >= maxSafeBuildNumber {
		return 0, &manifest.FieldError{Field: field, Reason: fmt.Sprintf("must be a positive integer below %d", int64(maxSafeBuildNumber))}
	}
	return int64(f), nil
}

// exportedVariables reads [{"name":…,"value":…}, …] into a map. A variable that appears twice
// is an error: which one counts would be a guess.
func exportedVariables(raw json.RawMessage) (map[string]string, error) {
	const field = "detail.additional-information.exported-environment-variables"
	vars := map[string]string{}
	if len(raw) == 0 || string(raw) == "null" {
		return vars, nil
	}
	var list []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, &manifest.FieldError{Field: field, Reason: "must be an array of {name, value} objects"}
	}
	for _, item := range list {
		o, err := parseObject(item, "an exported variable")
		if err != nil {
			return nil, &manifest.FieldError{Field: field, Reason: "must be an array of {name, value} objects"}
		}
		name, okName, err1 := o.str("name")
		value, _, err2 := o.str("value")
		if err1 != nil || err2 != nil || !okName {
			return nil, &manifest.FieldError{Field: field, Reason: "every entry needs a string name and value"}
		}
		if _, dup := vars[name]; dup {
			return nil, &manifest.FieldError{Field: field, Reason: fmt.Sprintf("variable %q appears more than once", truncate(name))}
		}
		vars[name] = value
	}
	return vars, nil
}

// withOrigin rewrites a manifest field error to say where in the event the value came from.
func withOrigin(err error, origin map[string]string) error {
	var fe *manifest.FieldError
	if errors.As(err, &fe) {
		if o, ok := origin[fe.Field]; ok {
			return &manifest.FieldError{Field: fe.Field, Reason: fmt.Sprintf("(from %s) %s", o, fe.Reason)}
		}
	}
	return err
}

func fieldErr(field string, err error) error {
	return &manifest.FieldError{Field: field, Reason: err.Error()}
}

// truncate shortens an echoed value so that an answer stays small.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
