//! `meta.k8s.io/v1 Table` answers, which `kubectl get` asks for: the
//! columns and cell formats of the real server-side printers for nodes and
//! pods (and a few more), NAME/AGE for the rest.

use std::sync::Arc;

use http::{HeaderMap, header};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::route::Query;
use crate::resources::Resource;

/// What each row's `object` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// A client asked for a Table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRequest {
    pub api_version: &'static str,
    pub include: IncludeObject,
}

impl TableRequest {
    /// From `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, …` and
    /// `includeObject`. The first acceptable media range wins, as in
    /// content negotiation.
    pub fn from_headers(headers: &HeaderMap, query: &Query) -> Option<TableRequest> {
        let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
            let param = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
            if param("as") == Some("Table") && param("g") == Some("meta.k8s.io") {
                let api_version = match param("v") {
                    Some("v1") => "meta.k8s.io/v1",
                    Some("v1beta1") => "meta.k8s.io/v1beta1",
                    _ => continue,
                };
                if media != "application/json" && media != "*/*" {
                    continue;
                }
                let include = match query.get("includeObject") {
                    Some("None") => IncludeObject::None,
                    Some("Object") => IncludeObject::Object,
                    _ => IncludeObject::Metadata,
                };
                return Some(TableRequest {
                    api_version,
                    include,
                });
            }
            // A plain JSON range before any Table range: plain JSON.
            if media == "application/json" && param("as").is_none() {
                return None;
            }
        }
        None
    }
}

/// Did the client ask for `PartialObjectMetadata` (kube-rs `get_metadata`,
/// `list_metadata`, `metadata_watcher`)?
pub fn wants_partial_metadata(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) else {
        return false;
    };
    let Some(first) = accept.split(',').next() else {
        return false;
    };
    let params: Vec<&str> = first.split(';').skip(1).map(str::trim).collect();
    params
        .iter()
        .any(|p| *p == "as=PartialObjectMetadata" || *p == "as=PartialObjectMetadataList")
        && params.contains(&"g=meta.k8s.io")
}

/// An object as `meta.k8s.io/v1 PartialObjectMetadata`.
pub fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Kubernetes' `HumanDuration` (apimachinery `util/duration`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(object: &Value, now: Timestamp) -> String {
    match object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        Some(created) => human_duration(now.as_second() - created.as_second()),
        None => "<unknown>".into(),
    }
}

fn s<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.to_string()
    }
}

