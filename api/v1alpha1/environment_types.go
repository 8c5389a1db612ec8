package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types set on an Environment.
const (
	// ReadyCondition is True when the desired image runs on the service (or nothing is to be
	// deployed), False when a deploy failed or cannot be made, Unknown while one is under way.
	ReadyCondition = "Ready"
	// ReconcilingCondition is True while a deploy is under way.
	ReconcilingCondition = "Reconciling"
	// StalledCondition is True when the controller cannot make progress without a change by
	// the user: a missing cluster, service or container, or access denied.
	StalledCondition = "Stalled"
	// PinnedCondition is True while spec.pinnedImage holds the Environment on one image.
	PinnedCondition = "Pinned"
)

// Condition reasons.
const (
	ReasonDeployed          = "Deployed"
	ReasonUpToDate          = "UpToDate"
	ReasonWaitingForBuild   = "WaitingForBuild"
	ReasonAutoDeployOff     = "AutoDeployDisabled"
	ReasonDeploying         = "Deploying"
	ReasonDeployFailed      = "DeployFailed"
	ReasonECSUnavailable    = "ECSUnavailable"
	ReasonClusterNotFound   = "ClusterNotFound"
	ReasonServiceNotFound   = "ServiceNotFound"
	ReasonServiceNotActive  = "ServiceNotActive"
	ReasonContainerNotFound = "ContainerNotFound"
	ReasonAccessDenied      = "AccessDenied"
	ReasonInvalidRequest    = "InvalidRequest"
	ReasonPinned            = "PinnedImage"
	ReasonNotPinned         = "NotPinned"
	ReasonRolloutInProgress = "RolloutInProgress"
	ReasonRolloutFailed     = "RolloutFailed"
	// ReasonNewerBuildRunning: the service already runs a newer build of the application than
	// the one that would be deployed, so nothing older is deployed over it.
	ReasonNewerBuildRunning = "NewerBuildRunning"
	// ReasonDeployWithdrawn: a deploy that was under way is no longer wanted (a pin removed,
	// auto-deploy turned off) and never reached the service.
	ReasonDeployWithdrawn = "DeployWithdrawn"
	// ReasonRolledBackToUnknown: ECS rolled a failed deployment back to a task definition the
	// controller did not see, so what runs is not known until the next deploy.
	ReasonRolledBackToUnknown = "RolledBackToUnknown"
	// ReasonUnsupportedDeploymentController: the service's deployment controller is not ECS
	// (CODE_DEPLOY or EXTERNAL), so UpdateService cannot give it a new task definition.
	ReasonUnsupportedDeploymentController = "UnsupportedDeploymentController"
	// ReasonMissingContainerImage: the build names no image for a container the Environment
	// manages (spec.ecs.containers), so it is recorded and not deployed.
	ReasonMissingContainerImage = "MissingContainerImage"
	// ReasonServiceConflict: an older Environment deploys to the same ECS service; this one
	// makes no ECS call until that one is deleted or moves to another service.
	ReasonServiceConflict = "ServiceConflict"
	// ReasonInvalidTaskDefinition: ECS refused to register the task-definition revision of the
	// deploy (for example an invalid image reference, or a family without task-level memory).
	ReasonInvalidTaskDefinition = "InvalidTaskDefinition"
	// ReasonInvalidTarget: spec.ecs contradicts itself (an ARN of another Region, account or
	// cluster than the rest of spec.ecs names, or a malformed ARN).
	ReasonInvalidTarget = "InvalidTarget"
)

// Deployment strategies of services with the ECS deployment controller
// (deploymentConfiguration.strategy), as recorded in status.history[].strategy.
const (
	StrategyRolling   = "ROLLING"
	StrategyBlueGreen = "BLUE_GREEN"
	StrategyLinear    = "LINEAR"
	StrategyCanary    = "CANARY"
)

// Deploy triggers recorded in status.
const (
	TriggerBuild = "Build"
	TriggerPin   = "Pin"
	TriggerUnpin = "Unpin"
	TriggerRetry = "Retry"
	// TriggerTarget: spec.ecs names another service (or container) than the one deployed to.
	TriggerTarget = "Target"
)

