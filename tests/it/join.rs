//! A simulated machine joins the cluster the way `kubeadm join` does: only
//! with a token the API server accepts, a cluster-info signature made with
//! that token, a pinned CA and a kubelet the control plane supports. Each
//! failure leaves the instance running without a Node, with kubeadm's
//! reason recorded on the machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kubesurge_provider::{Instance, LaunchRequest, PoolRef, Sensitive, SlotKey};
use kubesurge_testworld::Timing;
use kubesurge_testworld::cloud::{JoinFailure, MachineStatus};
use kubesurge_testworld::resources::{CONFIGMAPS, NODES, SECRETS};
use kubesurge_testworld::world::{World, WorldConfig};
use serde_json::{Value, json};

const TOKEN_ID: &str = "k7x2p9";
const TOKEN_SECRET: &str = "0123456789abcdef";

async fn world(version: &str) -> World {
    World::start(WorldConfig {
        cluster_name: "join".into(),
        control_planes: 1,
        pools: Vec::new(),
        zones: 2,
        version: version.into(),
        timing: Timing::fast(),
        workloads: false,
    })
    .await
    .expect("world starts")
}

/// A bootstrap-token Secret as kubeadm (or the rotation engine) makes it.
struct TokenSecret<'a> {
    secret: &'a str,
    expiration: Option<&'a str>,
    signing: bool,
    authentication: bool,
}

impl Default for TokenSecret<'_> {
    fn default() -> Self {
        TokenSecret {
            secret: TOKEN_SECRET,
            expiration: None,
            signing: true,
            authentication: true,
        }
    }
}

fn create_token(world: &World, token: TokenSecret<'_>) {
    let b64 = |s: &str| STANDARD.encode(s);
    let mut data = BTreeMap::from([
        ("token-id", b64(TOKEN_ID)),
        ("token-secret", b64(token.secret)),
        (
            "auth-extra-groups",
            b64("system:bootstrappers:kubeadm:default-node-token"),
        ),
        ("description", b64("join test")),
    ]);
    if token.signing {
        data.insert("usage-bootstrap-signing", b64("true"));
    }
    if token.authentication {
        data.insert("usage-bootstrap-authentication", b64("true"));
    }
    if let Some(expiration) = token.expiration {
        data.insert("expiration", b64(expiration));
    }
    world
        .store
        .create(
            &SECRETS,
            "kube-system",
            json!({
                "metadata": {"name": format!("bootstrap-token-{TOKEN_ID}"), "namespace": "kube-system"},
                "type": "bootstrap.kubernetes.io/token",
                "data": data,
            }),
        )
        .expect("token secret");
}

#[derive(Clone, Copy)]
enum KubeadmApi {
    V1beta3,
    V1beta4,
}

/// What the join configuration says.
struct Join {
    api: KubeadmApi,
    token: String,
    endpoint: String,
    ca_cert_hashes: Vec<String>,
    node_name: String,
    node_labels: String,
    taints: Value,
}

