//! [`AwsProvider`]: the `CloudProvider` contract over EC2.
//!
//! One provider serves one pool of one cluster. Its SDK client is built on
//! first use (loading the standard AWS configuration is asynchronous, the
//! wiring that builds providers is not).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    self as ec2, Filter, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, LaunchTemplateInstanceNetworkInterfaceSpecification,
    LaunchTemplateSpecification, Placement, ResourceType, ResponseLaunchTemplateData,
    TagSpecification,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kubesurge_provider::{
    CloudProvider, DeleteStatus, Image, Instance, InstanceId, InstanceState, LaunchRequest,
    NodeRef, PermissionCheck, PermissionOutcome, PermissionProbe, PoolRef, ProviderError,
    RoomFinding, RoomProbe, tags,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::asg::{AutoScaling, GroupTemplate};
use crate::client::load_sdk_config;
use crate::config::{AwsPoolConfig, ClientOptions, ImageSource, TemplateRef, filters_for};
use crate::convert::{self, LIVE_STATES};
use crate::errors::{Call, from_sdk};
use crate::provider_id;

const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";
/// Ids per `instance-id` filter of one batched describe: a conservative
/// batch that keeps one query request small; the values of one filter are
/// joined with OR
/// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Filter.html).
const IDS_PER_FILTER: usize = 200;
/// How long a launched instance may stay `pending` before it can join its
/// Auto Scaling group: AttachInstances takes running instances only
/// ("The instance must be in the running state", Attach EC2 instances to
/// your Auto Scaling group, Amazon EC2 Auto Scaling User Guide).
const RUNNING_WAIT: Duration = Duration::from_secs(600);
const RUNNING_POLL: Duration = Duration::from_secs(2);
/// The answer of a `DryRun=true` call that would have succeeded.
const DRY_RUN_OPERATION: &str = "DryRunOperation";

/// How EC2's permission lines are asked.
const DRY_RUN: &str = "a dry run";

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
        asked: DRY_RUN.into(),
        outcome,
    }
}

/// The `aws` provider for one pool.
pub struct AwsProvider {
    cluster: String,
    pool: AwsPoolConfig,
    options: ClientOptions,
    client: OnceCell<Client>,
    /// The SDK configuration, loaded once for every client.
    sdk: OnceCell<aws_config::SdkConfig>,
    /// The pool's Auto Scaling group, when it has one.
    autoscaling: OnceCell<AutoScaling>,
    /// Set once the group's template version carries the run's image
    /// (`updateLaunchTemplate`).
    group_template_updated: OnceCell<()>,
    /// Instances this process launched, with when: EC2 may not show them to
    /// describes for a while (eventual consistency).
    recent: Mutex<HashMap<InstanceId, (Instant, Instance)>>,
    /// Zone of each of the pool's configured subnets, looked up once.
    subnet_zones: OnceCell<BTreeMap<String, String>>,
    /// What the pool's launch template (version) defines, looked up once:
    /// with network interfaces, the subnet goes into an interface.
    template_data: OnceCell<Option<ResponseLaunchTemplateData>>,
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
            sdk: OnceCell::new(),
            autoscaling: OnceCell::new(),
            group_template_updated: OnceCell::new(),
            recent: Mutex::new(HashMap::new()),
            subnet_zones: OnceCell::new(),
            template_data: OnceCell::new(),
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

