//! Who the world's credentials are, and IAM's policy simulator for them:
//! two calls the fault proxy answers itself.
//!
//! - `sts:GetCallerIdentity`: moto 5.2 answers `arn:aws:sts::ACCOUNT:user/moto`
//!   for any access key, an ARN AWS never gives (an IAM user's is
//!   `arn:aws:iam::ACCOUNT:user/NAME`, GetCallerIdentity, AWS STS API
//!   Reference). The world's credentials are the user [`PRINCIPAL`], the
//!   one every refusal names. The call needs no permission ("No
//!   permissions are required to perform this operation").
//! - `iam:SimulatePrincipalPolicy`: not served by moto 5.2 (an HTML 500).
//!   Answered from the policy the proxy enforces, by the same evaluation
//!   that refuses the calls themselves, so what a simulation says is what
//!   the calls meet; without a policy (moto's own world, where nothing is
//!   refused) every action is allowed. As IAM answers it
//!   (<https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html>):
//!   one `EvaluationResult` per action and resource, with the context keys
//!   the request supplies (the simulator looks up no tags itself), its
//!   decision `allowed`, `implicitDeny` or `explicitDeny`, the matched
//!   statements' policy; a principal other than the world's is
//!   `NoSuchEntity` (404).

use std::collections::BTreeMap;

use super::super::proxy::escape;
use super::super::strict::{form, value};
use super::policy::{Authorization, Decision, Policy};
use super::{ACCOUNT, PRINCIPAL};

/// The unique id AWS gives the world's user (`AIDA…` for IAM users).
const USER_ID: &str = "AIDAKUBESURGEWORLD01";

/// The world's one policy, as attached to [`PRINCIPAL`].
pub const POLICY_NAME: &str = "kubesurge";

/// An answer in the IAM and STS query protocols' XML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlAnswer {
    pub status: u16,
    pub body: String,
}

/// `GetCallerIdentity` for the world's user.
pub fn caller_identity() -> XmlAnswer {
    XmlAnswer {
        status: 200,
        body: format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>{PRINCIPAL}</Arn><UserId>{USER_ID}</UserId><Account>{ACCOUNT}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>00000000-fault-proxy</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
        ),
    }
}

/// `PREFIX.member.1`, `PREFIX.member.2`, … of a form.
fn members(form: &[(String, String)], prefix: &str) -> Vec<String> {
    (1..)
        .map_while(|n| value(form, &format!("{prefix}.member.{n}")).map(str::to_string))
        .collect()
}

/// The request's `PolicySourceArn`.
pub fn policy_source(body: &[u8]) -> Option<String> {
    value(&form(body), "PolicySourceArn").map(str::to_string)
}

/// The context keys of a request: `ContextEntries.member.N`.
fn context(form: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    (1..)
        .map_while(|n| {
            let entry = format!("ContextEntries.member.{n}");
            let key = value(form, &format!("{entry}.ContextKeyName"))?;
            Some((
                key.to_string(),
                members(form, &format!("{entry}.ContextKeyValues")),
            ))
        })
        .collect()
}

/// One result of a simulation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub action: String,
    pub resource: String,
    pub decision: Decision,
}

/// Every action of the request on every resource it names (`*` when it
/// names none), evaluated against `policy` (everything allowed without
/// one).
pub fn evaluate(policy: Option<&Policy>, body: &[u8]) -> Vec<Evaluation> {
    let form = form(body);
    let context = context(&form);
    let mut resources = members(&form, "ResourceArns");
    if resources.is_empty() {
        resources.push("*".into());
    }
    let mut all = Vec::new();
    for action in members(&form, "ActionNames") {
        for resource in &resources {
            let authorization = Authorization {
                action: action.clone(),
                resource: resource.clone(),
                context: context.clone(),
            };
            all.push(Evaluation {
                action: action.clone(),
                resource: resource.clone(),
                decision: policy.map_or(Decision::Allowed, |p| p.evaluate(&authorization)),
            });
        }
    }
    all
}

fn decision_word(decision: &Decision) -> &'static str {
    match decision {
        Decision::Allowed => "allowed",
        Decision::ImplicitDeny => "implicitDeny",
        Decision::ExplicitDeny(_) => "explicitDeny",
    }
}

