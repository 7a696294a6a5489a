//! The cloud's HTTP server (plain HTTP/1.1 on loopback). Every call is
//! counted by action, then delayed by the injected latency, then possibly
//! refused by an injected throttle or 500, then served from the state.
//! `Exec` answers with a stream of output lines; the stand-ins' control
//! calls are neither counted nor faulted (they are the machines' own
//! traffic, not API calls).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use kubesurge_provider::tags;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use super::Shared;
use super::faults::CallFault;
use super::state::{self, InstanceFilter, LaunchSpec, Launched, PAGE_SIZE};
use super::{control, exec, machine};
use kubesurge_sim::api::{self, Action, ErrorDetail, ErrorResponse, code};

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let shared = shared.clone();
        let cancel = shared.cancel.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

type Reply = Response<UnsyncBoxBody<Bytes, Infallible>>;

fn full(bytes: impl Into<Bytes>) -> UnsyncBoxBody<Bytes, Infallible> {
    Full::new(bytes.into()).boxed_unsync()
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(bytes))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

fn error(status: u16, code: &str, message: impl Into<String>, zone: Option<String>) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorResponse {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.into(),
            zone,
        },
    };
    let mut reply = json(status, &body);
    if status == StatusCode::TOO_MANY_REQUESTS {
        reply.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    reply
}

fn cloud_error(e: &state::CloudError) -> Reply {
    error(e.http_status(), e.code(), e.to_string(), None)
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    if let (Some(rest), &Method::POST) = (path.strip_prefix("/v1/control/"), req.method()) {
        return control_call(shared, rest, req.into_body()).await;
    }
    if req.method() == Method::GET && path == "/v1/counters" {
        let counters: std::collections::BTreeMap<&str, u64> = shared
            .lock()
            .counters
            .iter()
            .map(|(a, n)| (a.as_str(), *n))
            .collect();
        return json(StatusCode::OK, &counters);
    }
    let action = path.strip_prefix("/v1/").and_then(Action::from_name);
    let (Some(action), &Method::POST) = (action, req.method()) else {
        return error(
            404,
            code::INVALID_ACTION,
            format!("no action at {} {path}", req.method()),
            None,
        );
    };
    let (latency, fault) = {
        let mut inner = shared.lock();
        *inner.counters.entry(action).or_default() += 1;
        (inner.faults.latency(), inner.faults.take_call_fault())
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(CallFault::Throttle) => {
            return error(429, code::THROTTLED, "Request limit exceeded.", None);
        }
        Some(CallFault::InternalError) => {
            return error(500, code::INTERNAL, "An internal error has occurred.", None);
        }
        None => {}
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                400,
                code::INVALID_PARAMETER,
                format!("unreadable body: {e}"),
                None,
            );
        }
    };
    match action {
        Action::RunInstances => with_body(&body, |r| run_instances(shared, r)),
        Action::DescribeInstances => with_body(&body, |r| describe_instances(shared, r)),
        Action::TerminateInstances => with_body(&body, |r| terminate_instances(shared, r)),
        Action::DescribeImages => with_body(&body, |r| describe_images(shared, r)),
        Action::Exec => with_body(&body, |r| exec_stream(shared, r)),
    }
}

