// Package manifest defines the build manifest a CI system posts at the end of a build, its
// validation, and the HMAC signature that authenticates it.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"
)

// Manifest describes one finished build of an application.
type Manifest struct {
	// Application is the name the build is published under.
	Application string `json:"application"`
	// BuildID is unique per build, for example the CodeBuild build id.
	BuildID string `json:"buildId"`
	// BuildNumber orders builds of one application.
	BuildNumber int64 `json:"buildNumber"`
	// Image is the image reference the build pushed (for the primary container).
	Image string `json:"image"`
	// Images are the images the build pushed per container, by container name, for
	// Environments that deploy several containers of one build together
	// (spec.ecs.containers). The primary container takes images[name], else image.
	Images map[string]string `json:"images,omitempty"`
	// Commit is the source revision built.
	Commit string `json:"commit,omitempty"`
	// Branch is the source branch built.
	Branch string `json:"branch,omitempty"`
	// FinishedAt is when the build finished.
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// FieldError says which field of a manifest is wrong and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %s", e.Field, e.Reason) }

// Limits on field sizes.
const (
	maxApplication = 253
	maxBuildID     = 255
	maxImage       = 1024
	maxCommit      = 255
	maxBranch      = 255
	// maxImages is ECS's limit of containers in a task definition.
	maxImages    = 10
	maxContainer = 255
)

var containerPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

var applicationPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// Parse decodes and validates a manifest. Unknown fields, trailing data and wrong types are
// errors; a *FieldError names the offending field.
func Parse(body []byte) (*Manifest, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("body is not valid UTF-8")
	}
	keysErr := checkKeys(body)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		if keysErr != nil {
			var syntaxErr *json.SyntaxError
			if !errors.As(err, &syntaxErr) {
				return nil, keysErr
			}
		}
		return nil, describeDecodeError(err)
	}
	if keysErr != nil {
		return nil, keysErr
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid JSON: unexpected data after the manifest object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// fieldNames are the manifest's JSON keys.
var fieldNames = map[string]bool{
	"application": true, "buildId": true, "buildNumber": true, "image": true,
	"commit": true, "branch": true, "finishedAt": true, "images": true,
}

// checkKeys checks the top-level keys of body exactly, which encoding/json does not: it
// matches keys case-insensitively ("APPLICATION" sets Application) and lets a repeated key
// silently override the first. It also rejects a finishedAt that is not a string, which
// time.Time reports without naming the field. It returns nil when body is not a
// well-formed object, leaving that to the decoder to describe.
func checkKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var first error
	seen := make(map[string]bool, len(fieldNames))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		if first != nil {
			continue
		}
		switch {
		case !fieldNames[key]:
			first = &FieldError{Field: key, Reason: "unknown field"}
		case seen[key]:
			first = &FieldError{Field: key, Reason: "appears more than once"}
		case key == "finishedAt" && raw[0] != '"' && string(raw) != "null":
			first = &FieldError{Field: key, Reason: "must be an RFC 3339 time string such as 2026-11-25T10:00:00Z"}
		case key == "images":
			first = checkImageKeys(raw)
		}
		seen[key] = true
	}
	if _, err := dec.Token(); err != nil {
		return nil
	}
	return first
}

// checkImageKeys checks the value of images: an object (or null) of string values, each key
// once.
func checkImageKeys(raw json.RawMessage) error {
	const reason = "must be an object of container names to image references"
	if string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return &FieldError{Field: "images", Reason: reason}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil
		}
		field := "images." + truncate(key)
		switch {
		case seen[key]:
			return &FieldError{Field: field, Reason: "appears more than once"}
		case value[0] != '"':
			return &FieldError{Field: field, Reason: "must be a string (an image reference)"}
		}
		seen[key] = true
	}
	return nil
}

// truncate shortens a key echoed in an error.
func truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}

func describeDecodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			return fmt.Errorf("invalid JSON: the manifest must be an object, got %s", typeErr.Value)
		}
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be %s, got %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)}
	}
	var timeErr *time.ParseError
	if errors.As(err, &timeErr) {
		return &FieldError{Field: "finishedAt", Reason: "must be an RFC 3339 time such as 2026-11-25T10:00:00Z"}
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return &FieldError{Field: strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`), Reason: "unknown field"}
	}
	if errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: empty body")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int64":
		return "an integer"
	case "string":
		return "a string"
	case "struct":
		return "an RFC 3339 time string"
	default:
		return goKind
	}
}

// Validate checks every field and returns a *FieldError for the first wrong one.
func (m *Manifest) Validate() error {
	switch {
	case m.Application == "":
		return &FieldError{"application", "is required"}
	case len(m.Application) > maxApplication:
		return &FieldError{"application", fmt.Sprintf("is longer than %d characters", maxApplication)}
	case !applicationPattern.MatchString(m.Application):
		return &FieldError{"application", "must be letters, digits, '.', '_' or '-', starting and ending with a letter or digit"}
	}
	switch {
	case m.BuildID == "":
		return &FieldError{"buildId", "is required"}
	case len(m.BuildID) > maxBuildID:
		return &FieldError{"buildId", fmt.Sprintf("is longer than %d characters", maxBuildID)}
	case !printable(m.BuildID):
		return &FieldError{"buildId", "must contain only printable characters without spaces"}
	}
	if m.BuildNumber <= 0 {
		return &FieldError{"buildNumber", "is required and must be a positive integer"}
	}
	if err := ValidateImage(m.Image); err != nil {
		return &FieldError{"image", err.Error()}
	}
	if err := validateImages(m.Images); err != nil {
		return err
	}
	if len(m.Commit) > maxCommit || !printable(m.Commit) {
		return &FieldError{"commit", fmt.Sprintf("must be at most %d printable characters without spaces", maxCommit)}
	}
	if len(m.Branch) > maxBranch || !printable(m.Branch) {
		return &FieldError{"branch", fmt.Sprintf("must be at most %d printable characters without spaces", maxBranch)}
	}
	return nil
}

// validateImages checks images: at most maxImages container names, each an image reference
// like image.
func validateImages(images map[string]string) error {
	if len(images) > maxImages {
		return &FieldError{"images", fmt.Sprintf("names %d containers; a task definition has at most %d", len(images), maxImages)}
	}
	names := make([]string, 0, len(images))
	for name := range images {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch {
		case name == "":
			return &FieldError{"images", "a container name is empty"}
		case len(name) > maxContainer || !containerPattern.MatchString(name):
			return &FieldError{"images." + truncate(name), fmt.Sprintf("is not a container name (up to %d letters, digits, '_' and '-')", maxContainer)}
		}
		if err := ValidateImage(images[name]); err != nil {
			return &FieldError{"images." + name, err.Error()}
		}
	}
	return nil
}

// ValidateImage checks that s is a fully qualified image reference (registry/repository with
// a tag, a digest, or both).
func ValidateImage(s string) error {
	switch {
	case s == "":
		return errors.New("is required")
	case len(s) > maxImage:
		return fmt.Errorf("is longer than %d characters", maxImage)
	}
	ref, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return fmt.Errorf("is not a valid image reference: %v", err)
	}
	if ref.String() != s && reference.FamiliarString(ref) != s {
		return errors.New("is not a canonical image reference")
	}
	_, tagged := ref.(reference.Tagged)
	_, digested := ref.(reference.Digested)
	if !tagged && !digested {
		return errors.New("must name a tag or a digest (repository:tag or repository@sha256:...)")
	}
	return nil
}

// printable reports whether s has no spaces, control characters or invisible format
// characters (zero-width characters, bidirectional overrides, embeddings and isolates,
// byte-order marks), nor the replacement character a broken \u escape decodes to.
func printable(s string) bool {
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}
