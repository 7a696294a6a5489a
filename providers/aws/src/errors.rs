//! The one place that turns EC2 errors into typed [`ProviderError`]s: an
//! allow-list of error codes. Codes not listed become `Other` with the
//! code and EC2's message; callers branch on the kind, never on text.
//!
//! Throttling and server errors reach this module only after the SDK's own
//! standard retry gave up; the caller's deadline decides what comes next.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use kubesurge_provider::ProviderError;

/// The EC2 and Auto Scaling API actions the provider calls; each names
/// its IAM action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    DescribeInstances,
    DescribeImages,
    DescribeSubnets,
    DescribeLaunchTemplateVersions,
    RunInstances,
    TerminateInstances,
    DescribeLaunchTemplates,
    CreateLaunchTemplateVersion,
    DescribeAutoScalingGroups,
    DescribeAutoScalingInstances,
    AttachInstances,
    TerminateInstanceInAutoScalingGroup,
    UpdateAutoScalingGroup,
    SuspendProcesses,
    ResumeProcesses,
    CreateOrUpdateTags,
    DeleteTags,
    CreateTags,
}

impl Call {
    /// The IAM action a policy must allow (`ec2:RunInstances`).
    pub fn iam_action(self) -> &'static str {
        match self {
            Call::DescribeInstances => "ec2:DescribeInstances",
            Call::DescribeImages => "ec2:DescribeImages",
            Call::DescribeSubnets => "ec2:DescribeSubnets",
            Call::DescribeLaunchTemplateVersions => "ec2:DescribeLaunchTemplateVersions",
            Call::RunInstances => "ec2:RunInstances",
            Call::TerminateInstances => "ec2:TerminateInstances",
            Call::DescribeLaunchTemplates => "ec2:DescribeLaunchTemplates",
            Call::CreateLaunchTemplateVersion => "ec2:CreateLaunchTemplateVersion",
            Call::DescribeAutoScalingGroups => "autoscaling:DescribeAutoScalingGroups",
            Call::DescribeAutoScalingInstances => "autoscaling:DescribeAutoScalingInstances",
            Call::AttachInstances => "autoscaling:AttachInstances",
            Call::TerminateInstanceInAutoScalingGroup => {
                "autoscaling:TerminateInstanceInAutoScalingGroup"
            }
            Call::UpdateAutoScalingGroup => "autoscaling:UpdateAutoScalingGroup",
            Call::SuspendProcesses => "autoscaling:SuspendProcesses",
            Call::ResumeProcesses => "autoscaling:ResumeProcesses",
            Call::CreateOrUpdateTags => "autoscaling:CreateOrUpdateTags",
            Call::DeleteTags => "autoscaling:DeleteTags",
            Call::CreateTags => "ec2:CreateTags",
        }
    }
}

/// Codes that mean "slow down": retried by the SDK, then `Throttled`.
const THROTTLED: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "SlowDown",
];

/// Codes that mean the zone has no room for the instance right now.
const NO_CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientCapacity",
];

/// Codes of a missing permission.
const UNAUTHORIZED: &[&str] = &[
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
];

/// Codes of something that does not exist (and will not appear by waiting).
const NOT_FOUND: &[&str] = &[
    "InvalidInstanceID.NotFound",
    "InvalidAMIID.NotFound",
    "InvalidAMIID.Unavailable",
];

/// Codes of a request that cannot succeed as configured.
const INVALID_CONFIG: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestExpired",
    "OptInRequired",
    "InvalidInstanceID.Malformed",
    "InvalidAMIID.Malformed",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidLaunchTemplateName.MalformedException",
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateId.Malformed",
    "InvalidLaunchTemplateId.VersionNotFound",
    "InvalidSubnetID.NotFound",
    "InvalidSubnetID.Malformed",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
    "InvalidBlockDeviceMapping",
    "Unsupported",
    // Auto Scaling: a missing group, a size out of bounds
    // (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/CommonErrors.html).
    "ValidationError",
];

/// The code of a launch whose `ClientToken` an earlier launch used with
/// other parameters: EC2 keeps a token bound for at least 24 hours after
/// its instance is terminated, so repeating the call never succeeds
/// (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html).
/// The provider then looks for that earlier instance (see
/// `AwsProvider::launch`).
pub const IDEMPOTENT_PARAMETER_MISMATCH: &str = "IdempotentParameterMismatch";

/// Codes of a failure on EC2's side that may pass.
const TRANSIENT: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    // Auto Scaling: "You already have a pending update to an Amazon EC2
    // Auto Scaling resource" and a scaling activity in progress
    // (AttachInstances, TerminateInstanceInAutoScalingGroup API reference).
    "ResourceContention",
    "ScalingActivityInProgress",
];

