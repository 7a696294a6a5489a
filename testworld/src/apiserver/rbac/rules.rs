//! Pure RBAC evaluation: does a rule allow a request, which rules apply to
//! a user, and what does a refusal or an approval say. The objects are the
//! stored JSON of Roles, ClusterRoles and their bindings.
//!
//! Sources: `plugin/pkg/auth/authorizer/rbac/rbac.go` (`RuleAllows`,
//! `authorizingVisitor`, the binding describers),
//! `pkg/apis/rbac/v1/evaluation_helpers.go` (`VerbMatches`,
//! `ResourceMatches`, `NonResourceURLMatches`) and
//! `pkg/registry/rbac/validation/rule.go` (`VisitRulesFor`,
//! `appliesToUser`).

use std::sync::Arc;

use serde_json::Value;

use crate::controllers::matching::selector_matches;

/// The identity a request was authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

/// The group every authenticated user is in.
const AUTHENTICATED: &str = "system:authenticated";

impl UserInfo {
    /// A user with `system:authenticated` added.
    pub fn authenticated(name: String, mut groups: Vec<String>) -> UserInfo {
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        UserInfo { name, groups }
    }

    /// Who a request without credentials is (`request/anonymous`).
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// What a request asks to do (`authorizer.Attributes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Resource {
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    NonResource {
        path: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub target: Target,
}

/// The RBAC objects a decision reads.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub cluster_roles: Vec<Arc<Value>>,
    pub cluster_role_bindings: Vec<Arc<Value>>,
    /// Roles of the request's namespace.
    pub roles: Vec<Arc<Value>>,
    /// RoleBindings of the request's namespace.
    pub role_bindings: Vec<Arc<Value>>,
}

/// The answer: allowed or not, and the reason RBAC gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

fn strings<'a>(object: &'a Value, key: &str) -> Vec<&'a str> {
    object
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `*` or the item itself (`VerbMatches`, `APIGroupMatches`).
fn matches_or_all(list: &[&str], item: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == item)
}

