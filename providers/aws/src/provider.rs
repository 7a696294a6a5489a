//! [`AwsProvider`]: the `CloudProvider` contract over EC2.
//!
//! One provider serves one pool of one cluster. Its SDK client is built on
//! first use (loading the standard AWS configuration is asynchronous, the
//! wiring that builds providers is not).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    self as ec2, Filter, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, LaunchTemplateSpecification, Placement, ResourceType,
    TagSpecification,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kubesurge_provider::{
    CloudProvider, DeleteStatus, Image, Instance, InstanceId, InstanceState, LaunchRequest,
    NodeRef, PermissionCheck, PermissionOutcome, PermissionProbe, PoolRef, ProviderError, tags,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::client::load_sdk_config;
use crate::config::{AwsPoolConfig, ClientOptions, ImageSource, TemplateRef, filters_for};
use crate::convert::{self, LIVE_STATES};
use crate::errors::{Call, from_sdk};
use crate::provider_id;

const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";
/// The answer of a `DryRun=true` call that would have succeeded.
const DRY_RUN_OPERATION: &str = "DryRunOperation";

/// A dry run's answer as a permission: only `DryRunOperation` grants it.
fn dry_run_answer<T, E>(call: Call, answer: Result<T, SdkError<E>>) -> PermissionCheck
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let outcome = match answer {
        Err(e) if e.code() == Some(DRY_RUN_OPERATION) => PermissionOutcome::Granted,
        Err(e) => match from_sdk(call, &e, None) {
            ProviderError::Unauthorized { message, .. } => PermissionOutcome::Denied { message },
            other => PermissionOutcome::Unknown {
                message: other.to_string(),
            },
        },
        Ok(_) => PermissionOutcome::Unknown {
            message: "answered as if made, not as a dry run".into(),
        },
    };
    PermissionCheck {
        action: call.iam_action().into(),
        outcome,
    }
}

/// The `aws` provider for one pool.
pub struct AwsProvider {
    cluster: String,
    pool: AwsPoolConfig,
    options: ClientOptions,
    client: OnceCell<Client>,
    /// Instances this process launched, with when: EC2 may not show them to
    /// describes for a while (eventual consistency).
    recent: Mutex<HashMap<InstanceId, (Instant, Instance)>>,
    /// Zone of each of the pool's configured subnets, looked up once.
    subnet_zones: OnceCell<BTreeMap<String, String>>,
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

fn tag_filter(key: &str, value: &str) -> Filter {
    filter(&format!("tag:{key}"), &[value])
}

fn live_states() -> Filter {
    filter("instance-state-name", &LIVE_STATES)
}

impl AwsProvider {
    /// A provider acting for `cluster`: it only ever terminates instances
    /// tagged `kubesurge.io/cluster=<cluster>`. The SDK configuration is
    /// loaded from the environment on first use.
    pub fn new(cluster: &str, pool: AwsPoolConfig, options: ClientOptions) -> AwsProvider {
        AwsProvider {
            cluster: cluster.to_string(),
            pool,
            options,
            client: OnceCell::new(),
            recent: Mutex::new(HashMap::new()),
            subnet_zones: OnceCell::new(),
        }
    }

    /// A provider over a client configured elsewhere.
    pub fn with_client(
        cluster: &str,
        pool: AwsPoolConfig,
        options: ClientOptions,
        client: Client,
    ) -> AwsProvider {
        let provider = AwsProvider::new(cluster, pool, options);
        // A fresh cell accepts its first value.
        let _ = provider.client.set(client);
        provider
    }

