//! One moto server process on loopback, started from the Python venv that
//! `tests/run.sh` provisions, on a free port it reports, stopped on drop.
//! Its log is kept in a file so tests can fail loudly when moto answered a
//! call it does not implement (it logs `NotImplementedError` and answers an
//! HTML 500, which a client would only see as a retried server error).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;

/// Environment variable naming the `moto_server` executable.
pub const MOTO_SERVER_ENV: &str = "KUBESURGE_MOTO_SERVER";
/// How long moto may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// What moto logs for a call it does not implement.
pub const NOT_IMPLEMENTED: &str = "NotImplementedError";

#[derive(Debug, Error)]
pub enum MotoError {
    #[error(
        "moto_server not found at {0} (set {MOTO_SERVER_ENV}, or provision it: python3 -m venv .tools/moto && .tools/moto/bin/pip install 'moto[server]')"
    )]
    NotInstalled(PathBuf),
    #[error("cannot start moto_server: {0}")]
    Start(String),
    #[error("moto does not implement what was asked:\n{0}")]
    NotImplemented(String),
}

/// A running moto server.
pub struct MotoServer {
    child: Child,
    url: String,
    log: PathBuf,
}

/// The `moto_server` executable: `$KUBESURGE_MOTO_SERVER`, else the
/// workspace's `.tools/moto` venv.
pub fn moto_server_path() -> PathBuf {
    match std::env::var_os(MOTO_SERVER_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/moto/bin/moto_server"),
    }
}

fn log_path() -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!(
        "kubesurge-moto-{}-{}-{nanos}.log",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The port in moto's ` * Running on http://127.0.0.1:PORT` line.
fn port_in(log: &str) -> Option<u16> {
    let start = log.find("Running on http://127.0.0.1:")? + "Running on http://127.0.0.1:".len();
    let digits: String = log[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl MotoServer {
    /// Start moto on a free loopback port and wait until it listens.
    pub async fn start() -> Result<MotoServer, MotoError> {
        let program = moto_server_path();
        if !program.exists() {
            return Err(MotoError::NotInstalled(program));
        }
        let log = log_path();
        let out = File::create(&log).map_err(|e| MotoError::Start(format!("{log:?}: {e}")))?;
        let err = out
            .try_clone()
            .map_err(|e| MotoError::Start(e.to_string()))?;
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", "0"])
            // Only the images the world registers; validate image ids.
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| MotoError::Start(format!("{}: {e}", program.display())))?;
        let mut server = MotoServer {
            child,
            url: String::new(),
            log,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(port) = port_in(&server.log_text()) {
                server.url = format!("http://127.0.0.1:{port}");
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(MotoError::Start(format!(
                    "moto_server exited with {status}: {}",
                    server.log_text()
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MotoError::Start(format!(
                    "moto_server did not listen within {START_TIMEOUT:?}: {}",
                    server.log_text()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Everything moto logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the log's lines around every `NotImplementedError`.
    pub fn check_log(&self) -> Result<(), MotoError> {
        let log = self.log_text();
        if !log.contains(NOT_IMPLEMENTED) {
            return Ok(());
        }
        let lines: Vec<&str> = log.lines().collect();
        let mut excerpt = Vec::new();
        for (n, line) in lines.iter().enumerate() {
            if line.contains(NOT_IMPLEMENTED) {
                excerpt.extend_from_slice(&lines[n.saturating_sub(3)..=n]);
            }
        }
        Err(MotoError::NotImplemented(excerpt.join("\n")))
    }

    /// Stop moto, then report what it did not implement, if anything.
    pub fn stop(mut self) -> Result<(), MotoError> {
        self.kill();
        self.check_log()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_read_from_the_banner() {
        let log = "WARNING: dev server\n * Running on http://127.0.0.1:41235\nPress CTRL+C";
        assert_eq!(port_in(log), Some(41235));
        assert_eq!(port_in("starting"), None);
    }
}
