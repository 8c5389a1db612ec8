package ecssim

import (
	"regexp"
	"slices"
)

// imageChars are the characters ECS accepts in a container's image: letters, numbers,
// hyphens, underscores, colons, periods, forward slashes and number signs, plus the @ of a
// digest reference.
var imageChars = regexp.MustCompile(`^[A-Za-z0-9_:./#@-]+$`)

// validateRegistration applies the checks ECS makes on a RegisterTaskDefinition request
// beyond the structural ones registerLocked makes (which seeding shares: seeded revisions
// stand for revisions registered under older rules). ECS answers them with a
// ClientException.
func validateRegistration(body []byte) error {
	req, err := decodeRaw(body)
	if err != nil {
		return err
	}
	containers, _ := req["containerDefinitions"].([]any)
	for _, c := range containers {
		cd, _ := c.(map[string]any)
		if image, _ := cd["image"].(string); image != "" && !imageChars.MatchString(image) {
			return errClient("Container.image contains invalid characters.")
		}
	}
	if rc, _ := req["requiresCompatibilities"].([]any); slices.Contains(rc, any("FARGATE")) {
		for _, f := range []string{"cpu", "memory"} {
			if v, _ := req[f].(string); v == "" {
				return errClient("Fargate requires that '%s' be defined at the task level.", f)
			}
		}
	}
	return nil
}

// ConcurrentRevisionMessage is the message of the ClientException ECS answers a
// RegisterTaskDefinition with while other registrations of the same family are under way;
// inject it (InjectFault) to simulate them.
const ConcurrentRevisionMessage = "Too many concurrent attempts to create a new revision of the specified family."
