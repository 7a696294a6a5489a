//! The only writer to stdout.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;

use serde::Serialize;

use super::CommandError;
use super::jsonpath::Template;

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
#[derive(Clone, Debug, PartialEq)]
pub enum Encoding {
    Json,
    Yaml,
    /// What a kubectl JSONPath template makes of the JSON document, exactly
    /// (no newline added, as kubectl adds none).
    JsonPath(Template),
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
    /// `version`.
    Version,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::UpgradePlan => "UpgradePlan",
            Kind::UpgradeReport => "UpgradeReport",
            Kind::RotationReport => "RotationReport",
            Kind::RunStatus => "RunStatus",
            Kind::CheckReport => "CheckReport",
            Kind::Version => "Version",
        }
    }

    /// Names `what` the document is in errors (`the plan`).
    fn what(self) -> &'static str {
        match self {
            Kind::UpgradePlan => "the plan",
            Kind::UpgradeReport | Kind::RotationReport => "the report",
            Kind::RunStatus => "the status",
            Kind::CheckReport => "the check report",
            Kind::Version => "the version",
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

/// `body` as the `-o json|yaml|jsonpath=` documents are written: with
/// `apiVersion` and `kind`, JSON pretty-printed, YAML, one final newline
/// for both.
pub fn document<T: Serialize>(
    kind: Kind,
    body: &T,
    encoding: &Encoding,
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
        Encoding::JsonPath(template) => {
            let value = serde_json::to_value(&document)
                .map_err(|source| CommandError::Json { what, source })?;
            return Ok(template.render(&value)?);
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

/// Whether stderr carries JSON (`--log-format json`): set once, when the
/// logs are set up, before anything is written.
static JSON_STDERR: AtomicBool = AtomicBool::new(false);

/// From now on, every message line on stderr is a JSON object.
pub fn set_json_stderr() {
    JSON_STDERR.store(true, Ordering::Relaxed);
}

/// Write a message line to stderr, ignoring failures: there is nowhere
/// left to report them. Under `--log-format json`, a JSON object shaped
/// like the log events, so every stderr line parses.
pub fn eprint_line(text: &str) {
    eprint_at("INFO", text);
}

/// `error: MESSAGE` on stderr; under `--log-format json`, an event at
/// level ERROR.
pub fn eprint_error(message: &str) {
    if JSON_STDERR.load(Ordering::Relaxed) {
        eprint_at("ERROR", message);
    } else {
        eprint_at("ERROR", &format!("error: {message}"));
    }
}

fn eprint_at(level: &str, text: &str) {
    let line = if JSON_STDERR.load(Ordering::Relaxed) {
        json_message(level, text, Timestamp::now())
    } else {
        text.to_string()
    };
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A message as one JSON line, with the fields tracing-subscriber's JSON
/// events have (`timestamp`, `level`, `fields.message`, `target`), so a
/// log collector reads both alike. A message of several lines (a table)
/// stays one object: its newlines are escaped.
fn json_message(level: &str, text: &str, now: Timestamp) -> String {
    serde_json::json!({
        "timestamp": now.to_string(),
        "level": level,
        "fields": {"message": text},
        "target": "kubesurge",
    })
    .to_string()
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
    fn json_messages_are_one_line_shaped_like_log_events() {
        let now: Timestamp = "2026-01-03T02:00:00Z".parse().unwrap();
        let line = json_message("INFO", "NODE  STATUS\nn-1   done", now);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            serde_json::json!({
                "timestamp": "2026-01-03T02:00:00Z",
                "level": "INFO",
                "fields": {"message": "NODE  STATUS\nn-1   done"},
                "target": "kubesurge",
            })
        );
    }

    #[test]
    fn documents_carry_api_version_and_kind_first() {
        let json = document(
            Kind::RotationReport,
            &Body { run_id: "r-1" },
            &Encoding::Json,
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
        let yaml = document(Kind::RunStatus, &Body { run_id: "r-1" }, &Encoding::Yaml).unwrap();
        assert!(
            yaml.starts_with("apiVersion: kubesurge.io/v1alpha1\nkind: RunStatus\n"),
            "{yaml}"
        );
        assert!(yaml.contains("runId: r-1"), "{yaml}");
    }
}
