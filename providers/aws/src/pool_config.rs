//! `pools[].aws` of the configuration, checked and read into an
//! [`AwsPoolConfig`]: every problem at its full path, all at once.

use std::collections::BTreeMap;

use kubesurge_provider::config::{Checker, FieldError, FieldPath, field, kind_of, show};
use serde_json::Value;

use crate::config::{
    AutoScalingGroupConfig, AwsPoolConfig, ImageSource, TemplateRef, VERSION_PLACEHOLDER,
};

/// The fields of `pools[].aws`.
const AWS_FIELDS: &[&str] = &[
    "region",
    "launchTemplate",
    "image",
    "subnets",
    "autoScalingGroup",
    "updateLaunchTemplate",
];
const LAUNCH_TEMPLATE_FIELDS: &[&str] = &["name", "id", "version"];
const IMAGE_FIELDS: &[&str] = &["owners", "filters", "id"];

/// What `pools[].aws` holds, for "required with provider: aws (…)".
pub const SECTION_SUMMARY: &str = "region, launchTemplate, image";

/// The JSON Schema of `pools[].aws`, for editors: the fields of
/// [`parse_pool_config`], never stricter than it.
pub fn pool_schema() -> Value {
    use kubesurge_provider::json_schema::{mapping, pattern, string, string_list};
    let launch_template = mapping(
        "The launch template new instances start from: name or id, and a version (default $Default)",
        vec![
            ("name", string("The launch template's name")),
            ("id", pattern("The launch template's id", "^lt-")),
            (
                "version",
                serde_json::json!({
                    "description": "$Default, $Latest or a version number from 1",
                    "anyOf": [
                        { "type": "string", "pattern": "^(\\$Default|\\$Latest|[1-9][0-9]*)$" },
                        { "type": "integer", "minimum": 1 }
                    ]
                }),
            ),
        ],
        &[],
    );
    let image = mapping(
        "The image of the target version: a fixed id, or owners and filters looked up per version \
         ({version} in a filter value is replaced by the target version)",
        vec![
            ("id", pattern("One fixed image", "^ami-")),
            (
                "owners",
                string_list("Account ids, self or amazon whose images the lookup considers"),
            ),
            (
                "filters",
                serde_json::json!({
                    "type": "object",
                    "description": "DescribeImages filters: a name to a value or a list of values",
                    "additionalProperties": {
                        "anyOf": [
                            { "type": "string" },
                            { "type": "array", "items": { "type": "string" } }
                        ]
                    }
                }),
            ),
        ],
        &[],
    );
    let mut aws = mapping(
        "The pool's EC2 settings",
        vec![
            ("region", string("The pool's AWS region, such as eu-west-1")),
            ("launchTemplate", launch_template),
            ("image", image),
            (
                "subnets",
                string_list("Subnets new instances may go to (default: the old node's)"),
            ),
            (
                "autoScalingGroup",
                string("The Auto Scaling group whose members the pool's nodes are"),
            ),
            (
                "updateLaunchTemplate",
                serde_json::json!({
                    "type": "boolean",
                    "description": "With autoScalingGroup: whether the run gives the group's launch template a new version with the target image",
                }),
            ),
        ],
        &["region", "image"],
    );
    aws["anyOf"] = serde_json::json!([
        { "required": ["launchTemplate"] },
        { "required": ["autoScalingGroup"] }
    ]);
    // Only a group's launch template is updated.
    aws["if"] = serde_json::json!({
        "properties": { "updateLaunchTemplate": { "const": true } },
        "required": ["updateLaunchTemplate"]
    });
    aws["then"] = serde_json::json!({ "required": ["autoScalingGroup"] });
    aws
}

/// The pool's EC2 settings from its `aws` section at `path`
/// (`pools[0].aws`), or every problem with it.
pub fn parse_pool_config(
    section: &Value,
    path: &FieldPath,
) -> Result<AwsPoolConfig, Vec<FieldError>> {
    let mut check = Checker::new();
    let config = aws(&mut check, path, section);
    check.finish(config)
}

