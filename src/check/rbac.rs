//! The run's own Kubernetes permissions, asked of the API server with a
//! SelfSubjectAccessReview per request kind the run makes ("Checking API
//! access", <https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access>):
//! a review changes nothing, it answers whether the credentials may.
//!
//! [`RUN_ACCESS`] is every request a run makes; the scheduled module's
//! roles grant exactly these (a unit test reads its rendered manifests).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::report::{Check, CheckLine};
use crate::kube::retry::with_retry;

/// One kind of request a run makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    /// `None`: across all namespaces, or a cluster-scoped resource.
    pub namespace: Option<&'static str>,
    /// The one object the run uses, where it uses one only.
    pub name: Option<&'static str>,
    /// What the run cannot do without it.
    pub why: &'static str,
    /// Whether a run fails without it (else it goes on, doing less).
    pub required: bool,
}

impl Access {
    /// `patch nodes`, `create pods/eviction`, `get configmaps/kubesurge-run
    /// in kube-system`.
    pub fn describe(&self) -> String {
        let mut resource = self.resource.to_string();
        if let Some(sub) = self.subresource {
            resource = format!("{resource}/{sub}");
        }
        if !self.group.is_empty() {
            resource = format!("{resource}.{}", self.group);
        }
        let mut text = format!("{} {resource}", self.verb);
        if let Some(name) = self.name {
            text.push_str(&format!(" named {name}"));
        }
        match self.namespace {
            Some(ns) => text.push_str(&format!(" in {ns}")),
            None => text.push_str(" (cluster-wide)"),
        }
        text
    }
}

const fn access(
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: Option<&'static str>,
    why: &'static str,
) -> Access {
    Access {
        verb,
        group,
        resource,
        subresource: None,
        namespace,
        name: None,
        why,
        required: true,
    }
}

const fn named(mut a: Access, name: &'static str) -> Access {
    a.name = Some(name);
    a
}

const KS: Option<&str> = Some("kube-system");

/// Every request kind a run makes (the `rotate` and `upgrade` engines, the
/// lock, the inventory), with why.
pub const RUN_ACCESS: &[Access] = &[
    access("get", "", "nodes", None, "the inventory reads nodes"),
    access("list", "", "nodes", None, "the inventory lists nodes"),
    access(
        "watch",
        "",
        "nodes",
        None,
        "a run waits on nodes by watching them",
    ),
    access(
        "patch",
        "",
        "nodes",
        None,
        "cordon, uncordon, and the slot annotations a rerun resumes from",
    ),
    access(
        "delete",
        "",
        "nodes",
        None,
        "the old Node is removed once its instance is gone",
    ),
    access(
        "get",
        "",
        "pods",
        None,
        "a drain re-reads a pod before deciding about it again",
    ),
    access(
        "list",
        "",
        "pods",
        None,
        "a drain lists the pods of its node",
    ),
    access(
        "watch",
        "",
        "pods",
        None,
        "a drain waits for its pods to go",
    ),
    Access {
        subresource: Some("eviction"),
        ..access(
            "create",
            "",
            "pods",
            None,
            "every pod leaves through the eviction API",
        )
    },
    access(
        "get",
        "policy",
        "poddisruptionbudgets",
        None,
        "a blocked drain names its budget",
    ),
    access(
        "list",
        "policy",
        "poddisruptionbudgets",
        None,
        "a blocked drain names its budget",
    ),
    access(
        "list",
        "",
        "persistentvolumeclaims",
        None,
        "a drain finds the pods whose volume is local to the node",
    ),
    access(
        "list",
        "",
        "persistentvolumes",
        None,
        "a drain finds the pods whose volume is local to the node",
    ),
    access(
        "list",
        "storage.k8s.io",
        "volumeattachments",
        None,
        "an instance is terminated once its volumes detach",
    ),
    access(
        "watch",
        "storage.k8s.io",
        "volumeattachments",
        None,
        "an instance is terminated once its volumes detach",
    ),
    access(
        "create",
        "",
        "secrets",
        KS,
        "a bootstrap token per new node",
    ),
    access(
        "list",
        "",
        "secrets",
        KS,
        "the run finds its bootstrap tokens",
    ),
    access(
        "delete",
        "",
        "secrets",
        KS,
        "a token is deleted once its node joined",
    ),
    access(
        "create",
        "",
        "configmaps",
        KS,
        "the run record is created on the first run",
    ),
    named(
        access("get", "", "configmaps", KS, "the run record"),
        "kubesurge-run",
    ),
    named(
        access("update", "", "configmaps", KS, "the run record"),
        "kubesurge-run",
    ),
    access(
        "create",
        "coordination.k8s.io",
        "leases",
        KS,
        "the run lock is created on the first run",
    ),
    named(
        access("get", "coordination.k8s.io", "leases", KS, "the run lock"),
        "kubesurge",
    ),
    named(
        access(
            "update",
            "coordination.k8s.io",
            "leases",
            KS,
            "the run lock is renewed",
        ),
        "kubesurge",
    ),
    named(
        access(
            "patch",
            "coordination.k8s.io",
            "leases",
            KS,
            "kubesurge abort marks the lock",
        ),
        "kubesurge",
    ),
    named(
        access(
            "list",
            "coordination.k8s.io",
            "leases",
            KS,
            "the run watches its lock for an abort",
        ),
        "kubesurge",
    ),
    named(
        access(
            "watch",
            "coordination.k8s.io",
            "leases",
            KS,
            "the run watches its lock for an abort",
        ),
        "kubesurge",
    ),
    access(
        "list",
        "apps",
        "daemonsets",
        KS,
        "new nodes wait for a cloud controller manager, when one runs",
    ),
    access(
        "list",
        "apps",
        "deployments",
        KS,
        "new nodes wait for a cloud controller manager, when one runs",
    ),
    named(
        access(
            "get",
            "apps",
            "deployments",
            KS,
            "the inventory reads the CoreDNS version",
        ),
        "coredns",
    ),
    named(
        access(
            "get",
            "apps",
            "daemonsets",
            KS,
            "the inventory reads the kube-proxy version",
        ),
        "kube-proxy",
    ),
    named(
        access(
            "get",
            "",
            "configmaps",
            Some("kube-public"),
            "new nodes join with the API server address and CA of cluster-info",
        ),
        "cluster-info",
    ),
    Access {
        required: false,
        ..access(
            "create",
            "",
            "events",
            Some("default"),
            "Events on nodes say what the run did (kubectl describe node)",
        )
    },
];

