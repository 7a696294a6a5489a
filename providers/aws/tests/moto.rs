//! The `aws` provider against moto (EC2 emulator, server mode), through a
//! fault proxy that counts calls and injects EC2 errors.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kubesurge_aws::{AwsProvider, ClientOptions, ImageSource};
use kubesurge_provider::conformance::{Fixture, run_all};
use kubesurge_provider::{
    CloudProvider, DeleteStatus, InstanceId, InstanceState, LaunchRequest, NodeRef, PoolRef,
    ProviderError, Sensitive, SlotKey, tags,
};
use kubesurge_testworld::moto::ec2::Params;
use kubesurge_testworld::moto::{Canned, Ec2Fault, Fault};
use support::{Env, OLD_VERSION, VERSION, env};

const CLUSTER: &str = "prod";
const POOL: &str = "general";

fn pool() -> PoolRef {
    PoolRef {
        cluster: CLUSTER.into(),
        pool: POOL.into(),
    }
}

fn request(e: &Env, old_node: &str, zone: &str, subnet: Option<String>) -> LaunchRequest {
    LaunchRequest {
        pool: pool(),
        slot: SlotKey {
            run_id: "run-1".into(),
            old_node: old_node.into(),
            attempt: 1,
        },
        image: e.images[VERSION].clone(),
        zone: zone.into(),
        subnet,
        user_data: Sensitive::new(format!(
            "#!/bin/bash\n# replaces {old_node}\necho 'token: abcdef.0123456789abcdef' > /tmp/x\n"
        )),
        node_name: format!("{POOL}-{old_node}-new"),
        extra_tags: BTreeMap::from([("team".to_string(), "platform".to_string())]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_kit_passes_on_moto() {
    let e = env().await;
    let zone = e.zones[0].clone();
    let foreign = e
        .seed_instances(
            &zone,
            1,
            &[(tags::CLUSTER, "someone-else"), (tags::POOL, POOL)],
        )
        .await
        .remove(0);
    let mut fx = Fixture::new(pool(), &zone, VERSION);
    fx.subnet = Some(e.subnet(&zone));
    fx.foreign_instance = Some(InstanceId(foreign.id.clone()));
    fx.run_id = "conformance-aws".into();
    fx.timeout = Duration::from_secs(30);
    fx.poll_interval = Duration::from_millis(20);
    // Small pages, so the kit's 55 instances span many of them.
    let provider = AwsProvider::new(
        CLUSTER,
        e.pool_config(),
        ClientOptions {
            page_size: 5,
            ..e.options()
        },
    );
    if let Err(violations) = run_all(&provider, &fx).await {
        panic!("violations: {violations:#?}");
    }
    let still = e.ec2.instance(&foreign.id).await.unwrap().unwrap();
    assert_eq!(still.state, "running");
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_goes_to_the_old_nodes_subnet_with_imdsv2_tags_and_user_data() {
    let e = env().await;
    let zone = e.zones[1].clone();
    let p = e.provider(CLUSTER);
    let req = request(&e, "node-1", &zone, Some(e.subnet(&zone)));
    let launched = p.launch(&req).await.expect("launch");
    assert_eq!(launched.zone, zone);
    assert_eq!(launched.subnet.as_deref(), Some(e.subnet(&zone).as_str()));
    assert_eq!(
        launched.provider_id,
        format!("aws:///{zone}/{}", launched.id)
    );

    let seen = e
        .ec2
        .instance(&launched.id.0)
        .await
        .unwrap()
        .expect("in moto");
    assert_eq!(seen.subnet.as_deref(), Some(e.subnet(&zone).as_str()));
    assert_eq!(seen.http_tokens.as_deref(), Some("required"), "IMDSv2 only");
    assert_eq!(
        seen.hop_limit.as_deref(),
        Some("1"),
        "no pod reaches the metadata service"
    );
    assert_eq!(seen.image_id.as_deref(), Some(e.images[VERSION].as_str()));
    for (k, v) in [
        (tags::CLUSTER, CLUSTER),
        (tags::POOL, POOL),
        (tags::RUN, "run-1"),
        (tags::SLOT, "run-1.node-1.1"),
        (tags::REPLACES, "node-1"),
        (tags::NAME, "general-node-1-new"),
        ("team", "platform"),
    ] {
        assert_eq!(seen.tag(k), Some(v), "instance tag {k}");
    }
    assert_eq!(
        seen.tag("aws:ec2launchtemplate:id"),
        Some(e.template_id.as_str()),
        "launched from the pool's template"
    );
    // User data arrives exactly as rendered (the SDK does not encode it).
    let user_data = e.ec2.user_data(&launched.id.0).await.unwrap();
    assert_eq!(user_data.as_deref(), Some(req.user_data.expose().as_str()));
    // The root volume carries the tags too.
    let volumes = e
        .ec2
        .call(
            "DescribeVolumes",
            Params::new().filters(&[("attachment.instance-id", vec![launched.id.0.clone()])]),
        )
        .await
        .unwrap();
    let volume = volumes.items("volumeSet");
    assert_eq!(volume.len(), 1);
    let volume_tags: BTreeMap<&str, &str> = volume[0]
        .items("tagSet")
        .into_iter()
        .filter_map(|t| Some((t.text_at("key")?, t.text_at("value")?)))
        .collect();
    assert_eq!(volume_tags.get(tags::CLUSTER), Some(&CLUSTER));
    assert_eq!(volume_tags.get(tags::SLOT), Some(&"run-1.node-1.1"));
    // A 64-character idempotency token went with the launch.
    let reservation = e
        .ec2
        .call(
            "DescribeInstances",
            Params::new().set("InstanceId.1", launched.id.0.clone()),
        )
        .await
        .unwrap();
    let token = reservation.items("reservationSet")[0].items("instancesSet")[0]
        .text_at("clientToken")
        .unwrap_or_default()
        .to_string();
    assert_eq!(token.len(), 64, "client token {token:?}");
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_placement_follows_the_zone_and_the_pools_subnets() {
    let e = env().await;
    let (a, b, c) = (e.zones[0].clone(), e.zones[1].clone(), e.zones[2].clone());
    // Without a known subnet, the zone decides.
    let p = e.provider(CLUSTER);
    let i = p.launch(&request(&e, "n1", &c, None)).await.unwrap();
    assert_eq!(i.zone, c);
    assert_eq!(i.subnet.as_deref(), Some(e.subnet(&c).as_str()));

    // A pool restricted to subnets of zones a and c.
    let mut config = e.pool_config();
    config.subnets = Some(vec![e.subnet(&a), e.subnet(&c)]);
    let restricted = AwsProvider::new(CLUSTER, config, e.options());
    let i = restricted
        .launch(&request(&e, "n2", &a, Some(e.subnet(&a))))
        .await
        .unwrap();
    assert_eq!(i.subnet.as_deref(), Some(e.subnet(&a).as_str()));
    let before = e.proxy.count("RunInstances");
    let refused = restricted
        .launch(&request(&e, "n3", &b, Some(e.subnet(&b))))
        .await;
    assert!(
        matches!(&refused, Err(ProviderError::InvalidConfig { message }) if message.contains(&b)),
        "{refused:?}"
    );
    assert_eq!(
        e.proxy.count("RunInstances"),
        before,
        "nothing launched elsewhere"
    );
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaunch_of_the_slot_adopts_even_from_a_fresh_process() {
    let e = env().await;
    let zone = e.zones[0].clone();
    let req = request(&e, "node-7", &zone, Some(e.subnet(&zone)));
    let first = e.provider(CLUSTER).launch(&req).await.unwrap();
    // A new process (the rerun after a crash) has no memory of the launch:
    // the slot tag finds it before any RunInstances.
    let second = e.provider(CLUSTER).launch(&req).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(e.proxy.succeeded("RunInstances"), 1);
    let in_moto = e
        .ec2
        .describe_instances(&[("tag:kubesurge.io/slot", vec![req.slot.tag_value()])])
        .await
        .unwrap();
    assert_eq!(in_moto.len(), 1);
    // Another attempt number is another slot.
    let mut next = req.clone();
    next.slot.attempt = 2;
    let third = e.provider(CLUSTER).launch(&next).await.unwrap();
    assert_ne!(third.id, first.id);
    e.finish();
}

/// The user data of a rerun's launch: a new bootstrap token.
fn with_new_token(req: &LaunchRequest) -> LaunchRequest {
    let mut rerun = req.clone();
    rerun.user_data = Sensitive::new(format!(
        "{}\n# a rerun's new token\n",
        req.user_data.expose()
    ));
    rerun
}

fn refused_launches(e: &Env) -> usize {
    e.proxy
        .calls()
        .iter()
        .filter(|c| c.action == "RunInstances" && c.status == 400)
        .count()
}

/// Right after a crash EC2 may not show the crashed launch's instance
/// yet; the rerun's launch of the same attempt (new user data, same
/// ClientToken) is refused with `IdempotentParameterMismatch`, and the
/// provider then finds and adopts that instance instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_refused_as_a_changed_repeat_adopts_the_earlier_instance() {
    let e = env().await;
    let zone = e.zones[0].clone();
    let req = request(&e, "node-8", &zone, Some(e.subnet(&zone)));
    let first = e.provider(CLUSTER).launch(&req).await.unwrap();
    // The slot's lookup before the launch does not see it yet.
    e.proxy.inject_matching(
        "DescribeInstances",
        &req.slot.tag_value(),
        1,
        Fault::Respond(Canned::no_instances()),
    );
    let adopted = e
        .provider(CLUSTER)
        .launch(&with_new_token(&req))
        .await
        .unwrap();
    assert_eq!(adopted.id, first.id);
    assert_eq!(refused_launches(&e), 1, "the repeat met the bound token");
    assert_eq!(
        e.proxy.succeeded("RunInstances"),
        1,
        "nothing launched twice"
    );
    e.finish();
}

/// Once the attempt's instance is gone, its key is spent whatever the
/// rerun sends: EC2 answers a changed repeat with the mismatch and an
/// unchanged one with the gone instance. Typed, so the slot moves to the
/// next attempt instead of retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_of_an_attempt_whose_instance_is_gone_is_spent() {
    let e = env().await;
    let zone = e.zones[0].clone();
    let req = request(&e, "node-9", &zone, Some(e.subnet(&zone)));
    let first = e.provider(CLUSTER).launch(&req).await.unwrap();
    e.ec2
        .terminate(std::slice::from_ref(&first.id.0))
        .await
        .unwrap();
    let p = e.provider(CLUSTER);
    for again in [with_new_token(&req), req.clone()] {
        match p.launch(&again).await {
            Err(ProviderError::LaunchKeySpent { message }) => {
                assert!(message.contains(&req.slot.tag_value()), "{message}")
            }
            other => panic!("expected a spent key, got {other:?}"),
        }
    }
    assert_eq!(refused_launches(&e), 1, "the changed repeat");
    assert_eq!(
        e.proxy.succeeded("RunInstances"),
        2,
        "the first and the replay"
    );
    let live = e
        .ec2
        .describe_instances(&[("tag:kubesurge.io/slot", vec![req.slot.tag_value()])])
        .await
        .unwrap();
    assert!(live.iter().all(|i| i.state == "terminated"), "{live:?}");
    // The next attempt is another key.
    let mut next = with_new_token(&req);
    next.slot.attempt = 2;
    let second = p.launch(&next).await.unwrap();
    assert_ne!(second.id, first.id);
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_by_lookup_or_explicit_id_and_none_is_not_found_before_any_launch() {
    let e = env().await;
    let p = e.provider(CLUSTER);
    let found = p.resolve_image(&pool(), "1.35.3").await.unwrap();
    assert_eq!(found.id, e.images[VERSION]);
    assert!(found.created.is_some());
    let old = p.resolve_image(&pool(), OLD_VERSION).await.unwrap();
    assert_eq!(old.id, e.images[OLD_VERSION]);
    let missing = p.resolve_image(&pool(), "v1.36.0").await;
    assert!(
        matches!(&missing, Err(ProviderError::NotFound { what }) if what.contains("v1.36.0")),
        "{missing:?}"
    );

    // An explicit image id overrides the lookup, for every version.
    let mut config = e.pool_config();
    config.image = ImageSource::Id(e.images[OLD_VERSION].clone());
    let fixed = AwsProvider::new(CLUSTER, config.clone(), e.options());
    assert_eq!(
        fixed.resolve_image(&pool(), "v1.36.0").await.unwrap().id,
        e.images[OLD_VERSION]
    );
    config.image = ImageSource::Id("ami-0123456789abcdef0".into());
    let gone = AwsProvider::new(CLUSTER, config, e.options());
    assert!(matches!(
        gone.resolve_image(&pool(), VERSION).await,
        Err(ProviderError::NotFound { .. })
    ));
    assert_eq!(e.proxy.count("RunInstances"), 0);
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_bursts_and_server_errors_are_ridden_through() {
    let e = env().await;
    let zone = e.zones[0].clone();
    let p = e.provider(CLUSTER);
    e.proxy.inject(
        "DescribeInstances",
        3,
        Fault::Fail(Ec2Fault::request_limit_exceeded()),
    );
    e.proxy.inject(
        "RunInstances",
        2,
        Fault::Fail(Ec2Fault::request_limit_exceeded()),
    );
    e.proxy
        .inject("RunInstances", 1, Fault::Fail(Ec2Fault::internal_error()));
    e.proxy
        .inject("RunInstances", 1, Fault::Fail(Ec2Fault::plain_500()));
    let launched = p
        .launch(&request(&e, "n1", &zone, Some(e.subnet(&zone))))
        .await
        .expect("the SDK retries ride through the burst");
    assert_eq!(e.proxy.succeeded("RunInstances"), 1);
    assert_eq!(
        e.proxy.calls().iter().filter(|c| c.injected).count(),
        7,
        "every injected error was met"
    );
    // Latency alone changes nothing.
    e.proxy.inject(
        "DescribeInstances",
        1,
        Fault::Delay(Duration::from_millis(300)),
    );
    assert_eq!(p.get(&launched.id).await.unwrap().unwrap().id, launched.id);

    // Beyond the SDK's attempts, throttling comes back typed.
    e.proxy.reset_calls();
    e.proxy.inject(
        "DescribeInstances",
        10,
        Fault::Fail(Ec2Fault::request_limit_exceeded()),
    );
    let listed = p.list(&pool()).await;
    assert!(
        matches!(&listed, Err(ProviderError::Throttled { message }) if message.contains("RequestLimitExceeded")),
        "{listed:?}"
    );
    assert!(listed.unwrap_err().is_retryable());
    assert_eq!(e.proxy.count("DescribeInstances"), 5, "max_attempts");
    e.proxy.clear();
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_in_a_zone_fails_that_launch_and_launches_nowhere_else() {
    let e = env().await;
    let full = e.zones[1].clone();
    let fine = e.zones[0].clone();
    let p = e.provider(CLUSTER);
    e.proxy.inject_matching(
        "RunInstances",
        &e.subnet(&full),
        usize::MAX,
        Fault::Fail(Ec2Fault::insufficient_capacity()),
    );
    let refused = p
        .launch(&request(&e, "n1", &full, Some(e.subnet(&full))))
        .await;
    match &refused {
        Err(ProviderError::InsufficientCapacity { zone, message }) => {
            assert_eq!(zone, &full);
            assert!(
                message.contains("InsufficientInstanceCapacity"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!refused.unwrap_err().is_retryable());
    assert_eq!(e.proxy.succeeded("RunInstances"), 0, "no launch anywhere");
    let all = e.ec2.describe_instances(&[]).await.unwrap();
    assert!(all.is_empty(), "{all:?}");
    // Other zones are not affected.
    p.launch(&request(&e, "n2", &fine, Some(e.subnet(&fine))))
        .await
        .expect("another zone has room");
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_typed_with_the_action_and_not_retried() {
    let e = env().await;
    let zone = e.zones[0].clone();
    let p = e.provider(CLUSTER);
    let launched = p
        .launch(&request(&e, "n1", &zone, Some(e.subnet(&zone))))
        .await
        .unwrap();
    e.proxy.inject(
        "TerminateInstances",
        1,
        Fault::Fail(Ec2Fault::unauthorized()),
    );
    match p.delete(&launched.id).await {
        Err(ProviderError::Unauthorized { action, message }) => {
            assert_eq!(action, "ec2:TerminateInstances");
            assert!(message.contains("UnauthorizedOperation"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.proxy.count("TerminateInstances"), 1, "not retried");
    e.proxy
        .inject("RunInstances", 1, Fault::Fail(Ec2Fault::unauthorized()));
    match p.launch(&request(&e, "n2", &zone, None)).await {
        Err(ProviderError::Unauthorized { action, .. }) => assert_eq!(action, "ec2:RunInstances"),
        other => panic!("{other:?}"),
    }
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_other_clusters_or_untagged_are_never_terminated() {
    let e = env().await;
    let zone = e.zones[0].clone();
    let foreign = e
        .seed_instances(&zone, 1, &[(tags::CLUSTER, "staging"), (tags::POOL, POOL)])
        .await
        .remove(0);
    let untagged = e
        .seed_instances(&zone, 1, &[("Name", "bastion")])
        .await
        .remove(0);
    let p = e.provider(CLUSTER);
    for victim in [&foreign, &untagged] {
        let answer = p.delete(&InstanceId(victim.id.clone())).await;
        assert!(
            matches!(&answer, Err(ProviderError::InvalidConfig { message }) if message.contains(CLUSTER)),
            "{answer:?}"
        );
        let still = e.ec2.instance(&victim.id).await.unwrap().unwrap();
        assert_eq!(still.state, "running");
    }
    assert_eq!(e.proxy.count("TerminateInstances"), 0, "never even asked");
    assert!(p.list(&pool()).await.unwrap().is_empty());
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_right_after_launch_is_pending_and_later_gone() {
    let e = env().await;
    let zone = e.zones[0].clone();
    let p = e.provider(CLUSTER);
    let launched = p
        .launch(&request(&e, "n1", &zone, Some(e.subnet(&zone))))
        .await
        .unwrap();
    let not_found = || {
        Fault::Fail(Ec2Fault {
            status: 400,
            code: "InvalidInstanceID.NotFound".into(),
            message: format!("The instance ID '{}' does not exist", launched.id),
        })
    };
    e.proxy.inject("DescribeInstances", 2, not_found());
    let seen = p.get(&launched.id).await.unwrap().expect("still there");
    assert_eq!(seen.state, InstanceState::Pending);
    assert_eq!(
        p.delete(&launched.id).await.unwrap(),
        DeleteStatus::InProgress
    );
    assert_eq!(e.proxy.count("TerminateInstances"), 0);
    // A process that did not launch it (or a launch long ago): gone.
    let stranger = AwsProvider::new(
        CLUSTER,
        e.pool_config(),
        ClientOptions {
            visibility_window: Duration::ZERO,
            ..e.options()
        },
    );
    e.proxy.inject("DescribeInstances", 2, not_found());
    assert_eq!(stranger.get(&launched.id).await.unwrap(), None);
    assert_eq!(
        stranger.delete(&launched.id).await.unwrap(),
        DeleteStatus::Gone
    );
    // Once visible, deletion runs to Gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while p.delete(&launched.id).await.unwrap() != DeleteStatus::Gone {
        assert!(tokio::time::Instant::now() < deadline, "never gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.get(&launched.id).await.unwrap(), None);
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_of_a_node_from_its_provider_id_or_its_address() {
    let e = env().await;
    let zone = e.zones[2].clone();
    let p = e.provider(CLUSTER);
    let launched = p
        .launch(&request(&e, "n1", &zone, Some(e.subnet(&zone))))
        .await
        .unwrap();
    let id = launched.id.0.clone();
    let ip = launched.private_ip.clone().expect("a private address");
    let node = |provider_id: Option<String>, ip: Option<String>| NodeRef {
        name: "n1".into(),
        provider_id,
        internal_ip: ip,
    };
    for form in [
        format!("aws:///{zone}/{id}"),
        format!("aws:////{id}"),
        id.clone(),
    ] {
        let found = p
            .instance_for(&node(Some(form.clone()), None))
            .await
            .unwrap();
        assert_eq!(found.map(|i| i.id.0), Some(id.clone()), "{form}");
    }
    let by_ip = p.instance_for(&node(None, Some(ip))).await.unwrap();
    assert_eq!(by_ip.map(|i| i.id.0), Some(id.clone()));
    let by_ip = p
        .instance_for(&node(
            Some("kind://docker/x".into()),
            Some("10.99.99.99".into()),
        ))
        .await
        .unwrap();
    assert_eq!(by_ip, None);
    assert_eq!(p.instance_for(&node(None, None)).await.unwrap(), None);
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_1000_is_listed_in_one_call() {
    let e = env().await;
    let zone = e.zones[0].clone();
    for _ in 0..10 {
        e.seed_instances(&zone, 100, &[(tags::CLUSTER, CLUSTER), (tags::POOL, POOL)])
            .await;
    }
    e.seed_instances(&zone, 3, &[(tags::CLUSTER, CLUSTER), (tags::POOL, "batch")])
        .await;
    let doomed = e
        .seed_instances(&zone, 2, &[(tags::CLUSTER, CLUSTER), (tags::POOL, POOL)])
        .await;
    e.ec2
        .terminate(&doomed.iter().map(|i| i.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();

    let listed = e.provider(CLUSTER).list(&pool()).await.unwrap();
    assert_eq!(listed.len(), 1000);
    assert!(listed.iter().all(|i| i.tag(tags::POOL) == Some(POOL)));
    let calls = e.proxy.count("DescribeInstances");
    println!("listing a pool of 1000 instances took {calls} DescribeInstances call(s)");
    assert_eq!(calls, 1);
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_follows_every_page() {
    let e = env().await;
    let zone = e.zones[0].clone();
    // One reservation each: EC2 pages by reservation.
    for _ in 0..23 {
        e.seed_instances(&zone, 1, &[(tags::CLUSTER, CLUSTER), (tags::POOL, POOL)])
            .await;
    }
    let small = AwsProvider::new(
        CLUSTER,
        e.pool_config(),
        ClientOptions {
            page_size: 5,
            ..e.options()
        },
    );
    let listed = small.list(&pool()).await.unwrap();
    assert_eq!(listed.len(), 23);
    let mut ids: Vec<_> = listed.iter().map(|i| i.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 23, "no instance twice");
    assert_eq!(e.proxy.count("DescribeInstances"), 5, "ceil(23 / 5) pages");
    e.finish();
}

/// A launch template that defines its own network interface (with security
/// groups): the replacement goes to the old node's subnet through an
/// override of the interface, its groups kept. A top-level `SubnetId` next
/// to the template's interfaces is what EC2 refuses (the proxy refuses it
/// as EC2 does; moto alone would take it and drop the groups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_with_its_own_interface_launches_in_the_old_subnet_with_its_groups() {
    let e = env().await;
    let vpc = e
        .ec2
        .call(
            "DescribeVpcs",
            Params::new().filters(&[("is-default", vec!["true".into()])]),
        )
        .await
        .expect("default VPC");
    let vpc_id = vpc.items("vpcSet")[0]
        .text_at("vpcId")
        .expect("vpc id")
        .to_string();
    let group = e
        .ec2
        .call(
            "CreateSecurityGroup",
            Params::new()
                .set("GroupName", "workers")
                .set("GroupDescription", "workers")
                .set("VpcId", vpc_id),
        )
        .await
        .expect("security group");
    let group_id = group.text_at("groupId").expect("group id").to_string();
    let (zone_a, zone_b) = (e.zones[0].clone(), e.zones[1].clone());
    e.ec2
        .call(
            "CreateLaunchTemplate",
            Params::new()
                .set("LaunchTemplateName", "workers-eni")
                .set("LaunchTemplateData.InstanceType", "t3.medium")
                .set("LaunchTemplateData.NetworkInterface.1.DeviceIndex", "0")
                .set(
                    "LaunchTemplateData.NetworkInterface.1.SubnetId",
                    e.subnet(&zone_a),
                )
                .set(
                    "LaunchTemplateData.NetworkInterface.1.SecurityGroupId.1",
                    group_id.clone(),
                )
                .set(
                    "LaunchTemplateData.NetworkInterface.1.DeleteOnTermination",
                    "true",
                ),
        )
        .await
        .expect("template with an interface");

    // EC2's rule, as the proxy enforces it.
    let lenient = e
        .ec2
        .call(
            "RunInstances",
            Params::new()
                .set("LaunchTemplate.LaunchTemplateName", "workers-eni")
                .set("ImageId", e.images[VERSION].clone())
                .set("SubnetId", e.subnet(&zone_b))
                .set("MinCount", "1")
                .set("MaxCount", "1"),
        )
        .await;
    assert!(lenient.is_ok(), "straight to moto: taken ({lenient:?})");
    let strict = kubesurge_testworld::moto::Ec2::new(e.proxy.url(), support::REGION)
        .call(
            "RunInstances",
            Params::new()
                .set("LaunchTemplate.LaunchTemplateName", "workers-eni")
                .set("ImageId", e.images[VERSION].clone())
                .set("SubnetId", e.subnet(&zone_b))
                .set("MinCount", "1")
                .set("MaxCount", "1"),
        )
        .await;
    assert!(
        matches!(&strict, Err(kubesurge_testworld::moto::Ec2Error::Api { code, .. }) if code == "InvalidParameterCombination"),
        "through the proxy, as EC2: {strict:?}"
    );

    let mut config = e.pool_config();
    config.launch_template = kubesurge_aws::TemplateRef::Name("workers-eni".into());
    let p = AwsProvider::new(CLUSTER, config, e.options());
    let launched = p
        .launch(&request(&e, "node-b", &zone_b, Some(e.subnet(&zone_b))))
        .await
        .expect("launch");
    assert_eq!(launched.zone, zone_b);
    assert_eq!(launched.subnet.as_deref(), Some(e.subnet(&zone_b).as_str()));
    let described = e
        .ec2
        .call(
            "DescribeInstances",
            Params::new().set("InstanceId.1", launched.id.0.clone()),
        )
        .await
        .expect("describe");
    let instance = described.items("reservationSet")[0].items("instancesSet")[0].clone();
    let nics = instance.items("networkInterfaceSet");
    assert_eq!(nics.len(), 1, "one interface: {instance:#?}");
    assert_eq!(
        nics[0].text_at("subnetId"),
        Some(e.subnet(&zone_b).as_str()),
        "the old node's subnet, not the template's"
    );
    let groups: Vec<&str> = nics[0]
        .items("groupSet")
        .iter()
        .filter_map(|g| g.text_at("groupId"))
        .collect();
    assert_eq!(groups, [group_id.as_str()], "the template's groups kept");
    assert_eq!(
        e.proxy.count("DescribeLaunchTemplateVersions"),
        1,
        "the template's shape is learnt once"
    );
    // A second launch of the pool asks no more.
    p.launch(&request(&e, "node-a", &zone_a, Some(e.subnet(&zone_a))))
        .await
        .expect("second launch");
    assert_eq!(e.proxy.count("DescribeLaunchTemplateVersions"), 1);
    e.finish();
}

/// A pool of Auto Scaling group members, end to end at the provider: the
/// run's bookkeeping on the group, a launch attached once however often it
/// is repeated, `updateLaunchTemplate`, termination through the group and
/// the group given back exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_scaling_group_pool_attaches_terminates_in_the_group_and_restores_it() {
    use kubesurge_aws::{AutoScalingGroupConfig, TemplateRef};
    use kubesurge_testworld::moto::AutoScalingApi;

    let e = env().await;
    let groups = AutoScalingApi::new(e.moto.url(), support::REGION);
    let subnets: Vec<String> = e.subnets.values().cloned().collect();
    groups
        .create_group("workers-asg", &e.template_id, 0, 1, &subnets)
        .await
        .expect("group");
    groups
        .suspend("workers-asg", &["ScheduledActions"])
        .await
        .expect("suspend");
    let before = groups
        .group("workers-asg")
        .await
        .expect("describe")
        .expect("group");

    let mut config = e.pool_config();
    config.launch_template = TemplateRef::OfGroup;
    config.auto_scaling_group = Some(AutoScalingGroupConfig {
        name: "workers-asg".into(),
        update_launch_template: true,
    });
    let provider = AwsProvider::new(CLUSTER, config, e.options());

    provider
        .prepare_pool(&pool(), 2, "run-1")
        .await
        .expect("prepared");
    provider
        .prepare_pool(&pool(), 2, "run-1")
        .await
        .expect("prepared twice");
    let during = groups
        .group("workers-asg")
        .await
        .expect("describe")
        .expect("group");
    assert_eq!(during.max_size, 3, "raised by the surge once");
    assert!(during.suspended.contains("AZRebalance"));
    assert!(during.suspended.contains("ReplaceUnhealthy"));
    assert_eq!(during.tags["kubesurge.io/original-max-size"], "1");

    let zone = e.zones[0].clone();
    let req = request(&e, "w-1", &zone, Some(e.subnet(&zone)));
    let launched = provider.launch(&req).await.expect("launched");
    let again = provider.launch(&req).await.expect("adopted");
    assert_eq!(again.id, launched.id);
    assert_eq!(e.proxy.succeeded("AttachInstances"), 1, "attached once");
    let group = groups
        .group("workers-asg")
        .await
        .expect("describe")
        .expect("group");
    assert!(group.members.contains(&launched.id.0));
    assert_eq!(group.desired, 1);
    // The group now launches from a version of its template that carries
    // the target image.
    let (template, version) = group.launch_template.clone().expect("a template");
    assert_eq!(template, e.template_id);
    let root = e
        .ec2
        .call(
            "DescribeLaunchTemplateVersions",
            Params::new()
                .set("LaunchTemplateId", template.clone())
                .set("LaunchTemplateVersion.1", version.clone()),
        )
        .await
        .expect("versions");
    let image = root
        .items("launchTemplateVersionSet")
        .first()
        .and_then(|v| v.text_at("launchTemplateData/imageId").map(str::to_string));
    assert_eq!(
        image.as_deref(),
        Some(e.images[VERSION].as_str()),
        "version {version}"
    );

    let mut status = provider.delete(&launched.id).await.expect("delete");
    for _ in 0..50 {
        if status == DeleteStatus::Gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = provider.delete(&launched.id).await.expect("delete");
    }
    assert_eq!(status, DeleteStatus::Gone);
    assert_eq!(e.proxy.succeeded("TerminateInstanceInAutoScalingGroup"), 1);
    assert_eq!(
        e.proxy.count("TerminateInstances"),
        0,
        "through the group only"
    );

    provider.restore_pool(&pool()).await.expect("restored");
    provider
        .restore_pool(&pool())
        .await
        .expect("restored twice");
    let after = groups
        .group("workers-asg")
        .await
        .expect("describe")
        .expect("group");
    assert_eq!(after.settings(), before.settings());
    assert_eq!(after.tags, before.tags);
    e.proxy.clear();
}
