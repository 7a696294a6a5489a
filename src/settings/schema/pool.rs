//! `pools[]`: identity, selector, the provider and its section, budgets,
//! and what new nodes register with. A provider's section is checked by
//! the provider (see [`kubesurge_provider::ProviderKind`]) and kept as
//! written.

use std::collections::BTreeMap;

use kubesurge_provider::config::{FieldPath, field, kind_of, show};
use serde_json::{Map, Value};

use super::Walk;
use crate::plan::Budget;
use crate::settings::model::*;
use crate::settings::names::{
    check_dns_label, check_kubelet_may_set, check_label_key, check_label_value,
};

/// The fields of a pool before the providers' sections.
pub(super) const POOL_FIELDS_BEFORE_PROVIDERS: &[&str] = &["name", "selector", "provider"];
/// The fields of a pool after the providers' sections.
pub(super) const POOL_FIELDS_AFTER_PROVIDERS: &[&str] = &[
    "maxSurge",
    "maxUnavailable",
    "nodeLabels",
    "nodeTaints",
    "kubeletExtraArgs",
];
pub(super) const TAINT_FIELDS: &[&str] = &["key", "value", "effect"];
/// `nodeTaints[].effect`.
pub(super) const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

impl Walk<'_> {
    pub(super) fn pools(
        &mut self,
        root: &FieldPath,
        map: &Map<String, Value>,
    ) -> Option<Vec<Pool>> {
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

    fn pool(&mut self, path: &FieldPath, value: &Value) -> Option<Pool> {
        let fields: Vec<&str> = POOL_FIELDS_BEFORE_PROVIDERS
            .iter()
            .copied()
            .chain(self.providers.iter().map(|p| p.name))
            .chain(POOL_FIELDS_AFTER_PROVIDERS.iter().copied())
            .collect();
        let pool = self.mapping(path, value, &fields)?;

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
    fn kubelet_args(
        &mut self,
        path: &FieldPath,
        value: &Value,
    ) -> Option<BTreeMap<String, String>> {
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

    /// `provider`, and the section of that name checked by the provider.
    /// A section of another provider is refused: it would be ignored.
    fn pool_provider(
        &mut self,
        path: &FieldPath,
        pool: &Map<String, Value>,
    ) -> Option<ProviderSection> {
        let providers = self.providers;
        let names: Vec<&str> = providers.iter().map(|p| p.name).collect();
        let kind = self
            .required(path, pool, "provider", &either_of(&names))
            .and_then(|value| self.choice(&path.key("provider"), value, &names))
            .and_then(|name| providers.iter().find(|p| p.name == name))?;
        let mut others = false;
        for other in providers.iter().filter(|p| p.name != kind.name) {
            if field(pool, other.name).is_some() {
                self.error(
                    &path.key(other.name),
                    format!("only allowed with provider: {}", other.name),
                );
                others = true;
            }
        }
        let section_path = path.key(kind.name);
        let Some(section) = field(pool, kind.name) else {
            self.error(
                &section_path,
                format!(
                    "required with provider: {} ({})",
                    kind.name, kind.section_summary
                ),
            );
            return None;
        };
        let problems = (kind.check_pool)(section, &section_path);
        let valid = problems.is_empty();
        self.extend(problems);
        (valid && !others).then(|| ProviderSection {
            kind: kind.name.to_string(),
            config: section.clone(),
            path: section_path,
        })
    }

    fn taints(&mut self, path: &FieldPath, value: &Value) -> Option<Vec<Taint>> {
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
                .and_then(|value| self.choice(&taint_path.key("effect"), value, TAINT_EFFECTS))
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

    fn budget(&mut self, path: &FieldPath, value: &Value) -> Option<Budget> {
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

/// `a or b`, `a, b or c`: the providers a pool may name.
fn either_of(names: &[&str]) -> String {
    match names.split_last() {
        None => "no provider is available in this build".to_string(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
