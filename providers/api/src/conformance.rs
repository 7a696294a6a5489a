//! Conformance kit: the contracts of [`crate::CloudProvider`], checked
//! against a live provider. Every provider's tests call [`run_all`].
//!
//! Each check launches what it needs into the fixture's pool (tagged with
//! the fixture's run id), asserts one contract, and deletes what it
//! launched. A violated contract comes back as a [`Violation`] naming the
//! contract and what was observed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use crate::{
    CloudProvider, DeleteStatus, Instance, InstanceId, LaunchRequest, PoolRef, ProviderError,
    Sensitive, SlotKey, tags,
};

/// Where and with what the checks launch.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// The pool the checks launch into.
    pub pool: PoolRef,
    /// Another pool of the same cluster, which `list(pool)` must not see.
    pub other_pool: String,
    pub zone: String,
    pub subnet: Option<String>,
    /// A Kubernetes version the provider has an image for (`v1.35.3`).
    pub image_version: String,
    /// An instance tagged for another cluster (and for `pool.pool`), if the
    /// provider's test can make one: it must never be deleted or listed.
    pub foreign_instance: Option<InstanceId>,
    /// The run id of every launch (make it unique per test run).
    pub run_id: String,
    /// User data of the instances launched.
    pub user_data: String,
    /// Instances the paging check launches; more than one page of the
    /// provider's listing.
    pub paging_instances: usize,
    /// How long a deletion may take to reach `Gone`.
    pub timeout: Duration,
    /// Pause between repeated `delete` calls.
    pub poll_interval: Duration,
}

impl Fixture {
    pub fn new(pool: PoolRef, zone: &str, image_version: &str) -> Fixture {
        Fixture {
            other_pool: format!("{}-other", pool.pool),
            pool,
            zone: zone.to_string(),
            subnet: None,
            image_version: image_version.to_string(),
            foreign_instance: None,
            run_id: "conformance".to_string(),
            user_data: "#!/bin/bash\ntrue\n".to_string(),
            paging_instances: 55,
            timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(50),
        }
    }
}

/// A contract the provider broke.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("contract {contract:?} violated: {message}")]
pub struct Violation {
    pub contract: &'static str,
    pub message: String,
}

fn violation(contract: &'static str, message: impl Into<String>) -> Violation {
    Violation {
        contract,
        message: message.into(),
    }
}

fn call_failed(contract: &'static str, call: &str, e: &ProviderError) -> Violation {
    violation(contract, format!("{call} failed: {e}"))
}

/// A launch request of check `check`, instance `n`, into `pool`.
fn request(fx: &Fixture, image: &str, check: &str, n: usize, pool: &str) -> LaunchRequest {
    let old_node = format!("{check}-{n}");
    LaunchRequest {
        pool: PoolRef {
            cluster: fx.pool.cluster.clone(),
            pool: pool.to_string(),
        },
        slot: SlotKey {
            run_id: fx.run_id.clone(),
            old_node: old_node.clone(),
            attempt: 0,
        },
        image: image.to_string(),
        zone: fx.zone.clone(),
        subnet: fx.subnet.clone(),
        user_data: Sensitive::new(fx.user_data.clone()),
        node_name: format!("{old_node}-new"),
        extra_tags: BTreeMap::new(),
    }
}

async fn image(
    p: &dyn CloudProvider,
    fx: &Fixture,
    contract: &'static str,
) -> Result<String, Violation> {
    p.resolve_image(&fx.pool, &fx.image_version)
        .await
        .map(|i| i.id)
        .map_err(|e| {
            call_failed(
                contract,
                &format!("resolve_image({})", fx.image_version),
                &e,
            )
        })
}

