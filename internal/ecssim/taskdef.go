package ecssim

import (
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Task definition statuses.
const (
	statusActive   = "ACTIVE"
	statusInactive = "INACTIVE"
)

// readOnlyTaskDefFields are the fields ECS adds to a registered task
// definition; they are ignored if a client sends them.
var readOnlyTaskDefFields = []string{
	"taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
	"registeredAt", "registeredBy", "deregisteredAt", "deleteRequestedAt",
}

var familyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// taskDef is one registered revision. body is the full TaskDefinition
// document as DescribeTaskDefinition returns it.
type taskDef struct {
	arn      string
	family   string
	revision int
	body     map[string]any
	tags     []any
}

func (td *taskDef) status() string {
	s, _ := td.body["status"].(string)
	return s
}

// registerLocked validates a RegisterTaskDefinition request and stores a new
// revision. It is shared by the wire operation and the seeding methods.
func (a *account) registerLocked(body []byte) (*taskDef, error) {
	req, err := decodeRaw(body)
	if err != nil {
		return nil, err
	}
	family, _ := req["family"].(string)
	switch {
	case family == "":
		return nil, errClient("Family should not be null or empty.")
	case !familyPattern.MatchString(family):
		return nil, errClient("Family contains invalid characters: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.")
	}
	containers, _ := req["containerDefinitions"].([]any)
	if len(containers) == 0 {
		return nil, errClient("Container list cannot be empty.")
	}
	names := map[string]bool{}
	for i, c := range containers {
		cd, ok := c.(map[string]any)
		if !ok {
			return nil, errClient("containerDefinitions[%d] must be an object.", i)
		}
		name, _ := cd["name"].(string)
		image, _ := cd["image"].(string)
		switch {
		case name == "":
			return nil, errClient("Container.name should not be null or empty.")
		case image == "":
			return nil, errClient("Container.image should not be null or empty.")
		case names[name]:
			return nil, errClient("Duplicate container name %q; container names must be unique within a task definition.", name)
		}
		names[name] = true
	}
	var tags []any
	if t, ok := req["tags"]; ok {
		tags, ok = t.([]any)
		if !ok {
			return nil, errInvalidParameter("tags must be a list.")
		}
		for _, tag := range tags {
			m, _ := tag.(map[string]any)
			if k, _ := m["key"].(string); k == "" {
				return nil, errInvalidParameter("Tag keys must not be empty.")
			}
		}
	}
	delete(req, "tags")
	for _, f := range readOnlyTaskDefFields {
		delete(req, f)
	}
	applyTaskDefDefaults(req)

	revision := len(a.families[family]) + 1
	arn := a.arn("task-definition/" + family + ":" + strconv.Itoa(revision))
	req["taskDefinitionArn"] = arn
	req["revision"] = revision
	req["status"] = statusActive
	req["registeredAt"] = epoch(a.now())
	req["registeredBy"] = "arn:aws:iam::" + a.id + ":root"
	req["requiresAttributes"] = []any{}
	req["compatibilities"] = compatibilities(req)

	td := &taskDef{arn: arn, family: family, revision: revision, body: req, tags: tags}
	a.families[family] = append(a.families[family], td)
	return td, nil
}

// applyTaskDefDefaults fills in the defaults real ECS reports for fields a
// client omitted; fields that were sent are never changed.
func applyTaskDefDefaults(req map[string]any) {
	setDefault(req, "volumes", []any{})
	setDefault(req, "placementConstraints", []any{})
	for _, c := range req["containerDefinitions"].([]any) {
		cd := c.(map[string]any)
		setDefault(cd, "cpu", 0)
		setDefault(cd, "essential", true)
		setDefault(cd, "portMappings", []any{})
		setDefault(cd, "environment", []any{})
		setDefault(cd, "mountPoints", []any{})
		setDefault(cd, "volumesFrom", []any{})
	}
}

func setDefault(m map[string]any, key string, v any) {
	if _, ok := m[key]; !ok {
		m[key] = v
	}
}

// compatibilities derives the read-only compatibilities field: every task
// definition runs on EC2, awsvpc ones also on Fargate, plus whatever the
// client required explicitly.
func compatibilities(req map[string]any) []any {
	out := []any{"EC2"}
	if nm, _ := req["networkMode"].(string); nm == "awsvpc" {
		out = append(out, "FARGATE")
	}
	if rc, ok := req["requiresCompatibilities"].([]any); ok {
		for _, c := range rc {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// lookupTaskDefLocked resolves a family (latest ACTIVE revision),
// family:revision or full ARN.
func (a *account) lookupTaskDefLocked(ref string) (*taskDef, bool) {
	if strings.HasPrefix(ref, "arn:") {
		prefix := a.arn("task-definition/")
		if !strings.HasPrefix(ref, prefix) {
			return nil, false
		}
		ref = strings.TrimPrefix(ref, prefix)
		if !strings.Contains(ref, ":") {
			return nil, false
		}
	}
	family, rev, hasRev := strings.Cut(ref, ":")
	revs := a.families[family]
	if !hasRev {
		for i := len(revs) - 1; i >= 0; i-- {
			if revs[i].status() == statusActive {
				return revs[i], true
			}
		}
		return nil, false
	}
	n, err := strconv.Atoi(rev)
	if err != nil || n < 1 || n > len(revs) {
		return nil, false
	}
	return revs[n-1], true
}

func hasTags(include []string) bool { return slices.Contains(include, "TAGS") }

func tagList(tags []any) []any {
	if tags == nil {
		return []any{}
	}
	return deepCopy(tags).([]any)
}

func (a *account) opRegisterTaskDefinition(body []byte) (any, error) {
	if err := validateRegistration(body); err != nil {
		return nil, err
	}
	td, err := a.registerLocked(body)
	if err != nil {
		return nil, err
	}
	return map[string]any{"taskDefinition": copyMap(td.body), "tags": tagList(td.tags)}, nil
}

func (a *account) opDescribeTaskDefinition(body []byte) (any, error) {
	var req struct {
		TaskDefinition string   `json:"taskDefinition"`
		Include        []string `json:"include"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	td, ok := a.lookupTaskDefLocked(req.TaskDefinition)
	if !ok {
		return nil, errClient("Unable to describe task definition.")
	}
	out := map[string]any{"taskDefinition": copyMap(td.body)}
	if hasTags(req.Include) {
		out["tags"] = tagList(td.tags)
	}
	return out, nil
}

func (a *account) opDeregisterTaskDefinition(body []byte) (any, error) {
	var req struct {
		TaskDefinition string `json:"taskDefinition"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	ref := strings.TrimPrefix(req.TaskDefinition, a.arn("task-definition/"))
	if !strings.Contains(ref, ":") {
		return nil, errClient("Invalid revision number. Number: %s", ref)
	}
	td, ok := a.lookupTaskDefLocked(req.TaskDefinition)
	if !ok {
		return nil, errClient("The specified task definition does not exist.")
	}
	if td.status() == statusActive {
		td.body["status"] = statusInactive
		td.body["deregisteredAt"] = epoch(a.now())
	}
	return map[string]any{"taskDefinition": copyMap(td.body)}, nil
}

func (a *account) opListTaskDefinitions(body []byte) (any, error) {
	var req struct {
		FamilyPrefix string `json:"familyPrefix"`
		Status       string `json:"status"`
		Sort         string `json:"sort"`
		MaxResults   *int   `json:"maxResults"`
		NextToken    string `json:"nextToken"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	status := req.Status
	if status == "" {
		status = statusActive
	}
	var all []*taskDef
	for family, revs := range a.families {
		if req.FamilyPrefix != "" && family != req.FamilyPrefix {
			continue
		}
		for _, td := range revs {
			if td.status() == status {
				all = append(all, td)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].family != all[j].family {
			return all[i].family < all[j].family
		}
		return all[i].revision < all[j].revision
	})
	if req.Sort == "DESC" {
		slices.Reverse(all)
	}
	arns := make([]string, len(all))
	for i, td := range all {
		arns[i] = td.arn
	}
	page, next, err := paginate(arns, req.MaxResults, req.NextToken)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"taskDefinitionArns": page}
	if next != "" {
		out["nextToken"] = next
	}
	return out, nil
}

// paginate returns one page of items. The token is the offset of the page.
func paginate(items []string, maxResults *int, token string) ([]string, string, error) {
	limit := 100
	if maxResults != nil {
		if *maxResults < 1 || *maxResults > 100 {
			return nil, "", errInvalidParameter("maxResults must be between 1 and 100.")
		}
		limit = *maxResults
	}
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", errInvalidParameter("Invalid nextToken.")
		}
		start = n
	}
	end := min(start+limit, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	page := items[start:end]
	if page == nil {
		page = []string{}
	}
	return page, next, nil
}

// containerImages returns container name -> image of a task definition.
func (td *taskDef) containerImages() map[string]string {
	out := map[string]string{}
	containers, _ := td.body["containerDefinitions"].([]any)
	for _, c := range containers {
		cd, _ := c.(map[string]any)
		name, _ := cd["name"].(string)
		image, _ := cd["image"].(string)
		out[name] = image
	}
	return out
}
