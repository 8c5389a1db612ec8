# The AWS side of autodeploy: EventBridge delivery of builds and ECS events to the receiver,
# and the controller's least-privilege IAM role. Equivalent to docs/eventbridge.yaml
# (CloudFormation) plus the policy of docs/iam.md; test/terraform_test.go holds the two and
# the receiver together.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  name        = var.namespace == "" ? var.name : "${var.name}-${var.namespace}"
  events_path = var.namespace == "" ? "/v1/events" : "/v1/namespaces/${var.namespace}/events"

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  # Pick one sender per application: CodeBuild events (build numbers) or ECR pushes (push
  # times as numbers) or signed manifests. Their build numbers are not comparable.
  rules = {
    # Only finished, successful builds of the listed projects.
    codebuild = {
      enabled     = length(var.codebuild_projects) > 0
      description = "Successful CodeBuild builds to autodeploy"
      event_pattern = jsonencode({
        source        = ["aws.codebuild"]
        "detail-type" = ["CodeBuild Build State Change"]
        detail = {
          "build-status" = ["SUCCEEDED"]
          "project-name" = var.codebuild_projects
        }
      })
    }
    # Only successful pushes to the listed repositories.
    ecr = {
      enabled     = length(var.ecr_repositories) > 0
      description = "ECR image pushes to autodeploy"
      event_pattern = jsonencode({
        source        = ["aws.ecr"]
        "detail-type" = ["ECR Image Action"]
        detail = {
          "action-type"     = ["PUSH"]
          result            = ["SUCCESS"]
          "repository-name" = var.ecr_repositories
        }
      })
    }
    # Deployments that completed or failed end rollouts without polling. Events of services
    # no Environment deploys to are answered 200 no-match.
    ecs-deployment = {
      enabled     = var.ecs_deployment_events
      description = "ECS deployments that completed or failed to autodeploy"
      event_pattern = jsonencode({
        source        = ["aws.ecs"]
        "detail-type" = ["ECS Deployment State Change"]
        detail = {
          eventName = ["SERVICE_DEPLOYMENT_COMPLETED", "SERVICE_DEPLOYMENT_FAILED"]
        }
      })
    }
    # Lifecycle hooks of ECS service deployments changing state: HOOK_AWAITING_ACTION of a
    # pause hook marks the rollout AwaitingApproval. (The deployment rule does not match these.)
    ecs-hook = {
      enabled     = var.ecs_pause_hooks
      description = "ECS pause hooks awaiting approval to autodeploy"
      event_pattern = jsonencode({
        source        = ["aws.ecs"]
        "detail-type" = ["ECS Hook State Change"]
      })
    }
  }
  enabled_rules = { for key, rule in local.rules : key => rule if rule.enabled }
}

# API_KEY authorization: EventBridge sends the header X-Autodeploy-Api-Key: <api_key> with
# every request. (A BASIC connection with user "autodeploy" and the key as password works too.)
resource "aws_cloudwatch_event_connection" "receiver" {
  name               = local.name
  description        = "autodeploy receiver"
  authorization_type = "API_KEY"

  auth_parameters {
    api_key {
      key   = "X-Autodeploy-Api-Key"
      value = var.api_key
    }
  }
}

resource "aws_cloudwatch_event_api_destination" "receiver" {
  name                             = local.name
  description                      = "autodeploy receiver events route"
  connection_arn                   = aws_cloudwatch_event_connection.receiver.arn
  http_method                      = "POST"
  invocation_endpoint              = "${var.receiver_url}${local.events_path}"
  invocation_rate_limit_per_second = var.invocation_rate_limit_per_second
}