fn aws(check: &mut Checker, path: &FieldPath, value: &Value) -> Option<AwsPoolConfig> {
    let aws = check.mapping(path, value, AWS_FIELDS)?;
    let region = check
        .required_string(path, aws, "region", "an AWS region such as eu-west-1")
        .and_then(|region| {
            if is_aws_region(region) {
                Some(region.to_string())
            } else {
                check.error(
                    &path.key("region"),
                    format!("{region:?} is not an AWS region (such as eu-west-1)"),
                );
                None
            }
        });
    let auto_scaling_group = auto_scaling_group(check, path, aws);
    let launch_template = match (field(aws, "launchTemplate"), field(aws, "autoScalingGroup")) {
        // The group's own template and version.
        (None, Some(_)) => Some((TemplateRef::OfGroup, DEFAULT_VERSION.to_string())),
        _ => check
            .required(path, aws, "launchTemplate", "{ name: … } or { id: lt-… }")
            .and_then(|value| launch_template(check, &path.key("launchTemplate"), value)),
    };
    let image = check
        .required(
            path,
            aws,
            "image",
            "{ owners: […], filters: {…} } or { id: ami-… }",
        )
        .and_then(|value| image(check, &path.key("image"), value));
    let subnets = match field(aws, "subnets") {
        None => Some(None),
        Some(value) => {
            let subnets = check.string_list(&path.key("subnets"), value);
            if subnets.as_ref().is_some_and(Vec::is_empty) {
                check.error(
                    &path.key("subnets"),
                    "must not be empty (leave it out to use the old node's subnet)",
                );
                None
            } else {
                subnets.map(Some)
            }
        }
    };
    let (launch_template, template_version) = launch_template?;
    Some(AwsPoolConfig {
        region: Some(region?),
        launch_template,
        template_version,
        image: image?,
        subnets: subnets?,
        auto_scaling_group: auto_scaling_group?,
    })
}

/// `autoScalingGroup` and `updateLaunchTemplate`: `Some(None)` for a pool
/// of plain instances, `None` when either is wrong.
fn auto_scaling_group(
    check: &mut Checker,
    path: &FieldPath,
    aws: &serde_json::Map<String, Value>,
) -> Option<Option<AutoScalingGroupConfig>> {
    let update = match field(aws, "updateLaunchTemplate") {
        None => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            check.error(
                &path.key("updateLaunchTemplate"),
                format!("expected true or false, found {}", show(other)),
            );
            None
        }
    };
    let Some(value) = field(aws, "autoScalingGroup") else {
        if update == Some(true) {
            check.error(
                &path.key("updateLaunchTemplate"),
                "needs autoScalingGroup: only a group's launch template is updated",
            );
            return None;
        }
        return update.map(|_| None);
    };
    let name = check.string(&path.key("autoScalingGroup"), value)?;
    // "1-255 characters, no colon" (CreateAutoScalingGroup,
    // AutoScalingGroupName: XmlStringMaxLen255, pattern without ':').
    let name = if name.len() > 255 || name.contains(':') {
        check.error(
            &path.key("autoScalingGroup"),
            format!("{name:?} is not an Auto Scaling group name (1 to 255 characters, no colon)"),
        );
        None
    } else {
        Some(name.to_string())
    };
    Some(Some(AutoScalingGroupConfig {
        name: name?,
        update_launch_template: update?,
    }))
}

