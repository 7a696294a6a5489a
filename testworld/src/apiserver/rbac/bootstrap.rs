//! The roles and bindings a kubeadm cluster has from its first minute,
//! those our flows meet:
//!
//! - the API server's own (its `rbac/bootstrap-roles` post-start hook,
//!   `plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go` and
//!   `controller_policy.go`): `cluster-admin`, `system:discovery`,
//!   `system:basic-user`, `system:public-info-viewer`,
//!   `system:node-bootstrapper`, `system:monitoring`;
//! - kubeadm's (`kubeadm init` phases `bootstrap-token` and
//!   `upload-config`, `cmd/kubeadm/app/phases/bootstraptoken/clusterinfo`,
//!   `.../bootstraptoken/node/tlsbootstrap.go`,
//!   `.../uploadconfig/uploadconfig.go`, `.../kubelet/config.go`,
//!   `cmd/kubeadm/app/phases/kubeconfig`): anonymous read of
//!   `cluster-info`, what a joining node's bootstrap token reads
//!   (`kubeadm-config`, `kubelet-config`, nodes) and the
//!   `kubeadm:cluster-admins` group.

use serde_json::{Value, json};

use crate::resources::{CLUSTERROLEBINDINGS, CLUSTERROLES, ROLEBINDINGS, ROLES, Resource};
use crate::store::Store;

/// Group of a kubeadm default bootstrap token.
const DEFAULT_NODE_TOKEN: &str = "system:bootstrappers:kubeadm:default-node-token";

fn defaults_meta(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"metadata": defaults_meta(name), "rules": rules})
}

fn cluster_role_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "metadata": defaults_meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn kubeadm_meta(name: &str, namespace: &str) -> Value {
    let mut meta = json!({"name": name});
    if !namespace.is_empty() {
        meta["namespace"] = json!(namespace);
    }
    meta
}

/// `get` of one ConfigMap, as kubeadm's Roles grant.
fn get_configmap(name: &str) -> Value {
    json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [name], "verbs": ["get"]}])
}

