# Which resources and condition keys each action supports is AWS's Service
# Authorization Reference:
#   EC2          https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
#   Auto Scaling https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html
#   SSM          https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html
#   IAM          https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
#   Quotas       https://docs.aws.amazon.com/service-authorization/latest/reference/list_servicequotas.html

locals {
  arn_prefix = "arn:${var.partition}:ec2:${var.region}:${var.account_id}"

  control_plane_tags = var.control_plane_tags != null ? var.control_plane_tags : {
    "kubesurge.io/control-plane" = var.cluster_name
  }

  # What a RunInstances from one of the pools' launch templates touches
  # besides the instance and the template. Each is allowed only inside such
  # a launch (ec2:LaunchTemplate condition), never on its own.
  launch_resources = concat(
    length(var.subnet_ids) > 0 ? [for id in var.subnet_ids : "${local.arn_prefix}:subnet/${id}"] : ["${local.arn_prefix}:subnet/*"],
    length(var.security_group_ids) > 0 ? [for id in var.security_group_ids : "${local.arn_prefix}:security-group/${id}"] : ["${local.arn_prefix}:security-group/*"],
    [
      "${local.arn_prefix}:network-interface/*",
      "${local.arn_prefix}:volume/*",
      # A launch template may name a key pair.
      "${local.arn_prefix}:key-pair/*",
    ],
  )

  # Every Auto Scaling group in the account and region: a group's ARN
  # carries a UUID nobody knows in advance, so this cluster's groups are
  # told apart by their kubesurge.io/cluster tag (autoscaling:ResourceTag),
  # which `kubesurge init --tag` puts on them.
  group_arns = ["arn:${var.partition}:autoscaling:${var.region}:${var.account_id}:autoScalingGroup:*:autoScalingGroupName/*"]
}