/// The template and its version as EC2 spells it (`$Default`, `$Latest`,
/// `3`).
fn launch_template(
    check: &mut Checker,
    path: &FieldPath,
    value: &Value,
) -> Option<(TemplateRef, String)> {
    let lt = check.mapping(path, value, LAUNCH_TEMPLATE_FIELDS)?;
    let template = match (field(lt, "name"), field(lt, "id")) {
        (Some(_), Some(_)) => {
            check.error(path, "set either name or id, not both");
            None
        }
        (None, None) => {
            check.error(path, "required: name or id of the launch template");
            None
        }
        (Some(name), None) => check
            .string(&path.key("name"), name)
            .map(|name| TemplateRef::Name(name.to_string())),
        (None, Some(id)) => check.string(&path.key("id"), id).and_then(|id| {
            if id.starts_with("lt-") {
                Some(TemplateRef::Id(id.to_string()))
            } else {
                check.error(
                    &path.key("id"),
                    format!("{id:?} is not a launch template id (lt-…)"),
                );
                None
            }
        }),
    };
    let version = match field(lt, "version") {
        None => Some(DEFAULT_VERSION.to_string()),
        Some(value) => {
            let parsed = match value {
                Value::String(s) if s == DEFAULT_VERSION || s == LATEST_VERSION => Some(s.clone()),
                Value::String(s) => version_number(s.parse::<u64>().ok()),
                Value::Number(n) => version_number(n.as_u64()),
                _ => None,
            };
            if parsed.is_none() {
                check.error(
                    &path.key("version"),
                    format!(
                        "{} is not a launch template version (expected $Default, \
                         $Latest or a version number from 1)",
                        show(value)
                    ),
                );
            }
            parsed
        }
    };
    Some((template?, version?))
}

/// The launch template version used when none is set.
const DEFAULT_VERSION: &str = "$Default";
const LATEST_VERSION: &str = "$Latest";

/// Launch template versions are numbered from 1.
fn version_number(number: Option<u64>) -> Option<String> {
    number.filter(|n| *n >= 1).map(|n| n.to_string())
}

fn image(check: &mut Checker, path: &FieldPath, value: &Value) -> Option<ImageSource> {
    let image = check.mapping(path, value, IMAGE_FIELDS)?;
    let id = field(image, "id");
    let owners = field(image, "owners");
    let filters = field(image, "filters");
    if let Some(id) = id {
        if owners.is_some() || filters.is_some() {
            check.error(
                path,
                "set either id (one fixed image) or owners and filters (a lookup per \
                 Kubernetes version), not both",
            );
            return None;
        }
        let id = check.string(&path.key("id"), id)?;
        if !id.starts_with("ami-") {
            check.error(
                &path.key("id"),
                format!("{id:?} is not an image id (ami-…)"),
            );
            return None;
        }
        return Some(ImageSource::Id(id.to_string()));
    }

    let owners = match owners {
        None => {
            check.error(
                &path.key("owners"),
                "required with filters (account ids, self or amazon): a lookup without \
                 owners could pick anyone's public image",
            );
            None
        }
        Some(value) => check
            .string_list(&path.key("owners"), value)
            .and_then(|owners| {
                if owners.is_empty() {
                    check.error(&path.key("owners"), "must not be empty");
                    None
                } else {
                    Some(owners)
                }
            }),
    };
    let filters = match filters {
        None => {
            check.error(
                &path.key("filters"),
                "required with owners (such as { \"tag:kubernetes-version\": \"{version}\" }), \
                 or set id",
            );
            None
        }
        Some(value) => image_filters(check, &path.key("filters"), value),
    };
    Some(ImageSource::Lookup {
        owners: owners?,
        filters: filters?,
    })
}

