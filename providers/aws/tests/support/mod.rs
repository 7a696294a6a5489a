//! A moto server per test, a fault proxy in front of it, and the world's
//! own EC2 client (straight to moto) to seed and inspect.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use kubesurge_aws::{AwsPoolConfig, AwsProvider, ClientOptions, ImageSource, TemplateRef};
use kubesurge_testworld::moto::{Ec2, Ec2Instance, FaultProxy, MotoServer};

pub const REGION: &str = "us-east-1";
pub const VERSION: &str = "v1.35.3";
pub const OLD_VERSION: &str = "v1.34.2";
pub const TEMPLATE: &str = "workers";
pub const VERSION_TAG: &str = "kubernetes-version";

pub struct Env {
    pub moto: MotoServer,
    pub proxy: FaultProxy,
    /// Straight to moto: what the tests see, not what the provider does.
    pub ec2: Ec2,
    pub images: BTreeMap<String, String>,
    /// Subnet by zone (three zones).
    pub subnets: BTreeMap<String, String>,
    pub zones: Vec<String>,
    pub template_id: String,
}

pub async fn env() -> Env {
    let moto = MotoServer::start().await.expect("moto starts");
    let proxy = FaultProxy::start(moto.url()).await.expect("proxy starts");
    let ec2 = Ec2::new(moto.url(), REGION);
    let subnets: BTreeMap<String, String> = ec2
        .default_subnets()
        .await
        .expect("subnets")
        .into_iter()
        .take(3)
        .collect();
    let mut images = BTreeMap::new();
    for v in [VERSION, OLD_VERSION] {
        let id = ec2
            .register_image(
                &format!("node-{v}"),
                &BTreeMap::from([(VERSION_TAG.to_string(), v.to_string())]),
            )
            .await
            .expect("image");
        images.insert(v.to_string(), id);
    }
    let template_id = ec2
        .create_launch_template(TEMPLATE, "t3.medium")
        .await
        .expect("template");
    Env {
        zones: subnets.keys().cloned().collect(),
        moto,
        proxy,
        ec2,
        images,
        subnets,
        template_id,
    }
}

impl Env {
    pub fn pool_config(&self) -> AwsPoolConfig {
        AwsPoolConfig {
            region: Some(REGION.to_string()),
            launch_template: TemplateRef::Name(TEMPLATE.to_string()),
            template_version: "$Default".to_string(),
            image: ImageSource::Lookup {
                owners: vec!["self".to_string()],
                filters: BTreeMap::from([(
                    format!("tag:{VERSION_TAG}"),
                    vec!["{version}".to_string()],
                )]),
            },
            subnets: None,
            auto_scaling_group: None,
        }
    }

    /// Through the proxy, with millisecond backoffs.
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            endpoint_url: Some(self.proxy.url().to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(5),
            attempt_timeout: Duration::from_secs(20),
            page_size: 1000,
            visibility_window: Duration::from_secs(5),
        }
    }

    pub fn provider(&self, cluster: &str) -> AwsProvider {
        AwsProvider::new(cluster, self.pool_config(), self.options())
    }

    pub fn subnet(&self, zone: &str) -> String {
        self.subnets[zone].clone()
    }

    /// Instances put in moto by the test itself (not the provider).
    pub async fn seed_instances(
        &self,
        zone: &str,
        count: usize,
        tags: &[(&str, &str)],
    ) -> Vec<Ec2Instance> {
        let tags: BTreeMap<String, String> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.ec2
            .run_instances(&self.images[VERSION], &self.subnet(zone), count, &tags)
            .await
            .expect("seeded instances")
    }

    /// Stop moto and fail if it met a call it does not implement.
    pub fn finish(self) {
        drop(self.proxy);
        if let Err(e) = self.moto.stop() {
            panic!("{e}");
        }
    }
}
