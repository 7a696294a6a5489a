//! `kubesurge sandbox`: the emulated world, for a first look and for demos.
//!
//! `kubesurge sandbox up` starts a world (an emulated API server with a
//! kubeadm cluster, and a simulated cloud behind the `sim` provider),
//! writes `DIR/kubeconfig` and `DIR/kubesurge.yaml`, prints one line
//!
//! ```text
//! ready: kubeconfig=<path> config=<path>
//! ```
//!
//! and serves until SIGINT or SIGTERM. The emulated API server enforces
//! RBAC: the admin kubeconfig is `system:masters`; with
//! `--as-service-account NS/NAME` the sandbox also writes
//! `DIR/kubeconfig-NS-NAME`, a token of that ServiceAccount (created
//! without roles if missing), and the ready line adds
//! `service-account-kubeconfig=<path>`. `kubesurge sandbox` alone starts the
//! same world, prints a summary and the same line, then runs the upgrade
//! demo on it. Logs go to stderr; stdout has only what is described here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kubesurge_testworld::Timing;
use kubesurge_testworld::moto::MotoWorldError;
use kubesurge_testworld::resources::NODES;
use kubesurge_testworld::world::{PoolSpec, World, WorldConfig, WorldError};
use serde_json::Value;
use thiserror::Error;

use super::CommandError;
use super::args::{GlobalArgs, LogFormat, MutationFlags};
use super::output::print;
use super::upgrade::{self, UpgradeArgs};
use crate::ExitStatus;
use crate::version::{self, KubeVersion};

/// The version a sandbox cluster starts at: the newest minor the tool knows
/// (v1.37) minus two, so that there are hops to upgrade through. A named
/// constant until `crate::version` says which minor is the newest it knows.
pub const DEFAULT_SANDBOX_VERSION: KubeVersion = KubeVersion::new(1, 35, 3);

/// Minors the sandbox cloud has node images for.
const IMAGE_MINORS: std::ops::RangeInclusive<u64> = 28..=37;

/// The pool the sandbox's workers belong to.
pub const SANDBOX_POOL: &str = "general";

/// How long the world may take to settle before the sandbox gives up:
/// generous, since boot delays are the user's to choose.
const READY_TIMEOUT_FLOOR: Duration = Duration::from_secs(120);

/// Why the sandbox could not start or serve.
#[derive(Debug, Error)]
pub enum SandboxError {
    #[error(
        "--version {version}: the sandbox has node images for v1.{}.x to v1.{}.x",
        IMAGE_MINORS.start(),
        IMAGE_MINORS.end()
    )]
    NoImages { version: KubeVersion },
    #[error("--control-planes must be at least 1")]
    NoControlPlane,
    #[error("--zones must be between 1 and 26, not {0}")]
    Zones(usize),
    #[error("the sandbox did not start: {0}")]
    Start(#[source] WorldError),
    #[error("the sandbox did not start on moto: {0}")]
    StartOnMoto(#[source] MotoWorldError),
    #[error("the sandbox did not settle: {0}")]
    Settle(#[source] WorldError),
    #[error("the sandbox did not settle: {0}")]
    SettleOnMoto(#[source] MotoWorldError),
    #[error(transparent)]
    WriteFiles(WorldError),
    #[error(transparent)]
    WriteFilesOnMoto(MotoWorldError),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Arguments of `kubesurge sandbox`.
#[derive(Debug, Clone, clap::Args)]
#[command(disable_version_flag = true)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub command: Option<SandboxCommand>,

    /// Control-plane nodes.
    #[arg(long, default_value_t = 1, global = true, value_name = "N")]
    pub control_planes: usize,

    /// Workers (in the pool `general`).
    #[arg(long, default_value_t = 3, global = true, value_name = "N")]
    pub workers: usize,

    /// Availability zones the nodes are spread over.
    #[arg(long, default_value_t = 3, global = true, value_name = "N")]
    pub zones: usize,

    /// Kubernetes version of the cluster [default: v1.35.3].
    #[arg(long, global = true, value_name = "vX.Y.Z")]
    pub version: Option<KubeVersion>,

    /// Where to write kubeconfig and kubesurge.yaml [default: a new
    /// temporary directory, kept].
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// How long a new machine takes to boot and join (`3s`, `200ms`).
    #[arg(long, global = true, value_parser = parse_delay, value_name = "DURATION")]
    pub boot_delay: Option<Duration>,

    /// How long a pod takes from scheduled to Running and Ready.
    #[arg(long, global = true, value_parser = parse_delay, value_name = "DURATION")]
    pub pod_start_delay: Option<Duration>,

    /// How long an instance takes to terminate.
    #[arg(long, global = true, value_parser = parse_delay, value_name = "DURATION")]
    pub termination_delay: Option<Duration>,

    /// Where the workers live: `sim` (the simulated cloud) or `aws` (EC2
    /// instances in a moto server, see --aws-endpoint).
    #[arg(long, global = true, value_enum, default_value_t = SandboxCloud::Sim)]
    pub cloud: SandboxCloud,

    /// Also write a kubeconfig for the ServiceAccount NS/NAME (created
    /// without roles if missing; bind it roles with kubectl), to see what
    /// a least-privilege identity may do.
    #[arg(long, global = true, value_parser = parse_service_account, value_name = "NS/NAME")]
    pub as_service_account: Option<(String, String)>,

    /// The moto server (`http://127.0.0.1:5000`) the `aws` cloud lives in.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        required_if_eq("cloud", "aws")
    )]
    pub aws_endpoint: Option<String>,
}

/// Where the sandbox's workers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxCloud {
    Sim,
    Aws,
}

