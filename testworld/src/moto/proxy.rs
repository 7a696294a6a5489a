//! A fault proxy in front of moto (which has no fault injection): plain
//! HTTP on loopback that forwards every request and logs it by action, and
//! that can answer the next N calls of an action with a chosen EC2 error,
//! or delay them. Actions are read from the query API's `Action=` form
//! field, or from the JSON protocols' `X-Amz-Target` header (SSM). In
//! front of a moto world it also carries the simulated machines' SSM agent
//! ([`SsmAgent`]): the commands moto accepts for them run there, and the
//! agent answers for them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ec2::{Ec2, Params};
use super::iam::{IamGate, PRINCIPAL, simulator};
use super::idempotency::{self, Bindings, Verdict};
use super::quotas;
use super::ssm_agent::SsmAgent;
use super::strict;

/// An error answer in EC2's format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ec2Fault {
    pub status: u16,
    /// Empty for an answer that is not EC2's XML (an HTML error page).
    pub code: String,
    pub message: String,
}

impl Ec2Fault {
    /// Throttling, as EC2 answers it.
    pub fn request_limit_exceeded() -> Ec2Fault {
        Ec2Fault {
            status: 503,
            code: "RequestLimitExceeded".into(),
            message: "Request limit exceeded.".into(),
        }
    }

    /// No capacity for the instance type in the zone.
    pub fn insufficient_capacity() -> Ec2Fault {
        Ec2Fault {
            status: 500,
            code: "InsufficientInstanceCapacity".into(),
            message: "We currently do not have sufficient capacity in the Availability Zone you requested.".into(),
        }
    }

    /// A missing IAM permission.
    pub fn unauthorized() -> Ec2Fault {
        Ec2Fault {
            status: 403,
            code: "UnauthorizedOperation".into(),
            message: "You are not authorized to perform this operation. Encoded authorization failure message: AbCd".into(),
        }
    }

    /// EC2's own internal error.
    pub fn internal_error() -> Ec2Fault {
        Ec2Fault {
            status: 500,
            code: "InternalError".into(),
            message: "An internal error has occurred.".into(),
        }
    }

    /// A bare 500 with an HTML page, as a broken hop in between answers.
    pub fn plain_500() -> Ec2Fault {
        Ec2Fault {
            status: 500,
            code: String::new(),
            message: "<html><body><h1>500 Internal Server Error</h1></body></html>".into(),
        }
    }

    fn reply(&self) -> Response<Full<Bytes>> {
        let (content_type, body) = if self.code.is_empty() {
            ("text/html", self.message.clone())
        } else {
            (
                "text/xml;charset=UTF-8",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>00000000-fault-proxy</RequestID></Response>",
                    self.code,
                    escape(&self.message)
                ),
            )
        };
        Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    }
}

/// Text escaped for an XML element.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What a rule does to a matching call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this error instead of forwarding.
    Fail(Ec2Fault),
    /// Forward after this pause.
    Delay(Duration),
    /// Answer with this response instead of forwarding (a replayed answer
    /// of any protocol, e.g. SSM's JSON).
    Respond(Canned),
    /// Refuse the call as AWS does when no policy grants its action, in
    /// the protocol of the call's service (see [`access_denied`]).
    Deny,
}

/// A canned answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    /// A JSON answer (`application/x-amz-json-1.1`, what SSM speaks).
    pub fn json(status: u16, body: &str) -> Canned {
        Canned {
            status,
            headers: vec![(
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            )],
            body: body.to_string(),
        }
    }

    /// An EC2 query-API answer (XML).
    pub fn xml(status: u16, body: &str) -> Canned {
        Canned {
            status,
            headers: vec![(
                "content-type".to_string(),
                "text/xml;charset=UTF-8".to_string(),
            )],
            body: body.to_string(),
        }
    }

    /// A `DescribeInstances` that finds nothing: what EC2 answers about an
    /// instance launched moments ago, before its launch is visible
    /// ("eventual consistency",
    /// https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html).
    pub fn no_instances() -> Canned {
        Canned::xml(
            200,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>00000000-fault-proxy</requestId><reservationSet/></DescribeInstancesResponse>",
        )
    }

    /// A JSON protocol error with its type (`InvocationDoesNotExist`).
    pub fn json_error(status: u16, error_type: &str, message: &str) -> Canned {
        let mut canned = Canned::json(
            status,
            &format!("{{\"__type\":\"{error_type}\",\"message\":\"{message}\"}}"),
        );
        canned
            .headers
            .push(("x-amzn-errortype".to_string(), error_type.to_string()));
        canned
    }

    fn reply(&self) -> Response<Full<Bytes>> {
        let mut builder = Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder
            .body(Full::new(Bytes::from(self.body.clone())))
            .unwrap_or_default()
    }
}

