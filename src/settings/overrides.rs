//! Flags that override the config file. They are written into the YAML tree
//! before validation, so a flag is checked exactly like the field it
//! replaces, and its problems name the flag.

use serde_json::{Map, Value};

use super::error::FieldError;

/// Values from flags, as typed on the command line (`--drain-timeout 30m`).
/// `None` leaves the file's value (or the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--cluster-name` → `cluster.name`.
    pub cluster_name: Option<String>,
    /// `--drain-timeout` → `drain.timeout`.
    pub drain_timeout: Option<String>,
    /// `--on-drain-timeout` → `drain.onTimeout`.
    pub drain_on_timeout: Option<String>,
    /// `--unmanaged-pods` → `drain.unmanagedPods`.
    pub unmanaged_pods: Option<String>,
    /// `--local-storage` → `drain.localStorage`.
    pub local_storage: Option<String>,
    /// `--token-ttl` → `join.tokenTTL`.
    pub token_ttl: Option<String>,
    /// `--new-node-timeout` → `health.newNodeTimeout`.
    pub new_node_timeout: Option<String>,
    /// `--settle` → `health.settle`.
    pub settle: Option<String>,
}

/// One override: its flag, the field it sets, the value.
struct Entry<'a> {
    flag: &'static str,
    section: &'static str,
    field: &'static str,
    value: &'a str,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    fn entries(&self) -> Vec<Entry<'_>> {
        let all = [
            ("--cluster-name", "cluster", "name", &self.cluster_name),
            ("--drain-timeout", "drain", "timeout", &self.drain_timeout),
            (
                "--on-drain-timeout",
                "drain",
                "onTimeout",
                &self.drain_on_timeout,
            ),
            (
                "--unmanaged-pods",
                "drain",
                "unmanagedPods",
                &self.unmanaged_pods,
            ),
            (
                "--local-storage",
                "drain",
                "localStorage",
                &self.local_storage,
            ),
            ("--token-ttl", "join", "tokenTTL", &self.token_ttl),
            (
                "--new-node-timeout",
                "health",
                "newNodeTimeout",
                &self.new_node_timeout,
            ),
            ("--settle", "health", "settle", &self.settle),
        ];
        all.into_iter()
            .filter_map(|(flag, section, field, value)| {
                value.as_deref().map(|value| Entry {
                    flag,
                    section,
                    field,
                    value,
                })
            })
            .collect()
    }

    /// Write the flags into the document. A section that is present but not
    /// a mapping is left alone: validation reports it.
    pub(crate) fn apply(&self, document: &mut Value) {
        let entries = self.entries();
        if entries.is_empty() {
            return;
        }
        if document.is_null() {
            *document = Value::Object(Map::new());
        }
        let Value::Object(root) = document else {
            return;
        };
        for entry in entries {
            let section = root
                .entry(entry.section)
                .or_insert_with(|| Value::Object(Map::new()));
            if section.is_null() {
                *section = Value::Object(Map::new());
            }
            if let Value::Object(section) = section {
                section.insert(
                    entry.field.to_string(),
                    Value::String(entry.value.to_string()),
                );
            }
        }
    }

    /// Make problems with overridden fields name their flag.
    pub(crate) fn attribute(&self, errors: &mut [FieldError]) {
        for entry in self.entries() {
            let path = format!("{}.{}", entry.section, entry.field);
            for error in errors.iter_mut().filter(|e| e.path == path) {
                error.path = format!("{path} ({})", entry.flag);
            }
        }
    }
}