impl Join {
    fn for_world(world: &World, node_name: &str) -> Join {
        Join {
            api: KubeadmApi::V1beta4,
            token: format!("{TOKEN_ID}.{TOKEN_SECRET}"),
            endpoint: world.api_endpoint(),
            ca_cert_hashes: vec![world.ca_cert_hash()],
            node_name: node_name.into(),
            node_labels: "kubesurge.io/pool=batch,team=data".into(),
            taints: json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]),
        }
    }

    /// User data per the contract: a bash script whose heredoc holds the
    /// JoinConfiguration, with `@@PROVIDER_ID@@` for the provider id.
    fn user_data(&self) -> String {
        let (api_version, extra_args) = match self.api {
            KubeadmApi::V1beta3 => (
                "kubeadm.k8s.io/v1beta3",
                json!({"provider-id": "@@PROVIDER_ID@@", "node-labels": self.node_labels}),
            ),
            KubeadmApi::V1beta4 => (
                "kubeadm.k8s.io/v1beta4",
                json!([
                    {"name": "provider-id", "value": "@@PROVIDER_ID@@"},
                    {"name": "node-labels", "value": self.node_labels},
                ]),
            ),
        };
        let config = json!({
            "apiVersion": api_version,
            "kind": "JoinConfiguration",
            "discovery": {"bootstrapToken": {
                "token": self.token,
                "apiServerEndpoint": self.endpoint,
                "caCertHashes": self.ca_cert_hashes,
            }},
            "nodeRegistration": {
                "name": self.node_name,
                "taints": self.taints,
                "kubeletExtraArgs": extra_args,
            },
        });
        let mut yaml = serde_saphyr::to_string(&config).expect("yaml");
        if !yaml.ends_with('\n') {
            yaml.push('\n');
        }
        format!(
            "#!/bin/bash\n\
             set -euo pipefail\n\
             install -d -m 0700 /etc/kubernetes/kubesurge\n\
             cat > /etc/kubernetes/kubesurge/join.yaml <<'KUBESURGE_JOIN_CONFIG'\n\
             {yaml}KUBESURGE_JOIN_CONFIG\n\
             IMDS=$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')\n\
             ZONE=$(curl -s -H \"X-aws-ec2-metadata-token: $IMDS\" http://169.254.169.254/latest/meta-data/placement/availability-zone)\n\
             ID=$(curl -s -H \"X-aws-ec2-metadata-token: $IMDS\" http://169.254.169.254/latest/meta-data/instance-id)\n\
             sed -i \"s|@@PROVIDER_ID@@|sim:///$ZONE/$ID|\" /etc/kubernetes/kubesurge/join.yaml\n\
             kubeadm join --config /etc/kubernetes/kubesurge/join.yaml\n"
        )
    }
}

async fn launch(world: &World, image_version: &str, join: &Join) -> Instance {
    launch_with(world, image_version, &join.node_name, join.user_data()).await
}

async fn launch_with(
    world: &World,
    image_version: &str,
    node_name: &str,
    user_data: String,
) -> Instance {
    let image = world
        .cloud
        .image_for_version(image_version)
        .expect("the cloud has an image for the version");
    world
        .provider()
        .launch(&LaunchRequest {
            pool: PoolRef {
                cluster: world.config().cluster_name.clone(),
                pool: "batch".into(),
            },
            slot: SlotKey {
                run_id: "r1".into(),
                old_node: format!("old-{node_name}"),
                attempt: 0,
            },
            image,
            zone: "zone-b".into(),
            subnet: Some("subnet-zone-b".into()),
            user_data: Sensitive::new(user_data),
            node_name: node_name.to_string(),
            extra_tags: BTreeMap::new(),
        })
        .await
        .expect("launch")
}

/// The machine's status once its join has finished either way.
async fn join_outcome(world: &World, instance: &Instance) -> MachineStatus {
    world
        .cloud
        .wait_for_machine(&instance.id.0, Duration::from_secs(30), |s| {
            !matches!(s, MachineStatus::Booting | MachineStatus::Joining)
        })
        .await
        .expect("the join finishes")
}

fn node(world: &World, name: &str) -> Option<Arc<Value>> {
    world.store.get(&NODES, "", name)
}

/// Assert a failed join: the reason, a running instance, no Node.
async fn assert_join_fails(
    world: &World,
    join: &Join,
    image_version: &str,
    expected: impl Fn(&JoinFailure) -> bool,
) {
    let instance = launch(world, image_version, join).await;
    let status = join_outcome(world, &instance).await;
    match &status {
        MachineStatus::JoinFailed(reason) if expected(reason) => {}
        other => panic!("unexpected join outcome: {other:?}"),
    }
    let machine = world.cloud.machine(&instance.id.0).expect("machine");
    assert_eq!(machine.state, kubesurge_provider::InstanceState::Running);
    assert_eq!(machine.node_name, None);
    assert!(
        node(world, &join.node_name).is_none(),
        "a Node registered after a failed join"
    );
    let (nodes, _) = world.store.list(&NODES, None, |_| true);
    assert_eq!(nodes.len(), 1, "only the control-plane node exists");
    world.stop();
}

