//! `POST …/pods/<name>/eviction` exactly as the real eviction REST
//! handler (reference §4 "Server-side eviction", steps 1–7): PDB lookup,
//! the unhealthy-pod policy, the atomic check-and-decrement of
//! `disruptionsAllowed`, the `DisruptionTarget` condition, then a delete
//! with the caller's DeleteOptions (graceful for bound pods).

use http::Response;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::body::{DeleteOptions, body_as, check_body_type};
use super::context::Ctx;
use super::respond::{Body, json as json_response};
use super::selector::selector_object_matches;
use super::status::{ApiError, Cause, Details, created_success};
use super::strategy::{delete_object, modify_object, set_condition};
use crate::resources::{PDBS, PODS};
use crate::store::rfc3339;

/// More recorded disruptions than this and evictions are refused until the
/// disruption controller catches up.
const MAX_DISRUPTED_PODS: usize = 2000;

const BLOCKED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn blocked(retry_after_seconds: u64, cause: String) -> ApiError {
    let mut err = ApiError::too_many_requests(BLOCKED, retry_after_seconds);
    if let Some(d) = err.details.as_mut() {
        d.causes.push(Cause {
            reason: "DisruptionBudget".into(),
            message: cause,
            field: String::new(),
        });
    }
    err
}

fn pdb_forbidden(name: &str, why: &str) -> ApiError {
    ApiError::new(
        403,
        "Forbidden",
        format!("poddisruptionbudgets.policy {name:?} is forbidden: {why}"),
    )
    .with_details(Details::of(&PDBS, name))
}

/// Phase Succeeded/Failed/Pending or already being deleted: the PDB does
/// not apply.
fn can_ignore_pdb(pod: &Value) -> bool {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    matches!(phase, "Succeeded" | "Failed" | "Pending")
        || pod.pointer("/metadata/deletionTimestamp").is_some()
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// `checkAndDecrement` on the stored PDB: the decision and the status
/// write in one step under the store's lock.
fn check_and_decrement(pdb: &Value, pod_name: &str, now: &str) -> Result<Value, ApiError> {
    let name = pdb
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if int(pdb, "/status/observedGeneration") < int(pdb, "/metadata/generation") {
        return Err(blocked(
            10,
            format!("The disruption budget {name} is still being processed by the server."),
        ));
    }
    let allowed = int(pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(pdb_forbidden(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map(|m| m.len())
        .unwrap_or(0);
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(pdb_forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(blocked(
            0,
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int(pdb, "/status/desiredHealthy"),
                int(pdb, "/status/currentHealthy")
            ),
        ));
    }
    let mut next = pdb.clone();
    if !next.get("status").is_some_and(Value::is_object) {
        next["status"] = json!({});
    }
    next["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if !next["status"]
        .get("disruptedPods")
        .is_some_and(Value::is_object)
    {
        next["status"]["disruptedPods"] = json!({});
    }
    next["status"]["disruptedPods"][pod_name] = json!(now);
    if allowed - 1 == 0 {
        let observed = int(pdb, "/status/observedGeneration");
        let unchanged = next
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"))
            .is_some_and(|c| c["status"] == "False");
        let transition = if unchanged {
            next.pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"))
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or(json!(now))
        } else {
            json!(now)
        };
        set_condition(
            &mut next,
            json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                   "message": "", "observedGeneration": observed, "lastTransitionTime": transition}),
        );
    }
    Ok(next)
}

/// Step 6: the `DisruptionTarget` condition, then the delete.
fn add_condition_and_delete(
    ctx: &Ctx<'_>,
    name: &str,
    opts: &DeleteOptions,
    now: &str,
) -> Result<Response<Body>, ApiError> {
    let mut opts = opts.clone();
    if !opts.dry_run {
        let store = ctx.store();
        let updated = modify_object(store, &PODS, ctx.namespace(), name, |pod| {
            let mut next = pod.clone();
            let present = pod
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "DisruptionTarget"
                            && c["status"] == "True"
                            && c["reason"] == "EvictionByEvictionAPI"
                    })
                });
            if !present {
                set_condition(
                    &mut next,
                    json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                           "message": "Eviction API: evicting", "lastProbeTime": null, "lastTransitionTime": now}),
                );
            }
            Ok(next)
        })?;
        // The caller's resourceVersion precondition was checked before;
        // the condition write moved the version on.
        if opts.preconditions.resource_version.is_some() {
            opts.preconditions.resource_version = updated
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
        }
    }
    delete_object(ctx.store(), &PODS, ctx.namespace(), name, &opts)?;
    Ok(json_response(ctx.shared, 201, &created_success()))
}

