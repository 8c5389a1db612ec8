package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Annotations a person (or autodeployctl) sets to let a waiting build through or to stop builds.
const (
	// ApproveAnnotation approves one build for an Environment whose spec requires approval: its
	// value is the build number (decimal). A newer build needs its own value.
	ApproveAnnotation = "deploy.autodeploy.dev/approve"
	// ApprovedByAnnotation names who approved, as the API server authenticated them; it is set
	// together with ApproveAnnotation and recorded in the deploy's history entry.
	ApprovedByAnnotation = "deploy.autodeploy.dev/approved-by"
	// FreezeAnnotation stops new builds from deploying: "until=<RFC 3339 time>; reason=<text>"
	// (until may be left out: the freeze lasts until the annotation is removed). A pin is never
	// frozen.
	FreezeAnnotation = "deploy.autodeploy.dev/freeze"
)

// Reasons of status.gate (and of the Ready condition while a build waits at a gate).
// AwaitingApproval (ReasonAwaitingApproval) is shared with ECS pause hooks.
const (
	// ReasonWaitingForUpstream: the build has not completed its rollout on the upstream
	// Environment yet.
	ReasonWaitingForUpstream = "WaitingForUpstream"
	// ReasonNotPromoted: the build failed on the upstream Environment, or was replaced there
	// before it completed and soaked: it is never promoted, and the Environment waits for a
	// newer build to qualify.
	ReasonNotPromoted = "NotPromoted"
	// ReasonSoaking: the build completed upstream and waits out the soak time there.
	ReasonSoaking = "Soaking"
	// ReasonOutsideDeployWindow: the build arrived outside every deploy window; it waits for the
	// next opening.
	ReasonOutsideDeployWindow = "OutsideDeployWindow"
	// ReasonFrozen: a freeze (spec or annotation) stops new builds until it ends.
	ReasonFrozen = "Frozen"
)

// Gate says why the build the rules want waits before it is deployed, and until when where that
// is known. It is written by the reconciler, which reads the other objects and the clock a gate
// needs, so that every reader sees the same answer.
type Gate struct {
	// Reason is one of WaitingForUpstream, Soaking, AwaitingApproval, OutsideDeployWindow, Frozen.
	Reason string `json:"reason"`
	// Message says in a sentence what the build waits for.
	// +optional
	Message string `json:"message,omitempty"`
	// Build is the build that waits.
	// +optional
	Build *BuildRef `json:"build,omitempty"`
	// Until is when the wait is known to end (a soak's end, a window's opening, a freeze's end).
	// +optional
	Until *metav1.Time `json:"until,omitempty"`
}
