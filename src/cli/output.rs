//! The only writer to stdout.

use std::io::{ErrorKind, Write};

use serde::Serialize;

use super::CommandError;

/// Write `text` to stdout. A closed pipe (`kubesurge plan | head`) is not
/// an error: the reader has what it wanted.
pub fn print(text: &str) -> Result<(), CommandError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(CommandError::Stdout(error)),
    }
}

/// How a document is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Yaml,
}

/// The kinds of document kubesurge prints, all `apiVersion:
/// kubesurge.io/v1alpha1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `plan`, and `upgrade --dry-run`.
    UpgradePlan,
    /// `upgrade`.
    UpgradeReport,
    /// `rotate`, also with `--dry-run`.
    RotationReport,
    /// `status`.
    RunStatus,
    /// `check`.
    CheckReport,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::UpgradePlan => "UpgradePlan",
            Kind::UpgradeReport => "UpgradeReport",
            Kind::RotationReport => "RotationReport",
            Kind::RunStatus => "RunStatus",
            Kind::CheckReport => "CheckReport",
        }
    }

    /// Names `what` the document is in errors (`the plan`).
    fn what(self) -> &'static str {
        match self {
            Kind::UpgradePlan => "the plan",
            Kind::UpgradeReport | Kind::RotationReport => "the report",
            Kind::RunStatus => "the status",
            Kind::CheckReport => "the check report",
        }
    }
}

/// A document: `apiVersion` and `kind` first, then the body's own fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a, T: Serialize> {
    api_version: &'static str,
    kind: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// `body` as the `-o json|yaml` documents are written: with `apiVersion`
/// and `kind`, JSON pretty-printed, one final newline.
pub fn document<T: Serialize>(
    kind: Kind,
    body: &T,
    encoding: Encoding,
) -> Result<String, CommandError> {
    let document = Document {
        api_version: crate::settings::API_VERSION,
        kind: kind.name(),
        body,
    };
    let what = kind.what();
    let mut text = match encoding {
        Encoding::Json => serde_json::to_string_pretty(&document)
            .map_err(|source| CommandError::Json { what, source })?,
        Encoding::Yaml => {
            serde_saphyr::to_string(&document).map_err(|source| CommandError::Yaml {
                what,
                message: source.to_string(),
            })?
        }
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// `node/NAME` lines, as `kubectl -o name` prints them.
pub fn names<'a>(nodes: impl IntoIterator<Item = &'a str>) -> String {
    nodes.into_iter().map(|n| format!("node/{n}\n")).collect()
}

/// Write a message line to stderr, ignoring failures: there is nowhere
/// left to report them.
pub fn eprint_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        run_id: &'static str,
    }

    #[test]
    fn documents_carry_api_version_and_kind_first() {
        let json = document(
            Kind::RotationReport,
            &Body { run_id: "r-1" },
            Encoding::Json,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            serde_json::json!({
                "apiVersion": "kubesurge.io/v1alpha1",
                "kind": "RotationReport",
                "runId": "r-1",
            })
        );
        assert!(json.starts_with("{\n  \"apiVersion\""), "{json}");
        let yaml = document(Kind::RunStatus, &Body { run_id: "r-1" }, Encoding::Yaml).unwrap();
        assert!(
            yaml.starts_with("apiVersion: kubesurge.io/v1alpha1\nkind: RunStatus\n"),
            "{yaml}"
        );
        assert!(yaml.contains("runId: r-1"), "{yaml}");
    }
}
