//! Objects decoded only as far as the engine reads them.
//!
//! A watch event or a list item is decoded into a type that declares the
//! fields some reader uses; serde's JSON decoder skips the others without
//! allocating them. The type is then made the `k8s-openapi` object the
//! rest of the engine takes, with the skipped fields empty. On a real
//! cluster most of a Pod (containers, container statuses) and of a Node
//! (`status.images`, up to 50 entries) is never read, and every object's
//! `managedFields` is dropped.

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use serde::Deserialize;

/// Implement `kube::Resource` for `$decoded` with the API names of `$as`
/// (kind, group, version, plural, scope), so it can be listed and watched
/// through an `Api` as that kind.
macro_rules! resource_as {
    ($decoded:ty, $as:ty) => {
        impl ::kube::Resource for $decoded {
            type DynamicType = ();
            type Scope = <$as as ::kube::Resource>::Scope;

            fn kind(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$as as ::kube::Resource>::kind(dt)
            }
            fn group(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$as as ::kube::Resource>::group(dt)
            }
            fn version(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$as as ::kube::Resource>::version(dt)
            }
            fn plural(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$as as ::kube::Resource>::plural(dt)
            }
            fn meta(&self) -> &::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut ::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use resource_as;

/// `event` with its object made a `K`.
pub fn map_event<D, K>(event: watcher::Event<D>, into: fn(D) -> K) -> watcher::Event<K> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(into(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(into(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(into(object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// A pod as a drain reads it: its metadata (owners, annotations,
/// deletion), its node, volumes and grace period, and its phase — what
/// kubectl's drain filters and the eviction loop decide on.
#[derive(Clone, Debug, Deserialize)]
pub struct DrainPod {
    metadata: ObjectMeta,
    spec: Option<DrainPodSpec>,
    status: Option<DrainPodStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DrainPodSpec {
    node_name: Option<String>,
    volumes: Option<Vec<Volume>>,
    termination_grace_period_seconds: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
struct DrainPodStatus {
    phase: Option<String>,
}

resource_as!(DrainPod, Pod);

impl From<DrainPod> for Pod {
    fn from(pod: DrainPod) -> Pod {
        let mut metadata = pod.metadata;
        metadata.managed_fields = None;
        Pod {
            metadata,
            spec: pod.spec.map(|spec| PodSpec {
                node_name: spec.node_name,
                volumes: spec.volumes,
                termination_grace_period_seconds: spec.termination_grace_period_seconds,
                ..PodSpec::default()
            }),
            status: pod.status.map(|status| PodStatus {
                phase: status.phase,
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::drain::{PodRules, UnmanagedPods, decide};
    use crate::kube::pods;
    use serde_json::{Value, json};

    fn pod(metadata: Value, phase: &str) -> Value {
        json!({
            "metadata": metadata,
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 45,
                "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "scratch", "emptyDir": {}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}]},
            "status": {"phase": phase, "podIP": "10.0.0.1",
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true,
                    "restartCount": 0}]}
        })
    }

    #[test]
    fn a_drain_pod_is_decided_as_the_whole_pod() {
        let owned = |kind: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": "o", "uid": "r", "controller": true}]);
        let cases = [
            pod(
                json!({"name": "a", "namespace": "s", "uid": "1", "ownerReferences": owned("ReplicaSet"),
                "managedFields": [{"manager": "kubelet"}]}),
                "Running",
            ),
            pod(
                json!({"name": "b", "namespace": "s", "uid": "2", "ownerReferences": owned("DaemonSet")}),
                "Running",
            ),
            pod(
                json!({"name": "c", "namespace": "s", "uid": "3",
                "annotations": {"kubernetes.io/config.mirror": "x"}}),
                "Running",
            ),
            pod(
                json!({"name": "d", "namespace": "s", "uid": "4"}),
                "Succeeded",
            ),
            pod(
                json!({"name": "e", "namespace": "s", "uid": "5", "ownerReferences": owned("ReplicaSet"),
                "deletionTimestamp": "2026-01-01T00:00:00Z"}),
                "Running",
            ),
        ];
        let rules = PodRules::without_local_claims(UnmanagedPods::Fail);
        for object in cases {
            let whole: Pod = serde_json::from_value(object.clone()).unwrap();
            let decoded: Pod = serde_json::from_value::<DrainPod>(object).unwrap().into();
            assert_eq!(
                decide(&whole, &rules),
                decide(&decoded, &rules),
                "{whole:?}"
            );
            assert_eq!(pods::node_name(&decoded), Some("n1"));
            assert_eq!(pods::phase(&decoded), pods::phase(&whole));
            let spec = decoded.spec.unwrap();
            assert_eq!(spec.termination_grace_period_seconds, Some(45));
            assert_eq!(spec.volumes, whole.spec.unwrap().volumes);
            assert!(spec.containers.is_empty());
            assert!(decoded.metadata.managed_fields.is_none());
        }
    }
}