/// The caller's resourceVersion precondition, checked before any budget
/// is spent. A uid precondition is not checked here: the real eviction
/// path (`pkg/registry/core/pod/storage/eviction.go`) decrements the
/// budget first (`checkAndDecrement`) and only then deletes the pod, where
/// `rest.BeforeDelete` refuses a stale uid — so a stale-uid eviction spends
/// budget until the disruption controller gives it back.
fn check_preconditions(pod: &Value, name: &str, opts: &DeleteOptions) -> Result<(), ApiError> {
    let field = |f: &str| {
        pod.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if let Some(rv) = &opts.preconditions.resource_version
        && *rv != field("resourceVersion")
    {
        return Err(ApiError::conflict(
            &PODS,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                field("resourceVersion")
            ),
        ));
    }
    Ok(())
}

pub(crate) fn evict(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let name = ctx.name().to_string();
    let body = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        check_body_type(ctx)?;
        json!({})
    } else {
        body_as(ctx, ("policy/v1", "Eviction"))?
    };
    // A missing GVK defaults to policy/v1 Eviction; v1beta1 is served too.
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if !matches!(api_version, "" | "policy/v1" | "policy/v1beta1")
        || !matches!(kind, "" | "Eviction")
    {
        return Err(ApiError::bad_request(format!(
            "the body of the request was not an Eviction: {api_version}/{kind}"
        )));
    }
    let body_name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    // Admission runs before the eviction's own logic spends any budget; a
    // webhook's denial reads as k8s.io/apiserver
    // `pkg/admission/plugin/webhook/errors` `ToStatusErr` makes it (its
    // code, 403 here, and `admission webhook "<name>" denied the request:`).
    if let Some((webhook, message)) = ctx.shared.faults.eviction_denial(ctx.namespace(), &name) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("admission webhook {webhook:?} denied the request: {message}"),
        ));
    }
    // kube-rs sends `delete_options` (snake case): an unknown field, dropped.
    let mut opts = DeleteOptions::from_value(body.get("deleteOptions"))?;
    opts.dry_run |= ctx.query.dry_run();
    let store = ctx.store();
    let pod = store
        .get(&PODS, ctx.namespace(), &name)
        .ok_or_else(|| ApiError::not_found(&PODS, &name))?;
    check_preconditions(&pod, &name, &opts)?;
    let now = rfc3339(Timestamp::now());
    if can_ignore_pdb(&pod) {
        return add_condition_and_delete(ctx, &name, &opts, &now);
    }
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    let (pdbs, _) = store.list(&PDBS, Some(ctx.namespace()), |pdb| {
        selector_object_matches(pdb.pointer("/spec/selector"), labels)
    });
    if pdbs.len() > 1 {
        return Err(ApiError::new(
            500,
            "",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    let Some(pdb) = pdbs.first() else {
        return add_condition_and_delete(ctx, &name, &opts, &now);
    };
    if !pod_ready(&pod) {
        let policy = pdb
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
            .unwrap_or("IfHealthyBudget");
        let current = int(pdb, "/status/currentHealthy");
        let desired = int(pdb, "/status/desiredHealthy");
        if policy == "AlwaysAllow" || (current >= desired && desired > 0) {
            return add_condition_and_delete(ctx, &name, &opts, &now);
        }
    }
    let pdb_name = pdb
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if opts.dry_run {
        check_and_decrement(pdb, &name, &now)?;
    } else {
        modify_object(store, &PDBS, ctx.namespace(), &pdb_name, |current| {
            check_and_decrement(current, &name, &now)
        })?;
    }
    add_condition_and_delete(ctx, &name, &opts, &now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "b", "generation": 2},
               "status": {"disruptionsAllowed": allowed, "observedGeneration": observed,
                          "currentHealthy": 3, "desiredHealthy": 3}})
    }

    #[test]
    fn decrement_records_the_pod_and_the_condition() {
        let next = check_and_decrement(&pdb(1, 2), "p", "2030-01-01T00:00:00Z").unwrap();
        assert_eq!(next["status"]["disruptionsAllowed"], 0);
        assert_eq!(next["status"]["disruptedPods"]["p"], "2030-01-01T00:00:00Z");
        assert_eq!(
            next["status"]["conditions"][0]["reason"],
            "InsufficientPods"
        );
    }

    #[test]
    fn blocked_and_stale_budgets() {
        let e = check_and_decrement(&pdb(0, 2), "p", "t").unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(e.message, BLOCKED);
        assert_eq!(e.retry_after(), None);
        assert_eq!(
            e.details.unwrap().causes[0].message,
            "The disruption budget b needs 3 healthy pods and has 3 currently"
        );
        let e = check_and_decrement(&pdb(5, 1), "p", "t").unwrap_err();
        assert_eq!(e.retry_after(), Some(10));
        assert_eq!(
            e.details.unwrap().causes[0].message,
            "The disruption budget b is still being processed by the server."
        );
        assert_eq!(
            check_and_decrement(&pdb(-1, 2), "p", "t").unwrap_err().code,
            403
        );
    }

    #[test]
    fn which_pods_skip_the_budget() {
        assert!(can_ignore_pdb(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_pdb(&json!({"status": {"phase": "Succeeded"}})));
        assert!(can_ignore_pdb(
            &json!({"metadata": {"deletionTimestamp": "x"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_pdb(&json!({"status": {"phase": "Running"}})));
    }
}
