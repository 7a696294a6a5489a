//! A small EC2 query-API client of the world's own (form-encoded POST,
//! XML answers), so the world that watches moto shares no code with the
//! provider under test. moto does not check signatures; it reads the
//! region from the credential scope, which is all the `Authorization`
//! header here carries.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

use super::xml::{self, Element};

/// The EC2 API version of every request.
pub const API_VERSION: &str = "2016-11-15";
/// Bound of one exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed EC2 call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Ec2Error {
    #[error("{action}: cannot reach EC2 at {url}: {message}")]
    Unreachable {
        action: String,
        url: String,
        message: String,
    },
    #[error("{action}: HTTP {status} {code}: {message}")]
    Api {
        action: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{action}: unreadable answer: {message}")]
    Unreadable { action: String, message: String },
}

/// An instance as the world needs to see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ec2Instance {
    pub id: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, …
    pub state: String,
    pub zone: String,
    pub subnet: Option<String>,
    pub private_ip: Option<String>,
    pub image_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// `metadataOptions.httpTokens` (`required` = IMDSv2 only).
    pub http_tokens: Option<String>,
    /// `metadataOptions.httpPutResponseHopLimit`.
    pub hop_limit: Option<String>,
    pub launch_time: Option<String>,
}

impl Ec2Instance {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// `aws:///<zone>/<id>`, what its kubelet reports.
    pub fn provider_id(&self) -> String {
        format!("aws:///{}/{}", self.zone, self.id)
    }

    fn from_xml(item: &Element) -> Option<Ec2Instance> {
        Some(Ec2Instance {
            id: item.text_at("instanceId")?.to_string(),
            state: item
                .text_at("instanceState/name")
                .unwrap_or_default()
                .to_string(),
            zone: item
                .text_at("placement/availabilityZone")
                .unwrap_or_default()
                .to_string(),
            subnet: item.text_at("subnetId").map(str::to_string),
            private_ip: item.text_at("privateIpAddress").map(str::to_string),
            image_id: item.text_at("imageId").map(str::to_string),
            tags: tags_of(item),
            http_tokens: item
                .text_at("metadataOptions/httpTokens")
                .map(str::to_string),
            hop_limit: item
                .text_at("metadataOptions/httpPutResponseHopLimit")
                .map(str::to_string),
            launch_time: item.text_at("launchTime").map(str::to_string),
        })
    }
}