// RetryAnnotation, when its value changes, makes the controller try a failed deploy again.
// Every new value is answered once: it retries the rollout that failed, or, when nothing has
// failed, it is recorded in status.retryHandled and does nothing.
const RetryAnnotation = "deploy.autodeploy.dev/retry-at"

// Build sources: the kind of sender a build came from. Build numbers are compared only
// between builds of one application and one source.
const (
	// SourceManifest: a signed build manifest posted by CI.
	SourceManifest = "Manifest"
	// SourceCodeBuild: a CodeBuild "Build State Change" event through EventBridge.
	SourceCodeBuild = "CodeBuild"
	// SourceECR: an ECR image push event through EventBridge (numbers are push times).
	SourceECR = "ECR"
)

// MaxContainers bounds spec.ecs.containers and the images of a build: ECS allows ten
// containers in a task definition.
const MaxContainers = 10

// ECSTarget names the ECS service an Environment deploys to.
// +kubebuilder:validation:XValidation:rule="!(has(self.container) && has(self.containers))",message="set spec.ecs.container (one container) or spec.ecs.containers (a set deployed together), not both"
type ECSTarget struct {
	// Region is the AWS Region of the cluster, for example us-east-1.
	// +kubebuilder:validation:Pattern=`^[a-z]{2}(-[a-z]+)+-\d+$`
	// +kubebuilder:validation:MaxLength=32
	Region string `json:"region"`

	// Cluster is the ECS cluster name or ARN.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	Cluster string `json:"cluster"`

	// Service is the ECS service name or ARN.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	Service string `json:"service"`

	// Container is the name of the container whose image is replaced. It may be left out when
	// the service's task definition has exactly one container.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Container string `json:"container,omitempty"`

	// Containers names every container whose image a build replaces, all in one
	// task-definition revision and one deployment; the first is the primary container, whose
	// image the single image fields (status.deployedImage, ...) show. Each build must name an
	// image for every one of them. Exclusive with container.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_-]+$`
	Containers []string `json:"containers,omitempty"`

	// RoleARN is an IAM role in the service's account that the controller assumes (through
	// STS) to call ECS; empty means the controller's own credentials. One set of API rate
	// budgets is kept per account.
	// +optional
	// +kubebuilder:validation:Pattern=`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`
	RoleARN string `json:"roleARN,omitempty"`

	// ExternalID is passed when assuming RoleARN, if the role's trust policy requires one.
	// +optional
	// +kubebuilder:validation:MaxLength=1224
	// +kubebuilder:validation:Pattern=`^[\w+=,.@:/-]*$`
	ExternalID string `json:"externalID,omitempty"`
}

