//! `NodeExec` over SSM. moto checks the calls' shape and answers Success
//! at once; the status handling is driven by answers the proxy replays.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use kubesurge_aws::SsmExec;
use kubesurge_provider::{ExecError, ExecRequest, ExecTarget, InstanceId, NodeExec, OutputSink};
use kubesurge_testworld::moto::proxy::Canned;
use kubesurge_testworld::moto::{Fault, FaultProxy};
use support::{Env, REGION, env};

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl OutputSink for Lines {
    fn line(&self, node: &str, line: &str) {
        assert_eq!(node, "cp-1");
        self.0.lock().unwrap().push(line.to_string());
    }
}

fn exec(e: &Env) -> SsmExec {
    SsmExec::new(Some(REGION), e.options())
        .with_timing(Duration::from_millis(5), Duration::from_secs(2))
}

async fn target(e: &Env) -> ExecTarget {
    let zone = e.zones[0].clone();
    let instance = e
        .seed_instances(&zone, 1, &[("Name", "cp-1")])
        .await
        .remove(0);
    ExecTarget {
        node: "cp-1".into(),
        instance: Some(InstanceId(instance.id)),
        address: None,
    }
}

fn request(timeout: Duration) -> ExecRequest {
    ExecRequest {
        script: "#!/bin/bash\nkubeadm upgrade node\n".into(),
        description: "kubeadm upgrade node".into(),
        timeout,
    }
}

fn invocation(status: &str, details: &str, code: i32, stdout: &str, stderr: &str) -> Fault {
    Fault::Respond(Canned::json(
        200,
        &serde_json::json!({
            "CommandId": "replayed",
            "InstanceId": "i-replayed",
            "DocumentName": "AWS-RunShellScript",
            "Status": status,
            "StatusDetails": details,
            "ResponseCode": code,
            "StandardOutputContent": stdout,
            "StandardErrorContent": stderr,
        })
        .to_string(),
    ))
}

fn injected(proxy: &FaultProxy, action: &str) -> usize {
    proxy
        .calls()
        .iter()
        .filter(|c| c.action == action && c.injected)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_runs_through_send_command_on_moto() {
    let e = env().await;
    let t = target(&e).await;
    let out = exec(&e)
        .run(&t, &request(Duration::from_secs(30)), &())
        .await
        .expect("runs");
    assert_eq!(out.exit_code, 0);
    assert_eq!(e.proxy.succeeded("SendCommand"), 1);
    assert!(e.proxy.succeeded("GetCommandInvocation") >= 1);
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_followed_to_the_exit_code_with_output_streamed() {
    let e = env().await;
    let t = target(&e).await;
    let p = &e.proxy;
    p.inject(
        "GetCommandInvocation",
        1,
        Fault::Respond(Canned::json_error(400, "InvocationDoesNotExist", "not yet")),
    );
    p.inject(
        "GetCommandInvocation",
        1,
        invocation("InProgress", "InProgress", -1, "[upgrade] one\n[upg", ""),
    );
    p.inject(
        "GetCommandInvocation",
        1,
        invocation(
            "InProgress",
            "InProgress",
            -1,
            "[upgrade] one\n[upgrade] two\n",
            "",
        ),
    );
    p.inject(
        "GetCommandInvocation",
        1,
        invocation(
            "Failed",
            "Failed",
            3,
            "[upgrade] one\n[upgrade] two\n[upgrade] three",
            "error: preflight\n",
        ),
    );
    let lines = Lines::default();
    let out = exec(&e)
        .run(&t, &request(Duration::from_secs(30)), &lines)
        .await
        .expect("a finished script is Ok whatever its code");
    assert_eq!(out.exit_code, 3);
    assert!(!out.success());
    assert_eq!(out.stderr, "error: preflight\n");
    assert_eq!(
        *lines.0.lock().unwrap(),
        [
            "[upgrade] one",
            "[upgrade] two",
            "[upgrade] three",
            "error: preflight"
        ]
    );
    assert_eq!(injected(p, "GetCommandInvocation"), 4);
    assert_eq!(p.count("GetCommandInvocation"), 4, "no poll after the end");
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_undelivered_commands_are_typed() {
    let e = env().await;
    let t = target(&e).await;
    let x = exec(&e);
    e.proxy.inject(
        "GetCommandInvocation",
        1,
        invocation("Failed", "ExecutionTimedOut", 1, "", ""),
    );
    let r = x.run(&t, &request(Duration::from_secs(30)), &()).await;
    assert!(matches!(r, Err(ExecError::Timeout { .. })), "{r:?}");

    e.proxy.inject(
        "GetCommandInvocation",
        1,
        invocation("Failed", "Undeliverable", -1, "", ""),
    );
    let r = x.run(&t, &request(Duration::from_secs(30)), &()).await;
    assert!(matches!(r, Err(ExecError::Unreachable { .. })), "{r:?}");

    e.proxy.inject(
        "GetCommandInvocation",
        1,
        invocation("Cancelled", "Cancelled", -1, "", ""),
    );
    let r = x.run(&t, &request(Duration::from_secs(30)), &()).await;
    assert!(matches!(r, Err(ExecError::Transport { .. })), "{r:?}");

    e.proxy.inject(
        "SendCommand",
        1,
        Fault::Respond(Canned::json_error(
            400,
            "InvalidInstanceId",
            "Instances not in a valid state for account",
        )),
    );
    let r = x.run(&t, &request(Duration::from_secs(30)), &()).await;
    assert!(
        matches!(&r, Err(ExecError::Unreachable { message, .. }) if message.contains("managed node")),
        "{r:?}"
    );

    let no_instance = ExecTarget {
        instance: None,
        ..t.clone()
    };
    let before = e.proxy.calls().len();
    let r = x
        .run(&no_instance, &request(Duration::from_secs(30)), &())
        .await;
    assert!(matches!(r, Err(ExecError::Unreachable { .. })), "{r:?}");
    assert_eq!(e.proxy.calls().len(), before, "nothing sent");
    e.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_never_finishes_meets_its_deadline_and_is_cancelled() {
    let e = env().await;
    let t = target(&e).await;
    e.proxy.inject(
        "GetCommandInvocation",
        usize::MAX,
        invocation("InProgress", "InProgress", -1, "", ""),
    );
    // moto does not implement CancelCommand: the proxy answers it.
    e.proxy
        .inject("CancelCommand", 1, Fault::Respond(Canned::json(200, "{}")));
    let x = SsmExec::new(Some(REGION), e.options())
        .with_timing(Duration::from_millis(10), Duration::from_millis(100));
    let started = tokio::time::Instant::now();
    let r = x.run(&t, &request(Duration::from_millis(200)), &()).await;
    assert!(matches!(r, Err(ExecError::Timeout { .. })), "{r:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(e.proxy.count("CancelCommand"), 1);
    e.proxy.clear();
    e.finish();
}
