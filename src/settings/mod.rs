//! Settings: the `RotationConfig` file plus flags, validated into plain
//! data before anything is contacted.
//!
//! The file is parsed into a generic YAML tree, flags are written into it
//! ([`Overrides`]), and a hand-written schema walks it, collecting every
//! problem with its field path. Typed [`Settings`] exist only when there is
//! none. Reading the file is the only I/O here.
//!
//! Settings know no provider: each pool's provider section is checked by
//! the provider it names, from the [`ProviderKind`]s the caller hands in
//! (`src/wiring.rs` lists the ones this build has), and kept as data.
//! The domain types the settings are made of live in their own modules
//! (`plan::Budget`, `kube::drain`'s policies, `window::Window`,
//! `exec::SshSettings`).

mod error;
mod model;
pub(crate) mod names;
mod overrides;
mod schema;

use std::path::Path;

use kubesurge_provider::ProviderKind;
use serde_json::Value;

pub use crate::duration::{DurationError, HumanDuration, parse_duration};
pub use error::{FieldError, SettingsError, SettingsSource};
pub use model::*;
pub use overrides::Overrides;
pub use schema::{API_VERSION, KIND, rotation_config_schema};

use schema::Mode;

/// Settings from the config file at `config`, or from defaults when there
/// is none, with `overrides` applied; pools may use `providers`.
pub fn load(
    config: Option<&Path>,
    overrides: &Overrides,
    providers: &[ProviderKind],
) -> Result<Settings, SettingsError> {
    match config {
        None => defaults(overrides),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            parse(
                &text,
                SettingsSource::File(path.to_path_buf()),
                overrides,
                providers,
            )
        }
    }
}

/// Settings without a config file: defaults and flags. No pools.
pub fn defaults(overrides: &Overrides) -> Result<Settings, SettingsError> {
    let mut document = Value::Null;
    overrides.apply(&mut document);
    // No file, no pools: no provider is asked anything.
    finish(
        &document,
        Mode::Defaults,
        SettingsSource::Defaults,
        overrides,
        &[],
    )
}

/// Settings from the text of a `RotationConfig`; pools may use
/// `providers`. Pure.
pub fn parse(
    yaml: &str,
    source: SettingsSource,
    overrides: &Overrides,
    providers: &[ProviderKind],
) -> Result<Settings, SettingsError> {
    let mut document = parse_yaml(yaml, &source)?;
    overrides.apply(&mut document);
    finish(&document, Mode::File, source, overrides, providers)
}

fn finish(
    document: &Value,
    mode: Mode,
    source: SettingsSource,
    overrides: &Overrides,
    providers: &[ProviderKind],
) -> Result<Settings, SettingsError> {
    schema::validate(document, mode, providers).map_err(|mut errors| {
        overrides.attribute(&mut errors);
        SettingsError::Invalid {
            origin: source,
            errors,
        }
    })
}

/// YAML into a generic tree. Only YAML 1.2 booleans (`true`/`false`): a
/// label value `yes`, `on` or `y` stays a string, and `007` stays `"007"`.
fn parse_yaml(yaml: &str, source: &SettingsSource) -> Result<Value, SettingsError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    serde_saphyr::from_str_with_options::<Value>(yaml, options).map_err(|error| {
        let location = error.location();
        SettingsError::Syntax {
            origin: source.clone(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message: error.without_snippet().to_string(),
        }
    })
}