/// Call `delete` until it answers `Gone`; returns how many times it said
/// `InProgress`.
async fn delete_and_wait(
    p: &dyn CloudProvider,
    fx: &Fixture,
    id: &InstanceId,
    contract: &'static str,
) -> Result<usize, Violation> {
    let deadline = Instant::now() + fx.timeout;
    let mut in_progress = 0;
    loop {
        match p.delete(id).await {
            Ok(DeleteStatus::Gone) => return Ok(in_progress),
            Ok(DeleteStatus::InProgress) => in_progress += 1,
            Err(e) if e.is_retryable() => {}
            Err(e) => return Err(call_failed(contract, &format!("delete({id})"), &e)),
        }
        if Instant::now() >= deadline {
            return Err(violation(
                contract,
                format!("delete({id}) still InProgress after {:?}", fx.timeout),
            ));
        }
        tokio::time::sleep(fx.poll_interval).await;
    }
}

/// Best-effort removal of what a check launched: ask for every deletion
/// first, then wait for each.
async fn cleanup(
    p: &dyn CloudProvider,
    fx: &Fixture,
    ids: &[InstanceId],
    contract: &'static str,
) -> Result<(), Violation> {
    for id in ids {
        // The wait below reports failures.
        let _ = p.delete(id).await;
    }
    for id in ids {
        delete_and_wait(p, fx, id, contract).await?;
    }
    Ok(())
}

/// Launching the same slot twice gives the same instance, and only one is
/// listed for it; `get` sees it right after the launch.
pub async fn idempotent_launch(p: &dyn CloudProvider, fx: &Fixture) -> Result<(), Violation> {
    const C: &str = "launch is idempotent per slot";
    let image = image(p, fx, C).await?;
    let req = request(fx, &image, "idempotent", 0, &fx.pool.pool);
    let first = p
        .launch(&req)
        .await
        .map_err(|e| call_failed(C, "first launch", &e))?;
    let outcome = async {
        let second = p
            .launch(&req)
            .await
            .map_err(|e| call_failed(C, "second launch", &e))?;
        if second.id != first.id {
            return Err(violation(
                C,
                format!(
                    "the same slot launched twice gave {} and {}",
                    first.id, second.id
                ),
            ));
        }
        let listed = p
            .list(&fx.pool)
            .await
            .map_err(|e| call_failed(C, "list", &e))?;
        let slot = req.slot.tag_value();
        let for_slot: Vec<&Instance> = listed
            .iter()
            .filter(|i| i.tag(tags::SLOT) == Some(slot.as_str()))
            .collect();
        if for_slot.len() != 1 {
            return Err(violation(
                C,
                format!(
                    "list shows {} instances for slot {slot}, expected 1",
                    for_slot.len()
                ),
            ));
        }
        match p.get(&first.id).await {
            Ok(Some(i)) if i.id == first.id => Ok(()),
            Ok(other) => Err(violation(
                C,
                format!("get({}) right after launch gave {other:?}", first.id),
            )),
            Err(e) => Err(call_failed(C, "get", &e)),
        }
    }
    .await;
    cleanup(p, fx, std::slice::from_ref(&first.id), C).await?;
    outcome
}

/// `delete` answers `InProgress` until the instance is terminated, then
/// `Gone`, and keeps answering `Gone`; afterwards `get` is `None`,
/// `get_many` leaves it out and `list` no longer shows it.
pub async fn delete_until_gone(p: &dyn CloudProvider, fx: &Fixture) -> Result<(), Violation> {
    const C: &str = "delete until gone";
    let image = image(p, fx, C).await?;
    let req = request(fx, &image, "delete", 0, &fx.pool.pool);
    let launched = p
        .launch(&req)
        .await
        .map_err(|e| call_failed(C, "launch", &e))?;
    delete_and_wait(p, fx, &launched.id, C).await?;
    match p.delete(&launched.id).await {
        Ok(DeleteStatus::Gone) => {}
        other => {
            return Err(violation(
                C,
                format!(
                    "delete({}) after Gone answered {other:?}, expected Gone",
                    launched.id
                ),
            ));
        }
    }
    match p.get(&launched.id).await {
        Ok(None) => {}
        other => {
            return Err(violation(
                C,
                format!("get({}) after Gone gave {other:?}", launched.id),
            ));
        }
    }
    match p.get_many(std::slice::from_ref(&launched.id)).await {
        Ok(found) if found.is_empty() => {}
        other => {
            return Err(violation(
                C,
                format!("get_many([{}]) after Gone gave {other:?}", launched.id),
            ));
        }
    }
    let listed = p
        .list(&fx.pool)
        .await
        .map_err(|e| call_failed(C, "list", &e))?;
    if listed.iter().any(|i| i.id == launched.id) {
        return Err(violation(
            C,
            format!("list still shows {} after Gone", launched.id),
        ));
    }
    Ok(())
}