/// Subcommands of `kubesurge sandbox`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SandboxCommand {
    /// Start the world and serve it until interrupted (SIGINT, SIGTERM).
    Up,
}

/// `NS/NAME` of a ServiceAccount: two DNS labels.
pub fn parse_service_account(text: &str) -> Result<(String, String), String> {
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    match text.split_once('/') {
        Some((ns, name)) if dns_label(ns) && dns_label(name) => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not NAMESPACE/NAME of a ServiceAccount (lower-case DNS labels)"
        )),
    }
}

/// A delay in the one duration grammar (`200ms`, `3s`, `0s`).
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    crate::duration::parse_delay(text).map_err(|e| e.to_string())
}

/// The world the arguments ask for. Pure.
pub fn world_config(args: &SandboxArgs) -> Result<WorldConfig, SandboxError> {
    let version = sandbox_version(args);
    if !IMAGE_MINORS.contains(&version.minor) || version.major != 1 {
        return Err(SandboxError::NoImages { version });
    }
    if args.control_planes == 0 {
        return Err(SandboxError::NoControlPlane);
    }
    if !(1..=26).contains(&args.zones) {
        return Err(SandboxError::Zones(args.zones));
    }
    let mut timing = Timing::sandbox();
    if let Some(boot) = args.boot_delay {
        timing.boot = boot;
    }
    if let Some(pod_start) = args.pod_start_delay {
        timing.pod_start = pod_start;
    }
    if let Some(terminate) = args.termination_delay {
        timing.terminate = terminate;
    }
    Ok(WorldConfig {
        cluster_name: "sandbox".into(),
        control_planes: args.control_planes,
        pools: vec![PoolSpec {
            name: SANDBOX_POOL.into(),
            workers: args.workers,
        }],
        zones: args.zones,
        version: version.to_string(),
        timing,
        workloads: true,
    })
}

/// The version the sandbox cluster starts at.
fn sandbox_version(args: &SandboxArgs) -> KubeVersion {
    args.version.unwrap_or(DEFAULT_SANDBOX_VERSION)
}

/// Run `kubesurge sandbox`.
pub async fn run(args: SandboxArgs) -> Result<ExitStatus, CommandError> {
    let config = world_config(&args)?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => new_kept_temp_dir()?,
    };
    tracing::info!(
        version = %config.version,
        control_planes = config.control_planes,
        workers = args.workers,
        zones = config.zones,
        "starting the sandbox world"
    );
    let ready_timeout = READY_TIMEOUT_FLOOR.max(config.timing.boot * 20);
    let start = Start {
        version: sandbox_version(&args),
        dir: &dir,
        command: args.command.as_ref(),
        ready_timeout,
        service_account: args.as_service_account.as_ref(),
    };
    if let (SandboxCloud::Aws, Some(endpoint)) = (args.cloud, &args.aws_endpoint) {
        return run_on_moto(config, endpoint, start).await;
    }
    let world = World::start(config).await.map_err(SandboxError::Start)?;
    let outcome = serve(&world, start).await;
    world.stop();
    outcome
}

/// What serving a started world needs.
struct Start<'a> {
    /// The cluster's version.
    version: KubeVersion,
    dir: &'a Path,
    command: Option<&'a SandboxCommand>,
    ready_timeout: Duration,
    service_account: Option<&'a (String, String)>,
}

/// ` service-account-kubeconfig=<path>` when asked for, written into `dir`.
fn service_account_part(world: &World, start: &Start<'_>) -> Result<String, SandboxError> {
    let Some((namespace, name)) = start.service_account else {
        return Ok(String::new());
    };
    let path = world
        .write_service_account_kubeconfig(start.dir, namespace, name)
        .map_err(SandboxError::WriteFiles)?;
    Ok(format!(" service-account-kubeconfig={}", path.display()))
}

