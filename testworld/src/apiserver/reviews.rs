//! What is answered rather than stored: the self-subject reviews of
//! `authorization.k8s.io/v1` (`kubectl auth can-i`, `kubectl auth can-i
//! --list`) and the TokenRequest of `serviceaccounts/<name>/token`
//! (`kubectl create token`).

use std::sync::Arc;

use http::Response;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::body::{body_as, body_object};
use super::context::Ctx;
use super::rbac::{self, rules};
use super::respond::{Body, json as json_response, protobuf_bytes, respond_object};
use super::status::ApiError;
use super::tokens::{DEFAULT_EXPIRATION_SECONDS, MIN_EXPIRATION_SECONDS};
use crate::resources::{SELFSUBJECTACCESSREVIEWS, SELFSUBJECTRULESREVIEWS};

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` and
/// `.../selfsubjectrulesreviews`: the requester's own access, answered
/// with the review and its status, `201 Created`
/// (`pkg/registry/authorization/selfsubjectaccessreview/rest.go`,
/// `.../selfsubjectrulesreview/rest.go`).
pub(crate) fn review(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let mut review = body_object(ctx)?;
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = if ctx.req.resource == &SELFSUBJECTACCESSREVIEWS {
        access_status(ctx, &spec)?
    } else if ctx.req.resource == &SELFSUBJECTRULESREVIEWS {
        rules_status(ctx, &spec)?
    } else {
        return Err(ApiError::method_not_allowed("POST"));
    };
    review["apiVersion"] = json!(ctx.req.resource.api_version());
    review["kind"] = json!(ctx.req.resource.kind);
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] = status;
    Ok(respond_object(ctx, 201, &Arc::new(review)))
}

fn access_status(ctx: &Ctx<'_>, spec: &Value) -> Result<Value, ApiError> {
    // `ValidateSelfSubjectAccessReviewSpec`: exactly one of the two.
    let Some(attributes) = rbac::review_attributes(spec).filter(|_| {
        spec.get("resourceAttributes").is_some() != spec.get("nonResourceAttributes").is_some()
    }) else {
        return Err(ApiError::invalid(
            ctx.req.resource,
            "",
            &[(
                "FieldValueRequired",
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified"
                    .into(),
            )],
        ));
    };
    let decision = rbac::decide(ctx.store(), ctx.user, &attributes);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    Ok(status)
}

fn rules_status(ctx: &Ctx<'_>, spec: &Value) -> Result<Value, ApiError> {
    let namespace = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
    let policy = rbac::policy(ctx.store(), namespace);
    let (rules, errors) = rules::rules_for(&policy, ctx.user, namespace);
    let list = |key: &str, rule: &Value| rule.get(key).cloned().unwrap_or_else(|| json!([]));
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in &rules {
        let verbs = list("verbs", rule);
        if rule.get("nonResourceURLs").is_some() {
            non_resource_rules
                .push(json!({"verbs": verbs, "nonResourceURLs": list("nonResourceURLs", rule)}));
        }
        if rule.get("resources").is_some() {
            let mut entry = json!({
                "verbs": verbs,
                "apiGroups": list("apiGroups", rule),
                "resources": list("resources", rule),
            });
            if let Some(names) = rule.get("resourceNames") {
                entry["resourceNames"] = names.clone();
            }
            resource_rules.push(entry);
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    Ok(status)
}

/// `POST .../serviceaccounts/<name>/token`: a TokenRequest answered with
/// its `status.token` and `status.expirationTimestamp`, `201 Created`
/// (`pkg/registry/core/serviceaccount/storage/token.go`).
pub(crate) fn token_request(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    const API_VERSION: &str = "authentication.k8s.io/v1";
    let mut request = if ctx.body.is_empty() {
        json!({})
    } else {
        body_as(ctx, (API_VERSION, "TokenRequest"))?
    };
    let seconds = request
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err(ApiError::bad_request(format!(
            "TokenRequest.authentication.k8s.io \"{}\" is invalid: spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than 10 minutes",
            ctx.name()
        )));
    }
    let (token, expires) = ctx.shared.tokens.issue(
        ctx.store(),
        ctx.namespace(),
        ctx.name(),
        seconds,
        Timestamp::now(),
    )?;
    request["apiVersion"] = json!(API_VERSION);
    request["kind"] = json!("TokenRequest");
    request["metadata"] = json!({
        "name": ctx.name(),
        "namespace": ctx.namespace(),
        "creationTimestamp": crate::store::rfc3339(Timestamp::now()),
    });
    request["spec"]["expirationSeconds"] = json!(seconds);
    if request.pointer("/spec/audiences").is_none() {
        request["spec"]["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    }
    request["status"] = json!({
        "token": token,
        "expirationTimestamp": crate::store::rfc3339(expires),
    });
    if ctx.protobuf
        && let Ok(bytes) = super::protobuf::encode(&request)
    {
        return Ok(protobuf_bytes(ctx.shared, 201, bytes));
    }
    Ok(json_response(ctx.shared, 201, &request))
}
