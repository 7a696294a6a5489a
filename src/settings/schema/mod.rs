//! The `RotationConfig` schema, hand-written: a walk over the YAML tree
//! that collects every problem with its field path, and builds the typed
//! [`Settings`] only when there is none. Pure.
//!
//! This module holds the walker and its generic checks; `pool` and
//! `sections` the rules of each part of the file.

mod pool;
mod sections;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::duration::parse_duration;
use super::error::FieldError;
use super::model::*;
use super::names::{check_label_key, check_label_value, did_you_mean};

pub const API_VERSION: &str = "kubesurge.io/v1alpha1";
pub const KIND: &str = "RotationConfig";

const TOP_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "cluster",
    "controlPlane",
    "pools",
    "drain",
    "join",
    "health",
    "window",
];

/// Whether a config file is being read (then `apiVersion`, `kind` and
/// `cluster.name` are required) or only defaults and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    File,
    Defaults,
}

/// Validate a parsed document. `Err` holds every problem, in document order.
pub fn validate(document: &Value, mode: Mode) -> Result<Settings, Vec<FieldError>> {
    let mut walk = Walk::default();
    let settings = walk.document(document, mode);
    match settings {
        Some(settings) if walk.errors.is_empty() => Ok(settings),
        _ => Err(walk.errors),
    }
}

/// A field path being built: `pools[1].aws.image`.
#[derive(Clone, Debug, Default)]
struct Path(String);

impl Path {
    fn key(&self, key: &str) -> Path {
        let simple = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match (self.0.is_empty(), simple) {
            (true, true) => Path(key.to_string()),
            (false, true) => Path(format!("{}.{key}", self.0)),
            (_, false) => Path(format!("{}[{key:?}]", self.0)),
        }
    }

    fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }
}

#[derive(Default)]
struct Walk {
    errors: Vec<FieldError>,
}

/// What a YAML value is, for "expected X, found Y".
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A scalar as the user wrote it, for messages.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) | Value::Object(_) => kind_of(value).to_string(),
        other => other.to_string(),
    }
}

/// A present, non-null field. YAML `key:` with nothing after it is null,
/// which counts as not set.
fn field<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn list_words(words: &[&str]) -> String {
    words.join(", ")
}

impl Walk {
    fn error(&mut self, path: &Path, message: impl Into<String>) {
        self.errors.push(FieldError::new(path.0.clone(), message));
    }