/// The review asking for `access`.
pub fn review(access: &Access) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(access.verb.to_string()),
                group: Some(access.group.to_string()),
                resource: Some(access.resource.to_string()),
                subresource: access.subresource.map(str::to_string),
                namespace: access.namespace.map(str::to_string),
                name: access.name.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    }
}

/// The API server's answer to one review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Allowed,
    Denied {
        reason: String,
    },
    /// The review itself failed.
    Unknown {
        error: String,
    },
}

/// The report's lines from the answers: one line when every request is
/// allowed; else a line per denied request (the optional ones noted on
/// the passing line), and the reviews that could not be asked.
pub fn lines(answers: &[(Access, Answer)]) -> Vec<CheckLine> {
    let subject = "kubernetes api";
    let fix_for = |a: &Access| {
        format!(
            "grant the credentials kubesurge runs with `{}` (terraform/modules/scheduled renders the least RBAC a run needs)",
            a.describe()
        )
    };
    let mut lines = Vec::new();
    let mut optional_denied = Vec::new();
    for (access, answer) in answers {
        match answer {
            Answer::Allowed => {}
            Answer::Denied { reason } if access.required => lines.push(CheckLine::fail(
                Check::Rbac,
                subject,
                format!(
                    "denied: {} — {}{}",
                    access.describe(),
                    access.why,
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({reason})")
                    }
                ),
                fix_for(access),
            )),
            Answer::Denied { .. } => {
                optional_denied.push(format!("{} (so no {})", access.describe(), access.why))
            }
            Answer::Unknown { error } => lines.push(CheckLine::cannot_verify(
                Check::Rbac,
                subject,
                format!(
                    "could not ask whether it may {}: {error}",
                    access.describe()
                ),
                "check the kubeconfig's access, then rerun",
            )),
        }
    }
    if lines.is_empty() {
        let mut message = format!(
            "the credentials may make every request a run makes ({} asked)",
            answers.len()
        );
        if !optional_denied.is_empty() {
            message.push_str(&format!(
                "; denied, and a run does without: {}",
                optional_denied.join(", ")
            ));
        }
        lines.push(CheckLine::pass(Check::Rbac, subject, message));
    }
    lines
}

