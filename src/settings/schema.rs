//! The `RotationConfig` schema, hand-written: a walk over the YAML tree
//! that collects every problem with its field path, and builds the typed
//! [`Settings`] only when there is none. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use super::Budget;
use super::duration::{HumanDuration, parse_duration};
use super::error::FieldError;
use super::model::*;
use super::names::{
    check_dns_label, check_kubelet_may_set, check_label_key, check_label_value, did_you_mean,
};

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
const CLUSTER_FIELDS: &[&str] = &["name"];
const CONTROL_PLANE_FIELDS: &[&str] = &["exec", "ssh"];
const SSH_FIELDS: &[&str] = &["user", "identityFile", "knownHosts", "port"];
const POOL_FIELDS: &[&str] = &[
    "name",
    "selector",
    "provider",
    "aws",
    "sim",
    "maxSurge",
    "maxUnavailable",
    "nodeLabels",
    "nodeTaints",
];
const AWS_FIELDS: &[&str] = &["region", "launchTemplate", "image", "subnets"];
const LAUNCH_TEMPLATE_FIELDS: &[&str] = &["name", "id", "version"];
const IMAGE_FIELDS: &[&str] = &["owners", "filters", "id"];
const SIM_FIELDS: &[&str] = &["endpoint"];
const TAINT_FIELDS: &[&str] = &["key", "value", "effect"];
const DRAIN_FIELDS: &[&str] = &["timeout", "onTimeout", "unmanagedPods"];
const JOIN_FIELDS: &[&str] = &["tokenTTL"];
const HEALTH_FIELDS: &[&str] = &["newNodeTimeout", "settle"];
const WINDOW_FIELDS: &[&str] = &["days", "start", "end", "timeZone"];

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

    fn budget(&mut self, path: &Path, value: &Value) -> Option<Budget> {
        match parse_budget(value) {
            Ok(budget) => Some(budget),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
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

    fn header(&mut self, root: &Path, map: &Map<String, Value>) {
        let expected_api = format!("expected {API_VERSION}");
        if let Some(value) = self.required(root, map, "apiVersion", &expected_api)
            && value.as_str() != Some(API_VERSION)
        {
            self.error(
                &root.key("apiVersion"),
                format!("{} is not supported ({expected_api})", show(value)),
            );
        }
        let expected_kind = format!("expected {KIND}");
        if let Some(value) = self.required(root, map, "kind", &expected_kind)
            && value.as_str() != Some(KIND)
        {
            self.error(
                &root.key("kind"),
                format!(
                    "{} is not a kind this file can be ({expected_kind})",
                    show(value)
                ),
            );
        }
    }

    /// `Some(None)`: valid and not set.
    fn cluster(
        &mut self,
        root: &Path,
        map: &Map<String, Value>,
        mode: Mode,
    ) -> Option<Option<String>> {
        let path = root.key("cluster");
        let Some(value) = field(map, "cluster") else {
            if mode == Mode::File {
                self.error(
                    &path.key("name"),
                    "required (the cluster's name, a DNS label used in tags, the lock and events)",
                );
                return None;
            }
            return Some(None);
        };
        let cluster = self.mapping(&path, value, CLUSTER_FIELDS)?;
        let name = self.required_string(
            &path,
            cluster,
            "name",
            "the cluster's name, a DNS label used in tags, the lock and events",
        )?;
        match check_dns_label(name) {
            Ok(()) => Some(Some(name.to_string())),
            Err(message) => {
                self.error(&path.key("name"), message);
                None
            }
        }
    }

    fn control_plane(&mut self, root: &Path, map: &Map<String, Value>) -> Option<ControlPlane> {
        let path = root.key("controlPlane");
        let Some(section) = field(map, "controlPlane") else {
            return Some(ControlPlane::default());
        };
        let section = self.mapping(&path, section, CONTROL_PLANE_FIELDS)?;
        let exec = match field(section, "exec") {
            None => Some(None),
            Some(value) => self
                .choice(&path.key("exec"), value, &["ssm", "ssh", "local"])
                .map(|choice| {
                    Some(match choice {
                        "ssm" => ExecMethod::Ssm,
                        "ssh" => ExecMethod::Ssh,
                        _ => ExecMethod::Local,
                    })
                }),
        };
        let ssh = self.ssh(&path, section);
        Some(ControlPlane {
            exec: exec?,
            ssh: ssh?,
        })
    }

    fn ssh(&mut self, parent: &Path, map: &Map<String, Value>) -> Option<Ssh> {
        let path = parent.key("ssh");
        let Some(value) = field(map, "ssh") else {
            return Some(Ssh::default());
        };
        let ssh = self.mapping(&path, value, SSH_FIELDS)?;
        let mut ok = true;
        let mut text = |walk: &mut Walk, key: &str| match field(ssh, key) {
            None => None,
            Some(value) => {
                let s = walk.string(&path.key(key), value).map(str::to_string);
                ok &= s.is_some();
                s
            }
        };
        let user = text(self, "user");
        let identity_file = text(self, "identityFile");
        let known_hosts = text(self, "knownHosts");
        let port = match field(ssh, "port") {
            None => Some(DEFAULT_SSH_PORT),
            Some(value) => match value.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(port) if port > 0 => Some(port),
                _ => {
                    self.error(
                        &path.key("port"),
                        format!("{} is not a TCP port (expected 1-65535)", show(value)),
                    );
                    None
                }
            },
        };
        if let Some(user) = &user
            && user.contains(|c: char| c.is_whitespace() || c == '@')
        {
            self.error(
                &path.key("user"),
                format!("{user:?} is not a user name (no spaces or '@')"),
            );
            ok = false;
        }
        (ok && port.is_some()).then(|| Ssh {
            user,
            identity_file,
            known_hosts,
            port: port.unwrap_or(DEFAULT_SSH_PORT),
        })
    }

    fn pools(&mut self, root: &Path, map: &Map<String, Value>) -> Option<Vec<Pool>> {
        let path = root.key("pools");
        let Some(value) = field(map, "pools") else {
            return Some(Vec::new());
        };
        let Value::Array(items) = value else {
            self.error(
                &path,
                format!("expected a list of pools, found {}", kind_of(value)),
            );
            return None;
        };
        let mut pools = Vec::with_capacity(items.len());
        let mut ok = true;
        let mut first_index_of_name: BTreeMap<String, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let pool_path = path.index(i);
            // Duplicate names are checked on the raw name so they are found
            // even when something else in the pool is wrong.
            if let Value::Object(pool) = item
                && let Some(Value::String(name)) = pool.get("name")
            {
                if let Some(first) = first_index_of_name.get(name) {
                    self.error(
                        &pool_path.key("name"),
                        format!("{name:?} is already the name of pools[{first}]; pool names must be unique"),
                    );
                    ok = false;
                } else {
                    first_index_of_name.insert(name.clone(), i);
                }
            }
            match self.pool(&pool_path, item) {
                Some(pool) => pools.push(pool),
                None => ok = false,
            }
        }
        ok.then_some(pools)
    }

    fn pool(&mut self, path: &Path, value: &Value) -> Option<Pool> {
        let pool = self.mapping(path, value, POOL_FIELDS)?;

        let name = self
            .required_string(path, pool, "name", "a DNS label such as general")
            .and_then(|name| match check_dns_label(name) {
                Ok(()) => Some(name.to_string()),
                Err(message) => {
                    self.error(&path.key("name"), message);
                    None
                }
            });

        let selector_expected =
            "a non-empty map of node labels, such as { kubesurge.io/pool: general }";
        let selector = self
            .required(path, pool, "selector", selector_expected)
            .and_then(|value| self.label_map(&path.key("selector"), value))
            .and_then(|selector| {
                if selector.is_empty() {
                    self.error(
                        &path.key("selector"),
                        format!("must not be empty: it would match every node (expected {selector_expected})"),
                    );
                    None
                } else {
                    Some(selector)
                }
            });

        let provider = self.pool_provider(path, pool);

        let max_surge = match field(pool, "maxSurge") {
            Some(value) => self.budget(&path.key("maxSurge"), value),
            None => Some(DEFAULT_MAX_SURGE),
        };
        let max_unavailable = match field(pool, "maxUnavailable") {
            Some(value) => self.budget(&path.key("maxUnavailable"), value),
            None => Some(DEFAULT_MAX_UNAVAILABLE),
        };
        if let (Some(surge), Some(unavailable)) = (max_surge, max_unavailable)
            && surge.is_zero()
            && unavailable.is_zero()
        {
            self.error(
                &path.key("maxSurge"),
                "maxSurge and maxUnavailable are both zero: no node could ever be replaced \
                 (set maxSurge to at least 1, or allow maxUnavailable)",
            );
        }

        let node_labels = match field(pool, "nodeLabels") {
            None => selector.clone(),
            Some(value) => {
                let labels = self.label_map(&path.key("nodeLabels"), value);
                if let Some(labels) = &labels {
                    for key in labels.keys() {
                        if let Err(message) = check_kubelet_may_set(key) {
                            self.error(&path.key("nodeLabels").key(key), message);
                        }
                    }
                    if let Some(selector) = &selector {
                        for (key, wanted) in selector {
                            if labels.get(key) != Some(wanted) {
                                self.error(
                                    &path.key("nodeLabels"),
                                    format!(
                                        "must include the selector's {key}: {wanted:?}, or new \
                                         nodes would not belong to this pool"
                                    ),
                                );
                            }
                        }
                    }
                }
                labels
            }
        };

        let node_taints = match field(pool, "nodeTaints") {
            None => Some(Vec::new()),
            Some(value) => self.taints(&path.key("nodeTaints"), value),
        };

        Some(Pool {
            name: name?,
            selector: selector?,
            provider: provider?,
            max_surge: max_surge?,
            max_unavailable: max_unavailable?,
            node_labels: node_labels?,
            node_taints: node_taints?,
        })
    }

    fn pool_provider(&mut self, path: &Path, pool: &Map<String, Value>) -> Option<PoolProvider> {
        let kind = self
            .required(path, pool, "provider", "aws or sim")
            .and_then(|value| self.choice(&path.key("provider"), value, &["aws", "sim"]));
        let aws = field(pool, "aws");
        let sim = field(pool, "sim");
        match kind? {
            "aws" => {
                if sim.is_some() {
                    self.error(&path.key("sim"), "only allowed with provider: sim");
                }
                let Some(aws) = aws else {
                    self.error(
                        &path.key("aws"),
                        "required with provider: aws (region, launchTemplate, image)",
                    );
                    return None;
                };
                let aws = self.aws(&path.key("aws"), aws);
                if sim.is_some() {
                    return None;
                }
                aws.map(PoolProvider::Aws)
            }
            _ => {
                if aws.is_some() {
                    self.error(&path.key("aws"), "only allowed with provider: aws");
                }
                let Some(sim) = sim else {
                    self.error(&path.key("sim"), "required with provider: sim (endpoint)");
                    return None;
                };
                let sim = self.sim(&path.key("sim"), sim);
                if aws.is_some() {
                    return None;
                }
                sim.map(PoolProvider::Sim)
            }
        }
    }

    fn aws(&mut self, path: &Path, value: &Value) -> Option<AwsPool> {
        let aws = self.mapping(path, value, AWS_FIELDS)?;
        let region = self
            .required_string(path, aws, "region", "an AWS region such as eu-west-1")
            .and_then(|region| {
                if is_aws_region(region) {
                    Some(region.to_string())
                } else {
                    self.error(
                        &path.key("region"),
                        format!("{region:?} is not an AWS region (such as eu-west-1)"),
                    );
                    None
                }
            });
        let launch_template = self
            .required(path, aws, "launchTemplate", "{ name: … } or { id: lt-… }")
            .and_then(|value| self.launch_template(&path.key("launchTemplate"), value));
        let image = self
            .required(
                path,
                aws,
                "image",
                "{ owners: […], filters: {…} } or { id: ami-… }",
            )
            .and_then(|value| self.image(&path.key("image"), value));
        let subnets = match field(aws, "subnets") {
            None => Some(None),
            Some(value) => {
                let subnets = self.string_list(&path.key("subnets"), value);
                if subnets.as_ref().is_some_and(Vec::is_empty) {
                    self.error(
                        &path.key("subnets"),
                        "must not be empty (leave it out to use the old node's subnet)",
                    );
                    None
                } else {
                    subnets.map(Some)
                }
            }
        };
        Some(AwsPool {
            region: region?,
            launch_template: launch_template?,
            image: image?,
            subnets: subnets?,
        })
    }

    fn launch_template(&mut self, path: &Path, value: &Value) -> Option<LaunchTemplate> {
        let lt = self.mapping(path, value, LAUNCH_TEMPLATE_FIELDS)?;
        let template = match (field(lt, "name"), field(lt, "id")) {
            (Some(_), Some(_)) => {
                self.error(path, "set either name or id, not both");
                None
            }
            (None, None) => {
                self.error(path, "required: name or id of the launch template");
                None
            }
            (Some(name), None) => self
                .string(&path.key("name"), name)
                .map(|name| LaunchTemplateRef::Name(name.to_string())),
            (None, Some(id)) => self.string(&path.key("id"), id).and_then(|id| {
                if id.starts_with("lt-") {
                    Some(LaunchTemplateRef::Id(id.to_string()))
                } else {
                    self.error(
                        &path.key("id"),
                        format!("{id:?} is not a launch template id (lt-…)"),
                    );
                    None
                }
            }),
        };
        let version = match field(lt, "version") {
            None => Some(LaunchTemplateVersion::Default),
            Some(value) => {
                let parsed = match value {
                    Value::String(s) if s == "$Default" => Some(LaunchTemplateVersion::Default),
                    Value::String(s) if s == "$Latest" => Some(LaunchTemplateVersion::Latest),
                    Value::String(s) => s.parse::<u64>().ok().map(LaunchTemplateVersion::Number),
                    Value::Number(n) => n.as_u64().map(LaunchTemplateVersion::Number),
                    _ => None,
                };
                match parsed {
                    Some(LaunchTemplateVersion::Number(0)) | None => {
                        self.error(
                            &path.key("version"),
                            format!(
                                "{} is not a launch template version (expected $Default, \
                                 $Latest or a version number from 1)",
                                show(value)
                            ),
                        );
                        None
                    }
                    Some(version) => Some(version),
                }
            }
        };
        Some(LaunchTemplate {
            template: template?,
            version: version?,
        })
    }

    fn image(&mut self, path: &Path, value: &Value) -> Option<ImageSource> {
        let image = self.mapping(path, value, IMAGE_FIELDS)?;
        let id = field(image, "id");
        let owners = field(image, "owners");
        let filters = field(image, "filters");
        if let Some(id) = id {
            if owners.is_some() || filters.is_some() {
                self.error(
                    path,
                    "set either id (one fixed image) or owners and filters (a lookup per \
                     Kubernetes version), not both",
                );
                return None;
            }
            let id = self.string(&path.key("id"), id)?;
            if !id.starts_with("ami-") {
                self.error(
                    &path.key("id"),
                    format!("{id:?} is not an image id (ami-…)"),
                );
                return None;
            }
            return Some(ImageSource::Id(id.to_string()));
        }

        let owners = match owners {
            None => {
                self.error(
                    &path.key("owners"),
                    "required with filters (account ids, self or amazon): a lookup without \
                     owners could pick anyone's public image",
                );
                None
            }
            Some(value) => self
                .string_list(&path.key("owners"), value)
                .and_then(|owners| {
                    if owners.is_empty() {
                        self.error(&path.key("owners"), "must not be empty");
                        None
                    } else {
                        Some(owners)
                    }
                }),
        };
        let filters = match filters {
            None => {
                self.error(
                    &path.key("filters"),
                    "required with owners (such as { \"tag:kubernetes-version\": \"{version}\" }), \
                     or set id",
                );
                None
            }
            Some(value) => self.image_filters(&path.key("filters"), value),
        };
        Some(ImageSource::Lookup {
            owners: owners?,
            filters: filters?,
        })
    }

    fn image_filters(
        &mut self,
        path: &Path,
        value: &Value,
    ) -> Option<BTreeMap<String, Vec<String>>> {
        let Value::Object(map) = value else {
            self.error(
                path,
                format!(
                    "expected a mapping of filter names to values, found {}",
                    kind_of(value)
                ),
            );
            return None;
        };
        if map.is_empty() {
            self.error(path, "must not be empty");
            return None;
        }
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, value) in map {
            let entry = path.key(name);
            let values = match value {
                Value::Array(_) => self.string_list(&entry, value),
                _ => self.string(&entry, value).map(|s| vec![s.to_string()]),
            };
            let Some(values) = values else {
                ok = false;
                continue;
            };
            if values.is_empty() {
                self.error(&entry, "must not be empty");
                ok = false;
                continue;
            }
            for text in &values {
                if let Some(unknown) = unknown_placeholder(text) {
                    self.error(
                        &entry,
                        format!(
                            "{text:?} contains {unknown}, which is not a placeholder \
                             (only {VERSION_PLACEHOLDER} is replaced)"
                        ),
                    );
                    ok = false;
                }
            }
            out.insert(name.clone(), values);
        }
        ok.then_some(out)
    }

    fn sim(&mut self, path: &Path, value: &Value) -> Option<SimPool> {
        let sim = self.mapping(path, value, SIM_FIELDS)?;
        let endpoint =
            self.required_string(path, sim, "endpoint", "a URL such as http://127.0.0.1:8080")?;
        match endpoint.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|h| !h.is_empty()) =>
            {
                Some(SimPool {
                    endpoint: endpoint.to_string(),
                })
            }
            _ => {
                self.error(
                    &path.key("endpoint"),
                    format!("{endpoint:?} is not an http(s) URL (such as http://127.0.0.1:8080)"),
                );
                None
            }
        }
    }

    fn taints(&mut self, path: &Path, value: &Value) -> Option<Vec<Taint>> {
        let Value::Array(items) = value else {
            self.error(
                path,
                format!(
                    "expected a list of taints ({{ key, value, effect }}), found {}",
                    kind_of(value)
                ),
            );
            return None;
        };
        let mut taints: Vec<Taint> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let taint_path = path.index(i);
            let Some(taint) = self.mapping(&taint_path, item, TAINT_FIELDS) else {
                ok = false;
                continue;
            };
            let key = self
                .required_string(&taint_path, taint, "key", "a label key")
                .and_then(|key| match check_label_key(key) {
                    Ok(()) => Some(key.to_string()),
                    Err(message) => {
                        self.error(&taint_path.key("key"), message);
                        None
                    }
                });
            let value = match field(taint, "value") {
                None => Some(String::new()),
                Some(Value::String(s)) => match check_label_value(s) {
                    Ok(()) => Some(s.clone()),
                    Err(message) => {
                        self.error(&taint_path.key("value"), message);
                        None
                    }
                },
                Some(other) => {
                    self.error(
                        &taint_path.key("value"),
                        format!("expected a string, found {}", kind_of(other)),
                    );
                    None
                }
            };
            let effect = self
                .required(
                    &taint_path,
                    taint,
                    "effect",
                    "NoSchedule, PreferNoSchedule or NoExecute",
                )
                .and_then(|value| {
                    self.choice(
                        &taint_path.key("effect"),
                        value,
                        &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                    )
                })
                .map(|effect| match effect {
                    "NoSchedule" => TaintEffect::NoSchedule,
                    "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
                    _ => TaintEffect::NoExecute,
                });
            match (key, value, effect) {
                (Some(key), Some(value), Some(effect)) => {
                    if taints.iter().any(|t| t.key == key && t.effect == effect) {
                        self.error(
                            &taint_path,
                            format!(
                                "duplicate taint {key}:{}; a node has one taint per key and effect",
                                effect.as_str()
                            ),
                        );
                        ok = false;
                    } else {
                        taints.push(Taint { key, value, effect });
                    }
                }
                _ => ok = false,
            }
        }
        ok.then_some(taints)
    }

    fn drain(&mut self, root: &Path, map: &Map<String, Value>) -> Option<Drain> {
        let path = root.key("drain");
        let section = match field(map, "drain") {
            None => None,
            Some(value) => Some(self.mapping(&path, value, DRAIN_FIELDS)?),
        };
        let defaults = Drain::default();
        let timeout = self.optional_duration(&path, section, "timeout", defaults.timeout);
        let on_timeout = match section.and_then(|s| field(s, "onTimeout")) {
            None => Some(defaults.on_timeout),
            Some(value) => self
                .choice(&path.key("onTimeout"), value, &["fail", "force", "skip"])
                .map(|choice| match choice {
                    "fail" => OnDrainTimeout::Fail,
                    "force" => OnDrainTimeout::Force,
                    _ => OnDrainTimeout::Skip,
                }),
        };
        let unmanaged_pods = match section.and_then(|s| field(s, "unmanagedPods")) {
            None => Some(defaults.unmanaged_pods),
            Some(value) => self
                .choice(&path.key("unmanagedPods"), value, &["fail", "delete"])
                .map(|choice| match choice {
                    "fail" => UnmanagedPods::Fail,
                    _ => UnmanagedPods::Delete,
                }),
        };
        Some(Drain {
            timeout: timeout?,
            on_timeout: on_timeout?,
            unmanaged_pods: unmanaged_pods?,
        })
    }

    fn health(&mut self, root: &Path, map: &Map<String, Value>) -> Option<Health> {
        let path = root.key("health");
        let section = match field(map, "health") {
            None => None,
            Some(value) => Some(self.mapping(&path, value, HEALTH_FIELDS)?),
        };
        let defaults = Health::default();
        let new_node_timeout =
            self.optional_duration(&path, section, "newNodeTimeout", defaults.new_node_timeout);
        let settle = self.optional_duration(&path, section, "settle", defaults.settle);
        Some(Health {
            new_node_timeout: new_node_timeout?,
            settle: settle?,
        })
    }

    /// `health` is needed: the token must outlive the wait for the join.
    fn join(
        &mut self,
        root: &Path,
        map: &Map<String, Value>,
        health: Option<&Health>,
    ) -> Option<Join> {
        let path = root.key("join");
        let section = match field(map, "join") {
            None => None,
            Some(value) => Some(self.mapping(&path, value, JOIN_FIELDS)?),
        };
        let token_ttl =
            self.optional_duration(&path, section, "tokenTTL", Join::default().token_ttl)?;
        if let Some(health) = health
            && token_ttl <= health.new_node_timeout
        {
            let set = section.and_then(|s| field(s, "tokenTTL")).is_some();
            self.error(
                &path.key("tokenTTL"),
                format!(
                    "{}{} must be longer than health.newNodeTimeout ({}): a node still joining \
                     when its bootstrap token expires is refused",
                    HumanDuration(token_ttl),
                    if set { "" } else { " (the default)" },
                    HumanDuration(health.new_node_timeout),
                ),
            );
            return None;
        }
        Some(Join { token_ttl })
    }

    /// `Some(None)`: valid and not set.
    fn window(&mut self, root: &Path, map: &Map<String, Value>) -> Option<Option<Window>> {
        let path = root.key("window");
        let Some(value) = field(map, "window") else {
            return Some(None);
        };
        let window = self.mapping(&path, value, WINDOW_FIELDS)?;

        let days = self
            .required(&path, window, "days", "a list of days such as [Sat, Sun]")
            .and_then(|value| self.days(&path.key("days"), value));
        let start = self
            .required(&path, window, "start", "a time of day, \"HH:MM\"")
            .and_then(|value| self.time_of_day(&path.key("start"), value));
        let end = self
            .required(&path, window, "end", "a time of day, \"HH:MM\"")
            .and_then(|value| self.time_of_day(&path.key("end"), value));
        if let (Some(start), Some(end)) = (start, end)
            && start == end
        {
            self.error(
                &path.key("end"),
                "equals start: the window would be empty (an end before start closes it the next day)",
            );
        }
        let time_zone = self
            .required_string(
                &path,
                window,
                "timeZone",
                "an IANA time zone such as Europe/Berlin or UTC",
            )
            .and_then(|name| match TimeZone::get(name) {
                Ok(zone) => Some((zone, name.to_string())),
                Err(_) => {
                    self.error(
                        &path.key("timeZone"),
                        format!(
                            "{name:?} is not a time zone in the IANA database \
                             (such as Europe/Berlin, America/New_York or UTC)"
                        ),
                    );
                    None
                }
            });
        if start.is_some_and(|s| Some(s) == end) {
            return None;
        }
        let (time_zone, time_zone_name) = time_zone?;
        Some(Some(Window {
            days: days?,
            start: start?,
            end: end?,
            time_zone,
            time_zone_name,
        }))
    }

    fn days(&mut self, path: &Path, value: &Value) -> Option<Vec<Weekday>> {
        let names = self.string_list(path, value)?;
        if names.is_empty() {
            self.error(path, "must not be empty (such as [Sat, Sun])");
            return None;
        }
        let mut days = BTreeSet::new();
        let mut ok = true;
        for (i, name) in names.iter().enumerate() {
            match parse_weekday(name) {
                Some(day) if !days.insert(day.to_monday_zero_offset()) => {
                    self.error(&path.index(i), format!("{name:?} is listed twice"));
                    ok = false;
                }
                Some(_) => {}
                None => {
                    self.error(
                        &path.index(i),
                        format!(
                            "{name:?} is not a day (expected Mon, Tue, Wed, Thu, Fri, Sat or Sun)"
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| {
            days.into_iter()
                .filter_map(|offset| Weekday::from_monday_zero_offset(offset).ok())
                .collect()
        })
    }

    fn time_of_day(&mut self, path: &Path, value: &Value) -> Option<Time> {
        let parsed = value.as_str().and_then(parse_hh_mm);
        if parsed.is_none() {
            self.error(
                path,
                format!(
                    "{} is not a time of day (expected \"HH:MM\", 00:00 to 23:59)",
                    show(value)
                ),
            );
        }
        parsed
    }
}

/// An integer or a percentage (0–100%).
fn parse_budget(value: &Value) -> Result<Budget, String> {
    let neither = || {
        format!(
            "{} is neither an integer nor a percentage (expected such as 1 or 25%)",
            show(value)
        )
    };
    let count = |n: u64| {
        u32::try_from(n)
            .map(Budget::Count)
            .map_err(|_| format!("{n} is too large"))
    };
    match value {
        Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                count(n)
            } else if n.as_i64().is_some() || n.as_f64().is_some_and(|f| f < 0.0) {
                Err(format!("{n} cannot be negative"))
            } else {
                Err(neither())
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if let Some(number) = s.strip_suffix('%') {
                if number.starts_with('-') {
                    return Err(format!("{s:?} cannot be negative"));
                }
                match number.trim().parse::<u32>() {
                    Ok(p) if p <= 100 => Ok(Budget::Percent(p)),
                    Ok(_) => Err(format!("{s:?} is more than 100%")),
                    Err(_) => Err(neither()),
                }
            } else if s.starts_with('-') && s[1..].parse::<u64>().is_ok() {
                Err(format!("{s:?} cannot be negative"))
            } else if let Ok(n) = s.parse::<u64>() {
                count(n)
            } else {
                Err(neither())
            }
        }
        _ => Err(neither()),
    }
}

/// `Mon`…`Sun`, also full names, any case.
fn parse_weekday(name: &str) -> Option<Weekday> {
    const DAYS: [(&str, &str, Weekday); 7] = [
        ("mon", "monday", Weekday::Monday),
        ("tue", "tuesday", Weekday::Tuesday),
        ("wed", "wednesday", Weekday::Wednesday),
        ("thu", "thursday", Weekday::Thursday),
        ("fri", "friday", Weekday::Friday),
        ("sat", "saturday", Weekday::Saturday),
        ("sun", "sunday", Weekday::Sunday),
    ];
    let lower = name.trim().to_ascii_lowercase();
    DAYS.iter()
        .find(|(short, long, _)| lower == *short || lower == *long)
        .map(|(_, _, day)| *day)
}

/// `HH:MM`, 24-hour.
fn parse_hh_mm(text: &str) -> Option<Time> {
    let (hours, minutes) = text.trim().split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return None;
    }
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    Time::new(hours, minutes, 0, 0).ok()
}

/// The first `{…}` in `text` that is not `{version}`.
fn unknown_placeholder(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let close = after.find('}')?;
        let placeholder = &after[..=close];
        if placeholder != VERSION_PLACEHOLDER {
            return Some(placeholder.to_string());
        }
        rest = &after[close + 1..];
    }
    None
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-4`, `cn-north-1`.
fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}
