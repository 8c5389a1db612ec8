# Event delivery: the EventBridge connection, API destination, rules, retry policy and
# dead-letter queue that post builds and ECS events to the autodeploy receiver. The same
# parameters as docs/eventbridge.yaml (CloudFormation).

variable "receiver_url" {
  description = "Base HTTPS URL of the autodeploy receiver, reachable from the internet (API destinations call public endpoints), without a path: https://autodeploy.example.com."
  type        = string

  validation {
    condition     = can(regex("^https://[^/]+$", var.receiver_url))
    error_message = "receiver_url must be https://<host>[:<port>] with no path, such as https://autodeploy.example.com."
  }
}

variable "namespace" {
  description = "The tenant namespace whose Environments the events update: the API destination posts to <receiver_url>/v1/namespaces/<namespace>/events. \"\" for the cluster-wide route <receiver_url>/v1/events (single-team clusters)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$", var.namespace))
    error_message = "namespace must be a Kubernetes namespace name (a DNS label) or \"\"."
  }
}

variable "api_key" {
  description = "The namespace's eventBridgeKey (Secret autodeploy-receiver in that namespace), or for the cluster-wide route the key of the manager's --eventbridge-key-file. EventBridge sends it in the header X-Autodeploy-Api-Key and keeps it in a Secrets Manager secret it creates for the connection."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.api_key) >= 16
    error_message = "api_key must be at least 16 characters (openssl rand -hex 32 makes one)."
  }
}

variable "codebuild_projects" {
  description = "CodeBuild projects whose SUCCEEDED builds deploy (empty for none). Their buildspec exports IMAGE_URI."
  type        = list(string)
  default     = []
}

variable "ecr_repositories" {
  description = "ECR repositories whose pushes deploy (empty for none). The application is the repository name."
  type        = list(string)
  default     = []
}

variable "ecs_deployment_events" {
  description = "Send ECS \"Deployment State Change\" events (completed and failed deployments), so that rollouts end without polling; start the manager with --rollout-polling=false."
  type        = bool
  default     = false
}

variable "ecs_pause_hooks" {
  description = "Send ECS \"Hook State Change\" events, so that rollouts waiting at a pause hook show AwaitingApproval at once."
  type        = bool
  default     = false
}

variable "name" {
  description = "Prefix of the names of the resources; the namespace is appended when it is set."
  type        = string
  default     = "autodeploy"
}

variable "invocation_rate_limit_per_second" {
  description = "Most requests per second the API destination sends. Stay under the receiver's per-tenant limit (--receiver-rate, 10/s by default)."
  type        = number
  default     = 5
}

variable "tags" {
  description = "Tags for every resource that takes tags."
  type        = map(string)
  default     = {}
}

# The controller's IAM role: the least-privilege policy of docs/iam.md, trusted by the
# controller's service account through IRSA or EKS Pod Identity. One per cluster: create it
# with one instance of the module and set create_controller_role = false in the others (one
# per tenant namespace).

variable "create_controller_role" {
  description = "Create the controller's IAM role and policy."
  type        = bool
  default     = true
}

variable "controller_role_name" {
  description = "Name of the controller's IAM role."
  type        = string
  default     = "autodeploy-controller"
}

variable "ecs_clusters" {
  description = "The ECS clusters Environments deploy to. region and account_id default to the provider's. The policy allows every service of these clusters (service/<cluster>/*), their service deployments and service revisions."
  type = list(object({
    name       = string
    region     = optional(string)
    account_id = optional(string)
  }))
  default = []
}

variable "pass_role_arns" {
  description = "Every task role and execution role that the task definitions of those services name (iam:PassRole, to ecs-tasks.amazonaws.com only)."
  type        = list(string)
  default     = []
}

variable "allow_pause_hook_answers" {
  description = "Allow ecs:ContinueServiceDeployment, so that the controller can answer pause hooks (autodeployctl continue/rollback). false keeps approvals with people who can call ECS themselves."
  type        = bool
  default     = true
}

variable "deployer_role_arns" {
  description = "Roles in other accounts that Environments name in spec.ecs.roleARN (sts:AssumeRole). Each needs the same ECS policy and a trust policy for the controller's role (docs/iam.md)."
  type        = list(string)
  default     = []
}

variable "oidc_provider_arn" {
  description = "IRSA: the ARN of the IAM OIDC provider of the EKS cluster (arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>). Set this or pod_identity."
  type        = string
  default     = null
}

variable "pod_identity" {
  description = "EKS Pod Identity: trust pods.eks.amazonaws.com. Set this or oidc_provider_arn."
  type        = bool
  default     = false
}

variable "eks_cluster_name" {
  description = "EKS Pod Identity: the cluster to associate the role with the controller's service account in (null: make the association elsewhere)."
  type        = string
  default     = null
}

variable "service_account_namespace" {
  description = "Namespace of the controller's service account."
  type        = string
  default     = "autodeploy-system"
}

variable "service_account_name" {
  description = "Name of the controller's service account."
  type        = string
  default     = "autodeploy-controller-manager"
}
