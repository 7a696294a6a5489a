//! Pools whose instances are members of an Auto Scaling group
//! (`aws.autoScalingGroup`): the group's calls the provider makes, and the
//! run's bookkeeping on the group ([`record`]).
//!
//! A slot launches its replacement itself (as for plain instances) and
//! attaches it to the group; the old instance leaves through
//! `TerminateInstanceInAutoScalingGroup` with
//! `ShouldDecrementDesiredCapacity=true`, so the group's desired capacity
//! ends where it started and the group launches nothing of its own.

pub mod record;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::Tag;
use kubesurge_provider::ProviderError;

use crate::errors::{Call, from_sdk};
use record::{GroupState, Refusal, Step};

/// The launch template a group launches from, as the group names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupTemplate {
    pub id: Option<String>,
    pub name: Option<String>,
    /// `$Default`, `$Latest` or a number.
    pub version: String,
}

/// A group as described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub state: GroupState,
    /// `AutoScalingGroupARN`: what a policy names the group by.
    pub arn: Option<String>,
    /// `None` for a group with a launch configuration or a mixed instances
    /// policy (whose templates are left as they are).
    pub template: Option<GroupTemplate>,
    /// The members' instance ids.
    pub members: BTreeSet<String>,
}

/// Which group an instance is a member of, and in what lifecycle state
/// (`InService`, `Pending`, `Terminating`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub group: String,
    pub lifecycle_state: String,
}

impl Membership {
    /// True once the group is terminating the instance.
    pub fn is_terminating(&self) -> bool {
        self.lifecycle_state.starts_with("Terminating")
    }
}

/// The Auto Scaling calls for one group.
pub struct AutoScaling {
    client: Client,
    group: String,
}

fn refused(group: &str, refusal: Refusal) -> ProviderError {
    match refusal {
        Refusal::BadRecord(why) => ProviderError::InvalidConfig {
            message: format!(
                "Auto Scaling group {group}: the record of a run in its tags is unreadable \
                 ({why}); fix or delete the kubesurge.io/ tags of the group"
            ),
        },
        Refusal::OtherRun(run) => ProviderError::InvalidConfig {
            message: format!("Auto Scaling group {group} still carries run {run}'s changes"),
        },
        Refusal::AboveOriginalMax {
            desired,
            original_max,
        } => ProviderError::InvalidConfig {
            message: format!(
                "Auto Scaling group {group} wants {desired} instances, more than its MaxSize \
                 of {original_max} before the run: its raised MaxSize stays (recorded in its \
                 tags) until a rerun or `kubesurge gc` finds it at most {original_max}"
            ),
        },
    }
}

impl AutoScaling {
    pub fn new(client: Client, group: &str) -> AutoScaling {
        AutoScaling {
            client,
            group: group.to_string(),
        }
    }

    pub fn group_name(&self) -> &str {
        &self.group
    }