async fn serve(world: &World, start: Start<'_>) -> Result<ExitStatus, CommandError> {
    tokio::select! {
        ready = world.wait_ready(start.ready_timeout) => {
            ready.map_err(SandboxError::Settle)?;
        }
        _ = shutdown_signal() => {
            tracing::info!("interrupted before the sandbox was ready");
            return Ok(ExitStatus::Success);
        }
    }
    let (kubeconfig, config) = world
        .write_config_files(start.dir)
        .map_err(SandboxError::WriteFiles)?;
    let ready_line = format!(
        "ready: kubeconfig={} config={}{}",
        kubeconfig.display(),
        config.display(),
        service_account_part(world, &start)?
    );
    match start.command {
        Some(SandboxCommand::Up) => {
            print(&format!("{ready_line}\n"))?;
            tracing::info!(
                "serving the sandbox; point kubectl at {} (Ctrl-C to stop)",
                kubeconfig.display()
            );
            shutdown_signal().await;
            tracing::info!("stopping the sandbox");
            Ok(ExitStatus::Success)
        }
        None => {
            print(&format!("{}{ready_line}\n", summary(world)))?;
            run_upgrade_demo(start.version, &kubeconfig, &config).await
        }
    }
}

/// `--cloud aws`: the workers are EC2 instances in moto at `endpoint`,
/// the written config uses the `aws` provider, and `DIR/aws.env` points
/// the AWS environment at moto (`source` it before running kubesurge).
async fn run_on_moto(
    config: WorldConfig,
    endpoint: &str,
    start: Start<'_>,
) -> Result<ExitStatus, CommandError> {
    use kubesurge_testworld::moto::{MotoWorld, MotoWorldConfig};
    let world = MotoWorld::start(endpoint, MotoWorldConfig::new(config))
        .await
        .map_err(SandboxError::StartOnMoto)?;
    let outcome = async {
        tokio::select! {
            ready = world.wait_ready(start.ready_timeout) => {
                ready.map_err(SandboxError::SettleOnMoto)?;
            }
            _ = shutdown_signal() => return Ok(ExitStatus::Success),
        }
        let (kubeconfig, config, env) = world
            .write_config_files(start.dir, world.endpoint(), 1)
            .map_err(SandboxError::WriteFilesOnMoto)?;
        let ready_line = format!(
            "ready: kubeconfig={} config={} env={}{}",
            kubeconfig.display(),
            config.display(),
            env.display(),
            service_account_part(&world.world, &start)?
        );
        match start.command {
            Some(SandboxCommand::Up) => {
                print(&format!("{ready_line}\n"))?;
                shutdown_signal().await;
                Ok(ExitStatus::Success)
            }
            None => {
                print(&format!("{}{ready_line}\n", summary(&world.world)))?;
                run_upgrade_demo(start.version, &kubeconfig, &config).await
            }
        }
    }
    .await;
    world.stop();
    outcome
}

/// The full sandbox run: upgrade the world to the next minor with the same
/// command, engine and provider API as a real run — the control plane in
/// place through kubeadm on the simulated machines, then the workers by
/// surge — and print its report.
async fn run_upgrade_demo(
    current: KubeVersion,
    kubeconfig: &Path,
    config: &Path,
) -> Result<ExitStatus, CommandError> {
    let next_minor = current.minor + 1;
    let target = version::latest_known_patch(current.major, next_minor)
        .unwrap_or(KubeVersion::new(current.major, next_minor, 0));
    print(&format!(
        "\nupgrading the sandbox from {current} to {target}\n\n"
    ))?;
    let global = GlobalArgs {
        kubeconfig: Some(kubeconfig.as_os_str().to_owned()),
        context: None,
        config: Some(config.to_path_buf()),
        request_timeout: None,
        as_user: None,
        as_group: Vec::new(),
        log_format: LogFormat::Text,
        verbose: 0,
        quiet: 0,
    };
    let args = UpgradeArgs {
        to: target,
        flags: MutationFlags {
            yes: true,
            ..MutationFlags::default()
        },
    };
    upgrade::run(&global, args).await
}