// EnvironmentSpec declares what runs where.
// +kubebuilder:validation:XValidation:rule="!(has(self.pinnedImage) && has(self.pinnedImages))",message="set spec.pinnedImage or spec.pinnedImages, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.pinnedImages) || (has(self.ecs.containers) && self.ecs.containers.all(c, c in self.pinnedImages) && self.pinnedImages.all(c, c in self.ecs.containers))",message="spec.pinnedImages must name an image for exactly the containers of spec.ecs.containers: a pin holds the whole set"
// +kubebuilder:validation:XValidation:rule="!has(self.pinnedImage) || !has(self.ecs.containers) || size(self.ecs.containers) == 1",message="spec.ecs.containers names more than one container: pin them all with spec.pinnedImages"
type EnvironmentSpec struct {
	// Application is the name builds are published under; manifests with this application
	// update this Environment.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`
	Application string `json:"application"`

	// Branch, when set, restricts this Environment to builds of that branch.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Branch string `json:"branch,omitempty"`

	// AutoDeploy deploys every new build as it arrives.
	// +optional
	// +kubebuilder:default=false
	AutoDeploy bool `json:"autoDeploy"`

	// PinnedImage holds the Environment on one image (a rollback). While it is set, new builds
	// are recorded in status.latestBuild but never deployed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^[^\s]+$`
	PinnedImage string `json:"pinnedImage,omitempty"`

	// PinnedImages holds the containers of spec.ecs.containers on one image each (a rollback
	// of the set): it must name every one of them, and nothing else. Exclusive with
	// pinnedImage; the rules of pinnedImage apply to the set.
	// +optional
	// +kubebuilder:validation:MaxProperties=10
	// +kubebuilder:validation:XValidation:rule="self.all(c, size(c) <= 255 && c.matches('^[A-Za-z0-9_-]+$'))",message="every key of spec.pinnedImages must be a container name"
	// +kubebuilder:validation:XValidation:rule="self.all(c, size(self[c]) >= 1 && size(self[c]) <= 1024)",message="every image of spec.pinnedImages must be an image reference of 1 to 1024 characters"
	PinnedImages map[string]string `json:"pinnedImages,omitempty"`

	// ECS is the service to deploy to.
	ECS ECSTarget `json:"ecs"`

	// Promotion deploys only builds that completed their rollout on an upstream Environment
	// (and soaked there): the newest such build, in place of the latest build.
	// +optional
	Promotion *Promotion `json:"promotion,omitempty"`

	// Approval is Required to make every build wait until the approve annotation names its
	// build number; None (the default) deploys without approval. A pin needs none.
	// +optional
	// +kubebuilder:validation:Enum=None;Required
	Approval string `json:"approval,omitempty"`

	// DeployWindows, when set, restrict new builds to these windows: a build that arrives
	// outside every window waits for the next opening. A pin is never held back.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	DeployWindows []DeployWindow `json:"deployWindows,omitempty"`

	// Freeze stops new builds from deploying until it ends (as does the freeze annotation).
	// A pin is never frozen.
	// +optional
	Freeze *Freeze `json:"freeze,omitempty"`
}

// Build is a finished build of the application, as its manifest described it.
type Build struct {
	// Application is the application the build was published under. A latest build of
	// another application than spec.application (the spec was changed) is never deployed,
	// and the next build of the new application replaces it whatever its number.
	// +optional
	Application string `json:"application,omitempty"`
	// Source is the kind of sender the build came from: Manifest, CodeBuild or ECR. A build
	// from another kind of sender replaces the latest build whatever its number.
	// +optional
	Source string `json:"source,omitempty"`
	// ID is the build's unique id, for example the CodeBuild build id.
	ID string `json:"id"`
	// Number orders builds of the application: a higher number is a newer build.
	Number int64 `json:"number"`
	// Image is the image reference the build produced (for the primary container, unless
	// images names one for it).
	Image string `json:"image"`
	// Images are the images the build produced per container, by container name. The image
	// of a container of spec.ecs.containers is images[container], else, for the primary
	// container only, image.
	// +optional
	Images map[string]string `json:"images,omitempty"`
	// Commit is the source revision built.
	// +optional
	Commit string `json:"commit,omitempty"`
	// Branch is the source branch built.
	// +optional
	Branch string `json:"branch,omitempty"`
	// FinishedAt is when the build finished.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// ReceivedAt is when the receiver recorded the manifest.
	ReceivedAt metav1.Time `json:"receivedAt"`
}

// BuildRef identifies a build.
type BuildRef struct {
	// Application is the application the build belongs to.
	// +optional
	Application string `json:"application,omitempty"`
	// Source is the kind of sender the build came from (Manifest, CodeBuild or ECR).
	// +optional
	Source string `json:"source,omitempty"`
	ID     string `json:"id"`
	Number int64  `json:"number"`
}

// Ref returns the reference of b.
func (b *Build) Ref() *BuildRef {
	if b == nil {
		return nil
	}
	return &BuildRef{Application: b.Application, Source: b.Source, ID: b.ID, Number: b.Number}
}

// Comparable reports whether the numbers of a and b order them: builds of one application
// from one kind of sender (what is not recorded is taken to match).
func Comparable(a, b *BuildRef) bool {
	return a != nil && b != nil &&
		(a.Application == "" || b.Application == "" || a.Application == b.Application) &&
		(a.Source == "" || b.Source == "" || a.Source == b.Source)
}

