package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Outcomes a Notification tells, derived from the status of the Environments it selects.
const (
	// OutcomeDeployStarted: a deploy updated the ECS service (a new entry of status.history).
	OutcomeDeployStarted = "DeployStarted"
	// OutcomeRolloutCompleted: ECS reports the deploy's rollout completed.
	OutcomeRolloutCompleted = "RolloutCompleted"
	// OutcomeRolloutFailed: ECS reports the deploy's rollout failed.
	OutcomeRolloutFailed = "RolloutFailed"
	// OutcomeRolledBack: ECS put the service back on the revision the failed deploy replaced.
	OutcomeRolledBack = "RolledBack"
	// OutcomeHeld: a build waits at a gate (upstream, soak, deploy window, freeze) or is not
	// deployed because it names no image for a managed container.
	OutcomeHeld = "Held"
	// OutcomeAwaitingApproval: a build waits for its approval (status.gate), or the rollout
	// waits at an ECS pause hook.
	OutcomeAwaitingApproval = "AwaitingApproval"
	// OutcomeStalled: the Environment cannot make progress without a change by the user
	// (Stalled=True), for a reason other than a failed rollout (told as RolloutFailed).
	OutcomeStalled = "Stalled"
)

// Notification providers.
const (
	ProviderWebhook = "webhook"
	ProviderSlack   = "slack"
	ProviderGitHub  = "github"
)

// Keys of a Notification's Secret.
const (
	// SecretKeyHMAC holds the key a webhook body is signed with.
	SecretKeyHMAC = "key"
	// SecretKeyAddress holds the Slack incoming webhook URL (or, for a webhook, a URL that
	// overrides spec.provider.address).
	SecretKeyAddress = "address"
	// SecretKeyToken holds the GitHub token.
	SecretKeyToken = "token"
)

// GitHubRepositoryAnnotation names, on an Environment, the GitHub repository ("owner/repo") its
// deployments are recorded in by a Notification with the github provider.
const GitHubRepositoryAnnotation = "deploy.autodeploy.dev/github-repository"

// Condition reasons of a Notification.
const (
	// ReasonDelivered: every outcome due so far was delivered.
	ReasonDelivered = "Delivered"
	// ReasonDeliveryFailed: the endpoint refused or did not answer; delivery is retried with
	// backoff.
	ReasonDeliveryFailed = "DeliveryFailed"
	// ReasonInvalidNotification: the spec cannot work (a bad selector, address or provider).
	ReasonInvalidNotification = "InvalidNotification"
	// ReasonSecretNotReadable: the Secret named by spec.provider.secretRef is missing or lacks
	// the key the provider needs.
	ReasonSecretNotReadable = "SecretNotReadable"
)

// MaxDeliveredKeys bounds NotifiedEnvironment.Delivered.
const MaxDeliveredKeys = 64

// MaxGitHubDeployments bounds NotifiedEnvironment.GitHubDeployments.
const MaxGitHubDeployments = 20

// SecretReference names a Secret in the Notification's namespace.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// NotificationProvider says where and how outcomes are told.
// +kubebuilder:validation:XValidation:rule="self.type != 'webhook' || has(self.address) || has(self.secretRef)",message="a webhook needs spec.provider.address (or an address key in its Secret)"
// +kubebuilder:validation:XValidation:rule="self.type == 'webhook' || has(self.secretRef)",message="the slack and github providers need spec.provider.secretRef: the Slack webhook URL (key address) or the GitHub token (key token)"
type NotificationProvider struct {
	// Type is webhook (a signed JSON POST), slack (an incoming webhook) or github (deployments
	// and deployment statuses).
	// +kubebuilder:validation:Enum=webhook;slack;github
	Type string `json:"type"`

	// Address is the webhook URL, or for github the API base URL (default
	// https://api.github.com; for GitHub Enterprise Server https://HOST/api/v3). Slack's URL is
	// a credential and comes from the Secret (key address).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	Address string `json:"address,omitempty"`

	// SecretRef names a Secret of the namespace: for webhook the HMAC key (key "key"; without
	// it the body is sent unsigned), for slack the incoming webhook URL (key "address"), for
	// github the token (key "token").
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`
}

// NotificationSpec selects Environments and outcomes, and names a provider.
type NotificationSpec struct {
	// EnvironmentSelector selects Environments of the namespace by label; empty selects all.
	// +optional
	EnvironmentSelector metav1.LabelSelector `json:"environmentSelector,omitempty"`

	// Outcomes to tell: DeployStarted, RolloutCompleted, RolloutFailed, RolledBack, Held,
	// AwaitingApproval, Stalled.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=7
	// +kubebuilder:validation:items:Enum=DeployStarted;RolloutCompleted;RolloutFailed;RolledBack;Held;AwaitingApproval;Stalled
	Outcomes []string `json:"outcomes"`

	// Provider is where outcomes go.
	Provider NotificationProvider `json:"provider"`

	// Suspend stops delivery; outcomes that happen meanwhile are delivered on resume.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// GitHubDeployment is a deployment the github provider created for one build (or deploy).
type GitHubDeployment struct {
	// Key is the build id (or, for a deploy of no known build, the deploy's key).
	Key string `json:"key"`
	// ID is the GitHub deployment id.
	ID int64 `json:"id"`
}

// NotifiedEnvironment is what was delivered for one Environment.
type NotifiedEnvironment struct {
	// Name of the Environment.
	Name string `json:"name"`
	// Delivered are the keys ("<outcome>/<deploy>") of the delivered outcomes still derivable
	// from the Environment's status, oldest first.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Delivered []string `json:"delivered,omitempty"`
	// GitHubDeployments are the GitHub deployments created, newest last.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	GitHubDeployments []GitHubDeployment `json:"githubDeployments,omitempty"`
}

// NotificationStatus is what the notification controller delivered.
type NotificationStatus struct {
	// ObservedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Environments lists, per selected Environment, the outcomes delivered.
	// +optional
	// +listType=map
	// +listMapKey=name
	Environments []NotifiedEnvironment `json:"environments,omitempty"`
	// Failures counts the delivery attempts that failed in a row (0 after a success).
	// +optional
	Failures int32 `json:"failures,omitempty"`
	// LastFailureTime is when the last delivery attempt failed.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`
	// RetryAfter is the earliest time the endpoint asked to be tried again (HTTP Retry-After).
	// +optional
	RetryAfter *metav1.Time `json:"retryAfter,omitempty"`
	// LastDeliveryTime is when an outcome was last delivered.
	// +optional
	LastDeliveryTime *metav1.Time `json:"lastDeliveryTime,omitempty"`
	// Conditions: Ready (every due outcome delivered) and Stalled (the spec cannot work).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=notif,categories=autodeploy
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Notification tells a webhook, a Slack channel or GitHub what the Environments it selects did.
type Notification struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NotificationSpec   `json:"spec"`
	Status NotificationStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// NotificationList is a list of Notifications.
type NotificationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Notification `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Notification{}, &NotificationList{})
}