# Events that could not be delivered: a 400 (an event the receiver can never take, such as a
# build that exported no image; the answer is in the message attributes ERROR_CODE and
# ERROR_MESSAGE), or retries exhausted (401 after a wrong key, 5xx for a day).
resource "aws_sqs_queue" "dead_letter" {
  name                      = "${local.name}-dead-letter"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

data "aws_iam_policy_document" "dead_letter" {
  statement {
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id
  policy    = data.aws_iam_policy_document.dead_letter.json
}

# EventBridge assumes this role to call the API destination.
data "aws_iam_policy_document" "invoke_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "invoke" {
  statement {
    effect    = "Allow"
    actions   = ["events:InvokeApiDestination"]
    resources = [aws_cloudwatch_event_api_destination.receiver.arn]
  }
}

resource "aws_iam_role" "invoke" {
  name               = "${local.name}-invoke"
  assume_role_policy = data.aws_iam_policy_document.invoke_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "invoke" {
  name   = "invoke-autodeploy"
  role   = aws_iam_role.invoke.id
  policy = data.aws_iam_policy_document.invoke.json
}

resource "aws_cloudwatch_event_rule" "this" {
  for_each = local.enabled_rules

  name          = "${local.name}-${each.key}"
  description   = each.value.description
  event_pattern = each.value.event_pattern
  tags          = var.tags
}

resource "aws_cloudwatch_event_target" "this" {
  for_each = aws_cloudwatch_event_rule.this

  rule      = each.value.name
  target_id = "autodeploy"
  arn       = aws_cloudwatch_event_api_destination.receiver.arn
  role_arn  = aws_iam_role.invoke.arn

  # The receiver answers 2xx to duplicates, stale, conflicting and ignored events, 400 to
  # events it can never take, and 429/5xx only when a retry can succeed.
  retry_policy {
    maximum_retry_attempts       = 185
    maximum_event_age_in_seconds = 86400
  }

  dead_letter_config {
    arn = aws_sqs_queue.dead_letter.arn
  }
}

# The controller's role.

locals {
  clusters = [for c in var.ecs_clusters : {
    prefix = "arn:${local.partition}:ecs:${coalesce(c.region, local.region)}:${coalesce(c.account_id, local.account_id)}"
    name   = c.name
  }]
  service_arns            = [for c in local.clusters : "${c.prefix}:service/${c.name}/*"]
  service_deployment_arns = [for c in local.clusters : "${c.prefix}:service-deployment/${c.name}/*"]
  service_revision_arns   = [for c in local.clusters : "${c.prefix}:service-revision/${c.name}/*"]

  oidc_issuer = var.oidc_provider_arn == null ? "" : element(split(":oidc-provider/", var.oidc_provider_arn), 1)
}

# docs/iam.md explains every statement.
data "aws_iam_policy_document" "controller" {
  statement {
    sid       = "ReadAndUpdateServices"
    effect    = "Allow"
    actions   = ["ecs:DescribeServices", "ecs:UpdateService"]
    resources = local.service_arns
  }

  dynamic "statement" {
    for_each = var.allow_pause_hook_answers ? [true] : []
    content {
      sid       = "AnswerPauseHooks"
      effect    = "Allow"
      actions   = ["ecs:ContinueServiceDeployment"]
      resources = local.service_deployment_arns
    }
  }

  statement {
    sid       = "FollowServiceDeployments"
    effect    = "Allow"
    actions   = ["ecs:ListServiceDeployments", "ecs:DescribeServiceDeployments", "ecs:DescribeServiceRevisions"]
    resources = concat(local.service_arns, local.service_deployment_arns, local.service_revision_arns)
  }

  # ECS has no resource type for these two actions.
  statement {
    sid       = "ReadAndRegisterTaskDefinitions"
    effect    = "Allow"
    actions   = ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"]
    resources = ["*"]
  }

  # The provenance tags of the revisions the controller registers, only while registering.
  statement {
    sid       = "CopyTagsOntoNewRevisions"
    effect    = "Allow"
    actions   = ["ecs:TagResource"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RegisterTaskDefinition"]
    }
  }

  statement {
    sid       = "PassTaskAndExecutionRoles"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = var.pass_role_arns

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  # spec.ecs.roleARN: services in other accounts.
  dynamic "statement" {
    for_each = length(var.deployer_role_arns) > 0 ? [true] : []
    content {
      sid       = "AssumeDeployerRoles"
      effect    = "Allow"
      actions   = ["sts:AssumeRole"]
      resources = var.deployer_role_arns
    }
  }
}

data "aws_iam_policy_document" "controller_trust" {
  # IRSA: only this service account of this cluster may assume the role.
  dynamic "statement" {
    for_each = var.oidc_provider_arn == null ? [] : [true]
    content {
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = [var.oidc_provider_arn]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.service_account_namespace}:${var.service_account_name}"]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  # EKS Pod Identity assumes the role and tags the session.
  dynamic "statement" {
    for_each = var.pod_identity ? [true] : []
    content {
      effect  = "Allow"
      actions = ["sts:AssumeRole", "sts:TagSession"]

      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "controller" {
  count = var.create_controller_role ? 1 : 0

  name               = var.controller_role_name
  assume_role_policy = data.aws_iam_policy_document.controller_trust.json
  tags               = var.tags

  lifecycle {
    precondition {
      condition     = (var.oidc_provider_arn != null) != var.pod_identity
      error_message = "Set exactly one of oidc_provider_arn (IRSA) and pod_identity = true (EKS Pod Identity) for the controller's role."
    }
    precondition {
      condition     = length(var.ecs_clusters) > 0 && length(var.pass_role_arns) > 0
      error_message = "The controller's role needs ecs_clusters (where Environments deploy) and pass_role_arns (the task and execution roles of their task definitions)."
    }
  }
}

resource "aws_iam_role_policy" "controller" {
  count = var.create_controller_role ? 1 : 0

  name   = "autodeploy-ecs"
  role   = aws_iam_role.controller[0].id
  policy = data.aws_iam_policy_document.controller.json
}

resource "aws_eks_pod_identity_association" "controller" {
  count = var.create_controller_role && var.pod_identity && var.eks_cluster_name != null ? 1 : 0

  cluster_name    = var.eks_cluster_name
  namespace       = var.service_account_namespace
  service_account = var.service_account_name
  role_arn        = aws_iam_role.controller[0].arn
  tags            = var.tags
}