// SameBuild reports whether a and b name the same build (both nil counts as the same).
func SameBuild(a, b *BuildRef) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ID == b.ID && (a.Application == "" || b.Application == "" || a.Application == b.Application)
}

// Rollout results of a deploy.
const (
	// ResultInProgress: the service was updated and ECS is rolling the new tasks out.
	ResultInProgress = "InProgress"
	// ResultCompleted: ECS reports the deployment COMPLETED.
	ResultCompleted = "Completed"
	// ResultFailed: ECS reports the deployment FAILED (the circuit breaker stopped it).
	ResultFailed = "Failed"
	// ResultSuperseded: another deployment of the service replaced this one before it ended.
	ResultSuperseded = "Superseded"
	// ResultStalled is set on a pending deploy that failed for good before the service was
	// updated (it waits for a change by the user); history never holds it.
	ResultStalled = "Stalled"
)

// Deploy describes one deploy to ECS.
type Deploy struct {
	// Image is the image deployed (to the primary container).
	Image string `json:"image"`
	// Images are the images deployed, per container, when the Environment manages more than
	// one (spec.ecs.containers); all of them went out in one revision.
	// +optional
	Images map[string]string `json:"images,omitempty"`
	// Build is the build the image came from; empty for a pinned image that is no known build.
	// +optional
	Build *BuildRef `json:"build,omitempty"`
	// Trigger says why the deploy started: Build, Pin, Unpin, Retry or Target.
	Trigger string `json:"trigger"`
	// PreviousImage is the image the container ran before this deploy, as ECS reported it.
	// +optional
	PreviousImage string `json:"previousImage,omitempty"`
	// PreviousImages are the images the containers ran before this deploy, when more than one
	// is managed.
	// +optional
	PreviousImages map[string]string `json:"previousImages,omitempty"`
	// PreviousBuild is the build PreviousImage came from, when it is known.
	// +optional
	PreviousBuild *BuildRef `json:"previousBuild,omitempty"`
	// TaskDefinitionARN is the task-definition revision the service was updated to.
	// +optional
	TaskDefinitionARN string `json:"taskDefinitionARN,omitempty"`
	// PreviousTaskDefinitionARN is the task-definition revision the service ran before this
	// deploy updated it, when the deploy updated it from another one. A service that runs it
	// again after this deploy's rollout left is taken for rolled back.
	// +optional
	PreviousTaskDefinitionARN string `json:"previousTaskDefinitionARN,omitempty"`
	// DeploymentID is the ECS deployment id UpdateService started.
	// +optional
	DeploymentID string `json:"deploymentID,omitempty"`
	// Result is InProgress, Completed, Failed or Superseded.
	// +optional
	Result string `json:"result,omitempty"`
	// Reason is ECS's explanation of the result, for example why a deployment failed.
	// +optional
	Reason string `json:"reason,omitempty"`
	// RolledBack is true when ECS rolled the service back to its previous task definition.
	// +optional
	RolledBack bool `json:"rolledBack,omitempty"`
	// StartedAt is when the deploy started.
	StartedAt metav1.Time `json:"startedAt"`
	// ServiceUpdatedAt is when the service was updated.
	// +optional
	ServiceUpdatedAt *metav1.Time `json:"serviceUpdatedAt,omitempty"`
	// FinishedAt is when the rollout ended (Completed, Failed or Superseded).
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// AwaitingHook is the pause hook the rollout waits at, until ECS moves on.
	// +optional
	AwaitingHook *AwaitingHook `json:"awaitingHook,omitempty"`
	// FinishedHooks lists the ids of pause hooks of this rollout that ECS no longer awaits
	// (newest last), so that a late event never marks them awaited again.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	FinishedHooks []string `json:"finishedHooks,omitempty"`
	// Strategy is the service's deployment strategy when the deploy was made: BLUE_GREEN,
	// LINEAR or CANARY (followed through ECS's service deployments); empty for ROLLING.
	// +optional
	Strategy string `json:"strategy,omitempty"`
	// ServiceDeploymentARN is the ECS service deployment the deploy started (BLUE_GREEN,
	// LINEAR and CANARY deploys).
	// +optional
	ServiceDeploymentARN string `json:"serviceDeploymentARN,omitempty"`
	// Stage is the lifecycle stage of the service deployment while it runs, for example
	// PRODUCTION_TRAFFIC_SHIFT or BAKE_TIME.
	// +optional
	Stage string `json:"stage,omitempty"`
	// TrafficWeight is the share of production traffic (percent, for example "5" or "0.1")
	// the new revision was last seen to get while the service deployment runs.
	// +optional
	TrafficWeight string `json:"trafficWeight,omitempty"`
	// SteadyState is true when ECS reports no rollout state for the service (it is behind a
	// Classic Load Balancer): the rollout ends when the service is steady, with one
	// deployment whose tasks all run.
	// +optional
	SteadyState bool `json:"steadyState,omitempty"`
	// ImageDigest is the digest of the image the container runs after the rollout, as ECS
	// resolved it (the service revision's container images).
	// +optional
	ImageDigest string `json:"imageDigest,omitempty"`
	// FailureReported is set when an ECS event said the deployment failed and whether ECS
	// rolled the service back is not known yet: the reconciler looks at the service once and
	// ends the rollout, so that the status never names the failed image as running after a
	// rollback.
	// +optional
	FailureReported *FailureReport `json:"failureReported,omitempty"`
	// Approval is the approval the deploy went out with, when spec.approval required one.
	// +optional
	Approval *Approval `json:"approval,omitempty"`
}