    async fn ec2(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let config = load_sdk_config(self.pool.region.as_deref(), &self.options).await;
                Client::new(&config)
            })
            .await
    }

    /// Every instance matching `filters`, following every page.
    async fn describe(&self, filters: Vec<Filter>) -> Result<Vec<Instance>, ProviderError> {
        let mut pages = self
            .ec2()
            .await
            .describe_instances()
            .set_filters(Some(filters))
            .max_results(self.options.page_size.clamp(5, 1000))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk(Call::DescribeInstances, &e, None))?;
            found.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(convert::instance),
            );
        }
        Ok(found)
    }

    /// The instance with this id as EC2 shows it now; `None` when EC2 does
    /// not know it (yet, or any more).
    async fn describe_one(&self, id: &InstanceId) -> Result<Option<Instance>, ProviderError> {
        let answer = self
            .ec2()
            .await
            .describe_instances()
            .instance_ids(id.0.clone())
            .send()
            .await;
        match answer {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(convert::instance)
                .find(|i| i.id == *id)),
            Err(e) if e.code() == Some(INSTANCE_NOT_FOUND) => Ok(None),
            Err(e) => Err(from_sdk(Call::DescribeInstances, &e, None)),
        }
    }

    /// What this process launched as `id`, if that was recent enough for
    /// EC2 not to show it yet.
    fn recently_launched(&self, id: &InstanceId) -> Option<Instance> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .get(id)
            .filter(|(at, _)| at.elapsed() < self.options.visibility_window)
            .map(|(_, instance)| Instance {
                state: InstanceState::Pending,
                ..instance.clone()
            })
    }

    fn remember_launch(&self, instance: &Instance) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.options.visibility_window;
        recent.retain(|_, (at, _)| at.elapsed() < window);
        recent.insert(instance.id.clone(), (Instant::now(), instance.clone()));
    }

    fn forget_launch(&self, id: &InstanceId) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.remove(id);
    }

    /// The zone of each of the pool's configured subnets (`None` when the
    /// pool lets replacements follow the old node's subnet).
    async fn allowed_subnets(&self) -> Result<Option<&BTreeMap<String, String>>, ProviderError> {
        let Some(subnets) = &self.pool.subnets else {
            return Ok(None);
        };
        let zones = self
            .subnet_zones
            .get_or_try_init(|| async {
                let out = self
                    .ec2()
                    .await
                    .describe_subnets()
                    .set_subnet_ids(Some(subnets.clone()))
                    .send()
                    .await
                    .map_err(|e| from_sdk(Call::DescribeSubnets, &e, None))?;
                Ok::<_, ProviderError>(
                    out.subnets()
                        .iter()
                        .filter_map(|s| {
                            Some((
                                s.subnet_id()?.to_string(),
                                s.availability_zone()?.to_string(),
                            ))
                        })
                        .collect(),
                )
            })
            .await?;
        Ok(Some(zones))
    }

    /// The launch already made for this slot, if any.
    async fn instance_of_slot(
        &self,
        request: &LaunchRequest,
    ) -> Result<Option<Instance>, ProviderError> {
        let mut found = self
            .describe(vec![
                tag_filter(tags::CLUSTER, &request.pool.cluster),
                tag_filter(tags::SLOT, &request.slot.tag_value()),
                live_states(),
            ])
            .await?;
        // Should two exist (a launch elsewhere that ignored the token), the
        // earliest is the slot's; the caller's accounting sees the other.
        found.sort_by(|a, b| (a.launched_at, &a.id).cmp(&(b.launched_at, &b.id)));
        Ok(found.into_iter().next())
    }

    /// The RunInstances call of `request` in `subnet`, ready to send (or
    /// to send as a dry run).
    fn run_instances_call(
        &self,
        client: &Client,
        request: &LaunchRequest,
        subnet: Option<String>,
    ) -> RunInstancesFluentBuilder {
        let wanted = request.tags();
        let tag_list: Vec<ec2::Tag> = wanted
            .iter()
            .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
            .collect();
        let tagged = |kind: ResourceType| {
            TagSpecification::builder()
                .resource_type(kind)
                .set_tags(Some(tag_list.clone()))
                .build()
        };
        let template = match &self.pool.launch_template {
            TemplateRef::Name(name) => {
                LaunchTemplateSpecification::builder().launch_template_name(name)
            }
            TemplateRef::Id(id) => LaunchTemplateSpecification::builder().launch_template_id(id),
        }
        .version(&self.pool.template_version)
        .build();
        let call = client
            .run_instances()
            .launch_template(template)
            .image_id(&request.image)
            .min_count(1)
            .max_count(1)
            // The SDK sends user data as given; EC2 wants base64.
            .user_data(BASE64.encode(request.user_data.expose()))
            // On the request itself: a template's metadata options are not
            // always applied (and are the template owner's to change).
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    // An IMDSv2 answer travels one hop: the machine's own
                    // processes get it, pods behind the node's network
                    // namespace do not — they could otherwise read the user
                    // data and its bootstrap token ("Configure the instance
                    // metadata options", EC2 User Guide).
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .tag_specifications(tagged(ResourceType::Instance))
            .tag_specifications(tagged(ResourceType::Volume))
            .client_token(convert::client_token(request));
        match subnet {
            Some(subnet) => call.subnet_id(subnet),
            None => call.placement(
                Placement::builder()
                    .availability_zone(&request.zone)
                    .build(),
            ),
        }
    }

    async fn run_instance(
        &self,
        request: &LaunchRequest,
        subnet: Option<String>,
    ) -> Result<Instance, ProviderError> {
        let wanted = request.tags();
        let out = self
            .run_instances_call(self.ec2().await, request, subnet)
            .send()
            .await
            .map_err(|e| from_sdk(Call::RunInstances, &e, Some(&request.zone)))?;
        let mut instance = out
            .instances()
            .iter()
            .find_map(convert::instance)
            .ok_or_else(|| ProviderError::Other {
                message: "ec2:RunInstances answered without an instance".into(),
            })?;
        // The answer may omit tags that EC2 applied with the launch.
        for (k, v) in wanted {
            instance.tags.entry(k).or_insert(v);
        }
        Ok(instance)
    }
}

