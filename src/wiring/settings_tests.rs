//! The configuration as a user writes it, read with this build's
//! providers: the full example, every default, and every kind of mistake
//! with the path and message it must produce. (Each provider's own section
//! is tested in its crate as well: `kubesurge_aws::pool_config`.)

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::civil::{Time, Weekday};
use kubesurge_aws::{AwsPoolConfig, ImageSource, TemplateRef};
use kubesurge_sim::SimPoolConfig;

use super::PROVIDERS;
use crate::exec::SshSettings;
use crate::kube::drain::{LocalStorage, OnDrainTimeout, UnmanagedPods};
use crate::plan::Budget;
use crate::settings::*;

/// The example of the design, verbatim.
const FULL_EXAMPLE: &str = include_str!("../../tests/configs/design-example.yaml");

/// Every field the file may hold (also validated against the published
/// JSON Schema by the schema test).
const EVERY_FIELD: &str = include_str!("../../tests/configs/every-field.yaml");

const HEADER: &str =
    "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster: {name: test}\n";

fn parse_text(yaml: &str) -> Result<Settings, SettingsError> {
    parse(yaml, SettingsSource::Text, &Overrides::default(), PROVIDERS)
}

#[test]
fn a_config_with_every_field_is_read() {
    let settings = parse_text(EVERY_FIELD).expect("every field, each valid");
    let names: Vec<&str> = settings.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["general", "batch", "lab"]);
    assert_eq!(settings.health.settle, Duration::ZERO);
    assert!(settings.window.is_some());
}

/// The pool's `aws` section as the aws provider reads it when wired.
fn aws_config(pool: &Pool) -> AwsPoolConfig {
    assert_eq!(pool.provider.kind, "aws");
    kubesurge_aws::parse_pool_config(&pool.provider.config, &pool.provider.path).expect("aws")
}

/// The pool's `sim` section as the sim provider reads it when wired.
fn sim_config(pool: &Pool) -> SimPoolConfig {
    assert_eq!(pool.provider.kind, "sim");
    kubesurge_sim::parse_pool_config(&pool.provider.config, &pool.provider.path).expect("sim")
}

/// A valid sim pool in flow style with `extra` fields appended.
fn sim_pool(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { ", " };
    format!(
        "{{name: a, selector: {{pool: a}}, provider: sim, sim: {{endpoint: \"http://127.0.0.1:9\"}}{sep}{extra}}}"
    )
}

const GOOD_AWS: &str = "{region: eu-west-1, launchTemplate: {name: lt}, image: {owners: [self], filters: {\"tag:k8s\": \"{version}\"}}}";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_design_example_is_valid_and_fully_read() {
    let settings = parse_text(FULL_EXAMPLE).expect("valid");
    assert_eq!(settings.cluster_name.as_deref(), Some("prod-eu1"));
    assert_eq!(settings.control_plane.exec, Some(ExecMethod::Ssm));
    assert_eq!(
        settings.control_plane.ssh,
        SshSettings {
            user: Some("ubuntu".into()),
            identity_file: Some("~/.ssh/id_ed25519".into()),
            known_hosts: None,
            port: 22,
        }
    );
    assert_eq!(settings.pools.len(), 1);
    let pool = &settings.pools[0];
    assert_eq!(pool.name, "general");
    assert_eq!(pool.selector, map(&[("kubesurge.io/pool", "general")]));
    assert_eq!(pool.provider.path.as_str(), "pools[0].aws");
    assert_eq!(
        aws_config(pool),
        AwsPoolConfig {
            region: Some("eu-west-1".into()),
            launch_template: TemplateRef::Name("workers-general".into()),
            template_version: "$Default".into(),
            image: ImageSource::Lookup {
                owners: vec!["self".into()],
                filters: BTreeMap::from([(
                    "tag:kubernetes-version".to_string(),
                    vec!["{version}".to_string()]
                )]),
            },
            subnets: None,
            auto_scaling_group: None,
        }
    );
    assert_eq!(pool.max_surge, Budget::Percent(25));
    assert_eq!(pool.max_unavailable, Budget::Count(0));
    assert_eq!(pool.node_labels, map(&[("kubesurge.io/pool", "general")]));
    assert!(pool.node_taints.is_empty());
    assert_eq!(
        settings.drain,
        Drain {
            timeout: Duration::from_secs(900),
            on_timeout: OnDrainTimeout::Fail,
            unmanaged_pods: UnmanagedPods::Fail,
            local_storage: LocalStorage::Fail,
        }
    );
    assert_eq!(settings.join.token_ttl, Duration::from_secs(1200));
    assert_eq!(settings.health.new_node_timeout, Duration::from_secs(600));
    assert_eq!(settings.health.settle, Duration::from_secs(30));
    let window = settings.window.expect("window");
    assert_eq!(window.days, vec![Weekday::Saturday, Weekday::Sunday]);
    assert_eq!(window.start, Time::constant(2, 0, 0, 0));
    assert_eq!(window.end, Time::constant(6, 0, 0, 0));
    assert_eq!(window.time_zone_name, "Europe/Berlin");
    assert_eq!(
        settings_pool_selectors(FULL_EXAMPLE),
        vec![(
            "general".to_string(),
            map(&[("kubesurge.io/pool", "general")])
        )]
    );
}

