//! `kubesurge-bench` (design §12): how close a rotation comes to the
//! physical limit, what it costs per node, and how it compares with
//! one-at-a-time rotation.
//!
//! The parent process plans the scenarios and runs each in a process of
//! its own (`--run-scenario`), so that each world's memory and CPU are its
//! own. A scenario process starts the test world with scaled delays and
//! runs the real `kubesurge rotate` against it. The tool is started by a
//! launcher process (see `launcher`) the scenario process starts before
//! the world exists, so the tool's CPU and peak memory, from the
//! launcher's `getrusage(RUSAGE_CHILDREN)`, are the tool's own; the
//! world's come from the scenario process itself. The parent prints the
//! figures as Markdown and writes them as JSON.
//!
//! Run as `cargo run --release -p kubesurge-bench -- [--scenario NxS]…`.
//! A crate of its own, so that what only measuring needs (`getrusage`
//! through nix) stays out of kubesurge's dependencies.

mod launcher;
mod measure;
mod peer;
mod report;
mod scenario;
mod spec;
mod timeline;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Parser;
use serde::Serialize;
use serde::de::DeserializeOwned;

use report::{Figures, Header, SequentialBase};
use scenario::ScenarioResult;
use spec::{Delays, Layout, ScenarioSpec, Shape, WorkloadSpec};

/// Measure kubesurge's rotation against the emulated world: makespan
/// against the physical lower bound, API economy per replaced node, the
/// tool's footprint, and the speed-up over one-at-a-time rotation.
#[derive(Debug, Parser)]
#[command(name = "kubesurge-bench", version)]
struct Args {
    /// A scenario NxS: N workers over three pools and three zones, S
    /// replacements in flight in total (repeatable)
    #[arg(long = "scenario", value_name = "NxS", default_values = ["100x10", "100x100", "1000x100"])]
    scenarios: Vec<Shape>,

    /// Workers of the one-at-a-time reference run (S=1, pools one after
    /// another), whose per-node time stands for every N that has no S=1
    /// scenario of its own; 0: no comparison
    #[arg(long, value_name = "N", default_value_t = 12)]
    sequential_nodes: usize,

    /// Factor from real-world delays (boot 90 s, 30 s grace, terminate 30
    /// s, 15 s validation pause) to the world's
    #[arg(long, value_name = "FACTOR", default_value_t = 0.1)]
    scale: f64,

    /// Deployment pods per worker
    #[arg(long, value_name = "N", default_value_t = 3)]
    pods_per_node: usize,

    /// Replicas of each Deployment (each has a PDB with maxUnavailable 1)
    #[arg(long, value_name = "N", default_value_t = 6)]
    replicas: usize,

    /// Also write the figures here as JSON
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,

    /// The kubesurge binary [default: next to this one, built first when
    /// run by cargo]
    #[arg(long, value_name = "PATH")]
    kubesurge: Option<PathBuf>,

    /// Keep every scenario's config files, reports and kubesurge logs here
    /// [default: a temporary directory, removed after a successful run]
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,

    /// Instead of the scenarios above on the sim cloud, rotate each
    /// scenario's world twice, once with kubesurge and once with this
    /// peer, both on fresh worlds whose workers are Auto Scaling group
    /// members in moto; the peer is installed from PyPI into .tools/ first
    #[arg(long, value_name = "PEER")]
    peer: Option<peer::Peer>,

    /// Stop a tool's run against the peer after this many seconds (its
    /// row then says so) [default: generous, about 4·N·(B+D+T+polls)]
    #[arg(long, value_name = "SECONDS", requires = "peer")]
    peer_timeout: Option<f64>,

    /// Run one scenario (a JSON ScenarioSpec) and print its measurements
    /// as JSON: what the parent process runs
    #[arg(long, value_name = "JSON", hide = true)]
    run_scenario: Option<String>,

    /// Run one tool on one world against a peer (a JSON PeerSpec) and
    /// print its measurements as JSON: what the parent process runs
    #[arg(long, value_name = "JSON", hide = true)]
    run_peer_scenario: Option<String>,

