//! The shared harness of the tests on moto: the real binary pointed at a
//! moto world through the fault proxy, with moto's test credentials and
//! nothing of the machine's own AWS configuration; and a world whose
//! workers are pools of EC2 instances (plain or Auto Scaling groups) with
//! the §8.3 observer attached.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use kubesurge_testworld::Timing;
use kubesurge_testworld::moto::{AfterSuccess, FaultProxy, MotoServer, MotoWorld, MotoWorldConfig};
use kubesurge_testworld::world::{PoolSpec, WorldConfig};
use tokio::process::Command;

/// What the tests add to the config the world writes: drains and joins
/// timed for the fast world.
pub const FAST_RUN_SETTINGS: &str = "drain: { timeout: 60s, onTimeout: fail, unmanagedPods: delete }\njoin: { tokenTTL: 2m }\nhealth: { newNodeTimeout: 30s, settle: 1s }\n";

/// stdout then stderr, for failure messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `kubesurge --kubeconfig KUBECONFIG` talking to AWS at `endpoint` (the
/// proxy) with the world's test credentials; no profile, config file or
/// credentials file of the machine's user leaks in.
pub fn kubesurge_on_moto(world: &MotoWorld, endpoint: &str, kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubesurge"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env_remove("KUBESURGE_CONFIG")
        .env_remove("AWS_PROFILE")
        .envs(world.aws_env(endpoint))
        .env("AWS_CONFIG_FILE", "/nonexistent/kubesurge-test-aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/kubesurge-test-aws-credentials",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A world of pools on moto.
pub struct MotoSpec<'a> {
    pub cluster: &'a str,
    /// Pools and their workers.
    pub pools: &'a [(&'a str, usize)],
    /// The pools whose workers are an Auto Scaling group's members.
    pub auto_scaling: &'a [&'a str],
    pub zones: usize,
    pub max_surge: u32,
    /// Called on every call moto answered with success (kill points).
    pub hook: Option<AfterSuccess>,
}

/// A running moto world, its proxy, the files a run uses.
pub struct MotoEnv {
    pub moto: MotoServer,
    pub proxy: FaultProxy,
    pub world: MotoWorld,
    /// Holds the files for the harness's lifetime.
    pub _dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// The config the world writes for its pools, with [`FAST_RUN_SETTINGS`].
    pub config: PathBuf,
}

pub async fn start(spec: MotoSpec<'_>) -> MotoEnv {
    let moto = MotoServer::start().await.expect("moto starts");
    let mut config = MotoWorldConfig::new(WorldConfig {
        cluster_name: spec.cluster.into(),
        control_planes: 1,
        pools: spec
            .pools
            .iter()
            .map(|(name, workers)| PoolSpec {
                name: name.to_string(),
                workers: *workers,
            })
            .collect(),
        zones: spec.zones,
        version: "v1.35.3".into(),
        timing: Timing::fast(),
        workloads: true,
    });
    config.auto_scaling_pools = spec.auto_scaling.iter().map(|p| p.to_string()).collect();
    let world = MotoWorld::start(moto.url(), config)
        .await
        .expect("moto world starts");
    world
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("moto world ready");
    let proxy = FaultProxy::start_with_hook(world.endpoint(), spec.hook)
        .await
        .expect("proxy starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let (kubeconfig, config, _) = world
        .write_config_files(dir.path(), proxy.url(), spec.max_surge)
        .expect("files");
    let mut yaml = std::fs::read_to_string(&config).expect("config");
    yaml.push_str(FAST_RUN_SETTINGS);
    std::fs::write(&config, yaml).expect("config");
    MotoEnv {
        moto,
        proxy,
        world,
        _dir: dir,
        kubeconfig,
        config,
    }
}

impl MotoEnv {
    /// `kubesurge` with the world's kubeconfig, through the proxy; `config`
    /// when given.
    pub fn command(&self, config: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = kubesurge_on_moto(&self.world, self.proxy.url(), &self.kubeconfig);
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.args(args);
        cmd
    }

    /// Run to its end, within four minutes.
    pub async fn run(&self, config: Option<&Path>, args: &[&str]) -> Output {
        tokio::time::timeout(
            Duration::from_secs(240),
            self.command(config, args).output(),
        )
        .await
        .expect("kubesurge finishes in time")
        .expect("kubesurge runs")
    }

    /// Every call since the last reset changed nothing in the cloud (a
    /// read, a dry run, a question to IAM's policy simulator).
    pub fn assert_no_mutating_call(&self) {
        let calls = self.proxy.calls();
        for call in &calls {
            assert!(
                call.changes_nothing(),
                "a mutating call: {call:?} in {calls:?}"
            );
        }
    }

    /// Stop everything; fail if moto met a call it does not implement.
    pub fn finish(self) {
        self.world.stop();
        drop(self.proxy);
        if let Err(e) = self.moto.stop() {
            panic!("{e}");
        }
    }
}