fn settings_pool_selectors(yaml: &str) -> Vec<(String, BTreeMap<String, String>)> {
    parse_text(yaml).expect("valid").pool_selectors()
}

#[test]
fn a_minimal_file_gets_every_default() {
    let settings = parse_text(HEADER).expect("valid");
    assert_eq!(
        settings,
        Settings {
            cluster_name: Some("test".into()),
            ..Settings::default()
        }
    );
    assert_eq!(settings.drain.timeout, Duration::from_secs(15 * 60));
    assert_eq!(settings.drain.on_timeout, OnDrainTimeout::Fail);
    assert_eq!(settings.drain.unmanaged_pods, UnmanagedPods::Fail);
    assert_eq!(
        settings.drain.local_storage,
        LocalStorage::Fail,
        "pods on node-local volumes are refused unless the config says delete"
    );
    assert_eq!(settings.join.token_ttl, Duration::from_secs(20 * 60));
    assert_eq!(
        settings.health.new_node_timeout,
        Duration::from_secs(10 * 60)
    );
    assert_eq!(settings.health.settle, Duration::from_secs(30));
    assert_eq!(settings.window, None);
    assert_eq!(settings.control_plane.exec, None);
}

#[test]
fn pool_defaults_and_optional_forms() {
    let yaml = format!(
        "{HEADER}pools:\n  - {}\n  - {}\n",
        sim_pool(""),
        "{name: b, selector: {pool: b, tier: web}, provider: aws, \
         aws: {region: us-gov-west-1, launchTemplate: {id: lt-0abc, version: 3}, \
         image: {id: ami-0123}, subnets: [subnet-1, subnet-2]}, maxSurge: \"2\", \
         maxUnavailable: 10%, nodeLabels: {pool: b, tier: web, node.kubernetes.io/role: web}, \
         nodeTaints: [{key: dedicated, value: web, effect: NoSchedule}, {key: spot, effect: NoExecute}]}",
    );
    let settings = parse_text(&yaml).expect("valid");
    let a = &settings.pools[0];
    assert_eq!(a.max_surge, Budget::Count(1), "default maxSurge");
    assert_eq!(
        a.max_unavailable,
        Budget::Count(0),
        "default maxUnavailable"
    );
    assert_eq!(
        a.node_labels, a.selector,
        "nodeLabels default to the selector"
    );
    assert_eq!(
        sim_config(a),
        SimPoolConfig {
            endpoint: "http://127.0.0.1:9".into()
        }
    );
    let b = &settings.pools[1];
    assert_eq!(b.max_surge, Budget::Count(2));
    assert_eq!(b.max_unavailable, Budget::Percent(10));
    let aws = aws_config(b);
    assert_eq!(aws.launch_template, TemplateRef::Id("lt-0abc".into()));
    assert_eq!(aws.template_version, "3");
    assert_eq!(aws.image, ImageSource::Id("ami-0123".into()));
    assert_eq!(
        aws.subnets,
        Some(vec!["subnet-1".into(), "subnet-2".into()])
    );
    assert_eq!(
        b.node_taints,
        vec![
            Taint {
                key: "dedicated".into(),
                value: "web".into(),
                effect: TaintEffect::NoSchedule
            },
            Taint {
                key: "spot".into(),
                value: String::new(),
                effect: TaintEffect::NoExecute
            },
        ]
    );
}

