//! The `RotationConfig` JSON Schema (draft-07), for editors: built from
//! the walker's own lists of fields and choices, and from each provider's
//! schema of its pool section. The walker stays the authority: the schema
//! never refuses a file it accepts, and leaves to it what a schema cannot
//! say (a duration that is not zero, `join.tokenTTL` above
//! `health.newNodeTimeout`, unique pool names).

use kubesurge_provider::ProviderKind;
use kubesurge_provider::json_schema::{DRAFT, choice, mapping, pattern, string, string_map};
use serde_json::{Value, json};

use super::pool::TAINT_EFFECTS;
use super::sections::{DAYS, EXEC_METHODS, FAIL_OR_DELETE, ON_TIMEOUT_CHOICES};
use super::{API_VERSION, KIND};

/// A DNS label (RFC 1123), as `check_dns_label` reads one.
const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// The duration grammar of `crate::duration`: units d, h, m, s, ms, each
/// at most once and largest first, or a bare zero.
const DURATION: &str =
    "^\\s*(0+|(?=[0-9])([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)\\s*$";
/// `HH:MM`, 00:00 to 23:59.
const TIME_OF_DAY: &str = "^\\s*([01][0-9]|2[0-3]):[0-5][0-9]\\s*$";

/// The schema of a configuration file whose pools may use `providers`.
pub fn rotation_config(providers: &[ProviderKind]) -> Value {
    let mut schema = mapping(
        "kubesurge's configuration: the cluster, its worker pools, how nodes are drained, \
         joined and judged healthy, and when runs may change anything",
        vec![
            ("apiVersion", json!({ "const": API_VERSION })),
            ("kind", json!({ "const": KIND })),
            ("cluster", cluster()),
            ("controlPlane", control_plane()),
            (
                "pools",
                json!({ "type": "array", "items": pool(providers) }),
            ),
            ("drain", drain()),
            (
                "join",
                mapping(
                    "Bootstrap tokens of new nodes",
                    vec![(
                        "tokenTTL",
                        duration(
                            "How long a new node's bootstrap token lives; longer than health.newNodeTimeout, at most 24h",
                        ),
                    )],
                    &[],
                ),
            ),
            (
                "health",
                mapping(
                    "When a new node counts as healthy",
                    vec![
                        (
                            "newNodeTimeout",
                            duration("How long a new node may take to join and be Ready"),
                        ),
                        (
                            "settle",
                            duration(
                                "How long a new node must stay healthy before its old node is drained (0s allowed)",
                            ),
                        ),
                    ],
                    &[],
                ),
            ),
            ("window", window()),
        ],
        &["apiVersion", "kind", "cluster"],
    );
    schema["$schema"] = json!(DRAFT);
    schema["title"] = json!(KIND);
    schema
}

fn duration(description: &str) -> Value {
    json!({
        "description": format!("{description}: such as 30s, 15m, 2h, 1h30m"),
        "anyOf": [
            { "type": "string", "pattern": DURATION },
            { "type": "integer", "const": 0 }
        ]
    })
}

fn cluster() -> Value {
    mapping(
        "The cluster",
        vec![(
            "name",
            pattern(
                "The cluster's name, a DNS label used in tags, the lock and events",
                DNS_LABEL,
            ),
        )],
        &["name"],
    )
}

fn control_plane() -> Value {
    let ssh = mapping(
        "How control-plane nodes are reached with exec: ssh",
        vec![
            ("user", string("The SSH user")),
            ("identityFile", string("The private key file")),
            (
                "knownHosts",
                string("The known_hosts file the hosts are checked against"),
            ),
            (
                "port",
                json!({ "type": "integer", "minimum": 1, "maximum": 65535, "description": "The SSH port (default 22)" }),
            ),
        ],
        &[],
    );
    mapping(
        "How the control plane is upgraded in place",
        vec![
            (
                "exec",
                choice("How commands reach control-plane nodes", EXEC_METHODS),
            ),
            ("ssh", ssh),
            (
                "node",
                string("With exec: local, the control-plane node kubesurge runs on"),
            ),
            (
                "gateTimeout",
                duration("How long a control-plane node may take to come back healthy"),
            ),
        ],
        &[],
    )
}

fn drain() -> Value {
    mapping(
        "How old nodes are drained",
        vec![
            ("timeout", duration("How long a drain may take")),
            (
                "onTimeout",
                choice(
                    "What a drain past its timeout does: fail the slot, force the remaining pods \
                     out, or skip the node",
                    ON_TIMEOUT_CHOICES,
                ),
            ),
            (
                "unmanagedPods",
                choice(
                    "Pods no controller recreates: refuse the drain, or delete them",
                    FAIL_OR_DELETE,
                ),
            ),
            (
                "localStorage",
                choice(
                    "Pods with node-local data (emptyDir aside): refuse the drain, or delete them",
                    FAIL_OR_DELETE,
                ),
            ),
        ],
        &[],
    )
}

fn window() -> Value {
    let day_names: Vec<Value> = DAYS
        .iter()
        .flat_map(|(short, long, _)| [short, long])
        .map(|name| json!(case_insensitive(name)))
        .collect();
    let day = format!(
        "^\\s*({})\\s*$",
        day_names
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("|")
    );
    mapping(
        "When runs may change anything; outside it they change nothing and say when it opens",
        vec![
            (
                "days",
                json!({
                    "type": "array",
                    "minItems": 1,
                    "description": "The days the window opens, such as [Sat, Sun]",
                    "items": { "type": "string", "pattern": day }
                }),
            ),
            ("start", pattern("The opening time, HH:MM", TIME_OF_DAY)),
            (
                "end",
                pattern(
                    "The closing time, HH:MM (before start: the next day)",
                    TIME_OF_DAY,
                ),
            ),
            (
                "timeZone",
                string("An IANA time zone such as Europe/Berlin or UTC"),
            ),
        ],
        &["days", "start", "end", "timeZone"],
    )
}