/// One call that went through the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The signing name of the call's service (`ec2`, `autoscaling`,
    /// `ssm`), from the credential scope of its signature.
    pub service: String,
    pub action: String,
    /// The status the client got.
    pub status: u16,
    /// True when the proxy answered it with an injected error.
    pub injected: bool,
    /// A `DryRun=true` call: it asks whether the call would succeed and
    /// changes nothing.
    pub dry_run: bool,
}

impl Call {
    /// A call that changes nothing in the cloud: a read (`Describe*`,
    /// `List*`, `Get*`), a dry run, or a question to IAM's policy
    /// simulator ("The simulation does not make an actual service
    /// request", SimulatePrincipalPolicy, IAM API Reference).
    pub fn changes_nothing(&self) -> bool {
        ["Describe", "List", "Get"]
            .iter()
            .any(|read| self.action.starts_with(read))
            || self.dry_run
            || self.action == "SimulatePrincipalPolicy"
    }
}

struct Rule {
    action: String,
    /// Only calls whose body contains this (e.g. a subnet id).
    body_contains: Option<String>,
    remaining: usize,
    fault: Fault,
}

struct State {
    rules: Vec<Rule>,
    calls: Vec<Call>,
    /// The account's applied EC2 quotas (see [`quotas`]).
    quotas: std::collections::BTreeMap<String, f64>,
}

impl Default for State {
    fn default() -> State {
        State {
            rules: Vec::new(),
            calls: Vec::new(),
            quotas: quotas::defaults(),
        }
    }
}

/// Called with the action and request body of every call the upstream
/// answered with success, before the answer goes back to the client.
pub type AfterSuccess = Arc<dyn Fn(&str, &[u8]) + Send + Sync>;

struct Shared {
    upstream: String,
    after_success: Option<AfterSuccess>,
    /// When set, every call is first authorized against its policy.
    gate: Option<Arc<IamGate>>,
    /// When set, the SSM agent of the simulated machines runs the
    /// commands sent to them and answers for them ([`SsmAgent`]).
    agent: Option<Arc<SsmAgent>>,
    state: Mutex<State>,
    /// EC2's `ClientToken` bindings of `RunInstances` (see [`idempotency`]).
    launches: Bindings,
    client: Client<HttpConnector, Full<Bytes>>,
    seen: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The proxy; stops serving when dropped.
pub struct FaultProxy {
    url: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

/// `Action` of a query-API body or a JSON protocol's target header.
fn action_of(target: Option<&str>, body: &[u8]) -> String {
    if let Some(t) = target {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or_default()
        .to_string()
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        FaultProxy::start_with_hook(upstream, None).await
    }

    /// Like [`FaultProxy::start`], calling `after_success` on every call
    /// the upstream answered with success before the client sees it.
    pub async fn start_with_hook(
        upstream: &str,
        after_success: Option<AfterSuccess>,
    ) -> std::io::Result<FaultProxy> {
        FaultProxy::serve_with(upstream, after_success, None, None).await
    }

    /// Like [`FaultProxy::start_with_hook`], with `agent` running the SSM
    /// commands moto accepts for its instances and answering for them.
    pub async fn start_with_agent(
        upstream: &str,
        after_success: Option<AfterSuccess>,
        agent: Arc<SsmAgent>,
    ) -> std::io::Result<FaultProxy> {
        FaultProxy::serve_with(upstream, after_success, None, Some(agent)).await
    }

    /// Like [`FaultProxy::start`], refusing every call `gate`'s policy
    /// does not allow, as the call's service refuses it
    /// ([`access_denied`]).
    pub async fn start_gated(upstream: &str, gate: Arc<IamGate>) -> std::io::Result<FaultProxy> {
        FaultProxy::serve_with(upstream, None, Some(gate), None).await
    }

    async fn serve_with(
        upstream: &str,
        after_success: Option<AfterSuccess>,
        gate: Option<Arc<IamGate>>,
        agent: Option<Arc<SsmAgent>>,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            after_success,
            gate,
            agent,
            state: Mutex::new(State::default()),
            launches: Bindings::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            seen: watch::channel(0).0,
        });
        let cancel = CancellationToken::new();
        tokio::spawn(serve(listener, shared.clone(), cancel.clone()));
        Ok(FaultProxy {
            url: format!("http://{addr}"),
            shared,
            cancel,
        })
    }