#[test]
fn yaml_1_1_booleans_and_leading_zeros_stay_strings() {
    let yaml = format!(
        "{HEADER}pools:\n  - {{name: a, selector: {{enabled: yes, short: y, zone: 007}}, provider: sim, \
         sim: {{endpoint: \"http://127.0.0.1:9\"}}}}\n"
    );
    let settings = parse_text(&yaml).expect("valid");
    assert_eq!(
        settings.pools[0].selector,
        map(&[("enabled", "yes"), ("short", "y"), ("zone", "007")])
    );
}

/// Each case: the YAML, the path of the problem, a part of its message.
fn invalid_cases() -> Vec<(String, &'static str, &'static str)> {
    let pools = |pool: String| format!("{HEADER}pools:\n  - {pool}\n");
    let top = |rest: &str| format!("{HEADER}{rest}\n");
    vec![
        // Document and header.
        (String::new(), "", "the file is empty"),
        ("- a\n- b\n".into(), "", "expected a RotationConfig mapping at the top level, found a list"),
        ("kind: RotationConfig\ncluster: {name: x}\n".into(), "apiVersion", "required (expected kubesurge.io/v1alpha1)"),
        ("apiVersion: v1\nkind: RotationConfig\ncluster: {name: x}\n".into(), "apiVersion", "\"v1\" is not supported (expected kubesurge.io/v1alpha1)"),
        ("apiVersion: kubesurge.io/v1alpha1\nkind: ConfigMap\ncluster: {name: x}\n".into(), "kind", "\"ConfigMap\" is not a kind this file can be (expected RotationConfig)"),
        ("apiVersion: kubesurge.io/v1alpha1\ncluster: {name: x}\n".into(), "kind", "required (expected RotationConfig)"),
        ("apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\n".into(), "cluster.name", "required"),
        ("apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster: {name: Prod_EU}\n".into(), "cluster.name", "\"Prod_EU\" is not a DNS label"),
        ("apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster: {nmae: x}\n".into(), "cluster.nmae", "unknown field; did you mean \"name\"?"),
        (top("pool: []"), "pool", "unknown field; did you mean \"pools\"?"),
        (top("surprise: 1"), "surprise", "unknown field (expected one of: apiVersion, kind, cluster"),
        (top("pools: {name: a}"), "pools", "expected a list of pools, found a mapping"),
        // Control plane.
        (top("controlPlane: {exec: telnet}"), "controlPlane.exec", "\"telnet\" is not one of ssm, ssh, local"),
        (top("controlPlane: {exec: ssh, ssh: {port: 70000}}"), "controlPlane.ssh.port", "70000 is not a TCP port (expected 1-65535)"),
        (top("controlPlane: {ssh: {identity_file: x}}"), "controlPlane.ssh.identity_file", "did you mean \"identityFile\"?"),
        (top("controlPlane: {ssh: {user: \"a b\"}}"), "controlPlane.ssh.user", "is not a user name"),
        // Pools: identity and selector.
        (pools(sim_pool("maxsurge: 2")), "pools[0].maxsurge", "unknown field; did you mean \"maxSurge\"?"),
        (format!("{HEADER}pools:\n  - {}\n  - {}\n", sim_pool(""), sim_pool("")), "pools[1].name", "\"a\" is already the name of pools[0]"),
        (pools("{name: General_1, selector: {pool: a}, provider: sim, sim: {endpoint: \"http://h:1\"}}".into()), "pools[0].name", "is not a DNS label"),
        (pools("{selector: {pool: a}, provider: sim, sim: {endpoint: \"http://h:1\"}}".into()), "pools[0].name", "required"),
        (pools("{name: a, selector: {}, provider: sim, sim: {endpoint: \"http://h:1\"}}".into()), "pools[0].selector", "must not be empty: it would match every node"),
        (pools("{name: a, provider: sim, sim: {endpoint: \"http://h:1\"}}".into()), "pools[0].selector", "required (a non-empty map of node labels"),
        (pools("{name: a, selector: {tier: 1}, provider: sim, sim: {endpoint: \"http://h:1\"}}".into()), "pools[0].selector.tier", "expected a string, found a number (quote it: \"1\")"),
        (pools("{name: a, selector: {\"bad key!\": x}, provider: sim, sim: {endpoint: \"http://h:1\"}}".into()), "pools[0].selector[\"bad key!\"]", "is not a valid label key"),
        // Pools: provider blocks.
        (pools("{name: a, selector: {pool: a}, provider: gcp}".into()), "pools[0].provider", "\"gcp\" is not one of aws, sim"),
        (pools("{name: a, selector: {pool: a}, provider: aws}".into()), "pools[0].aws", "required with provider: aws"),
        (pools(format!("{{name: a, selector: {{pool: a}}, provider: aws, aws: {GOOD_AWS}, sim: {{endpoint: \"http://h:1\"}}}}")), "pools[0].sim", "only allowed with provider: sim"),
        (pools(sim_pool("aws: {region: eu-west-1}")), "pools[0].aws", "only allowed with provider: aws"),
        (pools("{name: a, selector: {pool: a}, provider: sim, sim: {endpoint: not-a-url}}".into()), "pools[0].sim.endpoint", "\"not-a-url\" is not an http(s) URL"),
        // Pools: budgets.
        (pools(sim_pool("maxSurge: abc")), "pools[0].maxSurge", "\"abc\" is neither an integer nor a percentage"),
        (pools(sim_pool("maxSurge: 150%")), "pools[0].maxSurge", "\"150%\" is more than 100%"),
        (pools(sim_pool("maxUnavailable: -1")), "pools[0].maxUnavailable", "-1 cannot be negative"),
        (pools(sim_pool("maxUnavailable: \"-5%\"")), "pools[0].maxUnavailable", "\"-5%\" cannot be negative"),
        (pools(sim_pool("maxSurge: 1.5")), "pools[0].maxSurge", "1.5 is neither an integer nor a percentage"),
        (pools(sim_pool("maxSurge: 0")), "pools[0].maxSurge", "maxSurge and maxUnavailable are both zero"),
        (pools(sim_pool("maxSurge: 0%, maxUnavailable: 0%")), "pools[0].maxSurge", "maxSurge and maxUnavailable are both zero"),
        // Pools: labels and taints of new nodes.
        (pools(sim_pool("nodeLabels: {other: x}")), "pools[0].nodeLabels", "must include the selector's pool: \"a\", or new nodes would not belong to this pool"),
        (pools(sim_pool("nodeLabels: {pool: a, node-role.kubernetes.io/worker: \"\"}")), "pools[0].nodeLabels[\"node-role.kubernetes.io/worker\"]", "cannot be set by a kubelet"),
        (pools(sim_pool("nodeTaints: [{key: x, effect: NoSchedul}]")), "pools[0].nodeTaints[0].effect", "did you mean \"NoSchedule\"?"),
        (pools(sim_pool("nodeTaints: [{key: x, effect: NoSchedule}, {key: x, value: y, effect: NoSchedule}]")), "pools[0].nodeTaints[1]", "duplicate taint x:NoSchedule"),
        (pools(sim_pool("nodeTaints: [{value: y, effect: NoSchedule}]")), "pools[0].nodeTaints[0].key", "required"),
        (pools(sim_pool("nodeTaints: [{key: x, effect: NoSchedule, operator: Exists}]")), "pools[0].nodeTaints[0].operator", "unknown field"),
        // Durations.
        (top("drain: {timeout: 15}"), "drain.timeout", "\"15\" has no unit"),
        (top("drain: {timeout: 0}"), "drain.timeout", "\"0\" must be longer than zero"),
        (top("drain: {timeout: -5m}"), "drain.timeout", "\"-5m\" cannot be negative"),
        (top("drain: {timeout: soon}"), "drain.timeout", "\"soon\" is not a duration"),
        (top("drain: {timeout: 99999999999999999999d}"), "drain.timeout", "is too long"),
        (top("health: {settle: [1]}"), "health.settle", "expected a duration such as 30s, 15m, 2h or 30d, found a list"),
        (top("health: {newNodeTimeout: 0s}"), "health.newNodeTimeout", "must be longer than zero"),
        // Drain policies.
        (top("drain: {onTimeout: forse}"), "drain.onTimeout", "\"forse\" is not one of fail, force, skip; did you mean \"force\"?"),
        (top("drain: {unmanagedPods: keep}"), "drain.unmanagedPods", "\"keep\" is not one of fail, delete"),
        (top("drain: {localStorage: keep}"), "drain.localStorage", "\"keep\" is not one of fail, delete"),
        (top("drain: 15m"), "drain", "expected a mapping with fields timeout, onTimeout, unmanagedPods, localStorage, found a string"),
        // Token lifetime against the join wait.
        (top("join: {tokenTTL: 5m}"), "join.tokenTTL", "5m must be longer than health.newNodeTimeout (10m)"),
        (top("health: {newNodeTimeout: 30m}"), "join.tokenTTL", "20m (the default) must be longer than health.newNodeTimeout (30m)"),
        (top("join: {tokenTtl: 1h}"), "join.tokenTtl", "did you mean \"tokenTTL\"?"),
        (top("join: {tokenTTL: 100000d}"), "join.tokenTTL", "100000d is longer than 1d, kubeadm's own token lifetime"),
        // Window.
        (top("window: {days: [Sat], start: \"02:00\", end: \"06:00\", timeZone: Mars/Olympus}"), "window.timeZone", "\"Mars/Olympus\" is not a time zone in the IANA database"),
        (top("window: {days: [Sat], start: \"02:00\", end: \"06:00\"}"), "window.timeZone", "required (an IANA time zone"),
        (top("window: {days: [Sat], start: \"25:00\", end: \"06:00\", timeZone: UTC}"), "window.start", "\"25:00\" is not a time of day (expected \"HH:MM\""),
        (top("window: {days: [Sat], start: \"2:00\", end: \"06:00\", timeZone: UTC}"), "window.start", "\"2:00\" is not a time of day"),
        (top("window: {days: [Sat], start: \"02:00\", end: \"02:00\", timeZone: UTC}"), "window.end", "equals start"),
        (top("window: {days: [Sat, Funday], start: \"02:00\", end: \"06:00\", timeZone: UTC}"), "window.days[1]", "\"Funday\" is not a day (expected Mon, Tue"),
        (top("window: {days: [Sat, sat], start: \"02:00\", end: \"06:00\", timeZone: UTC}"), "window.days[1]", "\"sat\" is listed twice"),
        (top("window: {days: [], start: \"02:00\", end: \"06:00\", timeZone: UTC}"), "window.days", "must not be empty"),
    ]
}