    /// The group now; `InvalidConfig` when there is no such group.
    pub async fn describe(&self) -> Result<Group, ProviderError> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .map_err(|e| from_sdk(Call::DescribeAutoScalingGroups, &e, None))?;
        let group = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(self.group.as_str()))
            .ok_or_else(|| ProviderError::InvalidConfig {
                message: format!("there is no Auto Scaling group {}", self.group),
            })?;
        let template = group.launch_template().map(|t| GroupTemplate {
            id: t.launch_template_id().map(str::to_string),
            name: t.launch_template_name().map(str::to_string),
            // "If the value is not specified, Amazon EC2 Auto Scaling uses
            // the default version" (LaunchTemplateSpecification.Version).
            version: t.version().unwrap_or("$Default").to_string(),
        });
        Ok(Group {
            state: GroupState {
                name: self.group.clone(),
                min_size: group.min_size().unwrap_or_default(),
                max_size: group.max_size().unwrap_or_default(),
                desired: group.desired_capacity().unwrap_or_default(),
                suspended: group
                    .suspended_processes()
                    .iter()
                    .filter_map(|p| p.process_name().map(str::to_string))
                    .collect(),
                tags: group
                    .tags()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_string(),
                            t.value().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect(),
            },
            arn: group.auto_scaling_group_arn().map(str::to_string),
            template,
            members: group
                .instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect(),
        })
    }

    /// The group `id` is a member of, if any.
    pub async fn membership(&self, id: &str) -> Result<Option<Membership>, ProviderError> {
        let out = self
            .client
            .describe_auto_scaling_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| from_sdk(Call::DescribeAutoScalingInstances, &e, None))?;
        Ok(out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(id))
            .map(|i| Membership {
                group: i.auto_scaling_group_name().unwrap_or_default().to_string(),
                lifecycle_state: i.lifecycle_state().unwrap_or_default().to_string(),
            }))
    }

    /// Make `id` a member of the group, once: a rerun that finds it a
    /// member already attaches nothing. AttachInstances raises the
    /// group's desired capacity by one and fails when that passes its
    /// `MaxSize` (AttachInstances, Amazon EC2 Auto Scaling API Reference:
    /// "the number of instances being attached plus the desired capacity
    /// of the group" must not exceed the maximum size), which the run
    /// raised beforehand.
    pub async fn attach(&self, id: &str) -> Result<(), ProviderError> {
        match self.membership(id).await? {
            Some(m) if m.group == self.group => return Ok(()),
            Some(m) => {
                return Err(ProviderError::InvalidConfig {
                    message: format!(
                        "instance {id} is a member of Auto Scaling group {}, not of {}",
                        m.group, self.group
                    ),
                });
            }
            None => {}
        }
        self.client
            .attach_instances()
            .auto_scaling_group_name(&self.group)
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| from_sdk(Call::AttachInstances, &e, None))?;
        tracing::info!(instance = %id, group = %self.group, "attached to its Auto Scaling group");
        Ok(())
    }

    /// Terminate member `id` through the group, lowering its desired
    /// capacity by one so that it launches no replacement
    /// (TerminateInstanceInAutoScalingGroup,
    /// `ShouldDecrementDesiredCapacity=true`).
    pub async fn terminate_member(&self, id: &str) -> Result<(), ProviderError> {
        self.client
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|e| from_sdk(Call::TerminateInstanceInAutoScalingGroup, &e, None))?;
        tracing::info!(instance = %id, group = %self.group, "terminating through its Auto Scaling group");
        Ok(())
    }

    /// Get the group ready for run `run_id` launching up to `surge` above
    /// its size. A record of another run is restored first.
    pub async fn prepare(&self, run_id: &str, surge: u32) -> Result<(), ProviderError> {
        let mut group = self.describe().await?;
        if let Err(Refusal::OtherRun(other)) = record::prepare(&group.state, run_id, surge) {
            tracing::info!(group = %self.group, run = %other, "restoring what an earlier run changed");
            self.restore().await?;
            group = self.describe().await?;
        }
        let steps =
            record::prepare(&group.state, run_id, surge).map_err(|r| refused(&self.group, r))?;
        self.apply(&steps).await
    }

    /// Undo what a run recorded on the group; nothing without a record.
    pub async fn restore(&self) -> Result<(), ProviderError> {
        let group = self.describe().await?;
        let steps = record::restore(&group.state).map_err(|r| refused(&self.group, r))?;
        self.apply(&steps).await
    }

    async fn apply(&self, steps: &[Step]) -> Result<(), ProviderError> {
        for step in steps {
            tracing::info!(group = %self.group, ?step, "Auto Scaling group bookkeeping");
            match step {
                Step::Record(record) => self.put_tags(&record.tags()).await?,
                Step::SetMaxSize(max) => {
                    self.client
                        .update_auto_scaling_group()
                        .auto_scaling_group_name(&self.group)
                        .max_size(*max)
                        .send()
                        .await
                        .map_err(|e| from_sdk(Call::UpdateAutoScalingGroup, &e, None))?;
                }
                Step::Suspend(processes) => {
                    self.client
                        .suspend_processes()
                        .auto_scaling_group_name(&self.group)
                        .set_scaling_processes(Some(processes.clone()))
                        .send()
                        .await
                        .map_err(|e| from_sdk(Call::SuspendProcesses, &e, None))?;
                }
                Step::Resume(processes) => {
                    self.client
                        .resume_processes()
                        .auto_scaling_group_name(&self.group)
                        .set_scaling_processes(Some(processes.clone()))
                        .send()
                        .await
                        .map_err(|e| from_sdk(Call::ResumeProcesses, &e, None))?;
                }
                Step::DeleteRecord => {
                    let tags = record::RECORD_TAGS
                        .iter()
                        .map(|key| self.tag(key, None))
                        .collect();
                    self.client
                        .delete_tags()
                        .set_tags(Some(tags))
                        .send()
                        .await
                        .map_err(|e| from_sdk(Call::DeleteTags, &e, None))?;
                }
            }
        }
        Ok(())
    }

    async fn put_tags(&self, tags: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        let tags = tags.iter().map(|(k, v)| self.tag(k, Some(v))).collect();
        self.client
            .create_or_update_tags()
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| from_sdk(Call::CreateOrUpdateTags, &e, None))?;
        Ok(())
    }

    /// A tag on the group itself, never propagated to the instances it
    /// launches.
    fn tag(&self, key: &str, value: Option<&str>) -> Tag {
        Tag::builder()
            .resource_id(&self.group)
            .resource_type("auto-scaling-group")
            .key(key)
            .set_value(value.map(str::to_string))
            .propagate_at_launch(false)
            .build()
    }

    /// Make a template version the group's (`updateLaunchTemplate`).
    pub async fn set_template_version(
        &self,
        template_id: &str,
        version: &str,
    ) -> Result<(), ProviderError> {
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(&self.group)
            .launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_id(template_id)
                    .version(version)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk(Call::UpdateAutoScalingGroup, &e, None))?;
        Ok(())
    }
}