// FailureReport is a failure of a deployment, as an ECS event reported it.
type FailureReport struct {
	// Reason is ECS's explanation, for example the circuit breaker's.
	// +optional
	Reason string `json:"reason,omitempty"`
	// At is when ECS reported it.
	At metav1.Time `json:"at"`
}

// MaxHistory bounds status.history.
const MaxHistory = 10

// EnvironmentStatus is what the controller and the receiver observed.
type EnvironmentStatus struct {
	// ObservedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// LatestBuild is the newest build received for this Environment.
	// +optional
	LatestBuild *Build `json:"latestBuild,omitempty"`

	// Gate says why the build the rules want waits (for its upstream, an approval, a deploy
	// window or a freeze); empty when nothing waits.
	// +optional
	Gate *Gate `json:"gate,omitempty"`

	// PromotedBuild is the newest build that qualified on the upstream Environment of
	// spec.promotion (its rollout completed there, and it soaked), with its images: what this
	// Environment deploys in place of status.latestBuild.
	// +optional
	PromotedBuild *Build `json:"promotedBuild,omitempty"`

	// DesiredImage is the image that should run: the pin, else the latest build when
	// auto-deploy is on, else what is deployed.
	// +optional
	DesiredImage string `json:"desiredImage,omitempty"`

	// DesiredImages are the images that should run per container, when the Environment
	// manages more than one.
	// +optional
	DesiredImages map[string]string `json:"desiredImages,omitempty"`

	// DeployedImage is the image the container of status.target runs, as ECS last reported
	// it: the image of the last deploy, or the previous image when ECS rolled it back.
	// +optional
	DeployedImage string `json:"deployedImage,omitempty"`

	// DeployedImages are the images the containers of status.target run, per container, as
	// ECS last reported them, when the Environment manages more than one.
	// +optional
	DeployedImages map[string]string `json:"deployedImages,omitempty"`

	// DeployedBuild is the build DeployedImage came from, when it is known. A new build with
	// the same image reference (a mutable tag such as :main) is deployed again.
	// +optional
	DeployedBuild *BuildRef `json:"deployedBuild,omitempty"`

	// Target is the ECS service and container that deployedImage was seen on. When spec.ecs
	// names another one, what runs there is not known and the next reconcile deploys to it.
	// +optional
	Target *ECSTarget `json:"target,omitempty"`

	// History lists the last deploys that updated the service, newest first (at most 10).
	// +optional
	// +kubebuilder:validation:MaxItems=10
	History []Deploy `json:"history,omitempty"`

	// RetryHandled is the last value of the retry annotation the controller answered, so that
	// a new value (and only a new value) retries a failed deploy, once.
	// +optional
	RetryHandled string `json:"retryHandled,omitempty"`

	// HookActionHandled is the last value of the hook-action annotation the controller
	// answered, so that a value is answered once.
	// +optional
	HookActionHandled string `json:"hookActionHandled,omitempty"`

	// PendingDeploy is a deploy that has started and not yet finished. It is recorded before
	// any ECS call so that a deploy interrupted by a restart is finished, not lost.
	// +optional
	PendingDeploy *Deploy `json:"pendingDeploy,omitempty"`

	// Rollout summarizes the newest deploy's rollout: Completed, Failed, Superseded, Rolling,
	// or, for a service deployment under way, its strategy and production traffic weight
	// ("Canary 5%", "Linear 30%", "BlueGreen") or BakeTime.
	// +optional
	Rollout string `json:"rollout,omitempty"`

	// Conditions: Ready, Reconciling, Stalled and Pinned.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=env;envs,categories=autodeploy
// +kubebuilder:selectablefield:JSONPath=`.spec.application`
// +kubebuilder:printcolumn:name="Application",type=string,JSONPath=`.spec.application`
// +kubebuilder:printcolumn:name="Auto",type=boolean,JSONPath=`.spec.autoDeploy`
// +kubebuilder:printcolumn:name="Pinned",type=string,JSONPath=`.spec.pinnedImage`,priority=0
// +kubebuilder:printcolumn:name="Latest",type=integer,JSONPath=`.status.latestBuild.number`
// +kubebuilder:printcolumn:name="Deployed",type=integer,JSONPath=`.status.deployedBuild.number`
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.status.rollout`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.status.deployedImage`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Gate",type=string,JSONPath=`.status.gate.reason`
// +kubebuilder:printcolumn:name="Waiting",type=string,JSONPath=`.status.gate.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Environment deploys the builds of one application to one ECS service.
// +kubebuilder:validation:XValidation:rule="!has(self.spec.promotion) || self.spec.promotion.upstream != self.metadata.name",message="spec.promotion.upstream names this Environment itself: name another Environment of the namespace"
type Environment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   EnvironmentSpec   `json:"spec"`
	Status EnvironmentStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// EnvironmentList is a list of Environments.
type EnvironmentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Environment `json:"items"`
}

