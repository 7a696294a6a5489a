//! An emulated cluster whose workers are EC2 instances in moto: the API
//! server, controllers and control plane of a [`World`], moto seeded with
//! a launch template, an image per Kubernetes version (tagged
//! `kubernetes-version`), one default subnet per zone and the initial
//! workers (tagged for the cluster and their pool), and the machines that
//! watch moto so that what the tool launches there joins the cluster.
//! Optionally the control-plane machines are EC2 instances too, reached
//! through SSM ([`MotoWorldConfig::control_plane_instances`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::autoscaling::AutoScalingApi;
use super::ec2::{Ec2, Ec2Error, Ec2Instance, Params};
use super::machines::{MotoMachines, worker_tags};
use super::proxy::FaultProxy;
use super::ssm_agent::SsmAgent;
use crate::cloud::CloudConfig;
use crate::cloud::machine::MAX_PODS;
use crate::cloud::machine::MachineRole;
use crate::cloud::userdata::{HEREDOC_END, PROVIDER_ID_PLACEHOLDER};
use crate::controllers::NodeSpec;
use crate::resources::{NODES, SECRETS};
use crate::store::StoreError;
use crate::world::{POOL_LABEL, PoolSpec, World, WorldConfig, WorldError};
use kubesurge_sim::api::VERSION_TAG;

/// The launch template the world creates.
pub const LAUNCH_TEMPLATE: &str = "kubesurge-workers";
/// The region of the world's moto resources.
pub const DEFAULT_REGION: &str = "us-east-1";

/// What world to build.
#[derive(Clone, Debug)]
pub struct MotoWorldConfig {
    /// The cluster; its `pools` are the workers put in moto (the control
    /// plane stays a simulated machine, with an EC2 instance in front of it
    /// when `control_plane_instances`).
    pub world: WorldConfig,
    pub region: String,
    /// Versions with an image besides `world.version`.
    pub extra_versions: Vec<String>,
    /// How often the machines look at moto.
    pub poll: Duration,
    /// Pools whose workers are members of an Auto Scaling group (named
    /// [`MotoWorld::group_name`]) launching from a template of its own
    /// whose user data cannot join the cluster (unless
    /// `group_user_data` says otherwise).
    pub auto_scaling_pools: Vec<String>,
    /// What the user data of the groups' own templates does.
    pub group_user_data: GroupUserData,
    /// The control-plane machines are EC2 instances in moto too, tagged
    /// `kubesurge.io/control-plane = <cluster>` (what the iam module's
    /// SendCommand statement requires), their Nodes' providerID names them
    /// and their SSM agent runs the commands sent to them
    /// ([`SsmAgent`]): `controlPlane.exec: ssm` reaches them. Off, they
    /// are simulated machines only and moto holds only the workers.
    pub control_plane_instances: bool,
}

/// The user data of an Auto Scaling group's own launch template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupUserData {
    /// A join with a token long expired: only the instances the tool
    /// launches with user data of its own join (the default).
    #[default]
    ExpiredToken,
    /// A join with a token that never expires (`kubeadm token create
    /// --ttl 0`, "If set to '0', the token will never expire", kubeadm
    /// token reference) and the pool's node label, the way teams that let
    /// the group launch its own instances keep their template; the group
    /// is tagged `kubernetes.io/cluster/<cluster>=owned` (the tag
    /// eks-rolling-update and the cluster autoscaler find groups by), so a
    /// group roller such as eks-rolling-update can scale it out and have
    /// the new instances join.
    Joins,
}

impl MotoWorldConfig {
    pub fn new(world: WorldConfig) -> MotoWorldConfig {
        MotoWorldConfig {
            world,
            region: DEFAULT_REGION.to_string(),
            extra_versions: Vec::new(),
            poll: Duration::from_millis(200),
            auto_scaling_pools: Vec::new(),
            group_user_data: GroupUserData::default(),
            control_plane_instances: false,
        }
    }
}

