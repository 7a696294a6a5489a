//! URL → what is asked for: discovery, health, or a resource request with
//! its verb (the names RBAC and the request counters use).

use http::Method;

use crate::resources::{self, NAMESPACES, Resource};

/// A non-resource endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Special {
    Version,
    /// `/healthz`, `/livez`, `/readyz` (endpoint), and their `/…/<check>`
    /// children (check, `""` for the endpoint itself).
    Health(String, String),
    /// `/api`.
    CoreVersions,
    /// `/api/v1`.
    CoreResources,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/apis/<group>/<version>`.
    GroupResources(String, String),
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3` (`""`) and `/openapi/v3/<api/v1|apis/<g>/<v>>`.
    OpenApiV3(String),
}

/// A request on a resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRequest {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The deprecated `/api/v1/watch/...` form.
    pub watch_path: bool,
}

/// Where a URL leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Special(Special),
    Resource(ResourceRequest),
    NotFound,
}

/// Decode `%XX` escapes of one path segment or query component.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters, decoded. The last of repeated keys wins, except
/// where callers ask for all values.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
                None => (percent_decode(p, true), String::new()),
            })
            .collect();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `true`/`1` (Go's `strconv.ParseBool` accepts more; these are what
    /// clients send).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("true" | "1" | "True" | "TRUE" | "t" | "T")
        )
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> bool {
        self.all("dryRun").contains(&"All")
    }
}

/// Parse a request path.
pub fn route(path: &str) -> Route {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Route::Special(Special::Version),
        [endpoint @ ("healthz" | "livez" | "readyz"), check @ ..] => {
            Route::Special(Special::Health(endpoint.to_string(), check.join("/")))
        }
        ["openapi", "v2"] => Route::Special(Special::OpenApiV2),
        ["openapi", "v3", rest @ ..] => Route::Special(Special::OpenApiV3(rest.join("/"))),
        ["api"] => Route::Special(Special::CoreVersions),
        ["api", "v1"] => Route::Special(Special::CoreResources),
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis"] => Route::Special(Special::Groups),
        ["apis", group] if is_served_group(group) => {
            Route::Special(Special::Group(group.to_string()))
        }
        ["apis", group, version] if is_served_group_version(group, version) => Route::Special(
            Special::GroupResources(group.to_string(), version.to_string()),
        ),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn is_served_group(group: &str) -> bool {
    resources::ALL
        .iter()
        .any(|r| r.group == group && !group.is_empty())
}

fn is_served_group_version(group: &str, version: &str) -> bool {
    resources::ALL
        .iter()
        .any(|r| r.group == group && r.version == version && !group.is_empty())
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (watch_path, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let find = |plural: &str| resources::find(group, version, plural);
    let request = |resource, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourceRequest {
            resource,
            namespace: namespace.map(String::from),
            name: name.map(String::from),
            subresource: sub.map(String::from),
            watch_path,
        })
    };
    // `/api/v1/namespaces/<ns>/<plural>...` is a namespaced request unless
    // `<plural>` is a subresource of the Namespace itself.
    let is_ns_sub = |s: &str| NAMESPACES.subresources.contains(&s) || s == "finalize";
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty() && is_ns_sub(plural) && tail.is_empty()) =>
        {
            let Some(resource) = find(plural).filter(|r| r.namespaced) else {
                return Route::NotFound;
            };
            match tail {
                [] => request(resource, Some(ns), None, None),
                [name] => request(resource, Some(ns), Some(name), None),
                [name, sub] if resource.subresources.contains(sub) && !watch_path => {
                    request(resource, Some(ns), Some(name), Some(sub))
                }
                _ => Route::NotFound,
            }
        }
        [plural] => match find(plural) {
            Some(resource) => request(resource, None, None, None),
            None => Route::NotFound,
        },
        [plural, name] => match find(plural).filter(|r| !r.namespaced) {
            Some(resource) => request(resource, None, Some(name), None),
            None => Route::NotFound,
        },
        [plural, name, sub] => match find(plural).filter(|r| !r.namespaced) {
            Some(resource)
                if (resource.subresources.contains(sub)
                    || (resource == &NAMESPACES && *sub == "finalize"))
                    && !watch_path =>
            {
                request(resource, None, Some(name), Some(sub))
            }
            _ => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// The Kubernetes verb of a request (what RBAC and audit logs call it).
pub fn verb(method: &Method, request: &ResourceRequest, query: &Query) -> &'static str {
    let watching = request.watch_path || query.flag("watch");
    match *method {
        Method::GET | Method::HEAD if watching => "watch",
        Method::GET | Method::HEAD if request.name.is_none() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if request.name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{LEASES, NODES, PODS};

    fn res(path: &str) -> ResourceRequest {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn core_and_group_paths() {
        let r = res("/api/v1/namespaces/default/pods/p1/eviction");
        assert_eq!(r.resource, &PODS);
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("p1"));
        assert_eq!(r.subresource.as_deref(), Some("eviction"));
        let r = res("/api/v1/pods");
        assert_eq!((r.resource, r.namespace, r.name), (&PODS, None, None));
        let r = res("/api/v1/nodes/n1/status");
        assert_eq!(
            (r.resource, r.subresource.as_deref()),
            (&NODES, Some("status"))
        );
        let r = res("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1");
        assert_eq!((r.resource, r.name.as_deref()), (&LEASES, Some("n1")));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource, r.name.as_deref()),
            (&NAMESPACES, Some("kube-system"))
        );
        let r = res("/api/v1/namespaces/x/status");
        assert_eq!(
            (r.resource, r.subresource.as_deref()),
            (&NAMESPACES, Some("status"))
        );
        let r = res("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch_path);
        assert_eq!(route("/api/v1/namespaces/default/widgets"), Route::NotFound);
        assert_eq!(route("/api/v1/nodes/n1/eviction"), Route::NotFound);
        assert_eq!(route("/api/v1/namespaces/default/nodes"), Route::NotFound);
        assert_eq!(route("/apis/nope.io/v1"), Route::NotFound);
        assert_eq!(route("/version"), Route::Special(Special::Version));
        assert_eq!(
            route("/readyz"),
            Route::Special(Special::Health("readyz".into(), String::new()))
        );
        assert_eq!(
            route("/livez/poststarthook/rbac/bootstrap-roles"),
            Route::Special(Special::Health(
                "livez".into(),
                "poststarthook/rbac/bootstrap-roles".into()
            ))
        );
        assert_eq!(route("/openapi/v2"), Route::Special(Special::OpenApiV2));
        assert_eq!(
            route("/openapi/v3/apis/apps/v1"),
            Route::Special(Special::OpenApiV3("apis/apps/v1".into()))
        );
        assert_eq!(
            route("/apis/policy/v1"),
            Route::Special(Special::GroupResources("policy".into(), "v1".into()))
        );
    }

    #[test]
    fn query_decoding_and_verbs() {
        let q = Query::parse(Some(
            "fieldSelector=spec.nodeName%3Dn1&labelSelector=a+in+(b)&watch=1&dryRun=All",
        ));
        assert_eq!(q.get("fieldSelector"), Some("spec.nodeName=n1"));
        assert_eq!(q.get("labelSelector"), Some("a in (b)"));
        assert!(q.flag("watch"));
        assert!(q.dry_run());
        let r = res("/api/v1/pods");
        assert_eq!(verb(&Method::GET, &r, &q), "watch");
        assert_eq!(verb(&Method::GET, &r, &Query::default()), "list");
        assert_eq!(
            verb(&Method::DELETE, &r, &Query::default()),
            "deletecollection"
        );
    }
}
