//! The resource types the emulator serves: one table, used by the store,
//! the HTTP routes, discovery and the controllers.

/// A Kubernetes resource type.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Lower-case plural, as in URLs (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub namespaced: bool,
    /// Subresources served besides the object itself (`status`, `eviction`).
    pub subresources: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Resource {
    /// `apiVersion` of objects of this type (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, `leases.coordination.k8s.io`: the name Status messages use.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

macro_rules! resource {
    ($name:ident, $group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $namespaced:expr, $subs:expr, $short:expr) => {
        resource!(
            $name,
            $group,
            $version,
            $plural,
            $singular,
            $kind,
            $namespaced,
            $subs,
            $short,
            ALL_VERBS
        );
    };
    ($name:ident, $group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $namespaced:expr, $subs:expr, $short:expr, $verbs:expr) => {
        pub static $name: Resource = Resource {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            list_kind: concat!($kind, "List"),
            namespaced: $namespaced,
            subresources: $subs,
            short_names: $short,
            verbs: $verbs,
        };
    };
}

resource!(
    NAMESPACES,
    "",
    "v1",
    "namespaces",
    "namespace",
    "Namespace",
    false,
    &["status"],
    &["ns"]
);
resource!(
    NODES,
    "",
    "v1",
    "nodes",
    "node",
    "Node",
    false,
    &["status"],
    &["no"]
);
resource!(
    PODS,
    "",
    "v1",
    "pods",
    "pod",
    "Pod",
    true,
    &["status", "eviction", "binding"],
    &["po"]
);
resource!(
    SECRETS,
    "",
    "v1",
    "secrets",
    "secret",
    "Secret",
    true,
    &[],
    &[]
);
resource!(
    CONFIGMAPS,
    "",
    "v1",
    "configmaps",
    "configmap",
    "ConfigMap",
    true,
    &[],
    &["cm"]
);
resource!(
    EVENTS,
    "",
    "v1",
    "events",
    "event",
    "Event",
    true,
    &[],
    &["ev"]
);
resource!(
    SERVICEACCOUNTS,
    "",
    "v1",
    "serviceaccounts",
    "serviceaccount",
    "ServiceAccount",
    true,
    &["token"],
    &["sa"]
);
resource!(
    SERVICES,
    "",
    "v1",
    "services",
    "service",
    "Service",
    true,
    &["status"],
    &["svc"]
);
// Storage (`k8s.io/api/core/v1` PersistentVolume, PersistentVolumeClaim):
// a PersistentVolume is cluster-scoped, its claim namespaced, both with a
// status subresource (`pkg/registry/core/persistentvolume{,claim}/storage`).
resource!(
    PERSISTENTVOLUMES,
    "",
    "v1",
    "persistentvolumes",
    "persistentvolume",
    "PersistentVolume",
    false,
    &["status"],
    &["pv"]
);
resource!(
    PERSISTENTVOLUMECLAIMS,
    "",
    "v1",
    "persistentvolumeclaims",
    "persistentvolumeclaim",
    "PersistentVolumeClaim",
    true,
    &["status"],
    &["pvc"]
);
// Jobs (`k8s.io/api/batch/v1` Job): namespaced, with a status subresource
// (`pkg/registry/batch/job/storage/storage.go`).
resource!(
    JOBS,
    "batch",
    "v1",
    "jobs",
    "job",
    "Job",
    true,
    &["status"],
    &[]
);
resource!(
    EVENTS_V1,
    "events.k8s.io",
    "v1",
    "events",
    "event",
    "Event",
    true,
    &[],
    &["ev"]
);
resource!(
    LEASES,
    "coordination.k8s.io",
    "v1",
    "leases",
    "lease",
    "Lease",
    true,
    &[],
    &[]
);
resource!(
    PDBS,
    "policy",
    "v1",
    "poddisruptionbudgets",
    "poddisruptionbudget",
    "PodDisruptionBudget",
    true,
    &["status"],
    &["pdb"]
);
resource!(
    DEPLOYMENTS,
    "apps",
    "v1",
    "deployments",
    "deployment",
    "Deployment",
    true,
    &["status", "scale"],
    &["deploy"]
);
resource!(
    REPLICASETS,
    "apps",
    "v1",
    "replicasets",
    "replicaset",
    "ReplicaSet",
    true,
    &["status", "scale"],
    &["rs"]
);
resource!(
    DAEMONSETS,
    "apps",
    "v1",
    "daemonsets",
    "daemonset",
    "DaemonSet",
    true,
    &["status"],
    &["ds"]
);
resource!(
    CONTROLLERREVISIONS,
    "apps",
    "v1",
    "controllerrevisions",
    "controllerrevision",
    "ControllerRevision",
    true,
    &[],
    &[]
);
resource!(
    VOLUMEATTACHMENTS,
    "storage.k8s.io",
    "v1",
    "volumeattachments",
    "volumeattachment",
    "VolumeAttachment",
    false,
    &["status"],
    &[]
);

// RBAC (`k8s.io/api/rbac/v1`), served like any stored kind.
resource!(
    ROLES,
    "rbac.authorization.k8s.io",
    "v1",
    "roles",
    "role",
    "Role",
    true,
    &[],
    &[]
);
resource!(
    CLUSTERROLES,
    "rbac.authorization.k8s.io",
    "v1",
    "clusterroles",
    "clusterrole",
    "ClusterRole",
    false,
    &[],
    &[]
);
resource!(
    ROLEBINDINGS,
    "rbac.authorization.k8s.io",
    "v1",
    "rolebindings",
    "rolebinding",
    "RoleBinding",
    true,
    &[],
    &[]
);
resource!(
    CLUSTERROLEBINDINGS,
    "rbac.authorization.k8s.io",
    "v1",
    "clusterrolebindings",
    "clusterrolebinding",
    "ClusterRoleBinding",
    false,
    &[],
    &[]
);

/// What the review kinds allow: they are created and answered, never
/// stored (`pkg/registry/authorization/*/rest.go`).
const CREATE_ONLY: &[&str] = &["create"];

resource!(
    SELFSUBJECTACCESSREVIEWS,
    "authorization.k8s.io",
    "v1",
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    "SelfSubjectAccessReview",
    false,
    &[],
    &[],
    CREATE_ONLY
);
resource!(
    SELFSUBJECTRULESREVIEWS,
    "authorization.k8s.io",
    "v1",
    "selfsubjectrulesreviews",
    "selfsubjectrulesreview",
    "SelfSubjectRulesReview",
    false,
    &[],
    &[],
    CREATE_ONLY
);

impl Resource {
    /// A kind that is only ever created and answered (the reviews).
    pub fn create_only(&self) -> bool {
        self.verbs == CREATE_ONLY
    }
}

/// Every resource the emulator serves.
pub static ALL: &[&Resource] = &[
    &NAMESPACES,
    &NODES,
    &PODS,
    &SECRETS,
    &CONFIGMAPS,
    &EVENTS,
    &SERVICEACCOUNTS,
    &SERVICES,
    &PERSISTENTVOLUMES,
    &PERSISTENTVOLUMECLAIMS,
    &EVENTS_V1,
    &LEASES,
    &PDBS,
    &DEPLOYMENTS,
    &REPLICASETS,
    &DAEMONSETS,
    &CONTROLLERREVISIONS,
    &JOBS,
    &VOLUMEATTACHMENTS,
    &ROLES,
    &CLUSTERROLES,
    &ROLEBINDINGS,
    &CLUSTERROLEBINDINGS,
    &SELFSUBJECTACCESSREVIEWS,
    &SELFSUBJECTRULESREVIEWS,
];

/// The API group of a k8s-openapi / k8s-pb module name (`core` → `""`,
/// `rbac` → `rbac.authorization.k8s.io`).
pub fn module_group(module: &str) -> &str {
    match module {
        "core" => "",
        "authentication" => "authentication.k8s.io",
        "authorization" => "authorization.k8s.io",
        "coordination" => "coordination.k8s.io",
        "events" => "events.k8s.io",
        "rbac" => "rbac.authorization.k8s.io",
        "storage" => "storage.k8s.io",
        other => other,
    }
}

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of an object's `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    ALL.iter()
        .copied()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}