#[derive(Debug, Error)]
pub enum MotoWorldError {
    #[error(transparent)]
    World(#[from] WorldError),
    #[error("cannot seed moto: {0}")]
    Ec2(#[from] Ec2Error),
    #[error("cannot serve the world's EC2 endpoint: {0}")]
    Front(String),
    #[error("moto has {have} default subnets, the world needs {want} zones")]
    Zones { have: usize, want: usize },
    #[error("the moto world is not ready after {after:?}: {waiting_for}")]
    NotReady {
        after: Duration,
        waiting_for: String,
    },
    #[error("cannot create the groups' bootstrap token: {0}")]
    Token(#[source] crate::store::StoreError),
    #[error("cannot point node {node} at its instance: {source}")]
    ProviderId {
        node: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the world put in moto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeded {
    pub launch_template_id: String,
    /// The role and instance profile every worker template names.
    pub node_role: NodeRole,
    /// Image id by Kubernetes version.
    pub images: BTreeMap<String, String>,
    /// Subnet by zone, for the zones the world uses.
    pub subnets: BTreeMap<String, String>,
    /// The initial workers' instances, by node name.
    pub workers: BTreeMap<String, Ec2Instance>,
    /// Auto Scaling group by pool, for the pools that have one.
    pub groups: BTreeMap<String, String>,
    /// The control-plane machines' instances, by node name (empty unless
    /// [`MotoWorldConfig::control_plane_instances`]).
    pub control_planes: BTreeMap<String, Ec2Instance>,
}

/// A running moto world.
pub struct MotoWorld {
    pub world: World,
    /// Straight to moto.
    pub ec2: Ec2,
    /// Straight to moto's Auto Scaling.
    pub autoscaling: AutoScalingApi,
    pub machines: MotoMachines,
    /// The SSM agent of the control-plane machines (of none unless
    /// [`MotoWorldConfig::control_plane_instances`]).
    pub ssm_agent: Arc<SsmAgent>,
    /// The endpoint clients use: moto, behind a hop that stops a
    /// terminated instance's kubelet before the client hears of it.
    front: FaultProxy,
    pub seeded: Seeded,
    config: MotoWorldConfig,
}

impl MotoWorld {
    /// Build the cluster, seed moto at `moto_url` and start the machines.
    pub async fn start(
        moto_url: &str,
        config: MotoWorldConfig,
    ) -> Result<MotoWorld, MotoWorldError> {
        let world = World::start(WorldConfig {
            pools: Vec::new(),
            ..config.world.clone()
        })
        .await?;
        let ec2 = Ec2::new(moto_url, &config.region);
        let c = &config.world;

        let all_subnets = ec2.default_subnets().await?;
        if all_subnets.len() < c.zones {
            return Err(MotoWorldError::Zones {
                have: all_subnets.len(),
                want: c.zones,
            });
        }
        let subnets: BTreeMap<String, String> = all_subnets.into_iter().take(c.zones).collect();
        let mut versions = vec![c.version.clone()];
        versions.extend(config.extra_versions.iter().cloned());
        let mut images = BTreeMap::new();
        for version in versions {
            if images.contains_key(&version) {
                continue;
            }
            let id = ec2
                .register_image(
                    &format!("kubesurge-node-{version}"),
                    &BTreeMap::from([(VERSION_TAG.to_string(), version.clone())]),
                )
                .await?;
            images.insert(version, id);
        }
        let node_role = seed_node_role(moto_url, &config.region).await?;
        let launch_template_id = ec2
            .create_launch_template_naming(
                LAUNCH_TEMPLATE,
                "t3.medium",
                Some(&node_role.instance_profile_arn),
            )
            .await?;

        let discovery = CloudConfig::new(c.zones, c.timing.clone()).discovery;
        let machines = MotoMachines::new(
            ec2.clone(),
            &c.cluster_name,
            world.controllers.kubelets.clone(),
            c.timing.clone(),
            discovery,
        );
        let zones: Vec<(&String, &String)> = subnets.iter().collect();
        let image = images.get(&c.version).cloned().unwrap_or_default();
        let autoscaling = AutoScalingApi::new(moto_url, &config.region);
        let mut workers = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for pool in &c.pools {
            let mut members = Vec::new();
            for i in 0..pool.workers {
                let name = format!("{}-{}", pool.name, i + 1);
                let (zone, subnet) = zones[i % zones.len()];
                let launched = ec2
                    .run_instances(
                        &image,
                        subnet,
                        1,
                        &worker_tags(&c.cluster_name, &pool.name, &name),
                    )
                    .await?;
                let Some(instance) = launched.into_iter().next() else {
                    continue;
                };
                members.push(instance.id.clone());
                machines.add_prejoined(
                    &instance,
                    NodeSpec {
                        name: name.clone(),
                        kubelet_version: c.version.clone(),
                        provider_id: instance.provider_id(),
                        zone: zone.clone(),
                        internal_ip: instance.private_ip.clone().unwrap_or_default(),
                        labels: BTreeMap::from([(POOL_LABEL.to_string(), pool.name.clone())]),
                        taints: Vec::new(),
                        max_pods: MAX_PODS,
                        control_plane: false,
                        cloud: Default::default(),
                    },
                );
                workers.insert(name, instance);
            }
            if config.auto_scaling_pools.contains(&pool.name) {
                let group = group_name(&c.cluster_name, &pool.name);
                let user_data = match config.group_user_data {
                    GroupUserData::ExpiredToken => group_user_data(
                        world.api_endpoint().trim_start_matches("https://"),
                        &world.ca_cert_hash(),
                    ),
                    GroupUserData::Joins => {
                        let token = ensure_group_token(&world)?;
                        joining_group_user_data(
                            world.api_endpoint().trim_start_matches("https://"),
                            &world.ca_cert_hash(),
                            &token,
                            &pool.name,
                        )
                    }
                };
                seed_group(
                    &ec2,
                    &autoscaling,
                    &GroupSeed {
                        name: &group,
                        image: &image,
                        user_data: &user_data,
                        subnets: &subnets.values().cloned().collect::<Vec<_>>(),
                        members: &members,
                        instance_profile: &node_role.instance_profile_arn,
                    },
                )
                .await?;
                if config.group_user_data == GroupUserData::Joins {
                    autoscaling
                        .tag_group(
                            &group,
                            &format!("kubernetes.io/cluster/{}", c.cluster_name),
                            "owned",
                        )
                        .await?;
                }
                groups.insert(pool.name.clone(), group);
            }
        }
        let ssm_agent = SsmAgent::new(world.cloud.clone());
        let control_planes = if config.control_plane_instances {
            control_plane_instances(&world, &ec2, &ssm_agent, &image, &zones).await?
        } else {
            BTreeMap::new()
        };
        machines.watch(config.poll);
        let terminated = machines.terminator();
        let front = FaultProxy::start_with_agent(
            moto_url,
            Some(Arc::new(move |action: &str, body: &[u8]| match action {
                "TerminateInstances" => terminated(&instance_ids(body)),
                "TerminateInstanceInAutoScalingGroup" => {
                    terminated(&form_values(body, "InstanceId"))
                }
                _ => {}
            })),
            ssm_agent.clone(),
        )
        .await
        .map_err(|e| MotoWorldError::Front(e.to_string()))?;
        Ok(MotoWorld {
            world,
            ec2,
            autoscaling,
            machines,
            ssm_agent,
            front,
            seeded: Seeded {
                launch_template_id,
                node_role,
                images,
                subnets,
                workers,
                groups,
                control_planes,
            },
            config,
        })
    }

    pub fn config(&self) -> &MotoWorldConfig {
        &self.config
    }

    /// `http://127.0.0.1:<port>`: where clients of this world's EC2 go
    /// (the tool, a fault proxy). Moto itself would let a terminated
    /// machine's kubelet run on until the next look at it.
    pub fn endpoint(&self) -> &str {
        self.front.url()
    }

    /// Wait until every node registered and the workloads run.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), MotoWorldError> {
        let c = &self.config.world;
        let expected = c.control_planes + c.pools.iter().map(|p| p.workers).sum::<usize>();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (nodes, _) = self.world.store.list(&NODES, None, |_| true);
            if nodes.len() >= expected {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MotoWorldError::NotReady {
                    after: timeout,
                    waiting_for: format!("{} of {expected} nodes registered", nodes.len()),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        Ok(self.world.wait_ready(left).await?)
    }

    /// The `RotationConfig` whose pools launch in moto through the `aws`
    /// provider. The endpoint is not in it: the AWS environment
    /// ([`MotoWorld::aws_env`]) points the tool at moto.
    pub fn rotation_config(&self, max_surge: u32) -> String {
        self.rotation_config_with(|_| max_surge)
    }

    /// [`MotoWorld::rotation_config`] with each pool's `maxSurge` from
    /// `max_surge(pool)`.
    pub fn rotation_config_with(&self, max_surge: impl Fn(&str) -> u32) -> String {
        let c = &self.config.world;
        let mut yaml = format!(
            "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster:\n  name: {}\npools:\n",
            c.cluster_name
        );
        for pool in &c.pools {
            // An Auto Scaling pool launches from its group's template.
            let source = match self.seeded.groups.get(&pool.name) {
                Some(group) => format!("autoScalingGroup: {group}"),
                None => format!("launchTemplate: {{ name: {LAUNCH_TEMPLATE} }}"),
            };
            yaml.push_str(&format!(
                "  - name: {name}\n    selector: {{ {POOL_LABEL}: {name} }}\n    provider: aws\n    aws:\n      region: {region}\n      {source}\n      image:\n        owners: [self]\n        filters: {{ \"tag:{VERSION_TAG}\": \"{{version}}\" }}\n    maxSurge: {max_surge}\n    maxUnavailable: 0\n    nodeLabels: {{ {POOL_LABEL}: {name} }}\n",
                name = pool.name,
                region = self.config.region,
                max_surge = max_surge(&pool.name),
            ));
        }
        yaml
    }

    /// The environment that points AWS clients at `endpoint` (the world's
    /// [`MotoWorld::endpoint`] or a proxy in front of it) with moto's test
    /// credentials.
    pub fn aws_env(&self, endpoint: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", self.config.region.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Write `dir/kubeconfig`, `dir/kubesurge.yaml` (the `aws` provider)
    /// and `dir/aws.env` (the environment to source for `endpoint`).
    pub fn write_config_files(
        &self,
        dir: &Path,
        endpoint: &str,
        max_surge: u32,
    ) -> Result<(PathBuf, PathBuf, PathBuf), MotoWorldError> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            write_private(&path, text).map_err(|source| MotoWorldError::Write {
                path: path.clone(),
                source,
            })?;
            Ok::<_, MotoWorldError>(path)
        };
        std::fs::create_dir_all(dir).map_err(|source| MotoWorldError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let kubeconfig = write("kubeconfig", &self.world.kubeconfig_yaml())?;
        let config = write("kubesurge.yaml", &self.rotation_config(max_surge))?;
        let env: String = self
            .aws_env(endpoint)
            .into_iter()
            .map(|(k, v)| format!("export {k}={v}\n"))
            .collect();
        let env = write("aws.env", &env)?;
        Ok((kubeconfig, config, env))
    }

    /// Stop the machines and the world.
    pub fn stop(&self) {
        self.machines.stop();
        self.world.stop();
    }
}

/// The tag the iam module's SendCommand statement requires of the
/// instances it may run commands on (`aws:ResourceTag/<key> = <cluster>`,
/// terraform/modules/iam).
pub const CONTROL_PLANE_TAG: &str = "kubesurge.io/control-plane";

/// An EC2 instance in moto for each control-plane machine of `world`
/// (named for its node, tagged [`CONTROL_PLANE_TAG`], not with the
/// cluster's worker tags: no pool holds it), its agent installed, and its
/// Node's providerID pointed at it (`aws:///<zone>/<id>`, what the kubelet
/// of an EC2 node reports, so that `controlPlane.exec: ssm` finds the
/// instance). Its scripts run on the machine: the same filesystem and
/// stand-ins as through the sim cloud.
async fn control_plane_instances(
    world: &World,
    ec2: &Ec2,
    agent: &SsmAgent,
    image: &str,
    zones: &[(&String, &String)],
) -> Result<BTreeMap<String, Ec2Instance>, MotoWorldError> {
    let cluster = &world.config().cluster_name;
    let mut instances = BTreeMap::new();
    let control_planes = world
        .cloud
        .machines()
        .into_iter()
        .filter(|m| m.role == MachineRole::ControlPlane);
    for (i, machine) in control_planes.enumerate() {
        let Some(node) = machine.node_name.clone() else {
            continue;
        };
        let (_, subnet) = zones[i % zones.len()];
        let tags = BTreeMap::from([
            (kubesurge_provider::tags::NAME.to_string(), node.clone()),
            (CONTROL_PLANE_TAG.to_string(), cluster.clone()),
        ]);
        let Some(instance) = ec2
            .run_instances(image, subnet, 1, &tags)
            .await?
            .into_iter()
            .next()
        else {
            continue;
        };
        agent.install(&instance.id, &machine.instance_id);
        let provider_id = instance.provider_id();
        world
            .store
            .modify(&NODES, "", &node, |n| {
                n["spec"]["providerID"] = serde_json::json!(provider_id);
                Ok(())
            })
            .map_err(|source| MotoWorldError::ProviderId {
                node: node.clone(),
                source,
            })?;
        instances.insert(node, instance);
    }
    Ok(instances)
}

/// The Auto Scaling group of a pool of the world.
pub fn group_name(cluster: &str, pool: &str) -> String {
    format!("{cluster}-{pool}")
}

/// The user data of a group's own launch template, as a team's template
/// would carry it: a kubeadm join with the token baked in when the template
/// was made, long expired (bootstrap tokens live 24 hours by default,
/// `kubeadm token create --ttl`). An instance the group launches on its own
/// boots and fails its join the way kubeadm does; the replacements
/// kubesurge launches carry their own user data with a per-slot token.
fn group_user_data(endpoint: &str, ca_hash: &str) -> String {
    format!(
        "#!/bin/bash\nset -euo pipefail\ncat >/etc/kubernetes/join.yaml <<'{HEREDOC_END}'\n\
         apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  \
         bootstrapToken:\n    token: abcdef.0123456789abcdef\n    apiServerEndpoint: {endpoint}\n    \
         caCertHashes: [\"{ca_hash}\"]\n{HEREDOC_END}\nkubeadm join --config /etc/kubernetes/join.yaml\n"
    )
}

/// The id and secret of the token the joining groups' templates carry.
const GROUP_TOKEN: (&str, &str) = ("grpjoi", "0123456789abcdef");

/// The never-expiring bootstrap token of the joining groups' templates, as
/// `kubeadm token create --ttl 0` stores it (a `bootstrap.kubernetes.io/token`
/// Secret `kube-system/bootstrap-token-<id>` without `expiration`, usable
/// for authentication and signing, in kubeadm's node group: "Authenticating
/// with Bootstrap Tokens", kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/).
fn ensure_group_token(world: &World) -> Result<String, MotoWorldError> {
    let (id, secret) = GROUP_TOKEN;
    let object = serde_json::json!({
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "token-id": id,
            "token-secret": secret,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
            "description": "the Auto Scaling groups' own launch templates",
        },
    });
    match world.store.create(&SECRETS, "kube-system", object) {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(format!("{id}.{secret}")),
        Err(e) => Err(MotoWorldError::Token(e)),
    }
}

/// User data that joins `pool` with `token`: the contract of
/// [`crate::cloud::userdata`], the provider id from the instance.
fn joining_group_user_data(endpoint: &str, ca_hash: &str, token: &str, pool: &str) -> String {
    format!(
        "#!/bin/bash\nset -euo pipefail\ncat >/etc/kubernetes/join.yaml <<'{HEREDOC_END}'\n\
         apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  \
         bootstrapToken:\n    token: {token}\n    apiServerEndpoint: {endpoint}\n    \
         caCertHashes: [\"{ca_hash}\"]\nnodeRegistration:\n  kubeletExtraArgs:\n    \
         - {{name: provider-id, value: \"{PROVIDER_ID_PLACEHOLDER}\"}}\n    \
         - {{name: node-labels, value: \"{POOL_LABEL}={pool}\"}}\n{HEREDOC_END}\n\
         kubeadm join --config /etc/kubernetes/join.yaml\n",
    )
}

/// What a pool's group is seeded with.
struct GroupSeed<'a> {
    name: &'a str,
    image: &'a str,
    user_data: &'a str,
    subnets: &'a [String],
    members: &'a [String],
    instance_profile: &'a str,
}

/// The workers' IAM role and its instance profile, as worker launch
/// templates name one (the node's cloud-provider and registry
/// credentials): launching from such a template passes the role to EC2,
/// which AWS authorizes as `iam:PassRole`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRole {
    pub role_arn: String,
    pub instance_profile_arn: String,
}

/// The name of the workers' role and instance profile.
pub const NODE_ROLE: &str = "kubesurge-world-nodes";

/// Create [`NodeRole`] in moto's IAM (a role EC2 may assume, an instance
/// profile holding it).
async fn seed_node_role(moto_url: &str, region: &str) -> Result<NodeRole, MotoWorldError> {
    let iam = Ec2::for_service(moto_url, region, "iam", "2010-05-08");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = iam
        .call(
            "CreateRole",
            Params::new()
                .set("RoleName", NODE_ROLE)
                .set("AssumeRolePolicyDocument", trust),
        )
        .await?;
    let profile = iam
        .call(
            "CreateInstanceProfile",
            Params::new().set("InstanceProfileName", NODE_ROLE),
        )
        .await?;
    iam.call(
        "AddRoleToInstanceProfile",
        Params::new()
            .set("InstanceProfileName", NODE_ROLE)
            .set("RoleName", NODE_ROLE),
    )
    .await?;
    let arn = |root: &super::xml::Element, path: &str, action: &str| {
        root.text_at(path)
            .map(str::to_string)
            .ok_or_else(|| Ec2Error::Unreadable {
                action: action.into(),
                message: format!("no {path}"),
            })
    };
    Ok(NodeRole {
        role_arn: arn(&role, "CreateRoleResult/Role/Arn", "CreateRole")?,
        instance_profile_arn: arn(
            &profile,
            "CreateInstanceProfileResult/InstanceProfile/Arn",
            "CreateInstanceProfile",
        )?,
    })
}

/// A pool's group: its own template (the pool's image, the user data
/// given), the pool's workers attached as its members, `MinSize` one
/// below and `MaxSize` at their number (no headroom: a run must raise it),
/// and `ScheduledActions` suspended by its owner (a run must leave it so).
async fn seed_group(
    ec2: &Ec2,
    autoscaling: &AutoScalingApi,
    seed: &GroupSeed<'_>,
) -> Result<(), MotoWorldError> {
    let GroupSeed {
        name: group,
        image,
        user_data,
        subnets,
        members,
        instance_profile,
    } = *seed;
    let template = ec2
        .create_launch_template_with(
            &format!("{group}-template"),
            "t3.medium",
            image,
            user_data,
            Some(instance_profile),
        )
        .await?;
    let size = members.len() as u32;
    autoscaling
        .create_group(group, &template, 0, size, subnets)
        .await?;
    if !members.is_empty() {
        autoscaling.attach(group, members).await?;
    }
    autoscaling
        .update_sizes(group, size.saturating_sub(1), size)
        .await?;
    autoscaling.suspend(group, &["ScheduledActions"]).await?;
    Ok(())
}

/// The values of `key` in a query-API request body.
fn form_values(body: &[u8], key: &str) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
        .collect()
}

/// `InstanceId.N` values of a query-API request body.
fn instance_ids(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let n = key.strip_prefix("InstanceId.")?;
            n.parse::<u32>().ok().map(|_| value.to_string())
        })
        .collect()
}

