//! The scheduled module's RBAC, proven by running under it: the
//! ServiceAccount and roles the module renders
//! (`terraform/examples/scheduled/kubesurge-scheduled.yaml`, which
//! `terraform::scheduled_manifests_are_current_and_least_privilege` keeps
//! identical to the module's output) are applied with kubectl to an
//! emulated cluster that enforces RBAC, and a whole `kubesurge rotate`
//! runs with that ServiceAccount's token. With every rule it succeeds, and
//! `abort` stops it through the Lease watch; without any one rule it fails
//! with the 403 that names what the rule grants — except the few rules
//! listed in `expected_without`, each with what the run does instead.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::rotation::{Harness, KillPoint, Spec, arm, kubesurge, run_to_end, start, text};

pub(crate) const RENDERED: &str = "terraform/examples/scheduled/kubesurge-scheduled.yaml";
pub(crate) const NAMESPACE: &str = "kube-system";
pub(crate) const ACCOUNT: &str = "kubesurge";

/// The ServiceAccount and the RBAC documents the module renders.
pub(crate) fn rendered_rbac() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(RENDERED);
    let yaml = std::fs::read_to_string(&path).expect("the rendered manifests");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("YAML");
    documents
        .into_iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some(
                    "ServiceAccount"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "Role"
                        | "RoleBinding"
                )
            )
        })
        .collect()
}

/// `(document, rule)` of every rule, with what it grants in words.
fn rules(documents: &[Value]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for (d, doc) in documents.iter().enumerate() {
        let Some(rules) = doc["rules"].as_array() else {
            continue;
        };
        for (r, rule) in rules.iter().enumerate() {
            let scope = doc["metadata"]["namespace"].as_str().unwrap_or("*");
            out.push((
                d,
                r,
                format!("{} {scope}: {rule}", doc["kind"].as_str().unwrap_or("")),
            ));
        }
    }
    out
}

/// kubectl as the admin.
async fn kubectl(h: &Harness, args: &[&str], stdin: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finishes")
        .expect("kubectl output")
}

