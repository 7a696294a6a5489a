//! The Rust types of every served resource. k8s-openapi (schemas) and
//! k8s-pb (protobuf) lay their types out under the same module paths
//! (`api::apps::v1::Deployment`), so one table serves both: each row is
//! the resource of `crate::resources`, its API group's module and its
//! kind and list kind. Every served type is `v1`.

/// Calls `$callback! { (RESOURCE, group_module, Kind, KindList), ... }`.
macro_rules! served_kinds {
    ($callback:ident) => {
        $callback! {
            (NAMESPACES, core, Namespace, NamespaceList),
            (NODES, core, Node, NodeList),
            (PODS, core, Pod, PodList),
            (SECRETS, core, Secret, SecretList),
            (CONFIGMAPS, core, ConfigMap, ConfigMapList),
            (EVENTS, core, Event, EventList),
            (SERVICEACCOUNTS, core, ServiceAccount, ServiceAccountList),
            (SERVICES, core, Service, ServiceList),
            (PERSISTENTVOLUMES, core, PersistentVolume, PersistentVolumeList),
            (PERSISTENTVOLUMECLAIMS, core, PersistentVolumeClaim, PersistentVolumeClaimList),
            (EVENTS_V1, events, Event, EventList),
            (LEASES, coordination, Lease, LeaseList),
            (PDBS, policy, PodDisruptionBudget, PodDisruptionBudgetList),
            (DEPLOYMENTS, apps, Deployment, DeploymentList),
            (REPLICASETS, apps, ReplicaSet, ReplicaSetList),
            (DAEMONSETS, apps, DaemonSet, DaemonSetList),
            (CONTROLLERREVISIONS, apps, ControllerRevision, ControllerRevisionList),
            (JOBS, batch, Job, JobList),
            (VOLUMEATTACHMENTS, storage, VolumeAttachment, VolumeAttachmentList),
            (ROLES, rbac, Role, RoleList),
            (CLUSTERROLES, rbac, ClusterRole, ClusterRoleList),
            (ROLEBINDINGS, rbac, RoleBinding, RoleBindingList),
            (CLUSTERROLEBINDINGS, rbac, ClusterRoleBinding, ClusterRoleBindingList),
        }
    };
}

pub(crate) use served_kinds;

/// The bodies subresources take and answer with, besides the resource's
/// own kind: `(subresource, group_module, Kind)`.
macro_rules! subresource_kinds {
    ($callback:ident) => {
        $callback! {
            ("eviction", policy, Eviction),
            ("binding", core, Binding),
            ("scale", autoscaling, Scale),
            ("token", authentication, TokenRequest),
        }
    };
}

pub(crate) use subresource_kinds;

/// Kinds that are created and answered but never stored nor listed (no
/// list kind): `(RESOURCE, group_module, Kind)`.
macro_rules! review_kinds {
    ($callback:ident) => {
        $callback! {
            (SELFSUBJECTACCESSREVIEWS, authorization, SelfSubjectAccessReview),
            (SELFSUBJECTRULESREVIEWS, authorization, SelfSubjectRulesReview),
        }
    };
}

pub(crate) use review_kinds;