    /// `http://127.0.0.1:<port>`: the endpoint clients use.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next `n` calls of `action` get `fault`.
    pub fn inject(&self, action: &str, n: usize, fault: Fault) {
        self.add_rule(action, None, n, fault);
    }

    /// The next `n` calls of `action` whose body contains `needle` (a
    /// subnet id, a zone) get `fault`; `usize::MAX` for every one.
    pub fn inject_matching(&self, action: &str, needle: &str, n: usize, fault: Fault) {
        self.add_rule(action, Some(needle.to_string()), n, fault);
    }

    fn add_rule(&self, action: &str, body_contains: Option<String>, n: usize, fault: Fault) {
        self.shared.lock().rules.push(Rule {
            action: action.to_string(),
            body_contains,
            remaining: n,
            fault,
        });
    }

    /// Remove every rule.
    pub fn clear(&self) {
        self.shared.lock().rules.clear();
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Calls of `action` so far.
    pub fn count(&self, action: &str) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.action == action)
            .count()
    }

    /// Calls of `action` that moto answered with success.
    pub fn succeeded(&self, action: &str) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.action == action && (200..300).contains(&c.status))
            .count()
    }

    /// Set the account's applied EC2 quota `code` (`L-1216C47A`) to
    /// `value`, as Service Quotas answers it from now on.
    pub fn set_quota(&self, code: &str, value: f64) {
        self.shared.lock().quotas.insert(code.to_string(), value);
    }

    /// Forget the calls logged so far.
    pub fn reset_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Wait until `done(calls)` holds, up to `timeout`; false on timeout.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Call]) -> bool) -> bool {
        let mut seen = self.shared.seen.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.shared.lock().calls) {
                return true;
            }
            if tokio::time::timeout_at(deadline, seen.changed())
                .await
                .is_err()
            {
                return done(&self.shared.lock().calls);
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
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

fn log(shared: &Shared, service: &str, action: String, status: u16, injected: bool, dry_run: bool) {
    shared.lock().calls.push(Call {
        service: service.to_string(),
        action,
        status,
        injected,
        dry_run,
    });
    shared.seen.send_modify(|n| *n += 1);
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ec2Fault::plain_500().with_message(e.to_string()).reply(),
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let action = action_of(target, &body);
    let service = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(service_of_authorization)
        .unwrap_or_default()
        .to_string();
    let dry_run = is_dry_run(&body);
    // Authorization comes first, as in AWS: an injected answer stands for
    // the service, behind it.
    let region = region_of_headers(&parts.headers);
    if let Some(gate) = &shared.gate
        && gate
            .authorize(&service, &action, region, &body)
            .await
            .is_err()
    {
        let refusal = access_denied(&service, &action);
        log(shared, &service, action, refusal.status, true, dry_run);
        return refusal.reply();
    }
    let fault = {
        let mut state = shared.lock();
        let text = String::from_utf8_lossy(&body);
        state
            .rules
            .iter_mut()
            .find(|r| {
                r.remaining > 0
                    && r.action == action
                    && r.body_contains
                        .as_deref()
                        .is_none_or(|needle| text.contains(needle))
            })
            .map(|r| {
                r.remaining = r.remaining.saturating_sub(1);
                r.fault.clone()
            })
    };
    match fault {
        Some(Fault::Fail(f)) => {
            log(shared, &service, action, f.status, true, dry_run);
            return f.reply();
        }
        Some(Fault::Respond(canned)) => {
            log(shared, &service, action, canned.status, true, dry_run);
            return canned.reply();
        }
        Some(Fault::Deny) => {
            let refusal = access_denied(&service, &action);
            log(shared, &service, action, refusal.status, true, dry_run);
            return refusal.reply();
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    // Who the credentials are, and IAM's simulator over the policy this
    // proxy enforces: moto serves neither as AWS does.
    let own = match (service.as_str(), action.as_str()) {
        ("sts", "GetCallerIdentity") => Some(simulator::caller_identity()),
        ("iam", "SimulatePrincipalPolicy") => {
            let policy = shared.gate.as_ref().map(|g| g.current_policy());
            Some(simulator::simulate(policy.as_ref(), &body))
        }
        _ => None,
    };
    if let Some(answer) = own {
        log(shared, &service, action, answer.status, false, dry_run);
        return Canned::xml(answer.status, &answer.body).reply();
    }
    if service == "servicequotas" {
        let known = shared.lock().quotas.clone();
        if let Some(answer) = quotas::answer(&action, &body, region, &known) {
            log(shared, &service, action, answer.status, false, dry_run);
            return answer.reply();
        }
    }
    // What the machines' agent knows of its own commands and instances
    // (moto knows only that a command was sent).
    if let Some(answer) = shared.agent.as_ref().and_then(|a| a.answer(&action, &body)) {
        log(shared, &service, action, answer.status, false, dry_run);
        return answer.reply();
    }
    if action == "RunInstances" && template_defines_interfaces(shared, &parts.headers, &body).await
    {
        let refusal = strict::subnet_with_template_interfaces();
        log(shared, &service, action, refusal.status, false, dry_run);
        return refusal.reply();
    }
    // One launch per token at a time: a repeat sent while the first is in
    // flight waits for its answer.
    let launch_token = if action == "RunInstances" && !dry_run {
        idempotency::token_of(&strict::form(&body))
    } else {
        None
    };
    let _launching = match &launch_token {
        Some(_) => Some(shared.launches.launching.lock().await),
        None => None,
    };
    if let Some((token, parameters)) = &launch_token {
        match shared.launches.verdict(region, token, parameters) {
            Verdict::Launch => {}
            Verdict::Mismatch => {
                let refusal = idempotency::mismatch();
                log(shared, &service, action, refusal.status, false, dry_run);
                return refusal.reply();
            }
            Verdict::Repeat { answer, instances } => {
                let states = instance_states(shared, region, &instances).await;
                log(shared, &service, action, 200, false, dry_run);
                return Response::builder()
                    .header(http::header::CONTENT_TYPE, "text/xml;charset=UTF-8")
                    .body(Full::new(idempotency::with_states(&answer, &states)))
                    .unwrap_or_default();
            }
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut forward = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path}", shared.upstream));
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            forward = forward.header(name, value);
        }
    }
    let Ok(forward) = forward.body(Full::new(body.clone())) else {
        return Ec2Fault::plain_500().reply();
    };
    let request_body = body.clone();
    let answer = async {
        let response = shared
            .client
            .request(forward)
            .await
            .map_err(|e| e.to_string())?;
        let (mut parts, body) = response.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        dry_run_status(&mut parts.status, &bytes);
        // The command is the agent's before the client hears of it: its
        // first GetCommandInvocation finds it.
        if parts.status.is_success()
            && let Some(agent) = &shared.agent
        {
            agent.accepted(&action, &request_body, &bytes);
        }
        if parts.status.is_success()
            && let Some((token, parameters)) = launch_token
        {
            shared
                .launches
                .bind(region, &token, parameters, bytes.clone());
        }
        Ok::<_, String>(Response::from_parts(parts, Full::new(bytes)))
    }
    .await;
    match answer {
        Ok(response) => {
            if response.status().is_success()
                && let Some(hook) = &shared.after_success
            {
                hook(&action, &body);
            }
            log(
                shared,
                &service,
                action,
                response.status().as_u16(),
                false,
                dry_run,
            );
            response
        }
        Err(e) => {
            log(shared, &service, action, 502, false, dry_run);
            let mut f = Ec2Fault::plain_500().with_message(format!("upstream: {e}"));
            f.status = 502;
            f.reply()
        }
    }
}

/// Whether a `RunInstances` names a launch template version that defines
/// network interfaces next to a top-level subnet (see [`strict`]). The
/// lookup asks the upstream in the request's region; should it fail, the
/// call goes on to moto unchecked.
async fn template_defines_interfaces(
    shared: &Shared,
    headers: &http::HeaderMap,
    body: &[u8],
) -> bool {
    let Some(params) = strict::template_lookup(&strict::form(body)) else {
        return false;
    };
    let region = region_of_headers(headers);
    match Ec2::new(&shared.upstream, region)
        .call("DescribeLaunchTemplateVersions", params)
        .await
    {
        Ok(root) => root
            .items("launchTemplateVersionSet")
            .iter()
            .any(|v| !v.items("launchTemplateData/networkInterfaceSet").is_empty()),
        Err(_) => false,
    }
}

/// The current state (`code`, `name`) of each of `ids`, as the upstream
/// describes them; an id it does not answer for is left out.
async fn instance_states(
    shared: &Shared,
    region: &str,
    ids: &[String],
) -> std::collections::HashMap<String, (String, String)> {
    let params = ids.iter().enumerate().fold(Params::new(), |p, (n, id)| {
        p.set(format!("InstanceId.{}", n + 1), id.clone())
    });
    let Ok(root) = Ec2::new(&shared.upstream, region)
        .call("DescribeInstances", params)
        .await
    else {
        return Default::default();
    };
    root.items("reservationSet")
        .into_iter()
        .flat_map(|r| r.items("instancesSet"))
        .filter_map(|i| {
            Some((
                i.text_at("instanceId")?.to_string(),
                (
                    i.text_at("instanceState/code")?.to_string(),
                    i.text_at("instanceState/name")?.to_string(),
                ),
            ))
        })
        .collect()
}

/// The region of a request, from its credential scope (the world's default
/// Region when it names none).
fn region_of_headers(headers: &http::HeaderMap) -> &str {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(region_of_authorization)
        .unwrap_or(super::world::DEFAULT_REGION)
}

/// The region of a SigV4 `Authorization` header's credential scope
/// (`Credential=AKID/20260101/us-east-1/ec2/aws4_request`).
fn region_of_authorization(header: &str) -> Option<&str> {
    let scope = header.split("Credential=").nth(1)?;
    scope.split(['/', ',']).nth(2)
}

/// The service of a SigV4 `Authorization` header's credential scope
/// (`Credential=AKID/20260101/us-east-1/ec2/aws4_request`).
fn service_of_authorization(header: &str) -> Option<&str> {
    let scope = header.split("Credential=").nth(1)?;
    scope.split(['/', ',']).nth(3)
}

/// AWS's refusal of a call no policy allows, in the service's protocol:
/// - EC2 (query API, `<Response><Errors>`): `UnauthorizedOperation`, 403,
///   a message that does not name the action
///   (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html);
/// - Auto Scaling and IAM (query API, `<ErrorResponse>`): `AccessDenied`,
///   403 (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/CommonErrors.html,
///   https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html);
/// - SSM and Service Quotas (JSON 1.1): `AccessDeniedException`, 400
///   (https://docs.aws.amazon.com/systems-manager/latest/APIReference/CommonErrors.html,
///   https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/CommonErrors.html).
///
/// The last two name the action, as AWS does ("User: ARN is not authorized
/// to perform: autoscaling:AttachInstances").
pub fn access_denied(service: &str, action: &str) -> Canned {
    let message = format!(
        "User: {PRINCIPAL} is not authorized to perform: \
         {service}:{action} because no identity-based policy allows the {service}:{action} action"
    );
    let query_error = |namespace: &str| Canned {
        status: 403,
        headers: vec![("content-type".to_string(), "text/xml".to_string())],
        body: format!(
            "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{}</Message></Error><RequestId>00000000-fault-proxy</RequestId></ErrorResponse>",
            escape(&message)
        ),
    };
    match service {
        "ssm" | "servicequotas" => Canned::json_error(400, "AccessDeniedException", &message),
        "autoscaling" => query_error("http://autoscaling.amazonaws.com/doc/2011-01-01/"),
        "iam" => query_error("https://iam.amazonaws.com/doc/2010-05-08/"),
        _ => {
            let f = Ec2Fault::unauthorized();
            Canned {
                status: f.status,
                headers: vec![(
                    "content-type".to_string(),
                    "text/xml;charset=UTF-8".to_string(),
                )],
                body: format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>00000000-fault-proxy</RequestID></Response>",
                    f.code,
                    escape(&f.message)
                ),
            }
        }
    }
}

/// Whether a query-API body asks for a dry run (`DryRun=true`).
fn is_dry_run(body: &[u8]) -> bool {
    String::from_utf8_lossy(body)
        .split('&')
        .any(|pair| pair.eq_ignore_ascii_case("DryRun=true"))
}

/// moto answers a dry run that would have succeeded with the right code,
/// `DryRunOperation`, but with status 400 (its EC2ClientError's); EC2
/// answers 412 (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/CommonErrors.html:
/// "DryRunOperation ... 412"). A denied dry run is moto's (or an injected)
/// `UnauthorizedOperation`, 403, as EC2's.
fn dry_run_status(status: &mut StatusCode, body: &[u8]) {
    if *status == StatusCode::BAD_REQUEST
        && String::from_utf8_lossy(body).contains("<Code>DryRunOperation</Code>")
    {
        *status = StatusCode::PRECONDITION_FAILED;
    }
}

impl Ec2Fault {
    fn with_message(mut self, message: String) -> Ec2Fault {
        self.message = message;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_the_form_or_the_target() {
        assert_eq!(
            action_of(None, b"Action=RunInstances&Version=2016-11-15"),
            "RunInstances"
        );
        assert_eq!(
            action_of(None, b"Version=2016-11-15&Action=DescribeInstances"),
            "DescribeInstances"
        );
        assert_eq!(
            action_of(Some("AmazonSSM.SendCommand"), b"{}"),
            "SendCommand"
        );
        assert_eq!(action_of(None, b"{}"), "");
    }

    #[test]
    fn the_region_comes_from_the_credential_scope() {
        assert_eq!(
            region_of_authorization(
                "AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=00"
            ),
            Some("eu-west-1")
        );
        assert_eq!(region_of_authorization("Bearer x"), None);
    }

    #[test]
    fn the_service_comes_from_the_credential_scope() {
        assert_eq!(
            service_of_authorization(
                "AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/autoscaling/aws4_request, SignedHeaders=host, Signature=00"
            ),
            Some("autoscaling")
        );
        assert_eq!(service_of_authorization("Bearer x"), None);
    }

    #[test]
    fn a_denial_speaks_the_services_protocol() {
        let ec2 = access_denied("ec2", "RunInstances");
        assert_eq!(ec2.status, 403);
        assert!(ec2.body.contains("<Code>UnauthorizedOperation</Code>"));
        let asg = access_denied("autoscaling", "AttachInstances");
        assert_eq!(asg.status, 403);
        assert!(asg.body.contains("<Code>AccessDenied</Code>"));
        assert!(asg.body.contains("autoscaling:AttachInstances"));
        let ssm = access_denied("ssm", "SendCommand");
        assert_eq!(ssm.status, 400);
        assert!(ssm.body.contains("AccessDeniedException"));
        assert!(ssm.body.contains("ssm:SendCommand"));
    }

    #[test]
    fn injected_errors_are_ec2_xml() {
        let r = Ec2Fault::request_limit_exceeded().reply();
        assert_eq!(r.status(), 503);
        let r = Ec2Fault::unauthorized().reply();
        assert_eq!(r.status(), 403);
    }
}