/// `list(pool)` returns every instance of the pool across pages, once
/// each, and nothing of another pool or another cluster; `get_many` of
/// the same ids answers each of them once.
pub async fn list_filters_and_pages(p: &dyn CloudProvider, fx: &Fixture) -> Result<(), Violation> {
    const C: &str = "list filters by cluster and pool and follows paging";
    let image = image(p, fx, C).await?;
    let mut launched = Vec::new();
    let outcome = async {
        let mut ours = BTreeSet::new();
        for n in 0..fx.paging_instances {
            let i = p
                .launch(&request(fx, &image, "paging", n, &fx.pool.pool))
                .await
                .map_err(|e| call_failed(C, &format!("launch {n}"), &e))?;
            launched.push(i.id.clone());
            ours.insert(i.id);
        }
        let other = p
            .launch(&request(fx, &image, "paging-other-pool", 0, &fx.other_pool))
            .await
            .map_err(|e| call_failed(C, "launch into the other pool", &e))?;
        launched.push(other.id.clone());

        let listed = p
            .list(&fx.pool)
            .await
            .map_err(|e| call_failed(C, "list", &e))?;
        let mut seen = BTreeSet::new();
        for i in &listed {
            if !seen.insert(i.id.clone()) {
                return Err(violation(C, format!("list returned {} twice", i.id)));
            }
            if i.tag(tags::CLUSTER) != Some(fx.pool.cluster.as_str())
                || i.tag(tags::POOL) != Some(fx.pool.pool.as_str())
            {
                return Err(violation(
                    C,
                    format!("list returned {} with tags {:?}", i.id, i.tags),
                ));
            }
            if i.state == crate::InstanceState::Terminated {
                return Err(violation(
                    C,
                    format!("list returned terminated instance {}", i.id),
                ));
            }
        }
        let missing: Vec<_> = ours.difference(&seen).collect();
        if !missing.is_empty() {
            return Err(violation(
                C,
                format!(
                    "list of {} launched instances missed {missing:?}",
                    fx.paging_instances
                ),
            ));
        }
        if seen.contains(&other.id) {
            return Err(violation(
                C,
                format!(
                    "list of pool {} returned {} of pool {}",
                    fx.pool.pool, other.id, fx.other_pool
                ),
            ));
        }
        if let Some(foreign) = &fx.foreign_instance
            && seen.contains(foreign)
        {
            return Err(violation(
                C,
                format!("list returned {foreign} of another cluster"),
            ));
        }
        // The batched read answers every id asked, across more ids than a
        // page of the listing holds, once each, and nothing else.
        let asked: Vec<InstanceId> = launched.clone();
        let described = p
            .get_many(&asked)
            .await
            .map_err(|e| call_failed(C, "get_many", &e))?;
        let described_ids: BTreeSet<InstanceId> = described.iter().map(|i| i.id.clone()).collect();
        let expected: BTreeSet<InstanceId> = asked.iter().cloned().collect();
        if described.len() != described_ids.len() || described_ids != expected {
            return Err(violation(
                C,
                format!(
                    "get_many of {} launched instances answered {} ({} distinct), missing {:?}",
                    asked.len(),
                    described.len(),
                    described_ids.len(),
                    expected.difference(&described_ids).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(())
    }
    .await;
    cleanup(p, fx, &launched, C).await?;
    outcome
}

/// A launched instance carries the cluster, pool, run, slot, replaces and
/// Name tags (and the extra tags asked for), in the launch answer and in
/// `get`.
pub async fn tags_present(p: &dyn CloudProvider, fx: &Fixture) -> Result<(), Violation> {
    const C: &str = "launched instances carry the kubesurge tags";
    let image = image(p, fx, C).await?;
    let mut req = request(fx, &image, "tags", 0, &fx.pool.pool);
    req.extra_tags
        .insert("kubesurge.io/conformance".into(), "extra".into());
    let launched = p
        .launch(&req)
        .await
        .map_err(|e| call_failed(C, "launch", &e))?;
    // The request's tag set: the derived tags and the extra one.
    let expected = req.tags();
    let check = |source: &str, i: &Instance| -> Result<(), Violation> {
        for (key, value) in &expected {
            if i.tag(key) != Some(value.as_str()) {
                return Err(violation(
                    C,
                    format!(
                        "{source}: tag {key} is {:?}, expected {value:?}",
                        i.tag(key)
                    ),
                ));
            }
        }
        if i.zone != fx.zone {
            return Err(violation(
                C,
                format!("{source}: zone {}, expected {}", i.zone, fx.zone),
            ));
        }
        Ok(())
    };
    let outcome = async {
        check("launch", &launched)?;
        match p.get(&launched.id).await {
            Ok(Some(i)) => check("get", &i),
            Ok(None) => Err(violation(
                C,
                format!("get({}) gave None right after launch", launched.id),
            )),
            Err(e) => Err(call_failed(C, "get", &e)),
        }
    }
    .await;
    cleanup(p, fx, std::slice::from_ref(&launched.id), C).await?;
    outcome
}

/// An instance of another cluster is never terminated: `delete` fails with
/// `InvalidConfig` and the instance keeps running. Skipped when the fixture
/// has no foreign instance.
pub async fn foreign_instance_never_deleted(
    p: &dyn CloudProvider,
    fx: &Fixture,
) -> Result<(), Violation> {
    const C: &str = "instances of other clusters are never deleted";
    let Some(foreign) = &fx.foreign_instance else {
        return Ok(());
    };
    match p.delete(foreign).await {
        Err(ProviderError::InvalidConfig { .. }) => {}
        other => {
            return Err(violation(
                C,
                format!("delete({foreign}) answered {other:?}, expected an InvalidConfig error"),
            ));
        }
    }
    match p.get(foreign).await {
        Ok(Some(i)) if !i.state.is_going_away() => Ok(()),
        other => Err(violation(
            C,
            format!("after the refused delete, get({foreign}) gave {other:?}"),
        )),
    }
}

/// `resolve_image` finds the fixture's version and answers `NotFound` for
/// a version nobody built.
pub async fn resolve_image_not_found(p: &dyn CloudProvider, fx: &Fixture) -> Result<(), Violation> {
    const C: &str = "resolve_image fails with NotFound for an unknown version";
    let found = image(p, fx, C).await?;
    if found.is_empty() {
        return Err(violation(
            C,
            format!("resolve_image({}) gave an empty id", fx.image_version),
        ));
    }
    match p.resolve_image(&fx.pool, "v1.999.0").await {
        Err(ProviderError::NotFound { .. }) => Ok(()),
        other => Err(violation(
            C,
            format!("resolve_image(v1.999.0) gave {other:?}"),
        )),
    }
}

/// Every check, in order; all the violations found.
pub async fn run_all(p: &dyn CloudProvider, fx: &Fixture) -> Result<(), Vec<Violation>> {
    let results = [
        resolve_image_not_found(p, fx).await,
        idempotent_launch(p, fx).await,
        tags_present(p, fx).await,
        delete_until_gone(p, fx).await,
        list_filters_and_pages(p, fx).await,
        foreign_instance_never_deleted(p, fx).await,
    ];
    let violations: Vec<Violation> = results.into_iter().filter_map(Result::err).collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}
