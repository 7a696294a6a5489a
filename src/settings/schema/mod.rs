//! The `RotationConfig` schema, hand-written: a walk over the YAML tree
//! that collects every problem with its field path, and builds the typed
//! [`Settings`] only when there is none. Pure.
//!
//! This module holds the walker and its generic checks; `pool` and
//! `sections` the rules of each part of the file.

mod json;
mod pool;
mod sections;

pub use json::rotation_config as rotation_config_schema;

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use kubesurge_provider::ProviderKind;
use kubesurge_provider::config::{Checker, FieldError, FieldPath, field, kind_of};
use serde_json::{Map, Value};

use super::model::*;
use super::names::{check_label_key, check_label_value};
use crate::duration::{parse_delay, parse_duration};

pub const API_VERSION: &str = "kubesurge.io/v1alpha1";
pub const KIND: &str = "RotationConfig";

pub(super) const TOP_FIELDS: &[&str] = &[
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

/// Validate a parsed document; `providers` check their pools' sections.
/// `Err` holds every problem, in document order.
pub fn validate(
    document: &Value,
    mode: Mode,
    providers: &[ProviderKind],
) -> Result<Settings, Vec<FieldError>> {
    let mut walk = Walk {
        check: Checker::new(),
        providers,
    };
    let settings = walk.document(document, mode);
    walk.check.finish(settings)
}

/// The walk over the document: the generic checks of [`Checker`], the
/// configuration's own (durations, labels), and the providers it knows.
struct Walk<'p> {
    check: Checker,
    providers: &'p [ProviderKind],
}

impl Deref for Walk<'_> {
    type Target = Checker;

    fn deref(&self) -> &Checker {
        &self.check
    }
}

impl DerefMut for Walk<'_> {
    fn deref_mut(&mut self) -> &mut Checker {
        &mut self.check
    }
}

impl Walk<'_> {
    fn duration(&mut self, path: &FieldPath, value: &Value) -> Option<Duration> {
        self.duration_by(path, value, parse_duration)
    }

    /// A duration that may be zero (see [`parse_delay`]).
    fn delay(&mut self, path: &FieldPath, value: &Value) -> Option<Duration> {
        self.duration_by(path, value, parse_delay)
    }

    fn duration_by(
        &mut self,
        path: &FieldPath,
        value: &Value,
        parse: fn(&str) -> Result<Duration, crate::duration::DurationError>,
    ) -> Option<Duration> {
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
        match parse(&text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.error(path, error.to_string());
                None
            }
        }
    }

    fn optional_duration(
        &mut self,
        parent: &FieldPath,
        map: Option<&Map<String, Value>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        match map.and_then(|m| field(m, key)) {
            Some(value) => self.duration(&parent.key(key), value),
            None => Some(default),
        }
    }

    /// An optional field read with [`Self::delay`]: zero allowed.
    fn optional_delay(
        &mut self,
        parent: &FieldPath,
        map: Option<&Map<String, Value>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        match map.and_then(|m| field(m, key)) {
            Some(value) => self.delay(&parent.key(key), value),
            None => Some(default),
        }
    }

    /// A map of label key → label value.
    fn label_map(&mut self, path: &FieldPath, value: &Value) -> Option<BTreeMap<String, String>> {
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
        let root = FieldPath::root();
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