/// A stand-in's call: `/v1/control/<instance>/<action>`, one argument per
/// body line, a text answer (see [`control`]).
async fn control_call(shared: &Arc<Shared>, rest: &str, body: Incoming) -> Reply {
    let Some((id, action)) = rest.split_once('/') else {
        return error(
            404,
            code::INVALID_ACTION,
            format!("no control route {rest}"),
            None,
        );
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(400, code::INVALID_PARAMETER, e.to_string(), None),
    };
    let text = String::from_utf8_lossy(&body);
    let args: Vec<String> = text.lines().map(str::to_string).collect();
    let reply = control::handle(shared, id, action, &args).await;
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(reply.render()))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// Run a script and stream its events as JSON lines.
fn exec_stream(shared: &Arc<Shared>, request: api::ExecRequest) -> Reply {
    match exec::open(shared, request) {
        Err((status, code, message)) => error(status, code, message, None),
        Ok(events) => {
            let lines = tokio_stream::wrappers::ReceiverStream::new(events).map(|event| {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/x-ndjson")
                .body(StreamBody::new(lines).boxed_unsync())
                .unwrap_or_else(|_| Response::new(full(Bytes::new())))
        }
    }
}

fn with_body<T: DeserializeOwned>(body: &[u8], serve: impl FnOnce(T) -> Reply) -> Reply {
    match serde_json::from_slice(body) {
        Ok(request) => serve(request),
        Err(e) => error(
            400,
            code::INVALID_PARAMETER,
            format!("invalid request body: {e}"),
            None,
        ),
    }
}

fn run_instances(shared: &Arc<Shared>, request: api::RunInstancesRequest) -> Reply {
    let spec = LaunchSpec {
        image_id: request.image_id,
        zone: request.zone,
        subnet: request.subnet_id,
        user_data: request.user_data,
        tags: request.tags,
    };
    let (record, fault) = {
        let mut inner = shared.lock();
        match inner.cloud.check_launch(&spec) {
            Err(e) => return cloud_error(&e),
            Ok(Some(existing)) => return json(StatusCode::OK, &existing.view()),
            Ok(None) => {}
        }
        if inner.faults.take_capacity_shortage(&spec.zone) {
            return error(
                503,
                code::INSUFFICIENT_CAPACITY,
                format!(
                    "We currently do not have sufficient capacity in the Availability Zone you requested ({}).",
                    spec.zone
                ),
                Some(spec.zone.clone()),
            );
        }
        let pool = spec.tags.get(tags::POOL).cloned();
        match inner.cloud.launch(spec, Timestamp::now()) {
            Err(e) => return cloud_error(&e),
            Ok(Launched::Existing(r)) => return json(StatusCode::OK, &r.view()),
            Ok(Launched::New(r)) => (r, inner.faults.take_join_fault(pool.as_deref())),
        }
    };
    machine::on_launched(shared, &record, fault);
    json(StatusCode::OK, &record.view())
}

fn describe_instances(shared: &Arc<Shared>, request: api::DescribeInstancesRequest) -> Reply {
    let after = match request.next_token.as_deref().map(state::decode_token) {
        None => 0,
        Some(Ok(seq)) => seq,
        Some(Err(e)) => return cloud_error(&e),
    };
    let filter = InstanceFilter {
        instance_ids: request.instance_ids,
        tags: request.tags,
        states: request.states,
        private_ip: request.private_ip_address,
    };
    let inner = shared.lock();
    // As on EC2, naming an id that does not exist is an error.
    if let Some(unknown) = filter
        .instance_ids
        .iter()
        .find(|id| inner.cloud.instance(id).is_none())
    {
        return cloud_error(&state::CloudError::UnknownInstance(unknown.clone()));
    }
    let (page, next) =
        inner
            .cloud
            .describe(&filter, after, request.max_results.unwrap_or(PAGE_SIZE));
    json(
        StatusCode::OK,
        &api::DescribeInstancesResponse {
            instances: page.iter().map(|r| r.view()).collect(),
            next_token: next.map(state::encode_token),
        },
    )
}

fn terminate_instances(shared: &Arc<Shared>, request: api::TerminateInstancesRequest) -> Reply {
    let outcome = {
        let mut inner = shared.lock();
        inner
            .cloud
            .terminate(&request.instance_id, &request.required_tags)
            .map(|before| {
                let now = inner
                    .cloud
                    .instance(&request.instance_id)
                    .map(|r| r.state)
                    .unwrap_or(before);
                (before, now)
            })
    };
    match outcome {
        Err(e) => cloud_error(&e),
        Ok((before, now)) => {
            if !before.is_going_away() {
                machine::on_terminating(shared, &request.instance_id);
                shared.changed();
            }
            json(
                StatusCode::OK,
                &api::TerminateInstancesResponse {
                    instance_id: request.instance_id,
                    previous_state: before,
                    current_state: now,
                },
            )
        }
    }
}

fn describe_images(shared: &Arc<Shared>, request: api::DescribeImagesRequest) -> Reply {
    let inner = shared.lock();
    let images = inner
        .cloud
        .find_images(&request.tags, &request.image_ids)
        .into_iter()
        .map(|i| i.view())
        .collect();
    json(StatusCode::OK, &api::DescribeImagesResponse { images })
}
