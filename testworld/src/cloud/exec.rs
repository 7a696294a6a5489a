//! Running a script on a simulated machine: real bash, in the machine's
//! private directory, with `KUBESURGE_ROOT` at its filesystem and a `PATH`
//! of stand-ins and a few host tools. One script at a time per machine;
//! output streamed line by line; killed (its whole process group) at the
//! timeout. A script keeps running if the caller goes away, as a command
//! sent to a real node's agent does.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kubesurge_provider::InstanceState;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::noderoot::{self, Layout, PackageManager};
use kubesurge_sim::api::{ExecEvent, ExecRequest, code};

/// Longest a script may run here, whatever the caller asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Output lines buffered towards a slow caller.
const EVENT_BUFFER: usize = 256;

/// Why a script could not be started: HTTP status, error code, message.
pub(crate) type Refusal = (u16, &'static str, String);

struct Target {
    id: String,
    manager: PackageManager,
    layout: Arc<Layout>,
}

fn resolve(shared: &Shared, request: &ExecRequest) -> Result<Target, Refusal> {
    let inner = shared.lock();
    let id = match &request.instance_id {
        Some(id) => id.clone(),
        None => inner
            .cloud
            .instances()
            .filter(|r| r.state != InstanceState::Terminated)
            .find(|r| {
                inner
                    .machines
                    .get(&r.id)
                    .is_some_and(|m| m.node_name.as_deref() == Some(request.node.as_str()))
            })
            .map(|r| r.id.clone())
            .ok_or_else(|| {
                (
                    404,
                    code::INSTANCE_NOT_FOUND,
                    format!("no instance runs node {:?}", request.node),
                )
            })?,
    };
    let Some(record) = inner.cloud.instance(&id) else {
        return Err((
            404,
            code::INSTANCE_NOT_FOUND,
            format!("The instance ID '{id}' does not exist"),
        ));
    };
    if record.state != InstanceState::Running {
        return Err((
            409,
            code::EXEC_UNAVAILABLE,
            format!("Instances [[{id}]] not in a valid state for account"),
        ));
    }
    let manager = inner.machines.get(&id).and_then(|m| m.package_manager);
    let layout = shared.roots.existing();
    match (manager, layout) {
        (Some(manager), Some(layout)) => Ok(Target {
            id,
            manager,
            layout,
        }),
        _ => Err((
            409,
            code::EXEC_UNAVAILABLE,
            format!(
                "Instance {id} is not managed: the simulated cloud runs scripts on control-plane machines only"
            ),
        )),
    }
}

/// Start `request` on its machine; the events stream from the receiver.
pub(crate) fn open(
    shared: &Arc<Shared>,
    request: ExecRequest,
) -> Result<mpsc::Receiver<ExecEvent>, Refusal> {
    open_cancellable(shared, request, CancellationToken::new())
}

/// [`open`], and `stop` kills the script (its whole process group) as its
/// timeout would; it then ends with `Failed("stopped")`. For agents that
/// can be told to stop a command (SSM's `CancelCommand`).
pub(crate) fn open_cancellable(
    shared: &Arc<Shared>,
    request: ExecRequest,
    stop: CancellationToken,
) -> Result<mpsc::Receiver<ExecEvent>, Refusal> {
    let target = resolve(shared, &request)?;
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    let shared = shared.clone();
    let timeout = Duration::from_millis(request.timeout_ms).min(MAX_TIMEOUT);
    tokio::spawn(async move {
        let lock = shared.exec_lock(&target.id);
        let _one_script_at_a_time = lock.lock().await;
        if stop.is_cancelled() {
            // Stopped while it waited for the machine: it never ran.
            let _ = tx.send(ExecEvent::Failed("stopped".into())).await;
            return;
        }
        let last = run(&shared, &target, &request.script, timeout, &stop, &tx).await;
        sync_versions(&shared, &target);
        let _ = tx.send(last).await;
    });
    Ok(rx)
}

/// Run the script to its end; the final event.
async fn run(
    shared: &Shared,
    target: &Target,
    script: &str,
    timeout: Duration,
    stop: &CancellationToken,
    tx: &mpsc::Sender<ExecEvent>,
) -> ExecEvent {
    let layout = &target.layout;
    let run_dir = layout.run_dir(&target.id);
    let home = layout.home(&target.id);
    let path = run_dir.join(format!("script-{:016x}.sh", rand::random::<u64>()));
    if let Err(e) = std::fs::create_dir_all(&run_dir)
        .and_then(|()| std::fs::create_dir_all(&home))
        .and_then(|()| std::fs::write(&path, script))
    {
        return ExecEvent::Failed(format!("cannot write the script: {e}"));
    }
    let mut command = tokio::process::Command::new(&layout.bash);
    command
        .arg(&path)
        .current_dir(&home)
        .env_clear()
        .envs(environment(&shared.url, layout, &target.id, target.manager))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return ExecEvent::Failed(format!("cannot start bash: {e}")),
    };
    let pid = child.id();
    let stdout = child
        .stdout
        .take()
        .map(|s| tokio::spawn(forward(s, tx.clone(), ExecEvent::Stdout)));
    let stderr = child
        .stderr
        .take()
        .map(|s| tokio::spawn(forward(s, tx.clone(), ExecEvent::Stderr)));
    let finished = async {
        let status = child.wait().await;
        // All output is delivered before the final event.
        for reader in [stdout, stderr].into_iter().flatten() {
            let _ = reader.await;
        }
        status
    };
    let last = tokio::select! {
        status = finished => match status {
            Ok(status) => ExecEvent::ExitCode(
                status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            ),
            Err(e) => ExecEvent::Failed(format!("lost the script: {e}")),
        },
        _ = tokio::time::sleep(timeout) => ExecEvent::TimedOut,
        _ = shared.cancel.cancelled() => ExecEvent::Failed("the cloud stopped".into()),
        _ = stop.cancelled() => ExecEvent::Failed("stopped".into()),
    };
    // Whatever the script left behind goes with it.
    if let Some(pid) = pid {
        kill_group(&layout.bash, pid).await;
    }
    let _ = std::fs::remove_file(&path);
    last
}

