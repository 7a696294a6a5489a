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
            verbs: ALL_VERBS,
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
    &[],
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
    &EVENTS_V1,
    &LEASES,
    &PDBS,
    &DEPLOYMENTS,
    &REPLICASETS,
    &DAEMONSETS,
    &CONTROLLERREVISIONS,
    &VOLUMEATTACHMENTS,
];

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