/// The simulator's answer to a request with `body`.
pub fn simulate(policy: Option<&Policy>, body: &[u8]) -> XmlAnswer {
    let source = policy_source(body).unwrap_or_default();
    if source != PRINCIPAL {
        let name = source.rsplit('/').next().unwrap_or_default();
        return XmlAnswer {
            status: 404,
            body: format!(
                "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The user with name {} cannot be found.</Message></Error><RequestId>00000000-fault-proxy</RequestId></ErrorResponse>",
                escape(name)
            ),
        };
    }
    let mut results = String::new();
    for e in evaluate(policy, body) {
        let matched = match &e.decision {
            Decision::ImplicitDeny => String::new(),
            _ => format!(
                "<member><SourcePolicyId>{POLICY_NAME}</SourcePolicyId><SourcePolicyType>IAM Policy</SourcePolicyType></member>"
            ),
        };
        results.push_str(&format!(
            "<member><EvalActionName>{}</EvalActionName><EvalResourceName>{}</EvalResourceName><EvalDecision>{}</EvalDecision><MatchedStatements>{matched}</MatchedStatements><MissingContextValues/></member>",
            escape(&e.action),
            escape(&e.resource),
            decision_word(&e.decision)
        ));
    }
    XmlAnswer {
        status: 200,
        body: format!(
            "<SimulatePrincipalPolicyResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>{results}</EvaluationResults></SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>00000000-fault-proxy</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_json(&serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Groups",
                    "Effect": "Allow",
                    "Action": ["autoscaling:UpdateAutoScalingGroup"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"autoscaling:ResourceTag/kubesurge.io/cluster": "prod"}}
                },
                {
                    "Sid": "Never",
                    "Effect": "Deny",
                    "Action": ["autoscaling:DeleteTags"],
                    "Resource": "*"
                }
            ]
        }))
        .expect("policy")
    }

    fn request(cluster_tag: &str) -> Vec<u8> {
        format!(
            "Action=SimulatePrincipalPolicy&Version=2010-05-08&PolicySourceArn={}\
             &ActionNames.member.1=autoscaling%3AUpdateAutoScalingGroup\
             &ActionNames.member.2=autoscaling%3ADeleteTags\
             &ActionNames.member.3=autoscaling%3ASuspendProcesses\
             &ResourceArns.member.1=arn%3Aaws%3Aautoscaling%3Aus-east-1%3A{ACCOUNT}%3AautoScalingGroup%3Aid%3AautoScalingGroupName%2Fg\
             &ContextEntries.member.1.ContextKeyName=autoscaling%3AResourceTag%2Fkubesurge.io%2Fcluster\
             &ContextEntries.member.1.ContextKeyValues.member.1={cluster_tag}\
             &ContextEntries.member.1.ContextKeyType=string",
            PRINCIPAL.replace(':', "%3A").replace('/', "%2F")
        )
        .into_bytes()
    }

    #[test]
    fn each_action_is_evaluated_with_the_context_the_request_gives() {
        let decisions: Vec<Decision> = evaluate(Some(&policy()), &request("prod"))
            .into_iter()
            .map(|e| e.decision)
            .collect();
        assert_eq!(
            decisions,
            [
                Decision::Allowed,
                Decision::ExplicitDeny("Never".into()),
                Decision::ImplicitDeny
            ]
        );
        // Another cluster's tag: the condition does not hold.
        assert_eq!(
            evaluate(Some(&policy()), &request("staging"))[0].decision,
            Decision::ImplicitDeny
        );
        // No policy: moto's own world, where nothing is refused.
        assert!(
            evaluate(None, &request("staging"))
                .iter()
                .all(|e| e.decision == Decision::Allowed)
        );
    }

    #[test]
    fn the_answer_is_iams() {
        let answer = simulate(Some(&policy()), &request("prod"));
        assert_eq!(answer.status, 200);
        assert!(answer.body.contains("<EvalDecision>allowed</EvalDecision>"));
        assert!(
            answer
                .body
                .contains("<EvalDecision>explicitDeny</EvalDecision>")
        );
        assert!(
            answer
                .body
                .contains("<EvalDecision>implicitDeny</EvalDecision>")
        );
        let stranger = String::from_utf8(request("prod"))
            .expect("utf-8")
            .replace("user%2Fkubesurge", "user%2Fsomeone");
        let answer = simulate(Some(&policy()), stranger.as_bytes());
        assert_eq!(answer.status, 404);
        assert!(answer.body.contains("NoSuchEntity") && answer.body.contains("someone"));
    }
}
