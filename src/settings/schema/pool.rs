//! `pools[]`: identity, selector, provider blocks, budgets, and what new
//! nodes register with.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Path, Walk, field, kind_of, show};
use crate::settings::Budget;
use crate::settings::model::*;
use crate::settings::names::{
    check_dns_label, check_kubelet_may_set, check_label_key, check_label_value,
};

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
    "kubeletExtraArgs",
];
const AWS_FIELDS: &[&str] = &["region", "launchTemplate", "image", "subnets"];
const LAUNCH_TEMPLATE_FIELDS: &[&str] = &["name", "id", "version"];
const IMAGE_FIELDS: &[&str] = &["owners", "filters", "id"];
const SIM_FIELDS: &[&str] = &["endpoint"];
const TAINT_FIELDS: &[&str] = &["key", "value", "effect"];

impl Walk {
    pub(super) fn pools(&mut self, root: &Path, map: &Map<String, Value>) -> Option<Vec<Pool>> {
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

        let kubelet_extra_args = match field(pool, "kubeletExtraArgs") {
            None => Some(BTreeMap::new()),
            Some(value) => self.kubelet_args(&path.key("kubeletExtraArgs"), value),
        };

        Some(Pool {
            name: name?,
            selector: selector?,
            provider: provider?,
            max_surge: max_surge?,
            max_unavailable: max_unavailable?,
            node_labels: node_labels?,
            node_taints: node_taints?,
            kubelet_extra_args: kubelet_extra_args?,
        })
    }

    /// `kubeletExtraArgs`: kubelet flag names (without dashes) to values.
    /// The flags kubesurge sets itself are refused with the field to use.
    fn kubelet_args(&mut self, path: &Path, value: &Value) -> Option<BTreeMap<String, String>> {
        let Value::Object(map) = value else {
            self.error(
                path,
                format!(
                    "expected a mapping of kubelet flag names to values (cloud-provider: external), found {}",
                    kind_of(value)
                ),
            );
            return None;
        };
        let mut args = BTreeMap::new();
        let mut ok = true;
        for (flag, value) in map {
            let entry = path.key(flag);
            let well_formed = !flag.is_empty()
                && !flag.starts_with('-')
                && flag
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !well_formed {
                self.error(
                    &entry,
                    "a kubelet flag name in lower case without the leading dashes (cloud-provider, max-pods)",
                );
                ok = false;
                continue;
            }
            match flag.as_str() {
                "provider-id" => {
                    self.error(&entry, "kubesurge sets the providerID of new nodes from the cloud itself; remove it");
                    ok = false;
                    continue;
                }
                "node-labels" => {
                    self.error(
                        &entry,
                        "set the labels of new nodes with nodeLabels instead",
                    );
                    ok = false;
                    continue;
                }
                _ => {}
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    self.error(
                        &entry,
                        format!("expected the flag's value, found {}", kind_of(other)),
                    );
                    ok = false;
                    continue;
                }
            };
            args.insert(flag.clone(), text);
        }
        ok.then_some(args)
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

    fn budget(&mut self, path: &Path, value: &Value) -> Option<Budget> {
        match parse_budget(value) {
            Ok(budget) => Some(budget),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
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