#[test]
fn every_mistake_names_its_field_and_what_was_expected() {
    for (yaml, path, message) in invalid_cases() {
        let error = match parse_text(&yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(error) => error,
        };
        let errors = error.field_errors();
        assert!(
            errors
                .iter()
                .any(|e| e.path == path && e.message.contains(message)),
            "expected `{path}: …{message}…` for\n{yaml}\ngot: {errors:#?}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = format!(
        "{HEADER}pools:\n  - {}\n  - {}\ndrain: {{timeout: 15, onTimeout: nope}}\n\
         window: {{days: [Sat], start: \"02:00\", end: \"06:00\", timeZone: Nowhere/Town}}\n",
        sim_pool("maxSurge: abc, colour: blue"),
        sim_pool("")
    );
    let error = parse_text(&yaml).expect_err("invalid");
    let paths: Vec<&str> = error
        .field_errors()
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    for expected in [
        "pools[0].colour",
        "pools[0].maxSurge",
        "pools[1].name",
        "drain.timeout",
        "drain.onTimeout",
        "window.timeZone",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    assert_eq!(paths.len(), 6, "{paths:?}");
    let text = error.to_string();
    assert!(text.starts_with("configuration has 6 problems:"), "{text}");
    assert!(
        text.contains("\n  - pools[0].maxSurge: \"abc\" is neither an integer nor a percentage"),
        "{text}"
    );
}

#[test]
fn a_providers_problems_come_with_every_other_problem() {
    let yaml = format!(
        "{HEADER}pools:\n  - {{name: a, selector: {{pool: a}}, provider: aws, maxSurge: abc, \
         aws: {{region: europe, launchTemplate: {{id: template}}, image: {{id: ami-1}}}}}}\n  \
         - {{name: b, selector: {{pool: b}}, provider: sim, sim: {{endpoint: not-a-url}}}}\n\
         drain: {{timeout: 15}}\n"
    );
    let error = parse_text(&yaml).expect_err("invalid");
    let paths: Vec<&str> = error
        .field_errors()
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "pools[0].aws.region",
            "pools[0].aws.launchTemplate.id",
            "pools[0].maxSurge",
            "pools[1].sim.endpoint",
            "drain.timeout",
        ],
        "{error}"
    );
}