    pub(crate) async fn sdk_config(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| load_sdk_config(self.pool.region.as_deref(), &self.options))
            .await
    }

    pub(crate) async fn ec2(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(self.sdk_config().await) })
            .await
    }

    /// The pool's Auto Scaling group; `None` for plain instances.
    pub(crate) async fn group(&self) -> Option<&AutoScaling> {
        let group = self.pool.auto_scaling_group.as_ref()?;
        Some(
            self.autoscaling
                .get_or_init(|| async {
                    AutoScaling::new(
                        aws_sdk_autoscaling::Client::new(self.sdk_config().await),
                        &group.name,
                    )
                })
                .await,
        )
    }

    /// The launch template (and version) a slot launches from: the pool's,
    /// or its group's.
    async fn template_spec(&self) -> Result<LaunchTemplateSpecification, ProviderError> {
        let (builder, version) = match &self.pool.launch_template {
            TemplateRef::Name(name) => (
                LaunchTemplateSpecification::builder().launch_template_name(name),
                self.pool.template_version.clone(),
            ),
            TemplateRef::Id(id) => (
                LaunchTemplateSpecification::builder().launch_template_id(id),
                self.pool.template_version.clone(),
            ),
            TemplateRef::OfGroup => {
                let group = self
                    .group()
                    .await
                    .ok_or_else(|| ProviderError::InvalidConfig {
                        message: "the pool names no launch template and no Auto Scaling group"
                            .into(),
                    })?;
                match group.describe().await?.template {
                    Some(GroupTemplate {
                        id: Some(id),
                        version,
                        ..
                    }) => (
                        LaunchTemplateSpecification::builder().launch_template_id(id),
                        version,
                    ),
                    Some(GroupTemplate {
                        name: Some(name),
                        version,
                        ..
                    }) => (
                        LaunchTemplateSpecification::builder().launch_template_name(name),
                        version,
                    ),
                    _ => {
                        return Err(ProviderError::InvalidConfig {
                            message: format!(
                                "Auto Scaling group {} launches from no launch template (a \
                                 launch configuration or a mixed instances policy): name one \
                                 in the pool's aws.launchTemplate",
                                group.group_name()
                            ),
                        });
                    }
                }
            }
        };
        Ok(builder.version(version).build())
    }

    /// `updateLaunchTemplate`: the group's launch template gets a version
    /// with `image` (from the group's own version, image replaced) and the
    /// group launches from it, so that its own later scale-outs come up at
    /// the target version. Idempotent: a version that already carries the
    /// image (the group's, or the template's latest, made by a run that
    /// crashed before it set it) is used instead of another.
    async fn update_group_template(&self, image: &str) -> Result<(), ProviderError> {
        let (Some(group), Some(config)) = (self.group().await, &self.pool.auto_scaling_group)
        else {
            return Ok(());
        };
        if !config.update_launch_template {
            return Ok(());
        }
        self.group_template_updated
            .get_or_try_init(|| async {
                let template = group.describe().await?.template.ok_or_else(|| {
                    ProviderError::InvalidConfig {
                        message: format!(
                            "updateLaunchTemplate: Auto Scaling group {} launches from no launch template",
                            group.group_name()
                        ),
                    }
                })?;
                let id = match (&template.id, &template.name) {
                    (Some(id), _) => id.clone(),
                    (None, Some(name)) => self.template_id_of(name).await?,
                    (None, None) => {
                        return Err(ProviderError::InvalidConfig {
                            message: format!(
                                "Auto Scaling group {} names its launch template neither by id nor by name",
                                group.group_name()
                            ),
                        });
                    }
                };
                let (current_image, current) =
                    self.template_version_image(&id, &template.version).await?;
                if current_image.as_deref() == Some(image) {
                    return Ok(());
                }
                let (latest_image, latest) = self.template_version_image(&id, "$Latest").await?;
                let version = match latest {
                    Some(n) if latest_image.as_deref() == Some(image) => n,
                    _ => {
                        // SourceVersion is a version number.
                        let source = current
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| template.version.clone());
                        self.create_template_version(&id, &source, image).await?
                    }
                };
                group.set_template_version(&id, &version.to_string()).await?;
                tracing::info!(group = %group.group_name(), template = %id, version, "the group now launches from the new image");
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn template_id_of(&self, name: &str) -> Result<String, ProviderError> {
        let out = self
            .ec2()
            .await
            .describe_launch_templates()
            .launch_template_names(name)
            .send()
            .await
            .map_err(|e| from_sdk(Call::DescribeLaunchTemplates, &e, None))?;
        out.launch_templates()
            .iter()
            .find_map(|t| t.launch_template_id().map(str::to_string))
            .ok_or_else(|| ProviderError::InvalidConfig {
                message: format!("there is no launch template {name}"),
            })
    }

    /// The image and number of one version of a template.
    async fn template_version_image(
        &self,
        id: &str,
        version: &str,
    ) -> Result<(Option<String>, Option<i64>), ProviderError> {
        let out = self
            .ec2()
            .await
            .describe_launch_template_versions()
            .launch_template_id(id)
            .versions(version)
            .send()
            .await
            .map_err(|e| from_sdk(Call::DescribeLaunchTemplateVersions, &e, None))?;
        Ok(out
            .launch_template_versions()
            .first()
            .map(|v| {
                (
                    v.launch_template_data()
                        .and_then(|d| d.image_id())
                        .map(str::to_string),
                    v.version_number(),
                )
            })
            .unwrap_or_default())
    }

    async fn create_template_version(
        &self,
        id: &str,
        source: &str,
        image: &str,
    ) -> Result<i64, ProviderError> {
        let out = self
            .ec2()
            .await
            .create_launch_template_version()
            .launch_template_id(id)
            .source_version(source)
            .version_description(format!("kubesurge: image {image}"))
            .launch_template_data(
                ec2::RequestLaunchTemplateData::builder()
                    .image_id(image)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk(Call::CreateLaunchTemplateVersion, &e, None))?;
        out.launch_template_version()
            .and_then(|v| v.version_number())
            .ok_or_else(|| ProviderError::Other {
                message: "ec2:CreateLaunchTemplateVersion answered without a version number".into(),
            })
    }

    /// Wait until `id` runs, then make it a member of the pool's group.
    async fn attach_when_running(
        &self,
        group: &AutoScaling,
        id: &InstanceId,
    ) -> Result<(), ProviderError> {
        let deadline = Instant::now() + RUNNING_WAIT;
        loop {
            match self.describe_one(id).await? {
                Some(i) if i.state == InstanceState::Running => break,
                Some(i) if i.state.is_going_away() || i.state == InstanceState::Stopped => {
                    return Err(ProviderError::Other {
                        message: format!(
                            "instance {id} is {:?} before it could join Auto Scaling group {}",
                            i.state,
                            group.group_name()
                        ),
                    });
                }
                _ if Instant::now() >= deadline => {
                    return Err(ProviderError::Transient {
                        message: format!(
                            "instance {id} is not running after {RUNNING_WAIT:?}; it joins \
                             Auto Scaling group {} once it runs",
                            group.group_name()
                        ),
                    });
                }
                _ => tokio::time::sleep(RUNNING_POLL).await,
            }
        }
        group.attach(&id.0).await
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
    pub(crate) async fn allowed_subnets(
        &self,
    ) -> Result<Option<&BTreeMap<String, String>>, ProviderError> {
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

    /// What the pool's launch template version defines (`None` when EC2
    /// shows no such version), asked of EC2 once.
    async fn template_data(&self) -> Result<Option<&ResponseLaunchTemplateData>, ProviderError> {
        let data = self
            .template_data
            .get_or_try_init(|| async {
                // The template a slot launches from: the pool's, or its
                // group's.
                let spec = self.template_spec().await?;
                let call = self
                    .ec2()
                    .await
                    .describe_launch_template_versions()
                    .set_versions(spec.version().map(|v| vec![v.to_string()]))
                    .set_launch_template_id(spec.launch_template_id().map(str::to_string))
                    .set_launch_template_name(spec.launch_template_name().map(str::to_string));
                let out = call
                    .send()
                    .await
                    .map_err(|e| from_sdk(Call::DescribeLaunchTemplateVersions, &e, None))?;
                Ok::<_, ProviderError>(
                    out.launch_template_versions()
                        .first()
                        .and_then(|v| v.launch_template_data())
                        .cloned(),
                )
            })
            .await?;
        Ok(data.as_ref())
    }

    /// The network interfaces of the pool's launch template version (empty
    /// when it defines none).
    async fn template_interfaces(
        &self,
    ) -> Result<&[LaunchTemplateInstanceNetworkInterfaceSpecification], ProviderError> {
        Ok(self
            .template_data()
            .await?
            .map(|data| data.network_interfaces())
            .unwrap_or_default())
    }

    /// The instance type the pool's launch template version launches.
    pub(crate) async fn template_instance_type(&self) -> Result<Option<String>, ProviderError> {
        Ok(self
            .template_data()
            .await?
            .and_then(|data| data.instance_type())
            .map(|t| t.as_str().to_string()))
    }

    /// The launch already made for this slot, if any.
    async fn instance_of_slot(
        &self,
        request: &LaunchRequest,
    ) -> Result<Option<Instance>, ProviderError> {
        // Should two exist (a launch elsewhere that ignored the token), the
        // earliest is the slot's; the caller's accounting sees the other.
        Ok(self
            .instances_of_slot(request, Some(live_states()))
            .await?
            .into_iter()
            .next())
    }

    /// The instances tagged for `request`'s slot (in `states`, else in any
    /// state), earliest launched first.
    async fn instances_of_slot(
        &self,
        request: &LaunchRequest,
        states: Option<Filter>,
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut filters = vec![
            tag_filter(tags::CLUSTER, &request.pool.cluster),
            tag_filter(tags::SLOT, &request.slot.tag_value()),
        ];
        filters.extend(states);
        let mut found = self.describe(filters).await?;
        found.sort_by(|a, b| (a.launched_at, &a.id).cmp(&(b.launched_at, &b.id)));
        Ok(found)
    }

    /// The instance an earlier launch made for `request`'s slot, when EC2
    /// refused the slot's token as used: a live one is the slot's; one
    /// terminated or going away means the key is spent (`None`). Seeing
    /// none at all, it looks again until the visibility window has passed
    /// (EC2 may not show a launch moments old).
    async fn earlier_instance_of_slot(
        &self,
        request: &LaunchRequest,
    ) -> Result<Option<Instance>, ProviderError> {
        let deadline = Instant::now() + self.options.visibility_window;
        loop {
            let found = self.instances_of_slot(request, None).await?;
            if let Some(live) = found.iter().find(|i| !i.state.is_going_away()) {
                return Ok(Some(live.clone()));
            }
            if !found.is_empty() || Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(RUNNING_POLL).await;
        }
    }

    /// Take `existing`, launched for `request`'s slot by an earlier
    /// (perhaps crashed) invocation, as the launch's instance.
    async fn adopt(
        &self,
        request: &LaunchRequest,
        existing: Instance,
    ) -> Result<Instance, ProviderError> {
        tracing::info!(
            instance = %existing.id,
            slot = %request.slot.tag_value(),
            "adopting the instance already launched for this slot"
        );
        if let Some(group) = self.group().await {
            self.attach_when_running(group, &existing.id).await?;
        }
        Ok(existing)
    }

    /// The RunInstances call of `request` in `subnet`, ready to send (or
    /// to send as a dry run).
    async fn run_instances_call(
        &self,
        client: &Client,
        request: &LaunchRequest,
        subnet: Option<String>,
    ) -> Result<RunInstancesFluentBuilder, ProviderError> {
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
        let template = self.template_spec().await?;
        let mut call = client
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
        call = match subnet {
            Some(subnet) => {
                let template_nics = self.template_interfaces().await?;
                if template_nics.is_empty() {
                    call.subnet_id(subnet)
                } else {
                    // The template's own interfaces: the subnet goes into
                    // an override of them (see `interfaces_in_subnet`).
                    let nics = convert::interfaces_in_subnet(template_nics, &subnet)
                        .map_err(|message| ProviderError::InvalidConfig { message })?;
                    call.set_network_interfaces(Some(nics))
                }
            }
            None => call.placement(
                Placement::builder()
                    .availability_zone(&request.zone)
                    .build(),
            ),
        };
        Ok(call)
    }

    async fn run_instance(
        &self,
        request: &LaunchRequest,
        subnet: Option<String>,
    ) -> Result<Instance, ProviderError> {
        let wanted = request.tags();
        let out = self
            .run_instances_call(self.ec2().await, request, subnet)
            .await?
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
            return self.adopt(request, existing).await;
        }
        self.update_group_template(&request.image).await?;
        let allowed = self.allowed_subnets().await?;
        let subnet = convert::choose_subnet(request.subnet.as_deref(), &request.zone, allowed)
            .map_err(|message| ProviderError::InvalidConfig { message })?;
        let instance = match self.run_instance(request, subnet).await {
            // The same launch again (same token, same parameters): EC2
            // answers with the earlier launch's instance as it is now.
            Ok(instance) if instance.state.is_going_away() => {
                return Err(ProviderError::LaunchKeySpent {
                    message: format!(
                        "ec2:RunInstances answered with instance {}, launched earlier for slot {} \
                         and now {:?}",
                        instance.id,
                        request.slot.tag_value(),
                        instance.state
                    ),
                });
            }
            Ok(instance) => instance,
            // The token was used by an earlier launch of the slot with other
            // parameters (a rerun renders new user data). Its instance is
            // adopted if it lives — EC2 may not show it yet right after a
            // crash — else the key is spent.
            Err(ProviderError::LaunchKeySpent { message }) => {
                return match self.earlier_instance_of_slot(request).await? {
                    Some(existing) => self.adopt(request, existing).await,
                    None => Err(ProviderError::LaunchKeySpent {
                        message: format!(
                            "{message} (no live instance is tagged {}={})",
                            tags::SLOT,
                            request.slot.tag_value()
                        ),
                    }),
                };
            }
            Err(e) => return Err(e),
        };
        tracing::info!(
            instance = %instance.id,
            zone = %instance.zone,
            subnet = instance.subnet.as_deref().unwrap_or(""),
            slot = %request.slot.tag_value(),
            "launched"
        );
        self.remember_launch(&instance);
        if let Some(group) = self.group().await {
            self.attach_when_running(group, &instance.id).await?;
        }
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

    /// One paged `DescribeInstances` per 200 ids, by the `instance-id`
    /// filter rather than `InstanceIds`: a filter answers without the ids
    /// EC2 no longer knows, where `InstanceIds` fails the whole call
    /// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html:
    /// "If you specify an instance ID that is not valid, an error is
    /// returned"). An id not visible yet that this process launched moments
    /// ago is answered as pending, as `get` answers it.
    async fn get_many(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, ProviderError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_FILTER) {
            let values: Vec<&str> = chunk.iter().map(|id| id.0.as_str()).collect();
            found.extend(
                self.describe(vec![filter("instance-id", &values), live_states()])
                    .await?
                    .into_iter()
                    .filter(|i| i.state != InstanceState::Terminated),
            );
        }
        let missing: Vec<Instance> = ids
            .iter()
            .filter(|id| !found.iter().any(|i| i.id == **id))
            .filter_map(|id| self.recently_launched(id))
            .collect();
        found.extend(missing);
        Ok(found)
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
        if let Some(group) = self.group().await {
            match group.membership(&id.0).await? {
                Some(m) if m.group == group.group_name() => {
                    if !m.is_terminating() {
                        group.terminate_member(&id.0).await?;
                    }
                    return Ok(DeleteStatus::InProgress);
                }
                // Not (or no longer) a member: terminated as a plain
                // instance, the group's size unchanged.
                _ => {}
            }
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

    async fn prepare_pool(
        &self,
        _pool: &PoolRef,
        surge: u32,
        run_id: &str,
    ) -> Result<(), ProviderError> {
        match self.group().await {
            Some(group) => group.prepare(run_id, surge).await,
            None => Ok(()),
        }
    }

    async fn restore_pool(&self, _pool: &PoolRef) -> Result<(), ProviderError> {
        match self.group().await {
            Some(group) => group.restore().await,
            None => Ok(()),
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

    async fn check_room(&self, probe: &RoomProbe) -> Vec<RoomFinding> {
        crate::check::room(self, probe).await
    }

    /// EC2 `DryRun=true` calls: each answers `DryRunOperation` (412) when
    /// the call would have succeeded and `UnauthorizedOperation` (403) when
    /// the credentials may not make it, changing nothing
    /// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/CommonErrors.html).
    /// Only calls a run makes, as it makes them: the tags go on inside
    /// `RunInstances` (its dry run is also authorized for `ec2:CreateTags`
    /// with `ec2:CreateAction = RunInstances`:
    /// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html),
    /// never by a `CreateTags` of their own, which the iam module refuses.
    async fn check_permissions(&self, probe: &PermissionProbe) -> Vec<PermissionCheck> {
        let client = self.ec2().await;
        let mut checks = Vec::new();
        let subnet = match self.allowed_subnets().await {
            Ok(allowed) => {
                convert::choose_subnet(probe.launch.subnet.as_deref(), &probe.launch.zone, allowed)
            }
            Err(e) => Err(e.to_string()),
        };
        let call = match subnet {
            Ok(subnet) => self
                .run_instances_call(client, &probe.launch, subnet)
                .await
                .map_err(|e| e.to_string()),
            Err(message) => Err(message),
        };
        checks.push(match call {
            Ok(call) => dry_run_answer(Call::RunInstances, call.dry_run(true).send().await),
            Err(message) => PermissionCheck {
                action: Call::RunInstances.iam_action().into(),
                asked: DRY_RUN.into(),
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
        }
        // The group's calls: the Auto Scaling API has no dry run.
        if let Some(group) = self.group().await
            && let Ok(described) = group.describe().await
        {
            match &described.arn {
                Some(arn) => checks.extend(
                    crate::simulate::group_permissions(
                        self.sdk_config().await,
                        group.group_name(),
                        arn,
                        &described.state.tags,
                    )
                    .await,
                ),
                None => checks.push(PermissionCheck {
                    action: "autoscaling:*".into(),
                    asked: crate::simulate::SIMULATOR.into(),
                    outcome: PermissionOutcome::Unknown {
                        message: format!(
                            "Auto Scaling shows no ARN for group {}",
                            group.group_name()
                        ),
                    },
                }),
            }
        }
        checks
    }
}