/// The whole environment a script runs with on machine `id`: a `PATH` of
/// its stand-ins and the host tools, `HOME` and `TMPDIR` in its private
/// directory, `KUBESURGE_ROOT` at its filesystem and
/// `KUBESURGE_SIM_CONTROL` at its control endpoint on the cloud at `url`.
pub(crate) fn environment(
    url: &str,
    layout: &Layout,
    id: &str,
    manager: PackageManager,
) -> Vec<(&'static str, String)> {
    let text = |path: std::path::PathBuf| path.to_string_lossy().into_owned();
    vec![
        ("PATH", layout.path_env(manager)),
        ("HOME", text(layout.home(id))),
        ("TMPDIR", text(layout.run_dir(id))),
        ("KUBESURGE_ROOT", text(layout.root(id))),
        ("KUBESURGE_SIM_CONTROL", format!("{url}/v1/control/{id}")),
    ]
}

async fn forward(
    stream: impl AsyncRead + Unpin,
    tx: mpsc::Sender<ExecEvent>,
    wrap: fn(String) -> ExecEvent,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                // A caller that went away stops listening, not the script.
                let _ = tx
                    .send(wrap(String::from_utf8_lossy(&line).into_owned()))
                    .await;
            }
        }
    }
}

/// SIGKILL to the script's process group, through bash's own `kill` (the
/// crate forbids unsafe code, so no direct `kill(2)`).
async fn kill_group(bash: &Path, pid: u32) {
    let _ = tokio::process::Command::new(bash)
        .args([
            "-c",
            "kill -KILL -- \"-$1\" 2>/dev/null || true",
            "kill",
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// The machine's installed kubelet and kubeadm, as its filesystem says.
fn sync_versions(shared: &Shared, target: &Target) {
    let root = target.layout.root(&target.id);
    let kubelet = noderoot::installed_version(&root, "kubelet");
    let kubeadm = noderoot::installed_version(&root, "kubeadm");
    if let Some(machine) = shared.lock().machines.get_mut(&target.id) {
        machine.kubelet_version = kubelet;
        machine.kubeadm_version = kubeadm;
    }
    shared.changed();
}