/// `(resource, namespace, object)` of every default.
fn defaults() -> Vec<(&'static Resource, &'static str, Value)> {
    let kubeadm_readers = json!([group(DEFAULT_NODE_TOKEN), group("system:nodes")]);
    vec![
        (
            &CLUSTERROLES,
            "",
            cluster_role(
                "cluster-admin",
                json!([
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ]),
            ),
        ),
        (
            &CLUSTERROLEBINDINGS,
            "",
            cluster_role_binding(
                "cluster-admin",
                "cluster-admin",
                json!([group("system:masters")]),
            ),
        ),
        (
            &CLUSTERROLES,
            "",
            cluster_role(
                "system:discovery",
                json!([{"nonResourceURLs": [
                    "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                    "/openapi", "/openapi/*", "/readyz", "/version", "/version/"
                ], "verbs": ["get"]}]),
            ),
        ),
        (
            &CLUSTERROLEBINDINGS,
            "",
            cluster_role_binding(
                "system:discovery",
                "system:discovery",
                json!([group("system:authenticated")]),
            ),
        ),
        (
            &CLUSTERROLES,
            "",
            cluster_role(
                "system:basic-user",
                json!([
                    {"apiGroups": ["authorization.k8s.io"],
                     "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                     "verbs": ["create"]},
                    {"apiGroups": ["authentication.k8s.io"],
                     "resources": ["selfsubjectreviews"], "verbs": ["create"]},
                ]),
            ),
        ),
        (
            &CLUSTERROLEBINDINGS,
            "",
            cluster_role_binding(
                "system:basic-user",
                "system:basic-user",
                json!([group("system:authenticated")]),
            ),
        ),
        (
            &CLUSTERROLES,
            "",
            cluster_role(
                "system:public-info-viewer",
                json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                        "verbs": ["get"]}]),
            ),
        ),
        (
            &CLUSTERROLEBINDINGS,
            "",
            cluster_role_binding(
                "system:public-info-viewer",
                "system:public-info-viewer",
                json!([
                    group("system:authenticated"),
                    group("system:unauthenticated")
                ]),
            ),
        ),
        (
            &CLUSTERROLES,
            "",
            cluster_role(
                "system:monitoring",
                json!([{"nonResourceURLs": [
                    "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics",
                    "/metrics/slis", "/readyz", "/readyz/*"
                ], "verbs": ["get"]}]),
            ),
        ),
        (
            &CLUSTERROLEBINDINGS,
            "",
            cluster_role_binding(
                "system:monitoring",
                "system:monitoring",
                json!([group("system:monitoring")]),
            ),
        ),
        (
            &CLUSTERROLES,
            "",
            cluster_role(
                "system:node-bootstrapper",
                json!([{"apiGroups": ["certificates.k8s.io"],
                        "resources": ["certificatesigningrequests"],
                        "verbs": ["create", "get", "list", "watch"]}]),
            ),
        ),
        // kubeadm's.
        (
            &CLUSTERROLEBINDINGS,
            "",
            json!({
                "metadata": kubeadm_meta("kubeadm:cluster-admins", ""),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [group("kubeadm:cluster-admins")],
            }),
        ),
        (
            &CLUSTERROLEBINDINGS,
            "",
            json!({
                "metadata": kubeadm_meta("kubeadm:kubelet-bootstrap", ""),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-bootstrapper"},
                "subjects": [group(DEFAULT_NODE_TOKEN)],
            }),
        ),
        (
            &CLUSTERROLES,
            "",
            json!({
                "metadata": kubeadm_meta("kubeadm:get-nodes", ""),
                "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
            }),
        ),
        (
            &CLUSTERROLEBINDINGS,
            "",
            json!({
                "metadata": kubeadm_meta("kubeadm:get-nodes", ""),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeadm:get-nodes"},
                "subjects": [group(DEFAULT_NODE_TOKEN)],
            }),
        ),
        (
            &ROLES,
            "kube-public",
            json!({
                "metadata": kubeadm_meta("kubeadm:bootstrap-signer-clusterinfo", "kube-public"),
                "rules": get_configmap("cluster-info"),
            }),
        ),
        (
            &ROLEBINDINGS,
            "kube-public",
            json!({
                "metadata": kubeadm_meta("kubeadm:bootstrap-signer-clusterinfo", "kube-public"),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeadm:bootstrap-signer-clusterinfo"},
                "subjects": [user("system:anonymous")],
            }),
        ),
        (
            &ROLES,
            "kube-system",
            json!({
                "metadata": kubeadm_meta("kubeadm:nodes-kubeadm-config", "kube-system"),
                "rules": get_configmap("kubeadm-config"),
            }),
        ),
        (
            &ROLEBINDINGS,
            "kube-system",
            json!({
                "metadata": kubeadm_meta("kubeadm:nodes-kubeadm-config", "kube-system"),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeadm:nodes-kubeadm-config"},
                "subjects": kubeadm_readers,
            }),
        ),
        (
            &ROLES,
            "kube-system",
            json!({
                "metadata": kubeadm_meta("kubeadm:kubelet-config", "kube-system"),
                "rules": get_configmap("kubelet-config"),
            }),
        ),
        (
            &ROLEBINDINGS,
            "kube-system",
            json!({
                "metadata": kubeadm_meta("kubeadm:kubelet-config", "kube-system"),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeadm:kubelet-config"},
                "subjects": kubeadm_readers,
            }),
        ),
    ]
}

/// Create the defaults that are missing (a restarted server finds them).
pub fn ensure(store: &Store) {
    for (resource, namespace, object) in defaults() {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if store.get(resource, namespace, &name).is_none() {
            // AlreadyExists from a concurrent creator is fine.
            let _ = store.create(resource, namespace, object);
        }
    }
}
