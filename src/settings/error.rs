//! What can be wrong with settings: the file cannot be read, is not YAML, or
//! says something invalid (every problem at once, each at its field path).

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

pub use kubesurge_provider::config::FieldError;

/// Where the settings came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsSource {
    /// A `RotationConfig` file.
    File(PathBuf),
    /// YAML text that did not come from a file (tests, embedding).
    Text,
    /// No config file: defaults and flags only.
    Defaults,
}

impl fmt::Display for SettingsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsSource::File(path) => write!(f, "config file {}", path.display()),
            SettingsSource::Text => f.write_str("configuration"),
            SettingsSource::Defaults => f.write_str("settings"),
        }
    }
}

/// Settings that cannot be used. Every variant means: exit 2, nothing was
/// contacted.
#[derive(Debug, Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML (or not one YAML document).
    #[error("{origin} is not valid YAML: {message}")]
    Syntax {
        origin: SettingsSource,
        /// 1-based, when known.
        line: Option<u64>,
        /// 1-based, when known.
        column: Option<u64>,
        /// The parser's message, including the position.
        message: String,
    },
    /// The YAML is well-formed but says something invalid.
    #[error("{}", invalid_message(origin, errors))]
    Invalid {
        origin: SettingsSource,
        /// Every problem found, in document order.
        errors: Vec<FieldError>,
    },
}

fn invalid_message(origin: &SettingsSource, errors: &[FieldError]) -> String {
    let count = match errors.len() {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    let mut out = format!("{origin} has {count}:");
    for error in errors {
        out.push_str("\n  - ");
        out.push_str(&error.to_string());
    }
    out
}

impl SettingsError {
    /// The field problems, empty for read and syntax errors.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            SettingsError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_problem_on_its_own_line() {
        let error = SettingsError::Invalid {
            origin: SettingsSource::File(PathBuf::from("rotation.yaml")),
            errors: vec![
                FieldError::new(
                    "pools[1].maxSurge",
                    "\"abc\" is neither an integer nor a percentage",
                ),
                FieldError::new("", "the file is empty"),
            ],
        };
        assert_eq!(
            error.to_string(),
            "config file rotation.yaml has 2 problems:\n  \
             - pools[1].maxSurge: \"abc\" is neither an integer nor a percentage\n  \
             - the file is empty"
        );
    }
}