/// The typed error for an EC2 error answer.
///
/// `zone` is the zone a launch asked for (a capacity error names it);
/// `status` is the HTTP status, when there was an answer.
pub fn classify(
    call: Call,
    code: Option<&str>,
    message: &str,
    status: Option<u16>,
    zone: Option<&str>,
) -> ProviderError {
    let action = call.iam_action();
    let with_code = |c: &str| format!("{action}: {c}: {message}");
    match code {
        Some(c) if THROTTLED.contains(&c) => ProviderError::Throttled {
            message: with_code(c),
        },
        Some(c) if NO_CAPACITY.contains(&c) => ProviderError::InsufficientCapacity {
            zone: zone.unwrap_or_default().to_string(),
            message: with_code(c),
        },
        Some(c) if UNAUTHORIZED.contains(&c) => ProviderError::Unauthorized {
            action: action.to_string(),
            message: with_code(c),
        },
        Some(c) if NOT_FOUND.contains(&c) => ProviderError::NotFound { what: with_code(c) },
        Some(c) if INVALID_CONFIG.contains(&c) => ProviderError::InvalidConfig {
            message: with_code(c),
        },
        Some(IDEMPOTENT_PARAMETER_MISMATCH) => ProviderError::LaunchKeySpent {
            message: with_code(IDEMPOTENT_PARAMETER_MISMATCH),
        },
        Some(c) if TRANSIENT.contains(&c) => ProviderError::Transient {
            message: with_code(c),
        },
        _ if status == Some(429) => ProviderError::Throttled {
            message: with_code(code.unwrap_or("HTTP 429")),
        },
        _ if status.is_some_and(|s| s >= 500) => ProviderError::Transient {
            message: with_code(code.unwrap_or(&format!("HTTP {}", status.unwrap_or_default()))),
        },
        Some(c) => ProviderError::Other {
            message: with_code(c),
        },
        None => ProviderError::Other {
            message: format!("{action}: {message}"),
        },
    }
}

/// The typed error for an SDK error of `call`.
pub fn from_sdk<E>(call: Call, error: &SdkError<E>, zone: Option<&str>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => classify(
            call,
            error.code(),
            error.message().unwrap_or_default(),
            Some(service.raw().status().as_u16()),
            zone,
        ),
        // Unreadable answers (an HTML error page) are server trouble.
        SdkError::ResponseError(_) | SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            ProviderError::Transient {
                message: format!("{}: {}", call.iam_action(), DisplayErrorContext(error)),
            }
        }
        // No region, no credentials, a malformed endpoint.
        _ => ProviderError::InvalidConfig {
            message: format!("{}: {}", call.iam_action(), DisplayErrorContext(error)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(e: &ProviderError) -> &'static str {
        match e {
            ProviderError::NotFound { .. } => "not-found",
            ProviderError::InsufficientCapacity { .. } => "capacity",
            ProviderError::Throttled { .. } => "throttled",
            ProviderError::Unauthorized { .. } => "unauthorized",
            ProviderError::InvalidConfig { .. } => "invalid-config",
            ProviderError::Transient { .. } => "transient",
            ProviderError::LaunchKeySpent { .. } => "launch-key-spent",
            ProviderError::Other { .. } => "other",
        }
    }

    #[test]
    fn every_listed_code_has_its_kind() {
        let run = Call::RunInstances;
        let cases = [
            ("RequestLimitExceeded", 503, "throttled"),
            ("InsufficientInstanceCapacity", 500, "capacity"),
            ("UnauthorizedOperation", 403, "unauthorized"),
            ("InvalidInstanceID.NotFound", 400, "not-found"),
            (
                "InvalidLaunchTemplateName.NotFoundException",
                400,
                "invalid-config",
            ),
            ("AuthFailure", 401, "invalid-config"),
            ("InternalError", 500, "transient"),
            ("IdempotentParameterMismatch", 400, "launch-key-spent"),
            ("VcpuLimitExceeded", 400, "other"),
        ];
        for (code, status, expected) in cases {
            let e = classify(run, Some(code), "m", Some(status), Some("us-east-1b"));
            assert_eq!(kind(&e), expected, "{code}");
            assert!(e.to_string().contains(code), "{e} names {code}");
        }
    }

    #[test]
    fn capacity_names_the_zone_and_unauthorized_the_action() {
        match classify(
            Call::RunInstances,
            Some("InsufficientInstanceCapacity"),
            "no m5.large",
            Some(500),
            Some("us-east-1c"),
        ) {
            ProviderError::InsufficientCapacity { zone, .. } => assert_eq!(zone, "us-east-1c"),
            other => panic!("{other:?}"),
        }
        match classify(
            Call::TerminateInstances,
            Some("UnauthorizedOperation"),
            "You are not authorized to perform this operation.",
            Some(403),
            None,
        ) {
            ProviderError::Unauthorized { action, .. } => {
                assert_eq!(action, "ec2:TerminateInstances")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        let e = classify(Call::DescribeInstances, None, "<html>", Some(502), None);
        assert_eq!(kind(&e), "transient");
        let e = classify(Call::DescribeInstances, Some("Weird"), "m", Some(503), None);
        assert_eq!(kind(&e), "transient");
        let e = classify(Call::DescribeInstances, None, "slow", Some(429), None);
        assert_eq!(kind(&e), "throttled");
        let e = classify(Call::DescribeInstances, Some("Weird"), "m", Some(400), None);
        assert!(matches!(&e, ProviderError::Other { message } if message.contains("Weird")));
    }
}