/// Nodes, versions and pools of the world, for a human.
fn summary(world: &World) -> String {
    let c = world.config();
    let (nodes, _) = world.store.list(&NODES, None, |_| true);
    let mut rows = vec![[
        "NODE".to_string(),
        "ROLE".into(),
        "VERSION".into(),
        "POOL".into(),
        "ZONE".into(),
        "READY".into(),
    ]];
    for node in &nodes {
        let text = |pointer: &str| {
            node.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        };
        let role = if node
            .pointer("/metadata/labels/node-role.kubernetes.io~1control-plane")
            .is_some()
        {
            "control-plane"
        } else {
            "worker"
        };
        let ready = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            })
            .and_then(|c| c.get("status").and_then(Value::as_str))
            .unwrap_or("Unknown");
        rows.push([
            text("/metadata/name"),
            role.to_string(),
            text("/status/nodeInfo/kubeletVersion"),
            text("/metadata/labels/kubesurge.io~1pool"),
            text("/metadata/labels/topology.kubernetes.io~1zone"),
            ready.to_string(),
        ]);
    }
    let workers: usize = c.pools.iter().map(|p| p.workers).sum();
    let mut out = format!(
        "cluster {}: Kubernetes {}, {} control-plane node(s), {} worker(s) in pool(s) {}, {} zone(s)\n",
        c.cluster_name,
        c.version,
        c.control_planes,
        workers,
        c.pools
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        c.zones
    );
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A fresh directory under the system's temp dir, left in place so the
/// files stay usable after the sandbox stops.
fn new_kept_temp_dir() -> Result<PathBuf, SandboxError> {
    let suffix: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!(
        "kubesurge-sandbox-{}-{suffix:016x}",
        std::process::id()
    ));
    match std::fs::create_dir_all(&dir) {
        Ok(()) => Ok(dir),
        Err(source) => Err(SandboxError::CreateDir { path: dir, source }),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sandbox: SandboxArgs,
    }

    fn parse(args: &[&str]) -> SandboxArgs {
        let mut argv = vec!["sandbox"];
        argv.extend(args);
        Cli::try_parse_from(argv).expect("parses").sandbox
    }

    #[test]
    fn defaults_are_one_control_plane_three_workers_three_zones() {
        let args = parse(&[]);
        assert!(args.command.is_none());
        let c = world_config(&args).expect("valid");
        assert_eq!(c.control_planes, 1);
        assert_eq!(c.pools[0].workers, 3);
        assert_eq!(c.zones, 3);
        assert_eq!(c.version, "v1.35.3");
        assert_eq!(c.timing, Timing::sandbox());
    }

    #[test]
    fn a_service_account_is_namespace_slash_name() {
        let args = parse(&["up", "--as-service-account", "kube-system/kubesurge"]);
        assert_eq!(
            args.as_service_account,
            Some(("kube-system".to_string(), "kubesurge".to_string()))
        );
        for bad in ["kubesurge", "kube-system/", "/x", "Kube/x", "a/b/c"] {
            let argv = ["sandbox", "up", "--as-service-account", bad];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_after_up_shape_the_world() {
        let args = parse(&[
            "up",
            "--workers",
            "6",
            "--version",
            "1.33.2",
            "--boot-delay",
            "200ms",
            "--termination-delay",
            "2s",
        ]);
        assert!(matches!(args.command, Some(SandboxCommand::Up)));
        let c = world_config(&args).expect("valid");
        assert_eq!(c.pools[0].workers, 6);
        assert_eq!(c.version, "v1.33.2");
        assert_eq!(c.timing.boot, Duration::from_millis(200));
        assert_eq!(c.timing.terminate, Duration::from_secs(2));
        assert_eq!(c.timing.pod_start, Timing::sandbox().pod_start);
    }

    #[test]
    fn the_aws_cloud_needs_its_endpoint() {
        assert_eq!(parse(&[]).cloud, SandboxCloud::Sim);
        let args = parse(&[
            "up",
            "--cloud",
            "aws",
            "--aws-endpoint",
            "http://127.0.0.1:5000",
        ]);
        assert_eq!(args.cloud, SandboxCloud::Aws);
        assert_eq!(args.aws_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        let argv = ["sandbox", "up", "--cloud", "aws"];
        assert!(
            Cli::try_parse_from(argv).is_err(),
            "--aws-endpoint is required"
        );
    }

    #[test]
    fn bad_inputs_are_refused_before_anything_starts() {
        for args in [
            vec!["--version", "v1.20.0"],
            vec!["--control-planes", "0"],
            vec!["--zones", "0"],
        ] {
            let err = CommandError::from(world_config(&parse(&args)).expect_err("invalid"));
            assert_eq!(err.status(), ExitStatus::Invalid, "{args:?}");
        }
        assert!(parse_delay("3").is_err());
        assert!(parse_delay("3x").is_err());
        assert!(parse_delay("ms").is_err());
        assert_eq!(parse_delay("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("2m"), Ok(Duration::from_secs(120)));
    }
}