fn column(name: &str, kind: &str, format: &str, priority: u32, description: &str) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn columns(resource: &Resource) -> Vec<Value> {
    let name = column("Name", "string", "name", 0, NAME_DESCRIPTION);
    let age = column("Age", "string", "", 0, AGE_DESCRIPTION);
    match (resource.group, resource.plural) {
        ("", "nodes") => vec![
            name,
            column("Status", "string", "", 0, "The status of the node"),
            column("Roles", "string", "", 0, "The roles of the node"),
            age,
            column(
                "Version",
                "string",
                "",
                0,
                "Kubelet Version reported by the node.",
            ),
            column(
                "Internal-IP",
                "string",
                "",
                1,
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            column(
                "External-IP",
                "string",
                "",
                1,
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            column(
                "OS-Image",
                "string",
                "",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            column(
                "Kernel-Version",
                "string",
                "",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            column(
                "Container-Runtime",
                "string",
                "",
                1,
                "Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        ("", "pods") => vec![
            name,
            column(
                "Ready",
                "string",
                "",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            column(
                "Status",
                "string",
                "",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            column(
                "Restarts",
                "string",
                "",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age,
            column(
                "IP",
                "string",
                "",
                1,
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            column(
                "Node",
                "string",
                "",
                1,
                "NodeName is a request to schedule this pod onto a specific node.",
            ),
            column(
                "Nominated Node",
                "string",
                "",
                1,
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            column(
                "Readiness Gates",
                "string",
                "",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        ("", "namespaces") => vec![
            name,
            column("Status", "string", "", 0, "The status of the namespace"),
            age,
        ],
        ("", "configmaps") => vec![
            name,
            column(
                "Data",
                "integer",
                "",
                0,
                "Data contains the configuration data.",
            ),
            age,
        ],
        ("", "secrets") => vec![
            name,
            column(
                "Type",
                "string",
                "",
                0,
                "Used to facilitate programmatic handling of secret data.",
            ),
            column("Data", "integer", "", 0, "Data contains the secret data."),
            age,
        ],
        ("policy", "poddisruptionbudgets") => vec![
            name,
            column(
                "Min Available",
                "string",
                "",
                0,
                "The minimum number of pods that must be available simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
            ),
            column(
                "Max Unavailable",
                "string",
                "",
                0,
                "The maximum number of pods that may be unavailable simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
            ),
            column(
                "Allowed Disruptions",
                "integer",
                "",
                0,
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age,
        ],
        ("coordination.k8s.io", "leases") => vec![
            name,
            column("Holder", "string", "", 0, "The holder of the lease"),
            age,
        ],
        // `pkg/printers/internalversion/printers.go` column definitions.
        ("apps", "deployments") => {
            let mut c = vec![
                name,
                column(
                    "Ready",
                    "string",
                    "",
                    0,
                    "Number of the pod with ready state",
                ),
                column(
                    "Up-to-date",
                    "string",
                    "",
                    0,
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                column(
                    "Available",
                    "string",
                    "",
                    0,
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                age,
            ];
            c.extend(workload_wide_columns());
            c
        }
        ("batch", "jobs") => {
            let mut c = vec![
                name,
                column("Status", "string", "", 0, "Status of the job."),
                column(
                    "Completions",
                    "string",
                    "",
                    0,
                    "The completion status of the job.",
                ),
                column(
                    "Duration",
                    "string",
                    "",
                    0,
                    "Time required to complete the job.",
                ),
                age,
            ];
            c.extend(workload_wide_columns());
            c
        }
        ("apps", "replicasets") => {
            let mut c = vec![
                name,
                column(
                    "Desired",
                    "integer",
                    "",
                    0,
                    "Replicas is the number of desired replicas.",
                ),
                column(
                    "Current",
                    "integer",
                    "",
                    0,
                    "Replicas is the most recently observed number of replicas.",
                ),
                column(
                    "Ready",
                    "integer",
                    "",
                    0,
                    "The number of ready replicas for this replica set.",
                ),
                age,
            ];
            c.extend(workload_wide_columns());
            c
        }
        ("apps", "daemonsets") => {
            let mut c = vec![
                name,
                column(
                    "Desired",
                    "integer",
                    "",
                    0,
                    "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
                ),
                column(
                    "Current",
                    "integer",
                    "",
                    0,
                    "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                ),
                column(
                    "Ready",
                    "integer",
                    "",
                    0,
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                ),
                column(
                    "Up-to-date",
                    "integer",
                    "",
                    0,
                    "The total number of nodes that are running updated daemon pod",
                ),
                column(
                    "Available",
                    "integer",
                    "",
                    0,
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
                ),
                column(
                    "Node Selector",
                    "string",
                    "",
                    0,
                    "NodeSelector is a selector which must be true for the pod to fit on a node.",
                ),
                age,
            ];
            c.extend(workload_wide_columns());
            c
        }
        ("", "services") => vec![
            name,
            column("Type", "string", "", 0, "The type of service."),
            column("Cluster-IP", "string", "", 0, "The IP of the service."),
            column(
                "External-IP",
                "string",
                "",
                0,
                "The external IP of the service.",
            ),
            column("Port(s)", "string", "", 0, "The ports the service exposes."),
            age,
            column(
                "Selector",
                "string",
                "",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        ("", "events") => vec![
            column(
                "Last Seen",
                "string",
                "",
                0,
                "Time when this Event was last seen",
            ),
            column(
                "Type",
                "string",
                "",
                0,
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            column(
                "Reason",
                "string",
                "",
                0,
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            column(
                "Object",
                "string",
                "",
                0,
                "The object that this event is about.",
            ),
            column(
                "Subobject",
                "string",
                "",
                1,
                "The subobject that this event is about.",
            ),
            column(
                "Source",
                "string",
                "",
                1,
                "The component reporting this event. Should be a short machine understandable string.",
            ),
            column(
                "Message",
                "string",
                "",
                0,
                "A human-readable description of the status of this operation.",
            ),
            column(
                "First Seen",
                "string",
                "",
                1,
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            ),
            column(
                "Count",
                "string",
                "",
                1,
                "The number of times this event has occurred.",
            ),
            column("Name", "string", "name", 1, NAME_DESCRIPTION),
        ],
        _ => vec![name, age],
    }
}

fn workload_wide_columns() -> Vec<Value> {
    vec![
        column(
            "Containers",
            "string",
            "",
            1,
            "Names of each container in the template.",
        ),
        column(
            "Images",
            "string",
            "",
            1,
            "Images referenced by each container in the template.",
        ),
        column(
            "Selector",
            "string",
            "",
            1,
            "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        ),
    ]
}

/// A Job's STATUS column (`pkg/printers/internalversion/printers.go`
/// printJob): its terminal or interim condition, else `Suspended`,
/// `Terminating` or `Running`.
fn job_status(job: &Value) -> &'static str {
    let has = |kind: &str| {
        job.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == kind && c["status"] == "True")
            })
    };
    for kind in [
        "Complete",
        "Failed",
        "Suspended",
        "FailureTarget",
        "SuccessCriteriaMet",
    ] {
        if has(kind) {
            return kind;
        }
    }
    if int_at(job, "/status/terminating") > 0 {
        "Terminating"
    } else {
        "Running"
    }
}

/// From `startTime` to `completionTime`, or to now while it runs.
fn job_duration(job: &Value, now: Timestamp) -> String {
    let at = |p: &str| s(job, p).parse::<Timestamp>().ok();
    match at("/status/startTime") {
        Some(start) => {
            let end = at("/status/completionTime").unwrap_or(now);
            human_duration(end.as_second() - start.as_second())
        }
        None => String::new(),
    }
}

fn int_at(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Containers, images and selector text of a workload's template.
fn workload_wide_cells(object: &Value) -> Vec<Value> {
    let containers: Vec<&Value> = object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    vec![
        json!(names.join(",")),
        json!(images.join(",")),
        json!(or_none(&selector)),
    ]
}

/// `printService`: external IPs by type, ports as `port[:nodePort]/proto`.
fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    let kind = s(service, "/spec/type");
    let external = match kind {
        "ExternalName" => s(service, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            let ingress: Vec<&str> = service
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|i| {
                    i.iter()
                        .map(|x| {
                            let ip = s(x, "/ip");
                            if ip.is_empty() { s(x, "/hostname") } else { ip }
                        })
                        .collect()
                })
                .unwrap_or_default();
            if ingress.is_empty() {
                "<pending>".into()
            } else {
                ingress.join(",")
            }
        }
        _ => "<none>".into(),
    };
    let ports: Vec<String> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let selector = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    vec![
        json!(s(service, "/metadata/name")),
        json!(kind),
        json!(or_none(s(service, "/spec/clusterIP"))),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        json!(age(service, now)),
        json!(or_none(&selector)),
    ]
}

/// A time stamp as kubectl's "ago" text, `<unknown>` when absent.
fn since(stamp: &str, now: Timestamp) -> String {
    match stamp.parse::<Timestamp>() {
        Ok(t) => human_duration(now.as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// `printEvent`: last seen from the series, the last time stamp or the
/// event time; object as `kind/name`.
fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let last = ["/series/lastObservedTime", "/lastTimestamp", "/eventTime"]
        .iter()
        .map(|p| s(event, p))
        .find(|t| !t.is_empty())
        .unwrap_or("");
    let first = ["/firstTimestamp", "/eventTime"]
        .iter()
        .map(|p| s(event, p))
        .find(|t| !t.is_empty())
        .unwrap_or("");
    let object = format!(
        "{}/{}",
        s(event, "/involvedObject/kind").to_lowercase(),
        s(event, "/involvedObject/name")
    );
    let component = [
        s(event, "/source/component"),
        s(event, "/reportingComponent"),
    ]
    .into_iter()
    .find(|c| !c.is_empty())
    .unwrap_or("");
    let host = s(event, "/source/host");
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    let count = event
        .pointer("/series/count")
        .or_else(|| event.pointer("/count"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    vec![
        json!(since(last, now)),
        json!(s(event, "/type")),
        json!(s(event, "/reason")),
        json!(object),
        json!(s(event, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(event, "/message").trim()),
        json!(since(first, now)),
        json!(count.to_string()),
        json!(s(event, "/metadata/name")),
    ]
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(ready) = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
    {
        status.push(if ready["status"] == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        (!role.is_empty()).then(|| role.to_string())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().filter(|r| !r.is_empty()).map(String::from)
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles.dedup();
    let address = |kind: &str| {
        node.pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x["type"] == kind))
            .and_then(|x| x["address"].as_str())
            .unwrap_or("")
            .to_string()
    };
    vec![
        json!(s(node, "/metadata/name")),
        json!(status.join(",")),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(age(node, now)),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(or_none(&address("InternalIP"))),
        json!(or_none(&address("ExternalIP"))),
        json!(or_none(s(node, "/status/nodeInfo/osImage"))),
        json!(or_none(s(node, "/status/nodeInfo/kernelVersion"))),
        json!(or_none(s(node, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

/// The STATUS column of `kubectl get pods` (a subset of `printPod`).
fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, "/status/phase").to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut has_running = false;
    for c in statuses.iter().rev() {
        let waiting = c
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let terminated = c.pointer("/state/terminated");
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if let Some(t) = terminated {
            reason = match t
                .get("reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                Some(r) => r.to_string(),
                None => match t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
                    Some(sig) => format!("Signal:{sig}"),
                    None => format!(
                        "ExitCode:{}",
                        t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                    ),
                },
            };
        } else if c.get("ready").and_then(Value::as_bool) == Some(true)
            && c.pointer("/state/running").is_some()
        {
            has_running = true;
        }
    }
    if reason == "Completed" && has_running {
        reason = "Running".into();
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if s(pod, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    let ready = statuses
        .map(|cs| cs.iter().filter(|c| c["ready"] == true).count())
        .unwrap_or(0);
    let restarts: i64 = statuses
        .map(|cs| cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum())
        .unwrap_or(0);
    let gates = pod
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .map(|g| g.len())
        .unwrap_or(0);
    let gates_cell = if gates == 0 {
        "<none>".to_string()
    } else {
        let conditions = pod.pointer("/status/conditions").and_then(Value::as_array);
        let true_count = pod
            .pointer("/spec/readinessGates")
            .and_then(Value::as_array)
            .map(|gs| {
                gs.iter()
                    .filter(|g| {
                        conditions.is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
                        })
                    })
                    .count()
            })
            .unwrap_or(0);
        format!("{true_count}/{gates}")
    };
    vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts.to_string()),
        json!(age(pod, now)),
        json!(or_none(s(pod, "/status/podIP"))),
        json!(or_none(s(pod, "/spec/nodeName"))),
        json!(or_none(s(pod, "/status/nominatedNodeName"))),
        json!(gates_cell),
    ]
}

fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".into(),
    }
}

fn cells(resource: &Resource, object: &Value, now: Timestamp) -> Vec<Value> {
    let name = json!(s(object, "/metadata/name"));
    let count = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_object)
            .map(Map::len)
            .unwrap_or(0)
            + object
                .pointer("/binaryData")
                .and_then(Value::as_object)
                .filter(|_| p == "/data")
                .map(Map::len)
                .unwrap_or(0)
    };
    match (resource.group, resource.plural) {
        ("", "nodes") => node_cells(object, now),
        ("", "pods") => pod_cells(object, now),
        ("", "namespaces") => vec![
            name,
            json!(s(object, "/status/phase")),
            json!(age(object, now)),
        ],
        ("", "configmaps") => vec![name, json!(count("/data")), json!(age(object, now))],
        ("", "secrets") => vec![
            name,
            json!(s(object, "/type")),
            json!(
                object
                    .pointer("/data")
                    .and_then(Value::as_object)
                    .map(Map::len)
                    .unwrap_or(0)
            ),
            json!(age(object, now)),
        ],
        ("policy", "poddisruptionbudgets") => vec![
            name,
            json!(int_or_string(object.pointer("/spec/minAvailable"))),
            json!(int_or_string(object.pointer("/spec/maxUnavailable"))),
            json!(
                object
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            ),
            json!(age(object, now)),
        ],
        ("coordination.k8s.io", "leases") => vec![
            name,
            json!(s(object, "/spec/holderIdentity")),
            json!(age(object, now)),
        ],
        ("apps", "deployments") => {
            let mut c = vec![
                name,
                json!(format!(
                    "{}/{}",
                    int_at(object, "/status/readyReplicas"),
                    object
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                json!(int_at(object, "/status/updatedReplicas")),
                json!(int_at(object, "/status/availableReplicas")),
                json!(age(object, now)),
            ];
            c.extend(workload_wide_cells(object));
            c
        }
        ("batch", "jobs") => {
            let mut c = vec![
                name,
                json!(job_status(object)),
                json!(format!(
                    "{}/{}",
                    int_at(object, "/status/succeeded"),
                    object
                        .pointer("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                json!(job_duration(object, now)),
                json!(age(object, now)),
            ];
            c.extend(workload_wide_cells(object));
            c
        }
        ("apps", "replicasets") => {
            let mut c = vec![
                name,
                json!(
                    object
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ),
                json!(int_at(object, "/status/replicas")),
                json!(int_at(object, "/status/readyReplicas")),
                json!(age(object, now)),
            ];
            c.extend(workload_wide_cells(object));
            c
        }
        ("apps", "daemonsets") => {
            let selector = object
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let mut c = vec![
                name,
                json!(int_at(object, "/status/desiredNumberScheduled")),
                json!(int_at(object, "/status/currentNumberScheduled")),
                json!(int_at(object, "/status/numberReady")),
                json!(int_at(object, "/status/updatedNumberScheduled")),
                json!(int_at(object, "/status/numberAvailable")),
                json!(or_none(&selector)),
                json!(age(object, now)),
            ];
            c.extend(workload_wide_cells(object));
            c
        }
        ("", "events") => event_cells(object, now),
        ("", "services") => service_cells(object, now),
        _ => vec![name, json!(age(object, now))],
    }
}

fn row_object(object: &Value, include: IncludeObject, api_version: &str) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": api_version,
            "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
        })),
    }
}

/// A Table of `objects`. `list_meta` is the list metadata (resourceVersion,
/// continue, …) or `None` for a single object.
pub fn table<'a>(
    resource: &Resource,
    objects: impl Iterator<Item = &'a Arc<Value>>,
    list_meta: Option<Value>,
    request: &TableRequest,
) -> Value {
    let now = Timestamp::now();
    let rows: Vec<Value> = objects
        .map(|o| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells(resource, o, now)));
            if let Some(obj) = row_object(o, request.include, request.api_version) {
                row.insert("object".into(), obj);
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": request.api_version,
        "metadata": list_meta.unwrap_or(json!({})),
        "columnDefinitions": columns(resource),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CONFIGMAPS, NODES, PODS};

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn accept_header_negotiation() {
        let mut h = HeaderMap::new();
        let q = Query::default();
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        let t = TableRequest::from_headers(&h, &q).unwrap();
        assert_eq!(t.api_version, "meta.k8s.io/v1");
        assert_eq!(t.include, IncludeObject::Metadata);
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(TableRequest::from_headers(&h, &q).is_none());
        h.insert(
            header::ACCEPT,
            "application/vnd.kubernetes.protobuf, */*".parse().unwrap(),
        );
        assert!(TableRequest::from_headers(&h, &q).is_none());
    }

    #[test]
    fn node_rows_like_a_real_cluster() {
        let req = TableRequest {
            api_version: "meta.k8s.io/v1",
            include: IncludeObject::Metadata,
        };
        let nodes = [
            Arc::new(
                json!({"metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""},
                "creationTimestamp": "2020-01-01T00:00:00Z"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.31.2"}}}),
            ),
            Arc::new(
                json!({"metadata": {"name": "w1"}, "spec": {"unschedulable": true},
                "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            ),
            Arc::new(json!({"metadata": {"name": "w2"}})),
        ];
        let t = table(&NODES, nodes.iter(), None, &req);
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(rows[0]["cells"][1], "Ready");
        assert_eq!(rows[0]["cells"][2], "control-plane");
        assert_eq!(rows[0]["cells"][4], "v1.31.2");
        assert_eq!(rows[1]["cells"][1], "NotReady,SchedulingDisabled");
        assert_eq!(rows[1]["cells"][2], "<none>");
        assert_eq!(rows[2]["cells"][1], "Unknown");
        assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
    }

    #[test]
    fn pod_rows() {
        let req = TableRequest {
            api_version: "meta.k8s.io/v1",
            include: IncludeObject::None,
        };
        let pods = [
            Arc::new(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
                "status": {"phase": "Running", "podIP": "10.0.0.1",
                    "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2, "state": {"running": {}}}]}}),
            ),
            Arc::new(
                json!({"metadata": {"name": "q", "deletionTimestamp": "2020-01-01T00:00:00Z"},
                "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running"}}),
            ),
        ];
        let t = table(&PODS, pods.iter(), None, &req);
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(rows[0]["cells"][1], "1/1");
        assert_eq!(rows[0]["cells"][2], "Running");
        assert_eq!(rows[0]["cells"][3], "2");
        assert_eq!(rows[0]["cells"][6], "n1");
        assert_eq!(rows[1]["cells"][2], "Terminating");
        assert!(rows[0].get("object").is_none());
        let cm = [Arc::new(
            json!({"metadata": {"name": "c"}, "data": {"a": "b"}}),
        )];
        assert_eq!(
            table(&CONFIGMAPS, cm.iter(), None, &req)["rows"][0]["cells"][1],
            1
        );
    }
}