/// `name` matched in any case: ECMA-262 patterns have no flags in JSON
/// Schema.
fn case_insensitive(name: &str) -> String {
    name.chars()
        .map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()))
        .collect()
}

fn pool(providers: &[ProviderKind]) -> Value {
    let names: Vec<&str> = providers.iter().map(|p| p.name).collect();
    let taint = mapping(
        "A taint new nodes register with",
        vec![
            ("key", string("The taint's key, a label key")),
            ("value", string("The taint's value, a label value")),
            ("effect", choice("The taint's effect", TAINT_EFFECTS)),
        ],
        &["key", "effect"],
    );
    let budget = |description: &str| {
        json!({
            "description": format!("{description}: a count such as 1, or a percentage of the pool such as 25%"),
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*%\\s*$" }
            ]
        })
    };
    let mut properties = vec![
        ("name", pattern("The pool's name, a DNS label", DNS_LABEL)),
        (
            "selector",
            string_map(
                "The labels that pick the pool's nodes (the first pool whose selector matches)",
            ),
        ),
        (
            "provider",
            choice("The cloud the pool's machines run in", &names),
        ),
    ];
    properties.extend(providers.iter().map(|p| (p.name, (p.pool_schema)())));
    properties.extend([
        ("maxSurge", budget("How many new nodes at once above the pool's size")),
        (
            "maxUnavailable",
            budget("How many old nodes may be cordoned before their replacements are Ready"),
        ),
        ("nodeLabels", string_map("Labels new nodes register with")),
        (
            "nodeTaints",
            json!({ "type": "array", "items": taint, "description": "Taints new nodes register with" }),
        ),
        (
            "kubeletExtraArgs",
            json!({
                "type": "object",
                "description": "Kubelet flags of new nodes, names without the dashes (cloud-provider: external)",
                "additionalProperties": { "type": ["string", "boolean", "number"] }
            }),
        ),
    ]);
    let mut pool = mapping(
        "A worker pool: the nodes one provider section launches",
        properties,
        &["name", "selector", "provider"],
    );
    // The section of the pool's provider is required; another provider's
    // is refused (it would be ignored).
    let rules: Vec<Value> = providers
        .iter()
        .map(|p| {
            let others: Vec<Value> = providers
                .iter()
                .filter(|o| o.name != p.name)
                .map(|o| json!({ "required": [o.name] }))
                .collect();
            let mut then = json!({ "required": [p.name] });
            if !others.is_empty() {
                then["not"] = json!({ "anyOf": others });
            }
            json!({
                "if": { "properties": { "provider": { "const": p.name } }, "required": ["provider"] },
                "then": then
            })
        })
        .collect();
    if !rules.is_empty() {
        pool["allOf"] = Value::Array(rules);
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::super::TOP_FIELDS;
    use super::super::pool::{
        POOL_FIELDS_AFTER_PROVIDERS, POOL_FIELDS_BEFORE_PROVIDERS, TAINT_FIELDS,
    };
    use super::super::sections::{
        CLUSTER_FIELDS, CONTROL_PLANE_FIELDS, DRAIN_FIELDS, HEALTH_FIELDS, JOIN_FIELDS, SSH_FIELDS,
        WINDOW_FIELDS,
    };
    use super::*;
    use kubesurge_provider::json_schema::property_names;

    fn sorted(fields: &[&'static str]) -> Vec<&'static str> {
        let mut fields = fields.to_vec();
        fields.sort_unstable();
        fields
    }

    #[test]
    fn every_mapping_has_the_fields_the_walker_reads() {
        // Each provider's section is compared with its walker in its own
        // crate.
        let schema = rotation_config(&[]);
        assert_eq!(property_names(&schema), sorted(TOP_FIELDS));
        let at = |key: &str| &schema["properties"][key];
        assert_eq!(property_names(at("cluster")), sorted(CLUSTER_FIELDS));
        assert_eq!(
            property_names(at("controlPlane")),
            sorted(CONTROL_PLANE_FIELDS)
        );
        assert_eq!(
            property_names(&at("controlPlane")["properties"]["ssh"]),
            sorted(SSH_FIELDS)
        );
        assert_eq!(property_names(at("drain")), sorted(DRAIN_FIELDS));
        assert_eq!(property_names(at("join")), sorted(JOIN_FIELDS));
        assert_eq!(property_names(at("health")), sorted(HEALTH_FIELDS));
        assert_eq!(property_names(at("window")), sorted(WINDOW_FIELDS));
        let pool = &at("pools")["items"];
        let mut pool_fields: Vec<&str> = POOL_FIELDS_BEFORE_PROVIDERS
            .iter()
            .chain(POOL_FIELDS_AFTER_PROVIDERS)
            .copied()
            .collect();
        pool_fields.sort_unstable();
        assert_eq!(property_names(pool), pool_fields);
        assert_eq!(
            property_names(&pool["properties"]["nodeTaints"]["items"]),
            sorted(TAINT_FIELDS)
        );
    }

    #[test]
    fn day_names_match_in_any_case() {
        assert_eq!(case_insensitive("sat"), "[sS][aA][tT]");
    }
}