/// A world with `documents` applied (as users apply them, OpenAPI
/// validation on), and a kubeconfig of the ServiceAccount.
pub(crate) async fn world_under(documents: &[Value]) -> (Harness, PathBuf) {
    let h = start(Spec::default()).await;
    // One YAML stream (each document in its JSON form).
    let stream: String = documents.iter().map(|d| format!("---\n{d}\n")).collect();
    let out = kubectl(&h, &["apply", "-f", "-"], &stream).await;
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
    let kubeconfig = h
        .world
        .apiserver
        .service_account_kubeconfig(NAMESPACE, ACCOUNT, 3600)
        .expect("a token");
    let path = h._dir.path().join("kubesurge-sa.kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    (h, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_rotation_runs_under_the_scheduled_modules_rbac_and_abort_reaches_it() {
    let documents = rendered_rbac();
    let (h, account) = world_under(&documents).await;
    let output = run_to_end(kubesurge(
        &account,
        &h.config,
        &["rotate", "--all", "--yes"],
    ))
    .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(!all.contains("forbidden"), "{all}");
    h.assert_converged();

    // The same account aborts a second run: the run sees the abort mark
    // through its watch of the Lease and stops at a safe point (exit 4).
    let joined = arm(&h, KillPoint::NodeJoined(1));
    let child = kubesurge(&account, &h.config, &["rotate", "--all", "--yes"])
        .spawn()
        .expect("starts");
    joined.notified().await;
    let abort = run_to_end(kubesurge(&account, &h.config, &["abort"])).await;
    assert_eq!(abort.status.code(), Some(0), "{}", text(&abort));
    let stopped = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the run stops")
        .expect("runs");
    let all = text(&stopped);
    assert_eq!(stopped.status.code(), Some(4), "{all}");
    assert!(!all.contains("forbidden"), "{all}");
}

/// The refusal of a ServiceAccount request for one of `verbs` on one of
/// `resources`, as the run reports it (plain or JSON-escaped).
fn names_refusal(output: &str, resources: &[&str], verbs: &[&str]) -> bool {
    resources.iter().any(|res| {
        verbs.iter().any(|verb| {
            let plain = format!(
                "is forbidden: User \"system:serviceaccount:{NAMESPACE}:{ACCOUNT}\" cannot {verb} resource \"{res}\""
            );
            let escaped = plain.replace('"', "\\\"");
            output.contains(&plain) || output.contains(&escaped)
        })
    })
}

fn strings<'a>(rule: &'a Value, key: &str) -> Vec<&'a str> {
    rule[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// What a whole rotation does without one rule.
#[derive(Debug, PartialEq, Eq)]
enum Without {
    /// Fails, naming the 403 of something the rule grants.
    FailsNamingIt,
    /// Succeeds all the same.
    Succeeds,
    /// Neither ends nor fails within the test's patience.
    NeverEnds,
}

/// The rules a whole rotation in this world does not fail without, with
/// why (`resource`, `verbs` of the rule → outcome). Each is a finding,
/// not a blessing: when the engine changes, move the rule out of here.
fn expected_without(resources: &[&str], verbs: &[&str]) -> Without {
    match (resources, verbs) {
        // Budgets are read only to say which one blocks a drain, and no
        // drain is blocked here.
        (["poddisruptionbudgets"], _) => Without::Succeeds,
        // Claims and volumes are read only when a pod on a drained node
        // mounts a claim (`kube::drain::local::resolve`), and none does
        // here; `local_storage` runs drains that read them.
        (["persistentvolumeclaims", "persistentvolumes"], _) => Without::Succeeds,
        // Events are best-effort (`kube::events::Recorder` logs a failed
        // create and goes on).
        (["events"], _) => Without::Succeeds,
        // The run Lease is created by the run (the `create` rule); without
        // this rule its renewals and watch fail with a logged 403 and a
        // single short run still ends, but `abort` could not reach it (the
        // abort half of the test above needs every verb of this rule).
        (["leases"], [_, _, _, _, _]) => Without::Succeeds,
        _ => Without::FailsNamingIt,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_one_rule_of_the_scheduled_module_the_rotation_fails_naming_it() {
    let documents = rendered_rbac();
    let mut surprises = Vec::new();
    for (d, r, rule) in rules(&documents) {
        let mut reduced = documents.clone();
        let removed = reduced[d]["rules"].as_array_mut().expect("rules").remove(r);
        let resources = strings(&removed, "resources");
        let verbs = strings(&removed, "verbs");
        let expected = expected_without(&resources, &verbs);
        let (h, account) = world_under(&reduced).await;
        let patience = if expected == Without::NeverEnds {
            20
        } else {
            60
        };
        let run = kubesurge(&account, &h.config, &["rotate", "--all", "--yes"]).output();
        let (observed, log) = match tokio::time::timeout(Duration::from_secs(patience), run).await {
            Err(_) => (Without::NeverEnds, String::new()),
            Ok(output) => {
                let output = output.expect("kubesurge runs");
                let all = text(&output);
                let observed = match output.status.code() {
                    Some(0) => Without::Succeeds,
                    _ if names_refusal(&all, &resources, &verbs) => Without::FailsNamingIt,
                    code => {
                        surprises.push(format!("{rule}: exit {code:?} without naming it:\n{all}"));
                        continue;
                    }
                };
                (observed, all)
            }
        };
        if observed != expected {
            surprises.push(format!(
                "{rule}: expected {expected:?}, observed {observed:?}\n{}",
                log.lines()
                    .filter(|l| l.contains("forbidden") || l.starts_with("error"))
                    .map(|l| l.chars().take(300).collect::<String>())
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    assert!(surprises.is_empty(), "{}", surprises.join("\n\n"));
}

/// `--as` (and a kubeconfig user's `as`) act as another user, as kubectl
/// does: the admin acting as the module's ServiceAccount rotates under
/// exactly the module's RBAC; acting as an account with no role is
/// refused naming that account; an account that may not impersonate is
/// refused naming the impersonation; and a kubeconfig whose user says
/// `as:` is refused for kubesurge exactly where kubectl is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_act_as_the_user_they_impersonate() {
    let documents = rendered_rbac();
    let (h, account) = world_under(&documents).await;
    let module_account = format!("system:serviceaccount:{NAMESPACE}:{ACCOUNT}");
    let output = run_to_end(kubesurge(
        &h.kubeconfig,
        &h.config,
        &["rotate", "--all", "--yes", "--as", &module_account],
    ))
    .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    h.assert_converged();

    let nobody = "system:serviceaccount:kube-system:nobody";
    let output = run_to_end(kubesurge(
        &h.kubeconfig,
        &h.config,
        &["status", "--as", nobody],
    ))
    .await;
    let all = text(&output);
    assert_ne!(output.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&format!(
            "User \\\"{nobody}\\\" cannot get resource \\\"leases\\\""
        )) || all.contains(&format!("User \"{nobody}\" cannot get resource \"leases\"")),
        "{all}"
    );

    let output = run_to_end(kubesurge(&account, &h.config, &["status", "--as", "alice"])).await;
    let all = text(&output);
    assert_ne!(output.status.code(), Some(0), "{all}");
    let refusal = format!(
        "users \"alice\" is forbidden: User \"{module_account}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    assert!(
        all.contains(&refusal) || all.contains(&refusal.replace('"', "\\\"")),
        "{all}"
    );

    // The kubeconfig's own `as:`, which kube reads and never sent.
    let text_of = std::fs::read_to_string(&h.kubeconfig).expect("kubeconfig");
    let mut kubeconfig: Value = serde_saphyr::from_str(&text_of).expect("YAML");
    kubeconfig["users"][0]["user"]["as"] = Value::String(nobody.into());
    let acting = h._dir.path().join("acting.kubeconfig");
    std::fs::write(&acting, kubeconfig.to_string()).expect("write");
    let ours = run_to_end(kubesurge(&acting, &h.config, &["status"])).await;
    assert_ne!(ours.status.code(), Some(0), "{}", text(&ours));
    assert!(text(&ours).contains(nobody), "{}", text(&ours));
    let theirs = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&acting)
        .args(["get", "leases", "-n", "kube-system"])
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&theirs.stderr);
    assert!(!theirs.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "User \"{nobody}\" cannot list resource \"leases\""
        )),
        "{stderr}"
    );
}
