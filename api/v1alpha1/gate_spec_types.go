package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Promotion makes an Environment deploy only builds that completed their rollout on another
// Environment (its upstream) first.
type Promotion struct {
	// Upstream is the Environment of the same namespace and application a build must have
	// completed its rollout on before this one deploys it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Upstream string `json:"upstream"`
	// SoakTime is how long a build must keep running on the upstream after its rollout
	// completed there, with no failed rollout there meanwhile, before it is promoted
	// (for example 30m or 2h). None when left out.
	// +optional
	SoakTime *metav1.Duration `json:"soakTime,omitempty"`
}

// Approval policies of spec.approval.
const (
	// ApprovalNone deploys builds without approval.
	ApprovalNone = "None"
	// ApprovalRequired makes every build wait until the approve annotation names it.
	ApprovalRequired = "Required"
)

// DeployWindow is a time span, repeating on a schedule, during which new builds may deploy.
type DeployWindow struct {
	// Schedule is a cron expression (minute hour day-of-month month day-of-week, for example
	// "0 9 * * 1-5" for 09:00 on weekdays) for the window's opening, in timeZone.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Schedule string `json:"schedule"`
	// Duration is how long the window stays open after each opening (for example 8h).
	Duration metav1.Duration `json:"duration"`
	// TimeZone is the IANA time zone of the schedule, for example Europe/Berlin; UTC when
	// left out.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`
}

// Freeze stops new builds from deploying until it ends.
type Freeze struct {
	// Until is when the freeze ends; it lasts until spec.freeze is removed when left out.
	// +optional
	Until *metav1.Time `json:"until,omitempty"`
	// Reason says why builds are frozen (shown in status).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// Approval records who approved the build a deploy deployed, for an Environment whose spec
// requires approval.
type Approval struct {
	// Build is the build number approved.
	Build int64 `json:"build"`
	// By is who approved: the approved-by annotation, else the field manager that set the
	// approve annotation.
	// +optional
	By string `json:"by,omitempty"`
	// At is when the approval was given, as far as the API server tells (the time of the
	// write that set the annotation), else when the controller first saw it.
	// +optional
	At *metav1.Time `json:"at,omitempty"`
}

// Reasons for gate settings that cannot be applied (the Environment is Stalled, with no ECS
// call, until the spec changes; a pin still deploys).
const (
	// ReasonInvalidPromotion: spec.promotion names a missing Environment, this Environment
	// itself, or one of another application.
	ReasonInvalidPromotion = "InvalidPromotion"
	// ReasonInvalidDeployWindow: a deploy window's schedule, duration or time zone is invalid.
	ReasonInvalidDeployWindow = "InvalidDeployWindow"
	// ReasonInvalidFreeze: the freeze annotation cannot be read.
	ReasonInvalidFreeze = "InvalidFreeze"
)