#[async_trait]
impl CloudProvider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
    }

    async fn list(&self, pool: &PoolRef) -> Result<Vec<Instance>, ProviderError> {
        self.describe(vec![
            tag_filter(tags::CLUSTER, &pool.cluster),
            tag_filter(tags::POOL, &pool.pool),
            live_states(),
        ])
        .await
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, ProviderError> {
        if request.pool.cluster != self.cluster {
            return Err(ProviderError::InvalidConfig {
                message: format!(
                    "a launch for cluster {} asked of the provider of cluster {}",
                    request.pool.cluster, self.cluster
                ),
            });
        }
        // Adopt what an earlier (perhaps crashed) launch of the slot made.
        if let Some(existing) = self.instance_of_slot(request).await? {
            tracing::info!(
                instance = %existing.id,
                slot = %request.slot.tag_value(),
                "adopting the instance already launched for this slot"
            );
            return Ok(existing);
        }
        let allowed = self.allowed_subnets().await?;
        let subnet = convert::choose_subnet(request.subnet.as_deref(), &request.zone, allowed)
            .map_err(|message| ProviderError::InvalidConfig { message })?;
        let instance = self.run_instance(request, subnet).await?;
        tracing::info!(
            instance = %instance.id,
            zone = %instance.zone,
            subnet = instance.subnet.as_deref().unwrap_or(""),
            slot = %request.slot.tag_value(),
            "launched"
        );
        self.remember_launch(&instance);
        Ok(instance)
    }

    async fn get(&self, id: &InstanceId) -> Result<Option<Instance>, ProviderError> {
        match self.describe_one(id).await? {
            Some(i) if i.state == InstanceState::Terminated => {
                self.forget_launch(id);
                Ok(None)
            }
            Some(i) => Ok(Some(i)),
            None => Ok(self.recently_launched(id)),
        }
    }

    async fn delete(&self, id: &InstanceId) -> Result<DeleteStatus, ProviderError> {
        let instance = match self.describe_one(id).await? {
            Some(i) => i,
            None if self.recently_launched(id).is_some() => {
                // Not visible yet: it cannot be terminated yet either.
                return Ok(DeleteStatus::InProgress);
            }
            None => return Ok(DeleteStatus::Gone),
        };
        match instance.state {
            InstanceState::Terminated => {
                self.forget_launch(id);
                return Ok(DeleteStatus::Gone);
            }
            _ if instance.tag(tags::CLUSTER) != Some(self.cluster.as_str()) => {
                return Err(ProviderError::InvalidConfig {
                    message: format!(
                        "instance {id} is not tagged {}={}; kubesurge never terminates it",
                        tags::CLUSTER,
                        self.cluster
                    ),
                });
            }
            InstanceState::ShuttingDown => return Ok(DeleteStatus::InProgress),
            _ => {}
        }
        let answer = self
            .ec2()
            .await
            .terminate_instances()
            .instance_ids(id.0.clone())
            .send()
            .await;
        match answer {
            Ok(out) => {
                let now = out
                    .terminating_instances()
                    .iter()
                    .find(|c| c.instance_id() == Some(id.0.as_str()))
                    .and_then(|c| c.current_state())
                    .and_then(|s| s.name());
                Ok(match convert::state(now) {
                    InstanceState::Terminated => {
                        self.forget_launch(id);
                        DeleteStatus::Gone
                    }
                    _ => DeleteStatus::InProgress,
                })
            }
            Err(e) if e.code() == Some(INSTANCE_NOT_FOUND) => Ok(DeleteStatus::Gone),
            Err(e) => Err(from_sdk(Call::TerminateInstances, &e, None)),
        }
    }

    async fn instance_for(&self, node: &NodeRef) -> Result<Option<Instance>, ProviderError> {
        if let Some(id) = node
            .provider_id
            .as_deref()
            .and_then(provider_id::instance_id_of)
        {
            return self.get(&InstanceId(id.to_string())).await;
        }
        let Some(ip) = node.internal_ip.as_deref().filter(|ip| !ip.is_empty()) else {
            return Ok(None);
        };
        // Private addresses are unique within a VPC only: look among this
        // cluster's instances.
        let mut found = self
            .describe(vec![
                filter("private-ip-address", &[ip]),
                tag_filter(tags::CLUSTER, &self.cluster),
                live_states(),
            ])
            .await?;
        match found.len() {
            0 | 1 => Ok(found.pop()),
            n => Err(ProviderError::InvalidConfig {
                message: format!(
                    "node {} has no usable providerID and {n} instances of cluster {} have its address {ip}",
                    node.name, self.cluster
                ),
            }),
        }
    }

    async fn resolve_image(&self, pool: &PoolRef, version: &str) -> Result<Image, ProviderError> {
        let not_found = || ProviderError::NotFound {
            what: format!(
                "an image of Kubernetes {} for pool {}",
                crate::config::normalize_version(version),
                pool.pool
            ),
        };
        let client = self.ec2().await;
        let images: Vec<ec2::Image> = match &self.pool.image {
            ImageSource::Id(id) => match client.describe_images().image_ids(id).send().await {
                Ok(out) => out.images().to_vec(),
                Err(e) if e.code() == Some("InvalidAMIID.NotFound") => Vec::new(),
                Err(e) => return Err(from_sdk(Call::DescribeImages, &e, None)),
            },
            ImageSource::Lookup { owners, filters } => {
                let filters = filters_for(filters, version)
                    .into_iter()
                    .map(|(name, values)| {
                        Filter::builder()
                            .name(name)
                            .set_values(Some(values))
                            .build()
                    })
                    .collect();
                let mut pages = client
                    .describe_images()
                    .set_owners(Some(owners.clone()))
                    .set_filters(Some(filters))
                    .into_paginator()
                    .send();
                let mut all = Vec::new();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| from_sdk(Call::DescribeImages, &e, None))?;
                    all.extend(page.images().iter().cloned());
                }
                all
            }
        };
        convert::newest_image(&images).ok_or_else(not_found)
    }

    /// EC2 `DryRun=true` calls: each answers `DryRunOperation` (412) when
    /// the call would have succeeded and `UnauthorizedOperation` (403) when
    /// the credentials may not make it, changing nothing
    /// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/CommonErrors.html).
    async fn check_permissions(&self, probe: &PermissionProbe) -> Vec<PermissionCheck> {
        let client = self.ec2().await;
        let mut checks = Vec::new();
        let subnet = match self.allowed_subnets().await {
            Ok(allowed) => {
                convert::choose_subnet(probe.launch.subnet.as_deref(), &probe.launch.zone, allowed)
            }
            Err(e) => Err(e.to_string()),
        };
        checks.push(match subnet {
            Ok(subnet) => dry_run_answer(
                Call::RunInstances,
                self.run_instances_call(client, &probe.launch, subnet)
                    .dry_run(true)
                    .send()
                    .await,
            ),
            Err(message) => PermissionCheck {
                action: Call::RunInstances.iam_action().into(),
                outcome: PermissionOutcome::Unknown { message },
            },
        });
        if let Some(id) = &probe.terminate {
            checks.push(dry_run_answer(
                Call::TerminateInstances,
                client
                    .terminate_instances()
                    .instance_ids(id.0.clone())
                    .dry_run(true)
                    .send()
                    .await,
            ));
            checks.push(dry_run_answer(
                Call::CreateTags,
                client
                    .create_tags()
                    .resources(id.0.clone())
                    .tags(
                        ec2::Tag::builder()
                            .key(tags::POOL)
                            .value(&probe.launch.pool.pool)
                            .build(),
                    )
                    .dry_run(true)
                    .send()
                    .await,
            ));
        }
        checks
    }
}
