//! The published JSON Schemas (`schemas/`): each is what `kubesurge schema`
//! prints, they hold the sandbox's own config, a config with every field,
//! and every kind of document the binary prints, and they catch the
//! mistakes users make in a config. Validated with check-jsonschema
//! (PyPI), as a CI pipeline or a pre-commit hook would. Every document a
//! test collects through `rotation::run_to_end` is validated too (see
//! [`assert_valid_document`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::python_venv::python_with;
use crate::rotation::{self, Spec, kubesurge, run_to_end, text};

/// Every kind `kubesurge schema` knows, as named in `schemas/`.
const KINDS: [&str; 7] = [
    "RotationConfig",
    "UpgradePlan",
    "UpgradeReport",
    "RotationReport",
    "RunStatus",
    "CheckReport",
    "Version",
];

/// check-jsonschema, in a venv of its own made once.
fn check_jsonschema() -> PathBuf {
    python_with(
        "check-jsonschema",
        "check-jsonschema==0.39.0",
        "check_jsonschema",
    )
    .with_file_name("check-jsonschema")
}

/// The published schema of `kind`.
fn published(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{kind}.json"))
}

/// check-jsonschema's verdict on `files` against the published schema of
/// `kind`: `Err` with its report when any is invalid.
async fn validate(kind: &str, files: &[&Path]) -> Result<(), String> {
    let tool = tokio::task::spawn_blocking(check_jsonschema)
        .await
        .expect("venv made");
    let output = tokio::process::Command::new(tool)
        .arg("--schemafile")
        .arg(published(kind))
        .args(files)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("check-jsonschema runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// If `stdout` is a kubesurge document (JSON with our apiVersion), it must
/// hold its kind's published schema. Anything else (a table, YAML, the
/// partial output of a killed run) is left alone. Returns the kind checked.
pub(crate) async fn assert_valid_document(stdout: &[u8]) -> Option<String> {
    let document: Value = serde_json::from_slice(stdout).ok()?;
    if document["apiVersion"] != "kubesurge.io/v1alpha1" {
        return None;
    }
    let kind = document["kind"].as_str()?.to_string();
    assert!(
        KINDS.contains(&kind.as_str()),
        "kubesurge printed a document of kind {kind}, which has no published schema"
    );
    let file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), stdout).expect("document written");
    if let Err(report) = validate(&kind, &[file.path()]).await {
        panic!(
            "kubesurge's {kind} does not hold its published schema:\n{report}\n{}",
            String::from_utf8_lossy(stdout)
        );
    }
    Some(kind)
}

#[test]
fn the_published_schemas_are_what_kubesurge_schema_prints() {
    for kind in KINDS {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubesurge"))
            .args(["schema", kind])
            .output()
            .expect("kubesurge runs");
        assert!(output.status.success(), "schema {kind}: {output:?}");
        let file = published(kind);
        let committed = std::fs::read(&file).unwrap_or_default();
        assert!(
            committed == output.stdout,
            "{} is not what `kubesurge schema {kind}` prints: run \
             `cargo run -- schema {kind} > schemas/{kind}.json` and commit it",
            file.display()
        );
    }
    // Any case, as kubectl takes kinds.
    let lower = std::process::Command::new(env!("CARGO_BIN_EXE_kubesurge"))
        .args(["schema", "rotationconfig"])
        .output()
        .expect("kubesurge runs");
    assert_eq!(
        lower.stdout,
        std::fs::read(published("RotationConfig")).unwrap_or_default()
    );
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_kubesurge"))
        .args(["schema", "Deployment"])
        .output()
        .expect("kubesurge runs");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("RotationConfig"),
        "the error lists the kinds: {unknown:?}"
    );
}

/// Configs as users write them: the design's example and one with every
/// field, each value one the walker accepts (`wiring::settings_tests` reads
/// both with the real walker).
fn example_configs() -> [PathBuf; 2] {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    [
        dir.join("design-example.yaml"),
        dir.join("every-field.yaml"),
    ]
}