    /// Spawn the runs a scenario process asks for on stdin (see launcher)
    #[arg(long, hide = true)]
    launcher: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.launcher {
        return launcher::serve();
    }
    if let Some(spec) = &args.run_scenario {
        return scenario_main(spec);
    }
    if let Some(spec) = &args.run_peer_scenario {
        return peer_scenario_main(spec);
    }
    match bench(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("kubesurge-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The scenario process: run it, print the result as one JSON document.
fn scenario_main(spec: &str) -> ExitCode {
    let spec: ScenarioSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubesurge-bench: bad scenario spec: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubesurge-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scenario::run(&spec)) {
        Ok(result) => match serde_json::to_string(&result) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kubesurge-bench: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("kubesurge-bench: scenario {}: {e}", spec.shape);
            ExitCode::FAILURE
        }
    }
}

/// The scenario process of a run against a peer.
fn peer_scenario_main(spec: &str) -> ExitCode {
    let spec: peer::PeerSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubesurge-bench: bad peer scenario spec: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubesurge-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(peer::run::run(&spec)) {
        Ok(result) => match serde_json::to_string(&result) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kubesurge-bench: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!(
                "kubesurge-bench: {} at {}: {e}",
                spec.contender.name(),
                spec.shape
            );
            ExitCode::FAILURE
        }
    }
}

/// What to run: the scenarios asked for, then the reference S=1 run when
/// some N has no S=1 scenario of its own.
fn plan(args: &Args) -> Vec<(Shape, bool)> {
    let mut runs: Vec<(Shape, bool)> = Vec::new();
    for s in &args.scenarios {
        if !runs.iter().any(|(r, _)| r == s) {
            runs.push((*s, false));
        }
    }
    let reference = Shape {
        nodes: args.sequential_nodes.max(spec::POOLS.len()),
        surge: 1,
    };
    let needs_reference = args.sequential_nodes > 0
        && runs
            .iter()
            .any(|(s, _)| !runs.iter().any(|(r, _)| r.surge == 1 && r.nodes == s.nodes));
    if needs_reference && !runs.iter().any(|(r, _)| *r == reference) {
        runs.push((reference, true));
    }
    runs
}

/// The S=1 run each N's one-at-a-time figure comes from.
fn sequential_base(
    nodes: usize,
    results: &[ScenarioResult],
    enabled: bool,
) -> Option<SequentialBase> {
    if !enabled {
        return None;
    }
    let s1 = |r: &&ScenarioResult| r.shape.surge == 1;
    let base = results
        .iter()
        .filter(s1)
        .find(|r| r.shape.nodes == nodes)
        .or_else(|| results.iter().filter(s1).find(|r| r.reference))?;
    Some(SequentialBase {
        nodes: base.shape.nodes,
        makespan: base.makespan,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    date: String,
    machine: Machine,
    kubesurge: String,
    delays: &'a Delays,
    workload: WorkloadSpec,
    scenarios: Vec<Entry<'a>>,
    /// S=1 cells not measured, from the reference run's time per node.
    extrapolated_s1: Vec<report::ExtrapolatedS1>,
    failures: Vec<String>,
    /// With `--peer`: each tool's run of each scenario.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    peer: Vec<PeerEntry<'a>>,
}

#[derive(Serialize)]
struct PeerEntry<'a> {
    measured: &'a peer::PeerResult,
    figures: &'a peer::table::PeerFigures,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Machine {
    cores: usize,
    load_before: Option<f64>,
}

#[derive(Serialize)]
struct Entry<'a> {
    measured: &'a ScenarioResult,
    figures: &'a Figures,
}

