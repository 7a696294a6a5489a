//! One request: count it, apply injected faults, authenticate and
//! authorize, then answer the special paths here and hand resource
//! requests to the [`dispatch`] table.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::auth;
use super::context::Ctx;
use super::discovery;
use super::dispatch;
use super::faults::RequestFacts;
use super::impersonation;
use super::negotiation::accept;
use super::openapi;
use super::rbac::{self, UserInfo};
use super::respond::{Body, build, error_response, json, text};
use super::route::{self, Query, Route, Special};
use super::shared::Shared;
use super::status::ApiError;
use super::table::TableRequest;

/// Request bodies larger than this are refused (real servers: 3 MiB per
/// object; leave room for big lists in apply).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What counters and fault filters call a request: (verb, resource).
fn classify(method: &Method, route: &Route, query: &Query, path: &str) -> (&'static str, String) {
    match route {
        Route::Resource(r) => {
            let mut resource = r.resource.plural.to_string();
            if let Some(sub) = &r.subresource {
                resource = format!("{resource}/{sub}");
            }
            (route::verb(method, r, query), resource)
        }
        _ => {
            let verb = match *method {
                Method::GET | Method::HEAD => "get",
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "unknown",
            };
            (verb, path.to_string())
        }
    }
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    client_certificate: Option<&UserInfo>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let route = route::route(&path);
    let (verb, label) = classify(&parts.method, &route, &query, &path);
    shared.faults.note_request();
    shared.metrics.count(verb, &label);
    let facts = RequestFacts {
        verb,
        resource: &label,
        query: parts.uri.query().unwrap_or(""),
    };
    if let Some(err) = shared.faults.take_failure(&facts) {
        return error_response(&shared, &err);
    }
    if let Some(delay) = shared.faults.take_delay(&facts) {
        tokio::time::sleep(delay).await;
    }
    let user = match auth::authenticate(&shared, client_certificate, &parts.headers)
        .and_then(|user| impersonation::effective_user(&shared.store, user, &parts.headers))
    {
        Ok(user) => user,
        Err(e) => return error_response(&shared, &e),
    };
    let attributes = rbac::attributes(verb, &parts.method, &route, &path, &query);
    if let Err(e) = rbac::authorize(&shared.store, &user, &attributes) {
        return error_response(&shared, &e);
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error_response(
                &shared,
                &ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    "the request body is too large",
                ),
            );
        }
    };
    match &route {
        Route::Special(special) => {
            special_response(&shared, special, &parts.method, &query, &parts.headers)
                .unwrap_or_else(|e| error_response(&shared, &e))
        }
        Route::NotFound => error_response(&shared, &ApiError::no_such_path()),
        Route::Resource(r) => {
            let ctx = Ctx {
                shared: &shared,
                user: &user,
                method: &parts.method,
                req: r,
                query: &query,
                headers: &parts.headers,
                body,
                table: TableRequest::from_headers(&parts.headers, &query),
                partial: super::table::wants_partial_metadata(&parts.headers),
                protobuf: super::protobuf::preferred(accept(&parts.headers)),
                warnings: Mutex::new(Vec::new()),
            };
            // Every change the request makes is the user's (the audit
            // log's attribution, `apiserver/pkg/endpoints/filters/audit.go`).
            let mut response = crate::store::as_writer(&user.name, dispatch::dispatch(&ctx))
                .await
                .unwrap_or_else(|e| error_response(&shared, &e));
            let warnings = ctx.warnings.into_inner().unwrap_or_else(|p| p.into_inner());
            add_warnings(&mut response, &warnings);
            response
        }
    }
}

/// `Warning: 299 - "<text>"` headers (RFC 7234 §5.5, as
/// `apiserver/pkg/warning` writes them).
fn add_warnings(response: &mut Response<Body>, texts: &[String]) {
    for text in texts {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
}

fn special_response(
    shared: &Arc<Shared>,
    special: &Special,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    if *method != Method::GET && *method != Method::HEAD {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let accept = accept(headers);
    let doc = match special {
        Special::OpenApiV2 => return Ok(openapi_response(shared, openapi::serve_v2(accept))),
        Special::OpenApiV3(key) => {
            return Ok(openapi_response(
                shared,
                openapi::serve_v3(key, query.get("hash"), accept),
            ));
        }
        Special::Health(endpoint, check) => {
            return match super::health::answer(endpoint, check, query.get("verbose").is_some()) {
                Some(body) => Ok(text(shared, 200, &body)),
                None => Err(ApiError::no_such_path()),
            };
        }
        Special::Version => {
            let version = shared
                .version
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            discovery::version_info(&version)
        }
        Special::CoreVersions => discovery::core_versions(&shared.addr.to_string()),
        Special::CoreResources => discovery::resource_list("", "v1"),
        Special::Groups => discovery::group_list(),
        Special::Group(g) => discovery::group(g),
        Special::GroupResources(g, v) => discovery::resource_list(g, v),
    };
    Ok(json(shared, 200, &doc))
}

fn openapi_response(shared: &Shared, answer: openapi::Answer) -> Response<Body> {
    match answer {
        openapi::Answer::Document {
            bytes,
            etag,
            cache_control,
        } => {
            let mut response = build(shared, 200, "application/json", Bytes::from_static(bytes));
            let headers = response.headers_mut();
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            );
            if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&format!("\"{e}\"")).ok()) {
                headers.insert(header::ETAG, etag);
            }
            response
        }
        openapi::Answer::Redirect(location) => {
            let mut response = build(shared, 301, "text/plain; charset=utf-8", Vec::new());
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        openapi::Answer::NotAcceptable => {
            build(shared, 406, "text/plain; charset=utf-8", Vec::new())
        }
        openapi::Answer::NotFound => error_response(shared, &ApiError::no_such_path()),
    }
}