fn tags_of(item: &Element) -> BTreeMap<String, String> {
    item.items("tagSet")
        .into_iter()
        .filter_map(|t| {
            Some((
                t.text_at("key")?.to_string(),
                t.text_at("value").unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// Percent-encoding of a form value (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Request parameters in EC2's flattened form.
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Params {
        self.0.push((key.into(), value.into()));
        self
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(mut self, filters: &[(&str, Vec<String>)]) -> Params {
        for (n, (name, values)) in filters.iter().enumerate() {
            self = self.set(format!("Filter.{}.Name", n + 1), *name);
            for (m, v) in values.iter().enumerate() {
                self = self.set(format!("Filter.{}.Value.{}", n + 1, m + 1), v.clone());
            }
        }
        self
    }

    /// `TagSpecification.N` for each resource type, with every tag.
    pub fn tag_specifications(
        mut self,
        resource_types: &[&str],
        tags: &BTreeMap<String, String>,
    ) -> Params {
        for (n, kind) in resource_types.iter().enumerate() {
            let p = format!("TagSpecification.{}", n + 1);
            self = self.set(format!("{p}.ResourceType"), *kind);
            for (m, (k, v)) in tags.iter().enumerate() {
                self = self
                    .set(format!("{p}.Tag.{}.Key", m + 1), k.clone())
                    .set(format!("{p}.Tag.{}.Value", m + 1), v.clone());
            }
        }
        self
    }
}

/// The client.
#[derive(Clone)]
pub struct Ec2 {
    url: String,
    region: String,
    /// The service of the credential scope, which moto's server routes by
    /// (`ec2`, `autoscaling`: both speak the query protocol).
    service: &'static str,
    /// The API version of every request.
    version: &'static str,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Ec2 {
    /// EC2 at `url` (`http://127.0.0.1:port`) in `region`.
    pub fn new(url: &str, region: &str) -> Ec2 {
        Ec2::for_service(url, region, "ec2", API_VERSION)
    }

    /// The same query-protocol client for another service of moto's
    /// server (Auto Scaling: `autoscaling`, `2011-01-01`).
    pub fn for_service(
        url: &str,
        region: &str,
        service: &'static str,
        version: &'static str,
    ) -> Ec2 {
        Ec2 {
            url: url.trim_end_matches('/').to_string(),
            region: region.to_string(),
            service,
            version,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// One call; the answer's root element.
    pub async fn call(&self, action: &str, params: Params) -> Result<Element, Ec2Error> {
        let mut body = format!("Action={}&Version={}", encode(action), self.version);
        for (k, v) in &params.0 {
            body.push('&');
            body.push_str(&encode(k));
            body.push('=');
            body.push_str(&encode(v));
        }
        let unreachable = |message: String| Ec2Error::Unreachable {
            action: action.to_string(),
            url: self.url.clone(),
            message,
        };
        let request = http::Request::post(format!("{}/", self.url))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .header(
                http::header::AUTHORIZATION,
                format!(
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/{}/aws4_request, SignedHeaders=host, Signature=00",
                    self.region, self.service
                ),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, Ec2Error>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))??;
        let text = String::from_utf8_lossy(&bytes);
        let parsed = xml::parse(&text);
        if !(200..300).contains(&status) {
            let (code, message) = match &parsed {
                Ok(root) => {
                    let error = root
                        .at("Errors/Error")
                        .or_else(|| root.at("Error"))
                        .cloned()
                        .unwrap_or_default();
                    (
                        error.text_at("Code").unwrap_or_default().to_string(),
                        error.text_at("Message").unwrap_or_default().to_string(),
                    )
                }
                Err(_) => (String::new(), text.chars().take(300).collect()),
            };
            return Err(Ec2Error::Api {
                action: action.to_string(),
                status,
                code,
                message,
            });
        }
        parsed.map_err(|e| Ec2Error::Unreadable {
            action: action.to_string(),
            message: e.to_string(),
        })
    }

    /// Every instance matching `filters` (all states), following pages.
    pub async fn describe_instances(
        &self,
        filters: &[(&str, Vec<String>)],
    ) -> Result<Vec<Ec2Instance>, Ec2Error> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = Params::new().filters(filters).set("MaxResults", "1000");
            if let Some(t) = &token {
                params = params.set("NextToken", t.clone());
            }
            let root = self.call("DescribeInstances", params).await?;
            for reservation in root.items("reservationSet") {
                found.extend(
                    reservation
                        .items("instancesSet")
                        .into_iter()
                        .filter_map(Ec2Instance::from_xml),
                );
            }
            match root.text_at("nextToken").filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(found),
            }
        }
    }

    /// One instance by id, in any state.
    pub async fn instance(&self, id: &str) -> Result<Option<Ec2Instance>, Ec2Error> {
        let root = self
            .call("DescribeInstances", Params::new().set("InstanceId.1", id))
            .await?;
        Ok(root
            .items("reservationSet")
            .into_iter()
            .flat_map(|r| r.items("instancesSet"))
            .filter_map(Ec2Instance::from_xml)
            .find(|i| i.id == id))
    }

    /// The user data an instance was launched with, decoded.
    pub async fn user_data(&self, id: &str) -> Result<Option<String>, Ec2Error> {
        let root = self
            .call(
                "DescribeInstanceAttribute",
                Params::new()
                    .set("InstanceId", id)
                    .set("Attribute", "userData"),
            )
            .await?;
        let Some(encoded) = root.text_at("userData/value").filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let raw = STANDARD
            .decode(encoded.trim())
            .map_err(|e| Ec2Error::Unreadable {
                action: "DescribeInstanceAttribute".into(),
                message: format!("user data is not base64: {e}"),
            })?;
        Ok(Some(String::from_utf8_lossy(&raw).into_owned()))
    }

    /// An image's tags; `None` when there is no such image.
    pub async fn image_tags(
        &self,
        image_id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, Ec2Error> {
        let root = self
            .call("DescribeImages", Params::new().set("ImageId.1", image_id))
            .await?;
        Ok(root
            .items("imagesSet")
            .into_iter()
            .find(|i| i.text_at("imageId") == Some(image_id))
            .map(tags_of))
    }

    /// The default subnet of each zone, by zone name.
    pub async fn default_subnets(&self) -> Result<BTreeMap<String, String>, Ec2Error> {
        let root = self
            .call(
                "DescribeSubnets",
                Params::new().filters(&[("default-for-az", vec!["true".into()])]),
            )
            .await?;
        Ok(root
            .items("subnetSet")
            .into_iter()
            .filter_map(|s| {
                Some((
                    s.text_at("availabilityZone")?.to_string(),
                    s.text_at("subnetId")?.to_string(),
                ))
            })
            .collect())
    }

    /// Register an image (moto makes its snapshot) and tag it.
    pub async fn register_image(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, Ec2Error> {
        let root = self
            .call(
                "RegisterImage",
                Params::new()
                    .set("Name", name)
                    .set("Architecture", "x86_64")
                    .set("RootDeviceName", "/dev/xvda")
                    .set("BlockDeviceMapping.1.DeviceName", "/dev/xvda")
                    .set("BlockDeviceMapping.1.Ebs.VolumeSize", "20"),
            )
            .await?;
        let id = root
            .text_at("imageId")
            .ok_or_else(|| Ec2Error::Unreadable {
                action: "RegisterImage".into(),
                message: "no imageId".into(),
            })?
            .to_string();
        self.create_tags(&id, tags).await?;
        Ok(id)
    }

    pub async fn create_tags(
        &self,
        resource: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        let mut params = Params::new().set("ResourceId.1", resource);
        for (n, (k, v)) in tags.iter().enumerate() {
            params = params
                .set(format!("Tag.{}.Key", n + 1), k.clone())
                .set(format!("Tag.{}.Value", n + 1), v.clone());
        }
        self.call("CreateTags", params).await.map(|_| ())
    }

    /// A launch template with an instance type; returns its id.
    pub async fn create_launch_template(
        &self,
        name: &str,
        instance_type: &str,
    ) -> Result<String, Ec2Error> {
        self.create_launch_template_naming(name, instance_type, None)
            .await
    }

    /// A launch template with an instance type and, when given, the
    /// instance profile (by ARN) its instances get; returns its id.
    pub async fn create_launch_template_naming(
        &self,
        name: &str,
        instance_type: &str,
        instance_profile: Option<&str>,
    ) -> Result<String, Ec2Error> {
        self.create_template(name, instance_type, Params::new(), instance_profile)
            .await
    }

    /// A launch template with an instance type, an image, user data
    /// (given in clear, sent base64 as EC2 wants it) and, when given, the
    /// instance profile (by ARN) its instances get; returns its id.
    pub async fn create_launch_template_with(
        &self,
        name: &str,
        instance_type: &str,
        image: &str,
        user_data: &str,
        instance_profile: Option<&str>,
    ) -> Result<String, Ec2Error> {
        let data = Params::new()
            .set("LaunchTemplateData.ImageId", image)
            .set("LaunchTemplateData.UserData", STANDARD.encode(user_data));
        self.create_template(name, instance_type, data, instance_profile)
            .await
    }

    /// `CreateLaunchTemplate` with `data` (`LaunchTemplateData.*`) and the
    /// rest given; returns its id.
    async fn create_template(
        &self,
        name: &str,
        instance_type: &str,
        data: Params,
        instance_profile: Option<&str>,
    ) -> Result<String, Ec2Error> {
        let mut params = Params::new()
            .set("LaunchTemplateName", name)
            .set("LaunchTemplateData.InstanceType", instance_type);
        params.0.extend(data.0);
        if let Some(arn) = instance_profile {
            params = params.set("LaunchTemplateData.IamInstanceProfile.Arn", arn);
        }
        let root = self.call("CreateLaunchTemplate", params).await?;
        root.text_at("launchTemplate/launchTemplateId")
            .map(str::to_string)
            .ok_or_else(|| Ec2Error::Unreadable {
                action: "CreateLaunchTemplate".into(),
                message: "no launchTemplateId".into(),
            })
    }

    /// Launch `count` instances of `image` in `subnet` with `tags` (on the
    /// instances and their volumes).
    pub async fn run_instances(
        &self,
        image: &str,
        subnet: &str,
        count: usize,
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<Ec2Instance>, Ec2Error> {
        let root = self
            .call(
                "RunInstances",
                Params::new()
                    .set("ImageId", image)
                    .set("InstanceType", "t3.medium")
                    .set("SubnetId", subnet)
                    .set("MinCount", count.to_string())
                    .set("MaxCount", count.to_string())
                    .set("MetadataOptions.HttpTokens", "required")
                    .tag_specifications(&["instance", "volume"], tags),
            )
            .await?;
        Ok(root
            .items("instancesSet")
            .into_iter()
            .filter_map(Ec2Instance::from_xml)
            .collect())
    }

    /// Terminate instances (no tag check: this is the world, not the tool).
    pub async fn terminate(&self, ids: &[String]) -> Result<(), Ec2Error> {
        let mut params = Params::new();
        for (n, id) in ids.iter().enumerate() {
            params = params.set(format!("InstanceId.{}", n + 1), id.clone());
        }
        self.call("TerminateInstances", params).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(encode("a b+c/=&é"), "a%20b%2Bc%2F%3D%26%C3%A9");
        assert_eq!(encode("$Default"), "%24Default");
        assert_eq!(encode("kubesurge.io/slot"), "kubesurge.io%2Fslot");
    }

    #[test]
    fn filters_and_tags_flatten_as_ec2_expects() {
        let p = Params::new()
            .filters(&[("tag:a", vec!["1".into(), "2".into()])])
            .tag_specifications(
                &["instance"],
                &BTreeMap::from([("k".to_string(), "v".to_string())]),
            );
        let keys: Vec<&str> = p.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "Filter.1.Name",
                "Filter.1.Value.1",
                "Filter.1.Value.2",
                "TagSpecification.1.ResourceType",
                "TagSpecification.1.Tag.1.Key",
                "TagSpecification.1.Tag.1.Value"
            ]
        );
    }
}
