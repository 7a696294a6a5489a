//! What the provider is told: the pool's launch template, image source and
//! subnets (from `pools[].aws`), and how to reach EC2.

use std::collections::BTreeMap;
use std::time::Duration;

/// Replaced in image filter values by the target version (`v1.35.3`).
pub const VERSION_PLACEHOLDER: &str = "{version}";

/// A launch template, by name or by id (`lt-…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateRef {
    Name(String),
    Id(String),
    /// The launch template and version the pool's Auto Scaling group
    /// launches from, read from the group when a slot launches.
    OfGroup,
}

/// An Auto Scaling group behind a pool (`autoScalingGroup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoScalingGroupConfig {
    /// The group's name.
    pub name: String,
    /// Create a launch template version with the target image and make it
    /// the group's, so the group's own later scale-outs come up at the new
    /// version (`updateLaunchTemplate`).
    pub update_launch_template: bool,
}

/// How to find the image of a Kubernetes version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// One fixed image for every version.
    Id(String),
    /// DescribeImages by owners and filters (values may hold
    /// [`VERSION_PLACEHOLDER`]); the newest by creation date wins.
    Lookup {
        owners: Vec<String>,
        filters: BTreeMap<String, Vec<String>>,
    },
}

/// One pool's EC2 settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsPoolConfig {
    /// The pool's region; it wins over the environment's.
    pub region: Option<String>,
    pub launch_template: TemplateRef,
    /// As EC2 spells it: `$Default`, `$Latest` or a number.
    pub template_version: String,
    pub image: ImageSource,
    /// Subnets a replacement may use; `None`: the old node's subnet.
    pub subnets: Option<Vec<String>>,
    /// The Auto Scaling group the pool's instances are members of; `None`
    /// for plain instances.
    pub auto_scaling_group: Option<AutoScalingGroupConfig>,
}

/// How the SDK clients connect and retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Endpoint override. Without it the standard chain applies
    /// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_EC2`, the profile).
    pub endpoint_url: Option<String>,
    /// Static credentials (access key id, secret). Without them the
    /// standard chain applies.
    pub static_credentials: Option<(String, String)>,
    /// Attempts per call of the SDK's standard retry (throttling, 5xx,
    /// connection errors).
    pub max_attempts: u32,
    /// First backoff of the standard retry; it doubles, with jitter.
    pub initial_backoff: Duration,
    /// Bound of one attempt.
    pub attempt_timeout: Duration,
    /// `MaxResults` of DescribeInstances (EC2 allows 5 to 1000).
    pub page_size: i32,
    /// How long after a launch an instance that EC2 says does not exist is
    /// taken for not yet visible (EC2 is eventually consistent) rather than
    /// gone.
    pub visibility_window: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            endpoint_url: None,
            static_credentials: None,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(30),
            page_size: 1000,
            visibility_window: Duration::from_secs(120),
        }
    }
}

impl ClientOptions {
    /// The defaults, with `AWS_MAX_ATTEMPTS` honoured as the AWS SDKs do
    /// (the retry settings given to the SDK replace its own reading).
    pub fn from_env() -> ClientOptions {
        let mut options = ClientOptions::default();
        if let Some(n) = std::env::var("AWS_MAX_ATTEMPTS")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n >= 1)
        {
            options.max_attempts = n;
        }
        options
    }
}

/// `v1.35.3` from `1.35.3` or `v1.35.3`.
pub fn normalize_version(version: &str) -> String {
    let v = version.trim();
    if v.starts_with('v') {
        v.to_string()
    } else {
        format!("v{v}")
    }
}

/// The filters of an image lookup for `version`, placeholder replaced.
pub fn filters_for(
    filters: &BTreeMap<String, Vec<String>>,
    version: &str,
) -> BTreeMap<String, Vec<String>> {
    let version = normalize_version(version);
    filters
        .iter()
        .map(|(name, values)| {
            (
                name.clone(),
                values
                    .iter()
                    .map(|v| v.replace(VERSION_PLACEHOLDER, &version))
                    .collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_placeholder_is_replaced_in_every_value() {
        let filters = BTreeMap::from([
            (
                "tag:kubernetes-version".to_string(),
                vec!["{version}".to_string()],
            ),
            (
                "name".to_string(),
                vec!["k8s-{version}-*".to_string(), "fixed".to_string()],
            ),
        ]);
        let out = filters_for(&filters, "1.35.3");
        assert_eq!(out["tag:kubernetes-version"], vec!["v1.35.3"]);
        assert_eq!(out["name"], vec!["k8s-v1.35.3-*", "fixed"]);
    }
}
