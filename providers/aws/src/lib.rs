//! The `aws` provider: worker pools of EC2 instances launched from a launch
//! template, with the image chosen per Kubernetes version, and scripts run
//! on nodes through Systems Manager.
//!
//! - [`config`]: what a pool says about its launch template, images and
//!   subnets, and how the clients connect (region, endpoint, retries).
//! - [`pool_config`]: `pools[].aws` of the configuration, checked and read.
//! - [`provider_id`]: the providerID rule (`aws:///<zone>/<id>`).
//! - [`client`]: SDK clients over rustls with ring, the standard retry.
//! - [`errors`]: the one allow-list from EC2 error codes to typed errors.
//! - [`convert`]: EC2 shapes to the provider contract's types (pure).
//! - [`provider`]: [`AwsProvider`], the `CloudProvider` over EC2.
//! - [`discovery`] and [`image_rule`]: [`AwsDiscovery`], what `kubesurge
//!   init` learns of an existing fleet (instances, Auto Scaling groups,
//!   launch templates, the image rule) and its tagging.
//! - [`ssm`]: [`SsmExec`], the `NodeExec` over SSM `SendCommand`.
//! - [`check`]: room for a run's surge (subnet addresses, a group's
//!   headroom), asked for `kubesurge check`.
//! - [`asg`]: pools of Auto Scaling group members: attach, terminate in
//!   the group, and the run's bookkeeping on the group.
//!
//! Safety rules the provider keeps whatever its caller asks: it terminates
//! only instances tagged `kubesurge.io/cluster=<cluster>`, and a launch
//! first looks for an instance already tagged with the slot (EC2's
//! `ClientToken` covers a lost answer; the tag covers a crashed caller).
//! A token EC2 keeps bound to a launch whose instance is gone is reported
//! as [`kubesurge_provider::ProviderError::LaunchKeySpent`], never retried.

pub mod asg;
pub mod check;
pub mod client;
pub mod config;
pub mod convert;
pub mod discovery;
pub mod errors;
pub mod image_rule;
pub mod pool_config;
pub mod provider;
pub mod provider_id;
pub mod quota;
pub mod simulate;
pub mod ssm;

use std::sync::Arc;

use kubesurge_provider::ProviderKind;

pub use config::{AutoScalingGroupConfig, AwsPoolConfig, ClientOptions, ImageSource, TemplateRef};
pub use discovery::AwsDiscovery;
pub use pool_config::parse_pool_config;
pub use provider::AwsProvider;
pub use ssm::SsmExec;

/// The `aws` provider as the core is handed it.
pub const KIND: ProviderKind = ProviderKind {
    name: "aws",
    section_summary: pool_config::SECTION_SUMMARY,
    check_pool: |section, path| parse_pool_config(section, path).err().unwrap_or_default(),
    pool_schema: pool_config::pool_schema,
    pool_provider: |cluster, section, path| {
        let config = parse_pool_config(section, path)?;
        Ok(Arc::new(AwsProvider::new(
            cluster,
            config,
            ClientOptions::from_env(),
        )))
    },
    provider_id: provider_id::RULE,
};
