//! Errors of commands: each keeps the library's typed error it came from,
//! and [`CommandError::status`] alone decides the exit code from its kind.

use thiserror::Error;

use crate::ExitStatus;
use crate::check::target::TargetError;
use crate::inventory::InventoryError;
use crate::kube::client::ClientError;
use crate::kube::errors;
use crate::kube::lock::LockError;
use crate::plan::PlanRefusal;
use crate::rotation::EngineError;
use crate::rotation::gc::{GcError, Leftover};
use crate::rotation::instances::DeleteError;
use crate::rotation::status::StatusError;
use crate::run_control::AbortError;
use crate::settings::SettingsError;
use crate::upgrade::{LocalExecError, UpgradeError};
use crate::window::WindowError;
use crate::wiring::WiringError;

#[cfg(feature = "sandbox")]
use super::sandbox::SandboxError;

/// A command that could not complete. `status()` says which exit code.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The settings are unusable; nothing was contacted.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// No client could be built from the kubeconfig and flags.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The settings cannot drive the command (no cluster name, no pools, no
    /// way to reach the control plane).
    #[error(transparent)]
    Wiring(#[from] WiringError),
    /// The maintenance window cannot be computed.
    #[error(transparent)]
    Window(#[from] WindowError),
    /// The cluster could not be read.
    #[error("{}", describe_inventory_error(server, source))]
    Inventory {
        /// The API server's URL.
        server: String,
        #[source]
        source: InventoryError,
    },
    /// The planner refused: nothing was changed.
    #[error("refused: {0}")]
    Refused(#[from] PlanRefusal),
    /// A change was asked for where nobody can confirm it.
    #[error(
        "refusing to change the cluster without confirmation: stdin is not a terminal; pass --yes"
    )]
    NoTerminal,
    /// The user answered no.
    #[error("not confirmed; nothing changed")]
    NotConfirmed,
    #[error("cannot read the answer: {0}")]
    ReadAnswer(#[source] std::io::Error),
    /// The lock is held by another run, or could not be used.
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// A piece of the target (a hop's packages, a worker image) does not
    /// exist, or could not be looked for; nothing was changed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// `controlPlane.exec: local` on a machine that is not the named
    /// control-plane node; nothing was changed.
    #[error(transparent)]
    LocalExec(#[from] LocalExecError),
    #[error(transparent)]
    Gc(#[from] GcError),
    /// Some leftovers could not be terminated (the others were).
    #[error("could not terminate: {}", describe_gc_failures(.0))]
    GcIncomplete(Vec<(Leftover, DeleteError)>),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Abort(#[from] AbortError),
    #[cfg(feature = "sandbox")]
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("cannot write {what} as JSON: {source}")]
    Json {
        /// `the plan`, `the report`.
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {what} as YAML: {message}")]
    Yaml { what: &'static str, message: String },
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error(transparent)]
    JsonPath(#[from] super::jsonpath::OutOfBounds),
    #[error(transparent)]
    Man(#[from] super::completion::ManError),
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    #[error("{} exists; kubesurge init --write never overwrites a file", .0.display())]
    InitFileExists(std::path::PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    InitWrite {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn describe_inventory_error(server: &str, error: &InventoryError) -> String {
    if let InventoryError::Api { what, source } = error {
        if let Some(refusal) = errors::connect_refusal(source) {
            return format!("cannot connect to the Kubernetes API server at {server}: {refusal}");
        }
        if let Some(answer) = errors::answer_sentence(source) {
            return format!(
                "cannot read {what} from the Kubernetes API server at {server}: {answer}"
            );
        }
    }
    if error.is_unreachable() {
        // The innermost error ("Connection refused") is what the user can
        // act on.
        let cause = if errors::is_timeout(error) {
            "it did not answer in time (see --request-timeout)".to_string()
        } else {
            errors::innermost(error)
        };
        format!("cannot reach the Kubernetes API server at {server}: {cause}")
    } else {
        format!("reading the cluster at {server} failed: {error}")
    }
}

fn describe_gc_failures(failures: &[(Leftover, DeleteError)]) -> String {
    failures
        .iter()
        .map(|(leftover, error)| format!("{leftover}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl CommandError {
    /// The exit code for this kind of error: 2 when the input is wrong or
    /// the command refused before changing anything, 3 when another run
    /// holds the lock, 1 for any failure after which a rerun resumes.
    pub fn status(&self) -> ExitStatus {
        match self {
            CommandError::Settings(_)
            | CommandError::Client(_)
            | CommandError::Wiring(_)
            | CommandError::Window(_)
            | CommandError::Refused(_)
            | CommandError::Target(TargetError::Missing(_))
            | CommandError::LocalExec(LocalExecError::Refused(_))
            | CommandError::NoTerminal
            | CommandError::NotConfirmed
            | CommandError::InitFileExists(_)
            | CommandError::Init(
                crate::init::InitError::NoClusterName
                | crate::init::InitError::BadClusterName { .. },
            )
            | CommandError::Engine(EngineError::UnfinishedRun { .. } | EngineError::Invalid(_)) => {
                ExitStatus::Invalid
            }
            #[cfg(feature = "sandbox")]
            CommandError::Sandbox(
                SandboxError::NoImages { .. }
                | SandboxError::NoControlPlane
                | SandboxError::Zones(_),
            ) => ExitStatus::Invalid,
            CommandError::Lock(LockError::Held { .. }) => ExitStatus::Locked,
            CommandError::Inventory { .. }
            | CommandError::ReadAnswer(_)
            | CommandError::Lock(_)
            | CommandError::Engine(_)
            | CommandError::Upgrade(_)
            | CommandError::Target(TargetError::Unverified(_))
            | CommandError::LocalExec(LocalExecError::Api(_))
            | CommandError::Gc(_)
            | CommandError::GcIncomplete(_)
            | CommandError::Status(_)
            | CommandError::Abort(_)
            | CommandError::Json { .. }
            | CommandError::Yaml { .. }
            | CommandError::Stdout(_)
            | CommandError::JsonPath(_)
            | CommandError::Man(_)
            | CommandError::Init(_)
            | CommandError::InitWrite { .. } => ExitStatus::Failed,
            #[cfg(feature = "sandbox")]
            CommandError::Sandbox(_) => ExitStatus::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_the_exit_code() {
        let held = CommandError::from(LockError::Held {
            holder: "ops-1/42/r-1".into(),
            since: "now".into(),
            through: None,
        });
        assert_eq!(held.status(), ExitStatus::Locked);
        assert!(held.to_string().contains("another run holds the lock"));
        let holding_through = LockError::Held {
            holder: "ops-1/42/r-1".into(),
            since: "now".into(),
            through: Some("kubeadm upgrade apply on cp-1".into()),
        };
        assert!(
            holding_through
                .to_string()
                .contains("it holds it through kubeadm upgrade apply on cp-1"),
            "{holding_through}"
        );
        assert_eq!(
            CommandError::from(LockError::NotHeld).status(),
            ExitStatus::Failed
        );
        let unfinished = CommandError::from(EngineError::UnfinishedRun {
            id: "r-1".into(),
            command: "rotate --all".into(),
            state: crate::rotation::RunState::Failed,
        });
        assert_eq!(unfinished.status(), ExitStatus::Invalid);
        let api = CommandError::from(EngineError::Api(kube::Error::Service("down".into())));
        assert_eq!(api.status(), ExitStatus::Failed);
        assert_eq!(CommandError::NoTerminal.status(), ExitStatus::Invalid);
        assert_eq!(
            CommandError::from(WiringError::NoPools("rotate")).status(),
            ExitStatus::Invalid
        );
    }

    #[test]
    fn incomplete_gc_names_every_instance_it_could_not_terminate() {
        let leftover = |id: &str| Leftover {
            pool: "general".into(),
            instance: id.into(),
            run: "r-1".into(),
            replaces: Some("w-1".into()),
        };
        let error = CommandError::GcIncomplete(vec![
            (
                leftover("i-1"),
                DeleteError::Timeout {
                    id: "i-1".into(),
                    after: std::time::Duration::from_secs(300),
                },
            ),
            (
                leftover("i-2"),
                DeleteError::Provider(kubesurge_provider::ProviderError::Other {
                    message: "boom".into(),
                }),
            ),
        ]);
        assert_eq!(error.status(), ExitStatus::Failed);
        assert_eq!(
            error.to_string(),
            "could not terminate: i-1 (pool general, run r-1, replacing w-1): instance i-1 still not terminated after 300s; \
             i-2 (pool general, run r-1, replacing w-1): provider: provider error: boom"
        );
    }
}