/// `ResourceMatches`: `*`, the exact `resource[/subresource]`, or
/// `*/subresource`.
fn resource_matches(list: &[&str], combined: &str, subresource: &str) -> bool {
    list.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

/// `NonResourceURLMatches`: `*`, the exact path, or a `prefix*`.
fn non_resource_matches(list: &[&str], path: &str) -> bool {
    list.iter().any(|u| {
        *u == "*"
            || *u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// `RuleAllows`.
pub fn rule_allows(attributes: &Attributes, rule: &Value) -> bool {
    if !matches_or_all(&strings(rule, "verbs"), &attributes.verb) {
        return false;
    }
    match &attributes.target {
        Target::Resource {
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            let combined = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let names = strings(rule, "resourceNames");
            matches_or_all(&strings(rule, "apiGroups"), group)
                && resource_matches(&strings(rule, "resources"), &combined, subresource)
                && (names.is_empty() || names.contains(&name.as_str()))
        }
        Target::NonResource { path } => {
            non_resource_matches(&strings(rule, "nonResourceURLs"), path)
        }
    }
}

/// `appliesToUser`: a ServiceAccount subject without a namespace takes
/// the binding's.
fn subject_applies(user: &UserInfo, subject: &Value, binding_namespace: &str) -> bool {
    let name = text(subject, "/name");
    match text(subject, "/kind") {
        "User" => user.name == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let namespace = match text(subject, "/namespace") {
                "" => binding_namespace,
                ns => ns,
            };
            !namespace.is_empty()
                && user.name == format!("system:serviceaccount:{namespace}:{name}")
        }
        _ => false,
    }
}

/// `describeSubject`.
fn describe_subject(subject: &Value, binding_namespace: &str) -> String {
    let kind = text(subject, "/kind");
    let name = text(subject, "/name");
    if kind == "ServiceAccount" {
        let namespace = match text(subject, "/namespace") {
            "" => binding_namespace,
            ns => ns,
        };
        return format!("{kind} {:?}", format!("{name}/{namespace}"));
    }
    format!("{kind} {name:?}")
}

fn named<'a>(objects: &'a [Arc<Value>], name: &str) -> Option<&'a Arc<Value>> {
    objects.iter().find(|o| text(o, "/metadata/name") == name)
}

/// A ClusterRole's rules. An aggregated ClusterRole has the rules of
/// every other ClusterRole its selectors match, which the clusterrole
/// aggregation controller writes into it
/// (`pkg/controller/clusterroleaggregation`); computed here when read.
fn cluster_role_rules(policy: &Policy, role: &Value) -> Vec<Value> {
    let Some(selectors) = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    else {
        return role_rules(role);
    };
    let own = text(role, "/metadata/name");
    let mut rules: Vec<Value> = Vec::new();
    let mut members: Vec<&Arc<Value>> = policy
        .cluster_roles
        .iter()
        .filter(|other| text(other, "/metadata/name") != own)
        .filter(|other| {
            let labels = other.pointer("/metadata/labels").and_then(Value::as_object);
            selectors.iter().any(|s| selector_matches(s, labels))
        })
        .collect();
    members.sort_by_key(|o| text(o, "/metadata/name").to_string());
    for member in members {
        for rule in role_rules(member) {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
    }
    rules
}

fn role_rules(role: &Value) -> Vec<Value> {
    role.get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// One binding that applies to the user, with the rules it grants (or
/// the error of a missing role).
struct Grant {
    source: String,
    rules: Result<Vec<Value>, String>,
}

fn not_found(kind: &str, name: &str) -> String {
    // The listers' NotFound (`errors.NewNotFound(rbac.Resource(kind), name)`).
    format!("{kind}.rbac.authorization.k8s.io {name:?} not found")
}

/// `VisitRulesFor`: the cluster role bindings, then the role bindings of
/// `namespace`.
fn grants(policy: &Policy, user: &UserInfo, namespace: &str) -> Vec<Grant> {
    let mut out = Vec::new();
    for binding in &policy.cluster_role_bindings {
        let subjects = binding
            .get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(subject) = subjects.iter().find(|s| subject_applies(user, s, "")) else {
            continue;
        };
        let role_name = text(binding, "/roleRef/name");
        let rules = if text(binding, "/roleRef/kind") == "ClusterRole" {
            named(&policy.cluster_roles, role_name)
                .map(|role| cluster_role_rules(policy, role))
                .ok_or_else(|| not_found("clusterrole", role_name))
        } else {
            Err(not_found("clusterrole", role_name))
        };
        out.push(Grant {
            source: format!(
                "ClusterRoleBinding {:?} of ClusterRole {role_name:?} to {}",
                text(binding, "/metadata/name"),
                describe_subject(subject, "")
            ),
            rules,
        });
    }
    if namespace.is_empty() {
        return out;
    }
    for binding in &policy.role_bindings {
        let subjects = binding
            .get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(subject) = subjects
            .iter()
            .find(|s| subject_applies(user, s, namespace))
        else {
            continue;
        };
        let role_name = text(binding, "/roleRef/name");
        let kind = text(binding, "/roleRef/kind");
        let rules = match kind {
            "ClusterRole" => named(&policy.cluster_roles, role_name)
                .map(|role| cluster_role_rules(policy, role))
                .ok_or_else(|| not_found("clusterrole", role_name)),
            _ => named(&policy.roles, role_name)
                .map(|role| role_rules(role))
                .ok_or_else(|| not_found("role", role_name)),
        };
        out.push(Grant {
            source: format!(
                "RoleBinding {:?} of {kind} {role_name:?} to {}",
                format!("{}/{namespace}", text(binding, "/metadata/name")),
                describe_subject(subject, namespace)
            ),
            rules,
        });
    }
    out
}

fn namespace_of(attributes: &Attributes) -> &str {
    match &attributes.target {
        Target::Resource { namespace, .. } => namespace,
        Target::NonResource { .. } => "",
    }
}

/// The members of `system:masters` may do anything, before RBAC is asked
/// (`authorizerfactory.NewPrivilegedGroups` in
/// `pkg/kubeapiserver/authorizer/config.go`).
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// RBAC's decision (`RBACAuthorizer.Authorize`): allowed with the binding
/// that allows it, or not with the errors met on the way (missing roles).
pub fn authorize(policy: &Policy, user: &UserInfo, attributes: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let mut errors = Vec::new();
    for grant in grants(policy, user, namespace_of(attributes)) {
        match grant.rules {
            Ok(rules) => {
                if rules.iter().any(|r| rule_allows(attributes, r)) {
                    return Decision {
                        allowed: true,
                        reason: format!("RBAC: allowed by {}", grant.source),
                    };
                }
            }
            Err(e) => errors.push(e),
        }
    }
    // `utilerrors.NewAggregate`: one error as itself, more in brackets.
    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// Every rule that applies to `user` in `namespace`
/// (`SelfSubjectRulesReview`), and whether some could not be read.
pub fn rules_for(policy: &Policy, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<String>) {
    if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
        // What the privileged-group authorizer's `RulesFor` answers.
        let all = serde_json::json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]});
        let urls = serde_json::json!({"verbs": ["*"], "nonResourceURLs": ["*"]});
        return (vec![all, urls], Vec::new());
    }
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for grant in grants(policy, user, namespace) {
        match grant.rules {
            Ok(r) => rules.extend(r),
            Err(e) => errors.push(e),
        }
    }
    (rules, errors)
}