/// The pools of a world, for callers that build a [`WorldConfig`].
pub fn pools(spec: &[(&str, usize)]) -> Vec<PoolSpec> {
    spec.iter()
        .map(|(name, workers)| PoolSpec {
            name: name.to_string(),
            workers: *workers,
        })
        .collect()
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_groups_user_data_joins_its_pool_with_the_groups_token() {
        let (id, secret) = GROUP_TOKEN;
        let text = joining_group_user_data(
            "127.0.0.1:6443",
            "sha256:00",
            &format!("{id}.{secret}"),
            "general",
        );
        let spec = crate::cloud::userdata::parse_user_data(&text, "aws:///us-east-1a/i-0a")
            .expect("the machines can read it");
        assert_eq!(spec.token.id, id);
        assert_eq!(spec.api_server_endpoint, "127.0.0.1:6443");
        assert_eq!(spec.provider_id(), Some("aws:///us-east-1a/i-0a"));
        assert_eq!(
            spec.node_labels().unwrap(),
            BTreeMap::from([(POOL_LABEL.to_string(), "general".to_string())])
        );
    }

    #[test]
    fn terminated_ids_are_read_from_the_request() {
        let body =
            b"Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-0a&InstanceId.2=i-0b";
        assert_eq!(instance_ids(body), ["i-0a", "i-0b"]);
        assert!(instance_ids(b"Action=TerminateInstances&DryRun=true").is_empty());
    }

    #[test]
    fn the_instance_of_a_termination_in_a_group_is_read_from_the_request() {
        let body = b"Action=TerminateInstanceInAutoScalingGroup&Version=2011-01-01&InstanceId=i-0a&ShouldDecrementDesiredCapacity=true";
        assert_eq!(form_values(body, "InstanceId"), ["i-0a"]);
        assert!(form_values(body, "InstanceIds").is_empty());
    }
}