/// Ask the API server about every request of [`RUN_ACCESS`].
pub async fn check(client: &Client) -> Vec<CheckLine> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let post = PostParams::default();
    let mut answers = Vec::new();
    for access in RUN_ACCESS {
        let asked = review(access);
        let answer = match with_retry("create selfsubjectaccessreview", || {
            api.create(&post, &asked)
        })
        .await
        {
            Ok(done) => match done.status {
                Some(status) if status.allowed => Answer::Allowed,
                Some(status) => Answer::Denied {
                    reason: status.reason.unwrap_or_default(),
                },
                None => Answer::Unknown {
                    error: "the review came back without a status".into(),
                },
            },
            Err(e) => Answer::Unknown {
                error: e.to_string(),
            },
        };
        answers.push((*access, answer));
    }
    lines(&answers)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::check::CheckStatus;

    /// (verb, group, resource[/subresource], namespace, name)
    type Grant = (String, String, String, Option<String>, Option<String>);

    /// The scheduled module's rendered roles grant exactly [`RUN_ACCESS`]:
    /// every request the check asks about, and nothing it does not.
    #[test]
    fn the_scheduled_modules_roles_grant_exactly_what_a_run_asks_for() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("terraform/examples/scheduled/kubesurge-scheduled.yaml");
        let yaml = std::fs::read_to_string(&path).expect("the rendered manifests");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("YAML");
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut granted: Vec<Grant> = Vec::new();
        for doc in &documents {
            let namespace = match doc["kind"].as_str() {
                Some("ClusterRole") => None,
                Some("Role") => doc["metadata"]["namespace"].as_str().map(String::from),
                _ => continue,
            };
            for rule in doc["rules"].as_array().into_iter().flatten() {
                let names = strings(&rule["resourceNames"]);
                for verb in strings(&rule["verbs"]) {
                    for group in strings(&rule["apiGroups"]) {
                        for resource in strings(&rule["resources"]) {
                            let names: Vec<Option<String>> = if names.is_empty() {
                                vec![None]
                            } else {
                                names.iter().cloned().map(Some).collect()
                            };
                            for name in names {
                                granted.push((
                                    verb.clone(),
                                    group.clone(),
                                    resource.clone(),
                                    namespace.clone(),
                                    name,
                                ));
                            }
                        }
                    }
                }
            }
        }
        let asked: Vec<Grant> = RUN_ACCESS
            .iter()
            .map(|a| {
                (
                    a.verb.to_string(),
                    a.group.to_string(),
                    match a.subresource {
                        Some(sub) => format!("{}/{sub}", a.resource),
                        None => a.resource.to_string(),
                    },
                    a.namespace.map(String::from),
                    a.name.map(String::from),
                )
            })
            .collect();
        for a in &asked {
            assert!(granted.contains(a), "the module does not grant {a:?}");
        }
        for g in &granted {
            assert!(asked.contains(g), "check does not ask about {g:?}");
        }
    }

    #[test]
    fn a_denied_request_fails_naming_it_and_an_optional_one_is_noted() {
        let evict = RUN_ACCESS
            .iter()
            .find(|a| a.subresource == Some("eviction"))
            .copied()
            .expect("eviction");
        let events = RUN_ACCESS
            .iter()
            .find(|a| !a.required)
            .copied()
            .expect("events");
        let all_but = |denied: Access| {
            RUN_ACCESS
                .iter()
                .map(|a| {
                    let answer = if *a == denied {
                        Answer::Denied {
                            reason: String::new(),
                        }
                    } else {
                        Answer::Allowed
                    };
                    (*a, answer)
                })
                .collect::<Vec<_>>()
        };
        let out = lines(&all_but(evict));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, CheckStatus::Fail);
        assert!(
            out[0]
                .message
                .contains("create pods/eviction (cluster-wide)"),
            "{out:?}"
        );
        assert!(
            out[0].fix.as_deref().unwrap_or("").contains("grant"),
            "{out:?}"
        );
        let out = lines(&all_but(events));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, CheckStatus::Pass);
        assert!(
            out[0].message.contains("create events in default"),
            "{out:?}"
        );
    }
}
