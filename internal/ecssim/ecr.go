package ecssim

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// ECRTargetPrefix is the X-Amz-Target prefix of every ECR operation. The
// simulator serves ECR's DescribeImages (awsJson1_1) on the same listener as
// ECS, so the unmodified github.com/aws/aws-sdk-go-v2/service/ecr client can
// use it with BaseEndpoint.
const ECRTargetPrefix = "AmazonEC2ContainerRegistry_V20150921."

// ecrOperations maps ECR operation names to their handlers.
var ecrOperations = map[string]opHandler{
	"DescribeImages": (*account).opDescribeImages,
}

type repository struct {
	name      string
	createdAt time.Time
	images    []*image // in push order
}

type image struct {
	digest   string
	tags     []string
	pushedAt time.Time
	size     int64
}

var (
	repoNamePattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	imageTagPattern = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestPattern   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

func validRepoName(name string) bool {
	return len(name) >= 2 && len(name) <= 256 && repoNamePattern.MatchString(name)
}

func (a *account) repoLocked(name string, create bool) (*repository, error) {
	if r, ok := a.repos[name]; ok {
		return r, nil
	}
	if !validRepoName(name) {
		return nil, errInvalidParameter("Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''")
	}
	if !create {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "RepositoryNotFoundException",
			Message: fmt.Sprintf("The repository with name '%s' does not exist in the registry with id '%s'", name, a.id)}
	}
	r := &repository{name: name, createdAt: a.now()}
	a.repos[name] = r
	return r, nil
}

// SeedRepository creates an empty ECR repository (idempotent).
func (v *AccountView) SeedRepository(name string) error {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	_, err := v.a.repoLocked(name, true)
	return err
}

// PushImage records the push of an image to an ECR repository of this
// account at the simulator's clock, creating the repository if needed, as
// DescribeImages then reports it. digest is "sha256:<64 hex>", or "" for a
// random one; tag may be "" for a digest-only push. Pushing a tag that
// another image of the repository has moves it (that image may become
// untagged); pushing a known digest adds the tag to it. Pushes are not
// counted as API calls.
func (v *AccountView) PushImage(repo, tag, digest string) error {
	if tag != "" && !imageTagPattern.MatchString(tag) {
		return errInvalidParameter("Invalid parameter at 'imageTag' failed to satisfy constraint: 'must satisfy regular expression '[a-zA-Z0-9-_.]+''")
	}
	if digest == "" {
		digest = "sha256:" + randomHex(32)
	}
	if !digestPattern.MatchString(digest) {
		return errInvalidParameter("Invalid parameter at 'imageDigest': %q is not sha256:<64 lowercase hex>", digest)
	}
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	r, err := v.a.repoLocked(repo, true)
	if err != nil {
		return err
	}
	var img *image
	for _, im := range r.images {
		if im.digest == digest {
			img = im
		}
		if tag != "" && im.digest != digest {
			im.tags = slices.DeleteFunc(im.tags, func(t string) bool { return t == tag })
		}
	}
	if img == nil {
		sum := sha256.Sum256([]byte(digest))
		img = &image{digest: digest, pushedAt: v.a.now(),
			size: 20<<20 + int64(binary.BigEndian.Uint32(sum[:4])%(60<<20))}
		r.images = append(r.images, img)
	}
	if tag != "" && !slices.Contains(img.tags, tag) {
		img.tags = append(img.tags, tag)
	}
	return nil
}

func (a *account) opDescribeImages(body []byte) (any, error) {
	var req struct {
		RegistryID     string `json:"registryId"`
		RepositoryName string `json:"repositoryName"`
		ImageIDs       []struct {
			ImageDigest string `json:"imageDigest"`
			ImageTag    string `json:"imageTag"`
		} `json:"imageIds"`
		Filter *struct {
			TagStatus string `json:"tagStatus"`
		} `json:"filter"`
		MaxResults *int   `json:"maxResults"`
		NextToken  string `json:"nextToken"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.RepositoryName == "" {
		return nil, errInvalidParameter("repositoryName must be specified.")
	}
	if req.RegistryID != "" && req.RegistryID != a.id {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "RepositoryNotFoundException",
			Message: fmt.Sprintf("The repository with name '%s' does not exist in the registry with id '%s'", req.RepositoryName, req.RegistryID)}
	}
	r, err := a.repoLocked(req.RepositoryName, false)
	if err != nil {
		return nil, err
	}
	tagStatus := "ANY"
	if req.Filter != nil && req.Filter.TagStatus != "" {
		tagStatus = req.Filter.TagStatus
	}
	if !slices.Contains([]string{"TAGGED", "UNTAGGED", "ANY"}, tagStatus) {
		return nil, errInvalidParameter("Invalid parameter at 'filter.tagStatus': must be one of TAGGED, UNTAGGED, ANY.")
	}

	var selected []*image
	if len(req.ImageIDs) > 0 {
		if req.MaxResults != nil || req.NextToken != "" {
			return nil, errInvalidParameter("Invalid parameter: maxResults and nextToken cannot be used with imageIds.")
		}
		for _, id := range req.ImageIDs {
			img := r.find(id.ImageDigest, id.ImageTag)
			if img == nil {
				return nil, &apiError{Status: http.StatusBadRequest, Code: "ImageNotFoundException",
					Message: fmt.Sprintf("The image with imageId {imageDigest:'%s', imageTag:'%s'} does not exist within the repository with name '%s' in the registry with id '%s'",
						nullIfEmpty(id.ImageDigest), nullIfEmpty(id.ImageTag), r.name, a.id)}
			}
			if !slices.Contains(selected, img) {
				selected = append(selected, img)
			}
		}
	} else {
		for _, img := range r.images {
			tagged := len(img.tags) > 0
			if tagStatus == "ANY" || tagged == (tagStatus == "TAGGED") {
				selected = append(selected, img)
			}
		}
	}

	limit := 100
	if req.MaxResults != nil {
		if *req.MaxResults < 1 || *req.MaxResults > 1000 {
			return nil, errInvalidParameter("Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000'")
		}
		limit = *req.MaxResults
	}
	start := 0
	if req.NextToken != "" {
		n, err := strconv.Atoi(req.NextToken)
		if err != nil || n < 0 || n > len(selected) {
			return nil, errInvalidParameter("Invalid parameter at 'nextToken'.")
		}
		start = n
	}
	end := min(start+limit, len(selected))
	details := make([]any, 0, end-start)
	for _, img := range selected[start:end] {
		d := map[string]any{
			"registryId":             a.id,
			"repositoryName":         r.name,
			"imageDigest":            img.digest,
			"imagePushedAt":          epoch(img.pushedAt),
			"imageSizeInBytes":       img.size,
			"imageManifestMediaType": "application/vnd.docker.distribution.manifest.v2+json",
			"artifactMediaType":      "application/vnd.docker.container.image.v1+json",
		}
		if len(img.tags) > 0 {
			d["imageTags"] = slices.Clone(img.tags)
		}
		details = append(details, d)
	}
	out := map[string]any{"imageDetails": details}
	if end < len(selected) {
		out["nextToken"] = strconv.Itoa(end)
	}
	return out, nil
}

// find returns the image matching a digest and/or tag, or nil.
func (r *repository) find(digest, tag string) *image {
	if digest == "" && tag == "" {
		return nil
	}
	for _, img := range r.images {
		if (digest == "" || img.digest == digest) && (tag == "" || slices.Contains(img.tags, tag)) {
			return img
		}
	}
	return nil
}

func nullIfEmpty(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