fn bench(args: &Args) -> Result<ExitCode, String> {
    if !(args.scale > 0.0 && args.scale <= 1.0) {
        return Err(format!("--scale {} must be in (0, 1]", args.scale));
    }
    if args.replicas == 0 || args.pods_per_node == 0 {
        return Err("--replicas and --pods-per-node must be at least 1".into());
    }
    let kubesurge = kubesurge_binary(args.kubesurge.clone())?;
    let (workdir, temporary) = match &args.workdir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("kubesurge-bench-{}", std::process::id())),
            true,
        ),
    };
    let delays = Delays::scaled(args.scale);
    let workload = WorkloadSpec {
        pods_per_node: args.pods_per_node,
        replicas: args.replicas,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = measure::load_average();
    let date = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();

    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut failures = Vec::new();
    let mut peer_runs: Vec<(peer::PeerResult, peer::table::PeerFigures)> = Vec::new();
    let runs_planned = match args.peer {
        Some(p) => {
            peer_runs = against_peer(
                args,
                p,
                &kubesurge,
                &workdir,
                &delays,
                workload,
                &mut failures,
            )?;
            Vec::new()
        }
        None => plan(args),
    };
    for (shape, reference) in runs_planned {
        let layout = Layout::of(shape);
        eprintln!(
            "kubesurge-bench: {shape}{}: {}; bound {} waves × {:.1} s",
            if reference {
                " (one-at-a-time reference)"
            } else {
                ""
            },
            layout.describe(),
            layout.waves(),
            delays.per_slot()
        );
        let spec = ScenarioSpec {
            shape,
            layout,
            delays: delays.clone(),
            workload,
            kubesurge: kubesurge.clone(),
            workdir: workdir.join(shape.to_string()),
            reference,
        };
        match run_scenario_process(&spec) {
            Ok(r) => {
                eprintln!(
                    "kubesurge-bench: {shape}: {} nodes replaced in {:.1} s",
                    r.replaced, r.makespan
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("kubesurge-bench: {shape}: {e}");
                failures.push(format!("{shape}: {e}"));
            }
        }
    }

    let runs: Vec<(ScenarioResult, Figures)> = results
        .iter()
        .map(|r| {
            let base = sequential_base(r.shape.nodes, &results, args.sequential_nodes > 0);
            let f = report::figures(r, &delays, base);
            (r.clone(), f)
        })
        .collect();
    let header = Header {
        date: &date,
        cores,
        load_before,
        delays: &delays,
        workload,
    };
    if args.peer.is_some() {
        println!(
            "# kubesurge-bench --peer, {date}\n\nMachine: {cores} cores, load average {} before the first run.\n",
            load_before.map_or_else(|| "?".into(), |l| format!("{l:.1}"))
        );
        println!("{}", peer::table::markdown(&peer_runs, &delays));
    } else {
        println!("{}", report::markdown(&header, &runs));
    }
    for f in &failures {
        println!("**failed**: {f}\n");
    }
    if let Some(path) = &args.json {
        let doc = Document {
            date: date.clone(),
            machine: Machine { cores, load_before },
            kubesurge: kubesurge.display().to_string(),
            delays: &delays,
            workload,
            scenarios: runs
                .iter()
                .map(|(measured, figures)| Entry { measured, figures })
                .collect(),
            extrapolated_s1: report::extrapolated_s1(&runs, &delays),
            failures: failures.clone(),
            peer: peer_runs
                .iter()
                .map(|(measured, figures)| PeerEntry { measured, figures })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if failures.is_empty() {
        if temporary {
            let _ = std::fs::remove_dir_all(&workdir);
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "kubesurge-bench: {} scenario(s) failed; their files are in {}",
            failures.len(),
            workdir.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Each scenario's world rotated by kubesurge, then by the peer, each in
/// a scenario process of its own on a fresh world.
fn against_peer(
    args: &Args,
    which: peer::Peer,
    kubesurge: &Path,
    workdir: &Path,
    delays: &spec::Delays,
    workload: WorkloadSpec,
    failures: &mut Vec<String>,
) -> Result<Vec<(peer::PeerResult, peer::table::PeerFigures)>, String> {
    std::fs::create_dir_all(workdir)
        .map_err(|e| format!("cannot create {}: {e}", workdir.display()))?;
    let install = match which {
        peer::Peer::EksRollingUpdate => peer::setup::install(&peer::setup::tools_dir(), workdir)
            .map_err(|e| format!("{}: {e}", which.name()))?,
    };
    let mut shapes: Vec<Shape> = Vec::new();
    for s in &args.scenarios {
        if !shapes.contains(s) {
            shapes.push(*s);
        }
    }
    let mut rows = Vec::new();
    for shape in shapes {
        let layout = Layout::of(shape);
        for contender in [
            peer::Contender::Kubesurge {
                binary: kubesurge.to_path_buf(),
            },
            peer::Contender::EksRollingUpdate {
                install: install.clone(),
            },
        ] {
            let name = contender.name();
            eprintln!(
                "kubesurge-bench: {shape} by {name} on Auto Scaling groups in moto: {}",
                layout.describe()
            );
            let spec = peer::PeerSpec {
                shape,
                layout: layout.clone(),
                delays: delays.clone(),
                workload,
                contender,
                workdir: workdir.join(format!("{shape}-{name}")),
                timeout_s: args.peer_timeout,
            };
            match run_child::<peer::PeerResult>("--run-peer-scenario", &spec) {
                Ok(r) => {
                    eprintln!(
                        "kubesurge-bench: {shape} by {name}: {} of {} workers replaced in {:.1} s ({})",
                        r.replaced, r.workers, r.makespan, r.status
                    );
                    // The peer failing is a measurement (its row says
                    // so); kubesurge failing fails the benchmark.
                    if !r.succeeded && matches!(spec.contender, peer::Contender::Kubesurge { .. }) {
                        failures.push(format!("{shape} by {name}: {}", r.status));
                    }
                    let f = peer::table::figures(&r, delays);
                    rows.push((r, f));
                }
                Err(e) => {
                    eprintln!("kubesurge-bench: {shape} by {name}: {e}");
                    failures.push(format!("{shape} by {name}: {e}"));
                }
            }
        }
    }
    Ok(rows)
}

/// Run one scenario in a child process of this binary.
fn run_scenario_process(spec: &ScenarioSpec) -> Result<ScenarioResult, String> {
    run_child("--run-scenario", spec)
}

/// Run this binary with `flag <spec as JSON>` and read its answer.
fn run_child<T: DeserializeOwned>(flag: &str, spec: &impl Serialize) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let output = Command::new(&exe)
        .arg(flag)
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    if !output.status.success() {
        return Err(format!(
            "the scenario process exited with {}",
            output.status
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("unreadable measurements: {e}"))
}

/// The `kubesurge` binary: the one given, or the one next to this binary —
/// built first (same profile) when cargo runs us, so it is never stale.
fn kubesurge_binary(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("--kubesurge {}: no such file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let sibling = exe.with_file_name(format!("kubesurge{}", std::env::consts::EXE_SUFFIX));
    if let Some(cargo) = std::env::var_os("CARGO") {
        build_kubesurge(Path::new(&cargo))?;
    }
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(format!(
            "no kubesurge binary at {}: build it (cargo build --release --bin kubesurge) or pass --kubesurge",
            sibling.display()
        ))
    }
}

fn build_kubesurge(cargo: &Path) -> Result<(), String> {
    // The workspace root's manifest: kubesurge is the root package.
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut command = Command::new(cargo);
    command.args([
        "build",
        "--quiet",
        "--bin",
        "kubesurge",
        "--manifest-path",
        manifest,
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!("kubesurge-bench: building kubesurge");
    let status = command
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building kubesurge failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["kubesurge-bench"];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    #[test]
    fn the_default_plan_adds_a_reference_run_for_the_comparison() {
        let plan = plan(&args(&[]));
        let shapes: Vec<String> = plan.iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(shapes, ["100x10", "100x100", "1000x100", "12x1"]);
        assert!(plan[3].1, "the last one is the reference");
    }

    #[test]
    fn no_reference_when_every_n_has_its_own_s1_run_or_comparison_is_off() {
        let p = plan(&args(&["--scenario", "100x1", "--scenario", "100x10"]));
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|(_, reference)| !reference));
        let p = plan(&args(&["--scenario", "50x10", "--sequential-nodes", "0"]));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn an_n_with_its_own_s1_run_compares_with_it() {
        let mk = |shape: &str, reference: bool, makespan: f64| {
            let shape: Shape = shape.parse().unwrap();
            let mut r: ScenarioResult = serde_json::from_value(serde_json::json!({
                "shape": shape, "layout": Layout::of(shape), "reference": reference,
                "workload": {"podsPerNode": 3, "replicas": 6}, "pods": 0, "replaced": shape.nodes,
                "makespan": makespan, "makespanReport": makespan, "processes": 1, "setup": 0.0,
                "breakdown": timeline::Breakdown::default(), "requests": [], "bytesSent": 0,
                "providerCalls": {}, "evictions": {"pods": 0, "requests": 0},
                "tool": measure::Usage::default(), "world": scenario::WorldCost::default(),
                "loadBefore": null, "loadAfter": null
            }))
            .unwrap();
            r.makespan = makespan;
            r
        };
        let results = vec![
            mk("100x1", false, 1700.0),
            mk("100x10", false, 170.0),
            mk("12x1", true, 200.0),
            mk("1000x100", false, 170.0),
        ];
        assert_eq!(
            sequential_base(100, &results, true),
            Some(SequentialBase {
                nodes: 100,
                makespan: 1700.0
            })
        );
        assert_eq!(
            sequential_base(1000, &results, true),
            Some(SequentialBase {
                nodes: 12,
                makespan: 200.0
            })
        );
        assert_eq!(sequential_base(1000, &results, false), None);
    }
}
