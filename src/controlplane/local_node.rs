//! `controlPlane.exec: local` runs the upgrade commands on the machine
//! kubesurge runs on. That is only right when this machine *is* the
//! control-plane node the configuration names, and that node is the
//! cluster's only one (the others would be upgraded on this machine too).
//! Checked before anything changes, from what the node's own kubelet
//! reports of its machine in `status.nodeInfo`:
//!
//! - `machineID` is `/etc/machine-id` (cAdvisor reads it, falling back to
//!   `/var/lib/dbus/machine-id`: `github.com/google/cadvisor`,
//!   `machine/info.go` `getMachineID`);
//! - `bootID` is `/proc/sys/kernel/random/boot_id` (same file, `getBootID`),
//!   new at every boot.
//!
//! Both must equal this machine's: the boot id alone is the kernel's, which
//! a container shares with its host — and a container runs the commands in
//! its own filesystem, not the node's; its machine id is its own.

use k8s_openapi::api::core::v1::Node;
use thiserror::Error;

use crate::inventory::is_control_plane;

/// Where this machine's identity is read.
const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];
const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// This machine as a kubelet on it reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineIdentity {
    pub machine_id: String,
    pub boot_id: String,
}

impl MachineIdentity {
    /// Read from this machine's files.
    pub fn of_this_machine() -> Result<MachineIdentity, LocalNodeError> {
        let read = |path: &str| -> Option<String> {
            std::fs::read_to_string(path)
                .ok()
                .map(|text| text.trim().to_string())
                .filter(|id| !id.is_empty())
        };
        let machine_id = MACHINE_ID_FILES.iter().find_map(|path| read(path)).ok_or(
            LocalNodeError::Unreadable {
                what: "its machine id (/etc/machine-id)",
            },
        )?;
        let boot_id = read(BOOT_ID_FILE).ok_or(LocalNodeError::Unreadable {
            what: "its boot id (/proc/sys/kernel/random/boot_id)",
        })?;
        Ok(MachineIdentity {
            machine_id,
            boot_id,
        })
    }
}

const USE_REMOTE: &str =
    "run kubesurge on that node, or reach the control plane with controlPlane.exec: ssh or ssm";

/// Why `exec: local` cannot run this cluster's control-plane commands.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LocalNodeError {
    #[error(
        "controlPlane.exec: local: this machine cannot be checked against controlPlane.node: cannot read {what}; {USE_REMOTE}"
    )]
    Unreadable { what: &'static str },
    #[error("controlPlane.node: {node:?} is not a Node of this cluster")]
    NotFound { node: String },
    #[error("controlPlane.node: {node:?} is not a control-plane node")]
    NotControlPlane { node: String },
    #[error(
        "controlPlane.exec: local runs every control-plane command on this machine, but the cluster has other control-plane nodes ({}) besides {node}; use controlPlane.exec: ssh or ssm",
        others.join(", ")
    )]
    OtherControlPlanes { node: String, others: Vec<String> },
    #[error(
        "controlPlane.exec: local: this machine is not control-plane node {node} ({field} {ours} here, {theirs:?} reported by {node}'s kubelet); {USE_REMOTE}"
    )]
    NotThisMachine {
        node: String,
        field: &'static str,
        ours: String,
        theirs: String,
    },
}

/// `named` must be the cluster's only control-plane node, and `this`
/// machine the one its kubelet reports.
pub fn verify(named: &str, this: &MachineIdentity, nodes: &[Node]) -> Result<(), LocalNodeError> {
    let node = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(named))
        .ok_or_else(|| LocalNodeError::NotFound {
            node: named.to_string(),
        })?;
    if !is_control_plane(node) {
        return Err(LocalNodeError::NotControlPlane {
            node: named.to_string(),
        });
    }
    let others: Vec<String> = nodes
        .iter()
        .filter(|n| is_control_plane(n))
        .filter_map(|n| n.metadata.name.clone())
        .filter(|name| name != named)
        .collect();
    if !others.is_empty() {
        return Err(LocalNodeError::OtherControlPlanes {
            node: named.to_string(),
            others,
        });
    }
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    let reported = |pick: fn(&k8s_openapi::api::core::v1::NodeSystemInfo) -> &String| {
        info.map(pick).cloned().unwrap_or_default()
    };
    for (field, ours, theirs) in [
        ("machine id", &this.machine_id, reported(|i| &i.machine_id)),
        ("boot id", &this.boot_id, reported(|i| &i.boot_id)),
    ] {
        if *ours != theirs {
            return Err(LocalNodeError::NotThisMachine {
                node: named.to_string(),
                field,
                ours: ours.clone(),
                theirs,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, control_plane: bool, machine_id: &str, boot_id: &str) -> Node {
        let labels = if control_plane {
            json!({"node-role.kubernetes.io/control-plane": ""})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"nodeInfo": {
                "machineID": machine_id, "bootID": boot_id, "systemUUID": "u",
                "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "",
                "kubeletVersion": "v1.34.3", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64"
            }}
        }))
        .expect("a node")
    }

    fn this() -> MachineIdentity {
        MachineIdentity {
            machine_id: "m1".into(),
            boot_id: "b1".into(),
        }
    }

    #[test]
    fn the_only_control_plane_node_reporting_this_machine_passes() {
        let nodes = [
            node("cp-1", true, "m1", "b1"),
            node("w-1", false, "m2", "b2"),
        ];
        assert_eq!(verify("cp-1", &this(), &nodes), Ok(()));
    }

    #[test]
    fn another_machine_is_refused_naming_what_differs() {
        let nodes = [node("cp-1", true, "m1", "b-other")];
        let error = verify("cp-1", &this(), &nodes).unwrap_err();
        assert!(
            matches!(
                &error,
                LocalNodeError::NotThisMachine {
                    field: "boot id",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("controlPlane.exec: ssh or ssm"));
        // A container on the node: same kernel, its own machine id.
        let nodes = [node("cp-1", true, "m-host", "b1")];
        assert!(matches!(
            verify("cp-1", &this(), &nodes),
            Err(LocalNodeError::NotThisMachine {
                field: "machine id",
                ..
            })
        ));
    }

    #[test]
    fn a_worker_a_missing_node_and_several_control_planes_are_refused() {
        let nodes = [
            node("cp-1", true, "m1", "b1"),
            node("cp-2", true, "m2", "b2"),
            node("w-1", false, "m1", "b1"),
        ];
        assert!(matches!(
            verify("w-1", &this(), &nodes),
            Err(LocalNodeError::NotControlPlane { .. })
        ));
        assert!(matches!(
            verify("cp-9", &this(), &nodes),
            Err(LocalNodeError::NotFound { .. })
        ));
        assert_eq!(
            verify("cp-1", &this(), &nodes),
            Err(LocalNodeError::OtherControlPlanes {
                node: "cp-1".into(),
                others: vec!["cp-2".into()],
            })
        );
    }
}