data "aws_iam_policy_document" "kubesurge" {
  # Launch: the instance must carry this cluster's tag in the request and
  # come from one of the pools' launch templates. kubesurge puts the tag in
  # the RunInstances request itself (TagSpecifications), so an untagged
  # instance can never be created, and `gc` and termination can find it.
  statement {
    sid       = "LaunchTaggedInstancesFromPoolTemplates"
    effect    = "Allow"
    actions   = ["ec2:RunInstances"]
    resources = ["${local.arn_prefix}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubesurge.io/cluster"
      values   = [var.cluster_name]
    }

    condition {
      test     = "ArnEquals"
      variable = "ec2:LaunchTemplate"
      values   = var.launch_template_arns
    }
  }

  statement {
    sid       = "UseOnlyPoolLaunchTemplates"
    effect    = "Allow"
    actions   = ["ec2:RunInstances"]
    resources = var.launch_template_arns
  }

  statement {
    sid       = "LaunchIntoTemplateResources"
    effect    = "Allow"
    actions   = ["ec2:RunInstances"]
    resources = local.launch_resources

    condition {
      test     = "ArnEquals"
      variable = "ec2:LaunchTemplate"
      values   = var.launch_template_arns
    }
  }

  # The image is chosen per Kubernetes version by the pool's image filters;
  # images live under an ARN without an account.
  statement {
    sid       = "LaunchFromPoolImages"
    effect    = "Allow"
    actions   = ["ec2:RunInstances"]
    resources = ["arn:${var.partition}:ec2:${var.region}::image/*"]

    condition {
      test     = "ArnEquals"
      variable = "ec2:LaunchTemplate"
      values   = var.launch_template_arns
    }

    dynamic "condition" {
      for_each = length(var.image_owner_account_ids) > 0 ? [1] : []
      content {
        test     = "StringEquals"
        variable = "ec2:Owner"
        values   = var.image_owner_account_ids
      }
    }
  }

  # Tags only as part of a launch: kubesurge never retags an existing
  # instance, so it cannot make a foreign instance look like one of its own.
  statement {
    sid     = "TagOnlyWhileLaunching"
    effect  = "Allow"
    actions = ["ec2:CreateTags"]
    resources = [
      "${local.arn_prefix}:instance/*",
      "${local.arn_prefix}:volume/*",
      "${local.arn_prefix}:network-interface/*",
    ]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  # Terminate only this cluster's pool instances: every instance of a pool
  # carries the cluster and pool tags (that is how kubesurge lists a pool),
  # and requiring the pool tag too keeps control-plane instances out of
  # reach even when they carry the cluster tag.
  statement {
    sid       = "TerminateOnlyThisClustersPoolInstances"
    effect    = "Allow"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.arn_prefix}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/kubesurge.io/cluster"
      values   = [var.cluster_name]
    }

    condition {
      test     = "Null"
      variable = "aws:ResourceTag/kubesurge.io/pool"
      values   = ["false"]
    }
  }

  # updateLaunchTemplate: a new version of the group's launch template with
  # the target image. Only the pools' templates.
  statement {
    sid       = "VersionOnlyPoolLaunchTemplates"
    effect    = "Allow"
    actions   = ["ec2:CreateLaunchTemplateVersion"]
    resources = var.launch_template_arns
  }

  # EC2 and Auto Scaling Describe* actions support no resource-level
  # permissions or tag conditions: AWS accepts only "*" for them. They
  # read, never change.
  statement {
    sid    = "DescribeOnlyAllowsAnyResource"
    effect = "Allow"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeImages",
      "ec2:DescribeLaunchTemplates",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:DescribeSubnets",
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
    ]
    resources = ["*"]
  }

  # `kubesurge check` compares the account's On-Demand vCPU quota with what
  # runs and the run's surge: the EC2 quotas only, and the instance types'
  # vCPUs (neither DescribeInstanceTypes nor GetAWSDefaultServiceQuota
  # supports resource-level permissions).
  statement {
    sid       = "ReadTheEc2Quotas"
    effect    = "Allow"
    actions   = ["servicequotas:GetServiceQuota"]
    resources = ["arn:${var.partition}:servicequotas:${var.region}:${var.account_id}:ec2/*"]
  }

  statement {
    sid    = "ReadInstanceTypesAndDefaultQuotas"
    effect = "Allow"
    actions = [
      "ec2:DescribeInstanceTypes",
      "servicequotas:GetAWSDefaultServiceQuota",
    ]
    resources = ["*"]
  }

  # Auto Scaling pools, only in this cluster's groups: surge room
  # (MaxSize) and the group's template version, the processes that would
  # fight the run, and its members (attach a new instance, terminate an old
  # one through the group).
  statement {
    sid    = "RotateOnlyThisClustersGroups"
    effect = "Allow"
    actions = [
      "autoscaling:UpdateAutoScalingGroup",
      "autoscaling:SuspendProcesses",
      "autoscaling:ResumeProcesses",
      "autoscaling:AttachInstances",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = local.group_arns

    condition {
      test     = "StringEquals"
      variable = "autoscaling:ResourceTag/kubesurge.io/cluster"
      values   = [var.cluster_name]
    }
  }

  # The record of a run (what to restore after a crash) lives in tags on
  # the group: only kubesurge.io/ keys, only on this cluster's groups.
  statement {
    sid       = "RecordRunsInKubesurgeTagsOfThisClustersGroups"
    effect    = "Allow"
    actions   = ["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"]
    resources = local.group_arns

    condition {
      test     = "StringEquals"
      variable = "autoscaling:ResourceTag/kubesurge.io/cluster"
      values   = [var.cluster_name]
    }

    condition {
      test     = "ForAllValues:StringLike"
      variable = "aws:TagKeys"
      values   = ["kubesurge.io/*"]
    }
  }

  # No launch and no tag may use a control-plane tag key: otherwise
  # kubesurge could make an instance that the SendCommand grant below
  # accepts (a group's tag may propagate to the instances it launches).
  statement {
    sid       = "NeverCreateControlPlaneTags"
    effect    = "Deny"
    actions   = ["ec2:RunInstances", "ec2:CreateTags", "autoscaling:CreateOrUpdateTags"]
    resources = ["*"]

    condition {
      test     = "ForAnyValue:StringEquals"
      variable = "aws:TagKeys"
      values   = keys(local.control_plane_tags)
    }
  }

  # controlPlane.exec: ssm — run the upgrade scripts on this cluster's
  # control-plane instances only, and only as AWS-RunShellScript.
  dynamic "statement" {
    for_each = var.enable_ssm ? [1] : []
    content {
      sid       = "RunCommandsOnThisClustersControlPlane"
      effect    = "Allow"
      actions   = ["ssm:SendCommand"]
      resources = ["${local.arn_prefix}:instance/*"]

      dynamic "condition" {
        for_each = local.control_plane_tags
        content {
          test     = "StringEquals"
          variable = "aws:ResourceTag/${condition.key}"
          values   = [condition.value]
        }
      }
    }
  }

  dynamic "statement" {
    for_each = var.enable_ssm ? [1] : []
    content {
      sid       = "RunOnlyTheShellScriptDocument"
      effect    = "Allow"
      actions   = ["ssm:SendCommand"]
      resources = ["arn:${var.partition}:ssm:${var.region}::document/AWS-RunShellScript"]
    }
  }

  # GetCommandInvocation and CancelCommand support no resource-level
  # permissions: they read the output of a command kubesurge sent, or
  # cancel one that outlived its timeout; neither runs anything.
  dynamic "statement" {
    for_each = var.enable_ssm ? [1] : []
    content {
      sid       = "FollowSentCommands"
      effect    = "Allow"
      actions   = ["ssm:GetCommandInvocation", "ssm:CancelCommand"]
      resources = ["*"]
    }
  }

  # `kubesurge check` asks each control-plane node's SSM agent whether it is
  # Online before a hop. DescribeInstanceInformation supports no
  # resource-level permissions (Service Authorization Reference, AWS Systems
  # Manager: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html);
  # it reads agent status only.
  dynamic "statement" {
    for_each = var.enable_ssm ? [1] : []
    content {
      sid       = "SeeWhetherAgentsAreOnline"
      effect    = "Allow"
      actions   = ["ssm:DescribeInstanceInformation"]
      resources = ["*"]
    }
  }

  # `kubesurge check` asks IAM's policy simulator what the principals of
  # the runs may do on a pool's Auto Scaling group (that API has no dry
  # run): only about themselves.
  dynamic "statement" {
    for_each = length(var.principal_arns) > 0 ? [1] : []
    content {
      sid       = "AskThePolicySimulatorAboutItself"
      effect    = "Allow"
      actions   = ["iam:SimulatePrincipalPolicy"]
      resources = var.principal_arns
    }
  }

  # A launch template that names an instance profile makes RunInstances
  # pass its role: only the node role, and only to EC2.
  dynamic "statement" {
    for_each = var.node_role_arn != null ? [var.node_role_arn] : []
    content {
      sid       = "PassOnlyTheNodeRoleToEc2"
      effect    = "Allow"
      actions   = ["iam:PassRole"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["ec2.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_policy" "kubesurge" {
  count = var.create_policy ? 1 : 0

  name        = var.policy_name != null ? var.policy_name : "kubesurge-${var.cluster_name}"
  path        = var.policy_path
  description = "kubesurge for cluster ${var.cluster_name}: launch from the pools' templates, terminate only this cluster's instances"
  policy      = data.aws_iam_policy_document.kubesurge.json
  tags        = var.tags
}