/// Wait (bounded) until the Node is Ready.
async fn ready_node(world: &World, name: &str) -> Arc<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(n) = node(world, name) {
            let ready = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            if ready {
                return n;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {name} not Ready in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_joins(world: &World, join: &Join, image_version: &str) {
    let instance = launch(world, image_version, join).await;
    assert_joined(world, &instance, &join.node_name, image_version).await;
}

/// The machine joined: its Node is Ready with the image's kubelet, the
/// instance's provider id, and the labels and taints the join asked for.
async fn assert_joined(world: &World, instance: &Instance, node_name: &str, image_version: &str) {
    let status = join_outcome(world, instance).await;
    assert_eq!(status, MachineStatus::Joined);
    let n = ready_node(world, node_name).await;
    assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], image_version);
    assert_eq!(n["spec"]["providerID"], instance.provider_id.as_str());
    assert_eq!(
        instance.provider_id,
        format!("sim:///zone-b/{}", instance.id)
    );
    assert_eq!(n["metadata"]["labels"]["kubesurge.io/pool"], "batch");
    assert_eq!(n["metadata"]["labels"]["team"], "data");
    let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
    assert!(
        taints.iter().any(|t| t["key"] == "dedicated"
            && t["value"] == "batch"
            && t["effect"] == "NoSchedule"),
        "taints: {taints:?}"
    );
    let machine = world.cloud.machine(&instance.id.0).expect("machine");
    assert_eq!(machine.node_name.as_deref(), Some(node_name));
    assert_eq!(machine.kubelet_version.as_deref(), Some(image_version));
    world.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_joins_with_a_valid_token_signature_and_ca_pin_v1beta4() {
    let world = world("v1.35.3").await;
    create_token(&world, TokenSecret::default());
    // One minor older than the control plane: within the skew policy.
    assert_joins(&world, &Join::for_world(&world, "batch-new-1"), "v1.34.5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_joins_with_a_v1beta3_configuration() {
    // kubeadm before 1.31 writes v1beta3 (kubelet extra args as a map).
    let world = world("v1.31.4").await;
    create_token(&world, TokenSecret::default());
    let join = Join {
        api: KubeadmApi::V1beta3,
        ..Join::for_world(&world, "batch-old-1")
    };
    assert_joins(&world, &join, "v1.30.9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_secret_fails_the_signature_check() {
    let world = world("v1.35.3").await;
    create_token(&world, TokenSecret::default());
    let join = Join {
        token: format!("{TOKEN_ID}.ffffffffffffffff"),
        ..Join::for_world(&world, "w-wrong-secret")
    };
    assert_join_fails(&world, &join, "v1.35.3", |r| *r == JoinFailure::JwsMismatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_has_no_signature_in_cluster_info() {
    let world = world("v1.35.3").await;
    create_token(
        &world,
        TokenSecret {
            expiration: Some("2020-01-01T00:00:00Z"),
            ..Default::default()
        },
    );
    let join = Join::for_world(&world, "w-expired");
    assert_join_fails(&world, &join, "v1.35.3", |r| {
        *r == JoinFailure::NoSignedToken {
            token_id: TOKEN_ID.into(),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_signing_usage_has_no_signature_in_cluster_info() {
    let world = world("v1.35.3").await;
    create_token(
        &world,
        TokenSecret {
            signing: false,
            ..Default::default()
        },
    );
    let join = Join::for_world(&world, "w-unsigned");
    assert_join_fails(
        &world,
        &join,
        "v1.35.3",
        |r| matches!(r, JoinFailure::NoSignedToken { token_id } if token_id == TOKEN_ID),
    )
    .await;
    // The signer did sign cluster-info for nothing else.
    let info = world
        .store
        .get(&CONFIGMAPS, "kube-public", "cluster-info")
        .expect("cluster-info");
    assert!(
        info["data"]
            .get(format!("jws-kubeconfig-{TOKEN_ID}"))
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_hash_is_not_pinned() {
    let world = world("v1.35.3").await;
    create_token(&world, TokenSecret::default());
    let join = Join {
        ca_cert_hashes: vec![format!("sha256:{}", "0".repeat(64))],
        ..Join::for_world(&world, "w-wrong-ca")
    };
    let actual = world.ca_cert_hash();
    assert_join_fails(
        &world,
        &join,
        "v1.35.3",
        |r| matches!(r, JoinFailure::CaNotPinned { found } if *found == actual),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_authentication_usage_is_refused_by_the_api_server() {
    let world = world("v1.35.3").await;
    create_token(
        &world,
        TokenSecret {
            authentication: false,
            ..Default::default()
        },
    );
    let join = Join::for_world(&world, "w-no-auth");
    assert_join_fails(&world, &join, "v1.35.3", |r| {
        *r == JoinFailure::Unauthorized
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_newer_than_the_control_plane_fails_preflight() {
    let world = world("v1.35.3").await;
    create_token(&world, TokenSecret::default());
    let join = Join::for_world(&world, "w-too-new");
    assert_join_fails(&world, &join, "v1.36.0", |r| {
        matches!(r, JoinFailure::KubeletTooNew { kubelet, control_plane }
            if kubelet == "v1.36.0" && control_plane == "v1.35.3")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_more_than_three_minors_older_fails_preflight() {
    let world = world("v1.35.3").await;
    create_token(&world, TokenSecret::default());
    let join = Join::for_world(&world, "w-too-old");
    assert_join_fails(
        &world,
        &join,
        "v1.31.14",
        |r| matches!(r, JoinFailure::KubeletTooOld { kubelet, .. } if kubelet == "v1.31.14"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_join_faults_stall_or_delay_machines() {
    let world = world("v1.35.3").await;
    create_token(&world, TokenSecret::default());

    // The next launch boots but never joins, though everything is valid.
    world.cloud.with_faults(|f| f.never_join_next(1));
    let stalled = launch(&world, "v1.35.3", &Join::for_world(&world, "w-stalled")).await;
    assert_eq!(join_outcome(&world, &stalled).await, MachineStatus::Stalled);
    assert!(node(&world, "w-stalled").is_none());

    // The next one joins, but only after the injected delay.
    let delay = Duration::from_millis(600);
    world.cloud.with_faults(|f| f.late_join_next(1, delay));
    let started = tokio::time::Instant::now();
    let late = launch(&world, "v1.35.3", &Join::for_world(&world, "w-late")).await;
    assert_eq!(join_outcome(&world, &late).await, MachineStatus::Joined);
    assert!(started.elapsed() >= delay + Timing::fast().boot);
    ready_node(&world, "w-late").await;

    // A pool that never joins: every machine of it stalls.
    world.cloud.with_faults(|f| f.never_join_pool("batch"));
    let pooled = launch(&world, "v1.35.3", &Join::for_world(&world, "w-pool")).await;
    assert_eq!(join_outcome(&world, &pooled).await, MachineStatus::Stalled);
    world.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_data_rendered_by_the_rotation_engine_joins() {
    use k8s_openapi::api::core::v1::{ConfigMap, Taint};
    use kubesurge::kube::join::{BootstrapToken, ClusterInfo, JoinSpec, render_user_data};
    use kubesurge::version::KubeVersion;

    let world = world("v1.35.3").await;
    // The token and user data exactly as the rotation engine makes them.
    let token = BootstrapToken::generate();
    let secret = token.to_secret(
        jiff::Timestamp::now(),
        Duration::from_secs(600),
        "join contract test",
        BTreeMap::new(),
    );
    world
        .store
        .create(
            &SECRETS,
            "kube-system",
            serde_json::to_value(&secret).expect("secret json"),
        )
        .expect("token secret");
    let cluster_info = world
        .store
        .get(&CONFIGMAPS, "kube-public", "cluster-info")
        .expect("cluster-info");
    let cm: ConfigMap = serde_json::from_value((*cluster_info).clone()).expect("configmap");
    let info = ClusterInfo::from_config_map(&cm).expect("cluster info");
    let labels = BTreeMap::from([
        ("kubesurge.io/pool".to_string(), "batch".to_string()),
        ("team".to_string(), "data".to_string()),
    ]);
    let taints = vec![Taint {
        key: "dedicated".into(),
        value: Some("batch".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    }];
    let user_data = render_user_data(&JoinSpec {
        token: &token,
        cluster: &info,
        node_name: "engine-1",
        labels: &labels,
        taints: &taints,
        kubelet_extra_args: &BTreeMap::new(),
        kubeadm_version: KubeVersion::new(1, 35, 3),
        provider_id_script: "echo \"sim:///$(imds placement/availability-zone)/$(imds instance-id)\"",
        comment: "kubesurge: cluster join, run r1",
    })
    .expect("user data");
    let instance = launch_with(&world, "v1.35.3", "engine-1", user_data.expose().clone()).await;
    assert_joined(&world, &instance, "engine-1", "v1.35.3").await;
}