#[test]
fn yaml_syntax_errors_say_where() {
    let yaml = "apiVersion: kubesurge.io/v1alpha1\ncluster:\n  name: a\n nope: 2\n";
    match parse_text(yaml) {
        Err(SettingsError::Syntax {
            line,
            column,
            message,
            ..
        }) => {
            assert_eq!(line, Some(4));
            assert_eq!(column, Some(2));
            assert!(message.contains("line 4"), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    for broken in [
        "a: [1, 2\n",
        "a: \"open\n",
        "a: 1\na: 2\n",
        "---\na: 1\n---\nb: 2\n",
    ] {
        assert!(
            matches!(
                parse_text(broken),
                Err(SettingsError::Syntax { line: Some(_), .. })
            ),
            "{broken:?}"
        );
    }
}

#[test]
fn flags_override_the_file_and_are_validated_like_it() {
    let overrides = Overrides {
        drain_timeout: Some("30m".into()),
        drain_on_timeout: Some("skip".into()),
        local_storage: Some("delete".into()),
        cluster_name: Some("other".into()),
        ..Overrides::default()
    };
    let settings = parse(FULL_EXAMPLE, SettingsSource::Text, &overrides, PROVIDERS).expect("valid");
    assert_eq!(settings.drain.timeout, Duration::from_secs(1800));
    assert_eq!(settings.drain.on_timeout, OnDrainTimeout::Skip);
    assert_eq!(settings.drain.local_storage, LocalStorage::Delete);
    assert_eq!(
        settings.drain.unmanaged_pods,
        UnmanagedPods::Fail,
        "untouched"
    );
    assert_eq!(settings.cluster_name.as_deref(), Some("other"));

    let bad = Overrides {
        drain_timeout: Some("30".into()),
        new_node_timeout: Some("1h".into()),
        ..Overrides::default()
    };
    let error = parse(FULL_EXAMPLE, SettingsSource::Text, &bad, PROVIDERS).expect_err("invalid");
    let errors = error.field_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.path == "drain.timeout (--drain-timeout)" && e.message.contains("no unit")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.path == "join.tokenTTL" && e.message.contains("health.newNodeTimeout (1h)")),
        "{errors:?}"
    );
}

#[test]
fn without_a_file_there_are_defaults_and_no_pools() {
    let settings = defaults(&Overrides::default()).expect("valid");
    assert_eq!(settings, Settings::default());
    assert!(settings.pools.is_empty());
    assert_eq!(settings.cluster_name, None);

    let settings = defaults(&Overrides {
        settle: Some("1m".into()),
        ..Overrides::default()
    })
    .expect("valid");
    assert_eq!(settings.health.settle, Duration::from_secs(60));

    let error = defaults(&Overrides {
        cluster_name: Some("Bad Name".into()),
        ..Overrides::default()
    })
    .expect_err("invalid");
    assert_eq!(
        error.field_errors()[0].path,
        "cluster.name (--cluster-name)"
    );
}

#[test]
fn load_reads_the_file_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rotation.yaml");
    std::fs::write(&path, FULL_EXAMPLE).expect("write");
    let settings = load(Some(&path), &Overrides::default(), PROVIDERS).expect("valid");
    assert_eq!(settings.pools[0].name, "general");

    std::fs::write(&path, format!("{HEADER}drain: {{timeout: 1}}\n")).expect("write");
    let text = load(Some(&path), &Overrides::default(), PROVIDERS)
        .expect_err("invalid")
        .to_string();
    assert!(
        text.starts_with(&format!("config file {} has 1 problem:", path.display())),
        "{text}"
    );

    let missing = dir.path().join("missing.yaml");
    let error = load(Some(&missing), &Overrides::default(), PROVIDERS).expect_err("missing");
    assert!(matches!(error, SettingsError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("missing.yaml"), "{error}");

    assert_eq!(
        load(None, &Overrides::default(), PROVIDERS).expect("defaults"),
        Settings::default()
    );
}
