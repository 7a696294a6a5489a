//! `kubesurge schema KIND`: the JSON Schema (draft-07) of the
//! configuration file or of a document kubesurge prints, generated from the
//! same definitions that read the file and write the documents, so it
//! never falls behind them. `schemas/` in the repository holds each one as
//! published; a test keeps the files equal to this command's output.

use clap::{Args, ValueEnum};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::output::{self, Kind};
use super::{CommandError, plan::PlanDocument, version::VersionInfo};
use crate::ExitStatus;
use crate::check::report::CheckReport;
use crate::rotation::report::RunReport;
use crate::rotation::status::RunStatus;
use crate::upgrade::UpgradeReport;

/// Arguments of `kubesurge schema`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// What the schema is of: the configuration file (RotationConfig) or
    /// the kind of a document kubesurge prints with -o json|yaml
    #[arg(value_enum, ignore_case = true)]
    pub kind: SchemaKind,
}

/// Everything kubesurge publishes a schema for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The configuration file (--config)
    #[value(name = "RotationConfig")]
    RotationConfig,
    /// `plan -o json` and `upgrade --dry-run -o json`
    #[value(name = "UpgradePlan")]
    UpgradePlan,
    /// `upgrade -o json`
    #[value(name = "UpgradeReport")]
    UpgradeReport,
    /// `rotate -o json`, also with --dry-run
    #[value(name = "RotationReport")]
    RotationReport,
    /// `status -o json`
    #[value(name = "RunStatus")]
    RunStatus,
    /// `check -o json`
    #[value(name = "CheckReport")]
    CheckReport,
    /// `version -o json`
    #[value(name = "Version")]
    Version,
}

impl SchemaKind {
    /// Every kind, in the order of `schemas/`' listing in the README.
    pub const ALL: [SchemaKind; 7] = [
        SchemaKind::RotationConfig,
        SchemaKind::UpgradePlan,
        SchemaKind::UpgradeReport,
        SchemaKind::RotationReport,
        SchemaKind::RunStatus,
        SchemaKind::CheckReport,
        SchemaKind::Version,
    ];

    /// The kind's name, as in `kind:` and the file name under `schemas/`.
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::RotationConfig => crate::settings::KIND,
            SchemaKind::UpgradePlan => Kind::UpgradePlan.name(),
            SchemaKind::UpgradeReport => Kind::UpgradeReport.name(),
            SchemaKind::RotationReport => Kind::RotationReport.name(),
            SchemaKind::RunStatus => Kind::RunStatus.name(),
            SchemaKind::CheckReport => Kind::CheckReport.name(),
            SchemaKind::Version => Kind::Version.name(),
        }
    }

    /// The schema, as a JSON value.
    pub fn schema(self) -> Value {
        match self {
            SchemaKind::RotationConfig => {
                crate::settings::rotation_config_schema(crate::wiring::PROVIDERS)
            }
            SchemaKind::UpgradePlan => document::<PlanDocument<'static>>(Kind::UpgradePlan),
            SchemaKind::UpgradeReport => document::<UpgradeReport>(Kind::UpgradeReport),
            SchemaKind::RotationReport => document::<RunReport>(Kind::RotationReport),
            SchemaKind::RunStatus => document::<RunStatus>(Kind::RunStatus),
            SchemaKind::CheckReport => document::<CheckReport>(Kind::CheckReport),
            SchemaKind::Version => document::<VersionInfo>(Kind::Version),
        }
    }
}

/// The schema of a document of `kind` whose body is `T`: `T`'s fields as
/// they are serialized, with `apiVersion` and `kind` (see
/// [`output::document`]).
fn document<T: JsonSchema>(kind: Kind) -> Value {
    let generator = SchemaSettings::draft07().for_serialize().into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    schema["title"] = json!(kind.name());
    if let Some(properties) = schema["properties"].as_object_mut() {
        properties.insert(
            "apiVersion".into(),
            json!({ "const": crate::settings::API_VERSION }),
        );
        properties.insert("kind".into(), json!({ "const": kind.name() }));
    }
    let required = schema.get_mut("required").and_then(Value::as_array_mut);
    match required {
        Some(required) => {
            required.insert(0, json!("kind"));
            required.insert(0, json!("apiVersion"));
        }
        None => schema["required"] = json!(["apiVersion", "kind"]),
    }
    schema
}

/// The schema as printed: pretty JSON, one final newline.
pub fn text(kind: SchemaKind) -> String {
    let mut text = serde_json::to_string_pretty(&kind.schema()).unwrap_or_default();
    text.push('\n');
    text
}

pub fn run(args: SchemaArgs) -> Result<ExitStatus, CommandError> {
    output::print(&text(args.kind))?;
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_names_its_kind_and_requires_the_header() {
        for kind in SchemaKind::ALL {
            let schema = kind.schema();
            assert_eq!(schema["title"], kind.name(), "{kind:?}");
            assert_eq!(
                schema["properties"]["kind"]["const"],
                kind.name(),
                "{kind:?}"
            );
            let required = schema["required"].as_array().expect("required");
            assert!(required.contains(&json!("apiVersion")), "{kind:?}");
            assert!(required.contains(&json!("kind")), "{kind:?}");
        }
    }
}