/// Mistakes a user makes, each on its own line of a valid file, and the
/// words check-jsonschema's report must carry.
const MISTAKES: [(&str, &str, &str); 9] = [
    (
        "drain: { timeout: 15m }",
        "drain: { timout: 15m }",
        "timout",
    ),
    (
        "drain: { timeout: 15m }",
        "drain: { timeout: 15 minutes }",
        "15 minutes",
    ),
    (
        "drain: { timeout: 15m }",
        "drain: { onTimeout: later }",
        "later",
    ),
    ("maxSurge: 2", "maxSurge: lots", "lots"),
    (
        "provider: sim\n    sim: { endpoint: \"http://127.0.0.1:9\" }",
        "provider: sim",
        "sim",
    ),
    (
        "kind: RotationConfig",
        "kind: RotationConfigs",
        "RotationConfig",
    ),
    ("name: e2e", "name: Prod_EU", "Prod_EU"),
    (
        "provider: sim\n    sim: { endpoint: \"http://127.0.0.1:9\" }",
        "provider: aws\n    aws: { region: eu-west-1, launchTemplate: { name: t }, updateLaunchTemplate: true, image: { id: ami-1 } }",
        "autoScalingGroup",
    ),
    (
        "drain: { timeout: 15m }",
        "window: { days: [Caturday], start: \"02:00\", end: \"04:00\", timeZone: UTC }",
        "Caturday",
    ),
];

#[tokio::test]
async fn configs_as_users_write_them_hold_the_schema_and_mistakes_do_not() {
    let h = rotation::start(Spec {
        pools: vec![("general", 1)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    // The sandbox's own config (what `kubesurge sandbox up` writes), and
    // the harness's.
    let (_, sandbox_config) = h
        .world
        .write_config_files(dir.path())
        .expect("sandbox files");
    validate("RotationConfig", &[&sandbox_config, &h.config])
        .await
        .expect("the sandbox's configs hold the schema");

    let [design, every] = example_configs();
    validate("RotationConfig", &[&design, &every])
        .await
        .expect("the design's example and a config with every field hold the schema");

    let base = "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster:\n  name: e2e\npools:\n  - name: lab\n    selector: { kubesurge.io/pool: lab }\n    provider: sim\n    sim: { endpoint: \"http://127.0.0.1:9\" }\n    maxSurge: 2\ndrain: { timeout: 15m }\n";
    let valid = dir.path().join("valid.yaml");
    std::fs::write(&valid, base).expect("written");
    validate("RotationConfig", &[&valid])
        .await
        .expect("the base of the mistakes holds");
    for (i, (line, mistake, named)) in MISTAKES.iter().enumerate() {
        assert!(base.contains(line), "{line}");
        let file = dir.path().join(format!("mistake-{i}.yaml"));
        std::fs::write(&file, base.replacen(line, mistake, 1)).expect("written");
        let report = validate("RotationConfig", &[&file])
            .await
            .expect_err(&format!("the schema refuses {mistake:?}"));
        assert!(report.contains(named), "{mistake:?}: {report}");
        // The walker refuses it too: the schema is never the only check.
        let read = run_to_end(kubesurge(&h.kubeconfig, &file, &["plan"])).await;
        assert_eq!(read.status.code(), Some(2), "{mistake:?}: {}", text(&read));
    }
}

#[tokio::test]
async fn every_kind_of_document_holds_its_published_schema() {
    let h = rotation::start(Spec {
        version: "v1.34.3",
        pools: vec![("general", 2)],
        ..Spec::default()
    })
    .await;
    let run = |args: &[&str]| kubesurge(&h.kubeconfig, &h.config, args);
    let mut checked = Vec::new();
    for args in [
        vec!["version", "-o", "json"],
        vec!["plan", "--to", "v1.35.3", "-o", "json"],
        vec!["check", "--to", "v1.35.3", "-o", "json"],
        vec!["upgrade", "--to", "v1.35.3", "--dry-run", "-o", "json"],
        vec!["rotate", "--all", "--dry-run", "-o", "json"],
        vec!["upgrade", "--to", "v1.35.3", "--yes", "-o", "json"],
        vec!["status", "-o", "json"],
        vec!["rotate", "--all", "--yes", "-o", "json"],
    ] {
        let output = run_to_end(run(&args)).await;
        // `check` may fail a line in the sandbox (no packages to find);
        // its report is printed either way.
        let kind = assert_valid_document(&output.stdout)
            .await
            .unwrap_or_else(|| panic!("{args:?} printed a document: {}", text(&output)));
        checked.push(kind);
    }
    checked.sort();
    checked.dedup();
    let mut documents: Vec<&str> = KINDS[1..].to_vec();
    documents.sort_unstable();
    assert_eq!(checked, documents, "every document kind was checked");
}