    /// A mapping whose keys must all be in `fields`; reports unknown keys
    /// (with a suggestion for near misses) and returns the map.
    fn mapping<'v>(
        &mut self,
        path: &Path,
        value: &'v Value,
        fields: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            self.error(
                path,
                format!(
                    "expected a mapping with fields {}, found {}",
                    list_words(fields),
                    kind_of(value)
                ),
            );
            return None;
        };
        for key in map.keys() {
            if !fields.contains(&key.as_str()) {
                let message = match did_you_mean(key, fields) {
                    Some(suggestion) => format!("unknown field; did you mean {suggestion:?}?"),
                    None => format!("unknown field (expected one of: {})", list_words(fields)),
                };
                self.error(&path.key(key), message);
            }
        }
        Some(map)
    }

    fn string<'v>(&mut self, path: &Path, value: &'v Value) -> Option<&'v str> {
        match value {
            Value::String(s) if s.trim().is_empty() => {
                self.error(path, "must not be empty");
                None
            }
            Value::String(s) => Some(s.as_str()),
            Value::Bool(_) | Value::Number(_) => {
                self.error(
                    path,
                    format!(
                        "expected a string, found {} (quote it: \"{value}\")",
                        kind_of(value)
                    ),
                );
                None
            }
            other => {
                self.error(path, format!("expected a string, found {}", kind_of(other)));
                None
            }
        }
    }

    fn required<'v>(
        &mut self,
        parent: &Path,
        map: &'v Map<String, Value>,
        key: &str,
        expected: &str,
    ) -> Option<&'v Value> {
        let value = field(map, key);
        if value.is_none() {
            self.error(&parent.key(key), format!("required ({expected})"));
        }
        value
    }

    fn required_string<'v>(
        &mut self,
        parent: &Path,
        map: &'v Map<String, Value>,
        key: &str,
        expected: &str,
    ) -> Option<&'v str> {
        let value = self.required(parent, map, key, expected)?;
        self.string(&parent.key(key), value)
    }

    /// A string that must be one of `choices` (case-sensitive).
    fn choice<'c>(&mut self, path: &Path, value: &Value, choices: &[&'c str]) -> Option<&'c str> {
        let text = self.string(path, value)?;
        if let Some(choice) = choices.iter().find(|c| **c == text) {
            return Some(choice);
        }
        let hint = match did_you_mean(text, choices) {
            Some(suggestion) => format!("; did you mean {suggestion:?}?"),
            None => String::new(),
        };
        self.error(
            path,
            format!("{text:?} is not one of {}{hint}", list_words(choices)),
        );
        None
    }

    fn duration(&mut self, path: &Path, value: &Value) -> Option<Duration> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                self.error(
                    path,
                    format!(
                        "expected a duration such as 30s, 15m, 2h or 30d, found {}",
                        kind_of(other)
                    ),
                );
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.error(path, error.to_string());
                None
            }
        }
    }

    fn optional_duration(
        &mut self,
        parent: &Path,
        map: Option<&Map<String, Value>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        match map.and_then(|m| field(m, key)) {
            Some(value) => self.duration(&parent.key(key), value),
            None => Some(default),
        }
    }

    /// A list of non-empty strings.
    fn string_list(&mut self, path: &Path, value: &Value) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            self.error(
                path,
                format!("expected a list of strings, found {}", kind_of(value)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(&path.index(i), item) {
                Some(s) => out.push(s.to_string()),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A map of label key → label value.
    fn label_map(&mut self, path: &Path, value: &Value) -> Option<BTreeMap<String, String>> {
        let Value::Object(map) = value else {
            self.error(
                path,
                format!(
                    "expected a mapping of label keys to values, found {}",
                    kind_of(value)
                ),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in map {
            let entry = path.key(key);
            if let Err(message) = check_label_key(key) {
                self.error(&entry, message);
                ok = false;
            }
            // An empty value is a valid label value: not `self.string`.
            let text = match value {
                Value::String(s) => s.as_str(),
                Value::Null => "",
                Value::Bool(_) | Value::Number(_) => {
                    self.error(
                        &entry,
                        format!(
                            "expected a string, found {} (quote it: \"{value}\")",
                            kind_of(value)
                        ),
                    );
                    ok = false;
                    continue;
                }
                other => {
                    self.error(
                        &entry,
                        format!("expected a string, found {}", kind_of(other)),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Err(message) = check_label_value(text) {
                self.error(&entry, message);
                ok = false;
            }
            out.insert(key.clone(), text.to_string());
        }
        ok.then_some(out)
    }

    fn document(&mut self, document: &Value, mode: Mode) -> Option<Settings> {
        let root = Path::default();
        let map = match document {
            Value::Null if mode == Mode::File => {
                self.error(
                    &root,
                    format!("the file is empty (expected a {KIND} with apiVersion: {API_VERSION})"),
                );
                return None;
            }
            Value::Null => &Map::new(),
            Value::Object(map) => {
                self.mapping(&root, document, TOP_FIELDS)?;
                map
            }
            other => {
                self.error(
                    &root,
                    format!(
                        "expected a {KIND} mapping at the top level, found {}",
                        kind_of(other)
                    ),
                );
                return None;
            }
        };

        if mode == Mode::File {
            self.header(&root, map);
        }
        let cluster_name = self.cluster(&root, map, mode);
        let control_plane = self.control_plane(&root, map);
        let pools = self.pools(&root, map);
        let drain = self.drain(&root, map);
        let health = self.health(&root, map);
        let join = self.join(&root, map, health.as_ref());
        let window = self.window(&root, map);

        Some(Settings {
            cluster_name: cluster_name?,
            control_plane: control_plane?,
            pools: pools?,
            drain: drain?,
            join: join?,
            health: health?,
            window: window?,
        })
    }
}