/// The message of a refusal (`forbiddenMessage` and `ForbiddenStatus` in
/// `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`,
/// wrapped by `errors.NewForbidden` of apimachinery): the reason, when
/// RBAC gave one, follows after `: `.
pub fn forbidden_message(user: &UserInfo, attributes: &Attributes, reason: &str) -> String {
    let verb = &attributes.verb;
    let mut message = match &attributes.target {
        Target::NonResource { path } => {
            format!("User {:?} cannot {verb} path {path:?}", user.name)
        }
        Target::Resource {
            group,
            resource,
            subresource,
            namespace,
            ..
        } => {
            let resource = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {namespace:?}")
            };
            format!(
                "User {:?} cannot {verb} resource {resource:?} in API group {group:?} {scope}",
                user.name
            )
        }
    };
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    match &attributes.target {
        Target::NonResource { .. } => format!("forbidden: {message}"),
        Target::Resource {
            group,
            resource,
            name,
            ..
        } => {
            let qualified = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            if name.is_empty() {
                format!("{qualified} is forbidden: {message}")
            } else {
                format!("{qualified} {name:?} is forbidden: {message}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sa(ns: &str, name: &str) -> UserInfo {
        UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        }
    }

    fn resource(verb: &str, group: &str, res: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            target: Target::Resource {
                group: group.into(),
                resource: res.into(),
                subresource: sub.into(),
                namespace: ns.into(),
                name: name.into(),
            },
        }
    }

    fn object(value: Value) -> Arc<Value> {
        Arc::new(value)
    }

    fn policy() -> Policy {
        Policy {
            cluster_roles: vec![
                object(json!({"metadata": {"name": "nodes"}, "rules": [
                    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
                    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
                ]})),
                object(json!({"metadata": {"name": "agg"}, "aggregationRule": {
                    "clusterRoleSelectors": [{"matchLabels": {"to-agg": "true"}}]}})),
                object(
                    json!({"metadata": {"name": "part", "labels": {"to-agg": "true"}}, "rules": [
                        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]},
                        {"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]},
                    ]}),
                ),
            ],
            cluster_role_bindings: vec![
                object(json!({"metadata": {"name": "kubesurge"},
                    "roleRef": {"kind": "ClusterRole", "name": "nodes"},
                    "subjects": [{"kind": "ServiceAccount", "name": "kubesurge", "namespace": "kube-system"}]})),
                object(json!({"metadata": {"name": "agg"},
                    "roleRef": {"kind": "ClusterRole", "name": "agg"},
                    "subjects": [{"kind": "Group", "name": "system:serviceaccounts:kube-system"}]})),
                object(json!({"metadata": {"name": "dangling"},
                    "roleRef": {"kind": "ClusterRole", "name": "gone"},
                    "subjects": [{"kind": "User", "name": "system:serviceaccount:kube-system:kubesurge"}]})),
            ],
            roles: vec![object(
                json!({"metadata": {"name": "lock", "namespace": "kube-system"}, "rules": [
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                     "resourceNames": ["kubesurge"], "verbs": ["get", "update", "watch"]},
                ]}),
            )],
            role_bindings: vec![object(
                json!({"metadata": {"name": "lock", "namespace": "kube-system"},
                    "roleRef": {"kind": "Role", "name": "lock"},
                    "subjects": [{"kind": "ServiceAccount", "name": "kubesurge"}]}),
            )],
        }
    }

    #[test]
    fn rules_match_as_rbac_does() {
        let p = policy();
        let user = sa("kube-system", "kubesurge");
        let allowed = |a: &Attributes| authorize(&p, &user, a).allowed;
        assert!(allowed(&resource("get", "", "nodes", "", "", "n1")));
        assert!(!allowed(&resource("patch", "", "nodes", "", "", "n1")));
        // Subresources are their own resource ...
        assert!(allowed(&resource(
            "create", "", "pods", "eviction", "default", "p"
        )));
        assert!(!allowed(&resource(
            "create", "", "pods", "", "default", "p"
        )));
        // ... and `*/status` matches any resource's status (aggregated in).
        assert!(allowed(&resource("patch", "", "nodes", "status", "", "n1")));
        assert!(!allowed(&resource("patch", "", "nodes", "", "", "n1")));
        // resourceNames: that one object, so never a list, nor another name;
        // a RoleBinding's ServiceAccount subject takes its namespace.
        let lease = |verb: &str, name: &str| {
            resource(
                verb,
                "coordination.k8s.io",
                "leases",
                "",
                "kube-system",
                name,
            )
        };
        assert!(allowed(&lease("get", "kubesurge")));
        assert!(allowed(&lease("watch", "kubesurge")));
        assert!(!allowed(&lease("get", "other")));
        assert!(!allowed(&lease("list", "")));
        assert!(!allowed(&resource(
            "get",
            "coordination.k8s.io",
            "leases",
            "",
            "default",
            "kubesurge"
        )));
        // Non-resource URLs with a trailing wildcard.
        let path = |p: &str| Attributes {
            verb: "get".into(),
            target: Target::NonResource { path: p.into() },
        };
        assert!(allowed(&path("/healthz/etcd")));
        assert!(!allowed(&path("/healthz")));
        // Another ServiceAccount has none of it.
        let other = sa("default", "kubesurge");
        assert!(!authorize(&p, &other, &resource("get", "", "nodes", "", "", "n1")).allowed);
        // Masters may do anything.
        let admin = UserInfo {
            name: "kubernetes-admin".into(),
            groups: vec![PRIVILEGED_GROUP.into()],
        };
        assert!(
            authorize(
                &Policy::default(),
                &admin,
                &resource("delete", "", "nodes", "", "", "n1")
            )
            .allowed
        );
    }

    #[test]
    fn decisions_say_why() {
        let p = policy();
        let user = sa("kube-system", "kubesurge");
        let decision = authorize(&p, &user, &resource("get", "", "nodes", "", "", "n1"));
        assert_eq!(
            decision.reason,
            "RBAC: allowed by ClusterRoleBinding \"kubesurge\" of ClusterRole \"nodes\" to ServiceAccount \"kubesurge/kube-system\""
        );
        let attributes = resource("patch", "", "nodes", "", "", "x");
        let decision = authorize(&p, &user, &attributes);
        assert!(!decision.allowed);
        assert_eq!(
            decision.reason,
            "RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found"
        );
        let message = forbidden_message(&user, &attributes, "");
        assert_eq!(
            message,
            "nodes \"x\" is forbidden: User \"system:serviceaccount:kube-system:kubesurge\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope"
        );
        let list = resource(
            "list",
            "coordination.k8s.io",
            "leases",
            "",
            "kube-system",
            "",
        );
        assert_eq!(
            forbidden_message(&user, &list, ""),
            "leases.coordination.k8s.io is forbidden: User \"system:serviceaccount:kube-system:kubesurge\" cannot list resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"kube-system\""
        );
        let evict = resource("create", "", "pods", "eviction", "default", "p");
        assert_eq!(
            forbidden_message(&sa("default", "x"), &evict, ""),
            "pods \"p\" is forbidden: User \"system:serviceaccount:default:x\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"default\""
        );
        let anonymous = UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        };
        let api = Attributes {
            verb: "get".into(),
            target: Target::NonResource {
                path: "/api".into(),
            },
        };
        assert_eq!(
            forbidden_message(&anonymous, &api, ""),
            "forbidden: User \"system:anonymous\" cannot get path \"/api\""
        );
    }
}