fn image_filters(
    check: &mut Checker,
    path: &FieldPath,
    value: &Value,
) -> Option<BTreeMap<String, Vec<String>>> {
    let Value::Object(map) = value else {
        check.error(
            path,
            format!(
                "expected a mapping of filter names to values, found {}",
                kind_of(value)
            ),
        );
        return None;
    };
    if map.is_empty() {
        check.error(path, "must not be empty");
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, value) in map {
        let entry = path.key(name);
        let values = match value {
            Value::Array(_) => check.string_list(&entry, value),
            _ => check.string(&entry, value).map(|s| vec![s.to_string()]),
        };
        let Some(values) = values else {
            ok = false;
            continue;
        };
        if values.is_empty() {
            check.error(&entry, "must not be empty");
            ok = false;
            continue;
        }
        for text in &values {
            if let Some(unknown) = unknown_placeholder(text) {
                check.error(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_has_the_fields_the_walker_reads() {
        use kubesurge_provider::json_schema::property_names;
        let sorted = |fields: &[&'static str]| {
            let mut fields = fields.to_vec();
            fields.sort_unstable();
            fields
        };
        let schema = pool_schema();
        assert_eq!(property_names(&schema), sorted(AWS_FIELDS));
        let properties = &schema["properties"];
        assert_eq!(
            property_names(&properties["launchTemplate"]),
            sorted(LAUNCH_TEMPLATE_FIELDS)
        );
        assert_eq!(property_names(&properties["image"]), sorted(IMAGE_FIELDS));
    }

    /// `pools[0].aws`, where the settings validator hands the section over.
    fn path() -> FieldPath {
        FieldPath::root().key("pools").index(0).key("aws")
    }

    fn parse_yaml(aws: &str) -> Result<AwsPoolConfig, Vec<FieldError>> {
        let section: Value = serde_saphyr::from_str(aws).expect("YAML");
        parse_pool_config(&section, &path())
    }

    #[test]
    fn the_design_example_is_fully_read() {
        let config = parse_yaml(
            r#"
region: eu-west-1
launchTemplate: { name: workers-general }
image:                     # how to find the image for a Kubernetes version
  owners: [self]
  filters: { "tag:kubernetes-version": "{version}" }
"#,
        )
        .expect("valid");
        assert_eq!(
            config,
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
    }

    #[test]
    fn optional_forms() {
        let config = parse_yaml(
            "{region: us-gov-west-1, launchTemplate: {id: lt-0abc, version: 3}, \
             image: {id: ami-0123}, subnets: [subnet-1, subnet-2]}",
        )
        .expect("valid");
        assert_eq!(config.launch_template, TemplateRef::Id("lt-0abc".into()));
        assert_eq!(config.template_version, "3");
        assert_eq!(config.image, ImageSource::Id("ami-0123".into()));
        assert_eq!(
            config.subnets,
            Some(vec!["subnet-1".into(), "subnet-2".into()])
        );
    }

    #[test]
    fn launch_template_versions() {
        for (written, expected) in [
            ("$Default", "$Default"),
            ("$Latest", "$Latest"),
            ("\"7\"", "7"),
            ("7", "7"),
        ] {
            let aws = format!(
                "{{region: eu-west-1, launchTemplate: {{name: lt, version: {written}}}, image: {{id: ami-1}}}}"
            );
            let config = parse_yaml(&aws).expect(written);
            assert_eq!(config.template_version, expected, "{written}");
            assert_eq!(
                config.template_version,
                written.trim_matches('"').replace("\"", "")
            );
        }
    }

    #[test]
    fn an_auto_scaling_group_pool_uses_the_group_template_unless_it_names_one() {
        let config =
            parse_yaml("{region: eu-west-1, autoScalingGroup: workers-a, image: {id: ami-1}}")
                .expect("valid");
        assert_eq!(config.launch_template, TemplateRef::OfGroup);
        assert_eq!(
            config.auto_scaling_group,
            Some(AutoScalingGroupConfig {
                name: "workers-a".into(),
                update_launch_template: false,
            })
        );
        let config = parse_yaml(
            "{region: eu-west-1, autoScalingGroup: workers-a, updateLaunchTemplate: true, \
             launchTemplate: {name: lt, version: 4}, image: {id: ami-1}}",
        )
        .expect("valid");
        assert_eq!(config.launch_template, TemplateRef::Name("lt".into()));
        assert_eq!(config.template_version, "4");
        assert!(
            config
                .auto_scaling_group
                .is_some_and(|g| g.update_launch_template)
        );
        let plain =
            parse_yaml("{region: eu-west-1, launchTemplate: {name: lt}, image: {id: ami-1}}")
                .expect("valid");
        assert_eq!(plain.auto_scaling_group, None);
    }

    /// Each case: the `aws` section, the path of the problem, a part of its
    /// message.
    fn invalid_cases() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            (
                "{region: europe, launchTemplate: {name: lt}, image: {id: ami-1}}",
                "pools[0].aws.region",
                "\"europe\" is not an AWS region",
            ),
            (
                "{region: eu-west-1, image: {id: ami-1}}",
                "pools[0].aws.launchTemplate",
                "required",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt, id: lt-1}, image: {id: ami-1}}",
                "pools[0].aws.launchTemplate",
                "set either name or id, not both",
            ),
            (
                "{region: eu-west-1, launchTemplate: {id: template}, image: {id: ami-1}}",
                "pools[0].aws.launchTemplate.id",
                "is not a launch template id (lt-…)",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt, version: latest}, image: {id: ami-1}}",
                "pools[0].aws.launchTemplate.version",
                "\"latest\" is not a launch template version (expected $Default, $Latest",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt, version: 0}, image: {id: ami-1}}",
                "pools[0].aws.launchTemplate.version",
                "0 is not a launch template version",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, image: {id: ami-1, owners: [self]}}",
                "pools[0].aws.image",
                "set either id (one fixed image) or owners and filters",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, image: {id: img-1}}",
                "pools[0].aws.image.id",
                "is not an image id (ami-…)",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, image: {filters: {name: x}}}",
                "pools[0].aws.image.owners",
                "required with filters",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, image: {owners: [self]}}",
                "pools[0].aws.image.filters",
                "required with owners",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, image: {owners: [self], filters: {name: \"k8s-{minor}\"}}}",
                "pools[0].aws.image.filters.name",
                "contains {minor}, which is not a placeholder",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, image: {owners: [self], filters: {}}}",
                "pools[0].aws.image.filters",
                "must not be empty",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, image: {id: ami-1}, subnets: []}",
                "pools[0].aws.subnets",
                "must not be empty",
            ),
            (
                "{region: eu-west-1, autoScalingGroup: 7, image: {id: ami-1}}",
                "pools[0].aws.autoScalingGroup",
                "expected a string, found a number",
            ),
            (
                "{region: eu-west-1, autoScalingGroup: \"a:b\", image: {id: ami-1}}",
                "pools[0].aws.autoScalingGroup",
                "is not an Auto Scaling group name",
            ),
            (
                "{region: eu-west-1, autoScalingGroup: g, updateLaunchTemplate: yes please, image: {id: ami-1}}",
                "pools[0].aws.updateLaunchTemplate",
                "expected true or false",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, updateLaunchTemplate: true, image: {id: ami-1}}",
                "pools[0].aws.updateLaunchTemplate",
                "needs autoScalingGroup",
            ),
            (
                "{region: eu-west-1, launchTemplate: {name: lt}, image: {id: ami-1}, subnet: [subnet-1]}",
                "pools[0].aws.subnet",
                "unknown field; did you mean \"subnets\"?",
            ),
        ]
    }

    #[test]
    fn every_mistake_names_its_field_and_what_was_expected() {
        for (aws, path, message) in invalid_cases() {
            let errors = match parse_yaml(aws) {
                Ok(_) => panic!("accepted:\n{aws}"),
                Err(errors) => errors,
            };
            assert!(
                errors
                    .iter()
                    .any(|e| e.path == path && e.message.contains(message)),
                "expected `{path}: …{message}…` for\n{aws}\ngot: {errors:#?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = parse_yaml(
            "{region: europe, launchTemplate: {id: template}, image: {id: img-1}, subnets: []}",
        )
        .expect_err("invalid");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "pools[0].aws.region",
                "pools[0].aws.launchTemplate.id",
                "pools[0].aws.image.id",
                "pools[0].aws.subnets",
            ]
        );
    }

    #[test]
    fn regions() {
        for ok in ["eu-west-1", "us-gov-west-1", "ap-southeast-4", "cn-north-1"] {
            assert!(is_aws_region(ok), "{ok}");
        }
        for bad in ["europe", "eu-west", "EU-west-1", "eu--1", "eu-west-1a"] {
            assert!(!is_aws_region(bad), "{bad}");
        }
    }
}
