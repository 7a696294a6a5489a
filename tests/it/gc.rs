//! `kubesurge gc` through the binary: it lists what it would terminate,
//! confirms like the other mutating commands (refusing without a terminal
//! unless `--yes`), and terminates only instances kubesurge launched that
//! are no node.

use std::collections::BTreeMap;

use kubesurge_provider::{LaunchRequest, PoolRef, Sensitive, SlotKey};

use super::rotation::{Spec, mutations, start, text, workers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_lists_confirms_and_terminates_only_leftovers() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    // A crashed run's leftover: launched by kubesurge (its run tags), with
    // user data no machine can join with, so it never becomes a node.
    let old_node = h.original_workers.keys().next().expect("a worker").clone();
    let leftover = h
        .world
        .provider()
        .launch(&LaunchRequest {
            pool: PoolRef {
                cluster: "e2e".into(),
                pool: "general".into(),
            },
            slot: SlotKey {
                run_id: "r-crashed".into(),
                old_node: old_node.clone(),
                attempt: 0,
            },
            image: h.world.cloud.image_for_version("v1.35.3").expect("image"),
            zone: h.world.cloud.zones()[0].clone(),
            subnet: None,
            user_data: Sensitive::new(String::new()),
            node_name: "leftover-1".into(),
            extra_tags: BTreeMap::new(),
        })
        .await
        .expect("launch");
    let id = leftover.id.to_string();
    let running = |h: &super::rotation::Harness| {
        h.world
            .cloud
            .instance(&id)
            .is_some_and(|i| !i.state.is_going_away())
    };
    let before = mutations(&h);

    // A dry run lists it and changes nothing.
    let dry = h.run(&["gc", "--dry-run"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        stdout.trim(),
        format!("would terminate {id} (pool general, run r-crashed, replacing {old_node})"),
    );

    // Without a terminal and without --yes: refused, exit 2, nothing done.
    let refused = h.run(&["gc"]).await;
    let all = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{all}");
    assert!(all.contains("pass --yes"), "{all}");
    assert!(
        all.contains(&format!("would terminate {id}")),
        "shows what it would do: {all}"
    );
    assert!(running(&h), "a refused gc terminated {id}");
    assert_eq!(mutations(&h), before, "a refused gc changed the cluster");

    // With --yes it terminates the leftover and nothing else.
    let done = h.run(&["gc", "--yes"]).await;
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    assert_eq!(
        String::from_utf8_lossy(&done.stdout).trim(),
        format!("terminated {id} (pool general, run r-crashed, replacing {old_node})"),
    );
    assert!(!running(&h), "{id} terminated");
    assert_eq!(workers(&h.world), h.original_workers);

    // Then there is nothing to collect.
    let again = h.run(&["gc", "--yes"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to collect"),
        "{}",
        text(&again)
    );
}