// LastDeploy returns the newest deploy, or nil.
func (s *EnvironmentStatus) LastDeploy() *Deploy {
	if len(s.History) == 0 {
		return nil
	}
	return &s.History[0]
}

// RecordDeploy puts d first in the history, dropping the oldest past MaxHistory. Earlier
// deploys still in progress are closed as Superseded: d replaced them.
func (s *EnvironmentStatus) RecordDeploy(d Deploy) {
	for i := range s.History {
		if h := &s.History[i]; h.Result == ResultInProgress {
			at := d.StartedAt
			if d.ServiceUpdatedAt != nil {
				at = *d.ServiceUpdatedAt
			}
			h.Result, h.FinishedAt = ResultSuperseded, &at
			h.Reason = "replaced by the deploy of " + d.Image
			h.AwaitingHook = nil
		}
	}
	s.History = append([]Deploy{d}, s.History...)
	if len(s.History) > MaxHistory {
		s.History = s.History[:MaxHistory]
	}
}

// Accepts reports whether b is a build of the application (and branch) the spec follows. A
// latest build recorded before spec.application or spec.branch changed is not.
func (s *EnvironmentSpec) Accepts(b *Build) bool {
	if b == nil {
		return false
	}
	if b.Application != "" && b.Application != s.Application {
		return false
	}
	return s.Branch == "" || b.Branch == s.Branch
}

func init() {
	SchemeBuilder.Register(&Environment{}, &EnvironmentList{})
}
