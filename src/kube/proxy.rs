//! Which proxy, if any, carries the requests to the API server — decided
//! as kubectl decides it, so that a run behind a corporate proxy or a
//! bastion tunnel reaches the cluster whenever kubectl does, and only then.
//!
//! client-go's rules (staging/src/k8s.io/client-go/rest/transport.go and
//! transport/cache.go; golang.org/x/net/http/httpproxy for the
//! environment):
//! - a kubeconfig cluster's `proxy-url` is used as it is, for that
//!   cluster only; `NO_PROXY` does not apply to it;
//! - otherwise the environment: `HTTPS_PROXY` (then `https_proxy`) for an
//!   `https://` server, `HTTP_PROXY` (then `http_proxy`) for `http://`; a
//!   value without a scheme means `http://`;
//! - never through the environment's proxy for `localhost` or a loopback
//!   address, nor for a host `NO_PROXY` (then `no_proxy`) names: `*`,
//!   an IP, a CIDR, a domain (`example.com` matches it and its
//!   subdomains, `.example.com` and `*.example.com` only its subdomains),
//!   each optionally with `:port`.
//!
//! kube's own loader reads `HTTPS_PROXY` too but tests `NO_PROXY` against
//! the proxy's address instead of the server's
//! (kube-client 5.0 `config/file_loader.rs`, `proxy_url`), and knows
//! nothing of loopback; its answer is replaced by this one.

use std::net::IpAddr;

use http::Uri;
use thiserror::Error;

/// The proxy settings of the process's environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub https_proxy: Option<String>,
    pub http_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// Upper case first, as Go's `httpproxy.FromEnvironment`; empty values
    /// count as unset.
    pub fn from_process() -> Self {
        let var = |upper: &str, lower: &str| {
            [upper, lower]
                .iter()
                .filter_map(|name| std::env::var(name).ok())
                .find(|v| !v.trim().is_empty())
        };
        Self {
            https_proxy: var("HTTPS_PROXY", "https_proxy"),
            http_proxy: var("HTTP_PROXY", "http_proxy"),
            no_proxy: var("NO_PROXY", "no_proxy"),
        }
    }
}

/// A proxy setting that cannot be used, named by where it came from.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("proxy {value:?} (from {origin}) is not a URL")]
    NotAUrl { value: String, origin: &'static str },
    #[error(
        "proxy {value:?} (from {origin}) uses {scheme}://; kubesurge reaches the API server \
         through http:// (HTTP CONNECT) or socks5:// proxies"
    )]
    UnsupportedScheme {
        value: String,
        origin: &'static str,
        scheme: String,
    },
}

/// The proxy for requests to `server`: the kubeconfig cluster's
/// `proxy-url` when it has one, else the environment's, unless the server
/// is exempt.
pub fn proxy_for(
    server: &Uri,
    kubeconfig_proxy_url: Option<&str>,
    env: &ProxyEnv,
) -> Result<Option<Uri>, ProxyError> {
    if let Some(url) = kubeconfig_proxy_url.filter(|u| !u.trim().is_empty()) {
        return parse_proxy(url, "the kubeconfig cluster's proxy-url").map(Some);
    }
    let (value, origin) = match server.scheme_str() {
        Some("http") => (env.http_proxy.as_deref(), "HTTP_PROXY"),
        _ => (env.https_proxy.as_deref(), "HTTPS_PROXY"),
    };
    let Some(value) = value else {
        return Ok(None);
    };
    let Some(host) = server.host() else {
        return Ok(None);
    };
    let port = server
        .port_u16()
        .unwrap_or(if server.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    if is_local(host)
        || env
            .no_proxy
            .as_deref()
            .is_some_and(|rules| exempts(rules, host, port))
    {
        return Ok(None);
    }
    parse_proxy(value, origin).map(Some)
}

fn parse_proxy(value: &str, origin: &'static str) -> Result<Uri, ProxyError> {
    let value = value.trim();
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let uri: Uri = with_scheme.parse().map_err(|_| ProxyError::NotAUrl {
        value: value.to_string(),
        origin,
    })?;
    if uri.host().is_none() {
        return Err(ProxyError::NotAUrl {
            value: value.to_string(),
            origin,
        });
    }
    match uri.scheme_str() {
        Some("http" | "socks5") => Ok(uri),
        other => Err(ProxyError::UnsupportedScheme {
            value: value.to_string(),
            origin,
            scheme: other.unwrap_or_default().to_string(),
        }),
    }
}

/// The address without brackets, as an IP when it is one.
fn ip_of(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || ip_of(host).is_some_and(|ip| ip.is_loopback())
}

/// Whether a `NO_PROXY` list exempts `host:port`.
fn exempts(rules: &str, host: &str, port: u16) -> bool {
    let host = host.to_ascii_lowercase();
    let host_ip = ip_of(&host);
    rules
        .split(',')
        .map(|rule| rule.trim().to_ascii_lowercase())
        .filter(|rule| !rule.is_empty())
        .any(|rule| {
            if rule == "*" {
                return true;
            }
            if let Some((network, bits)) = rule.split_once('/') {
                return match (host_ip, ip_of(network), bits.parse::<u8>()) {
                    (Some(ip), Some(net), Ok(bits)) => in_network(ip, net, bits),
                    _ => false,
                };
            }
            let (name, rule_port) = split_port(&rule);
            if rule_port.is_some_and(|p| p != port) {
                return false;
            }
            if let Some(ip) = ip_of(name) {
                return host_ip == Some(ip);
            }
            let name = name.trim_start_matches('*');
            match name.strip_prefix('.') {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == name || host.ends_with(&format!(".{name}")),
            }
        })
}

/// `example.com:8443` → (`example.com`, 8443); `[::1]:80` → (`[::1]`, 80);
/// a bare IPv6 address keeps its colons.
fn split_port(rule: &str) -> (&str, Option<u16>) {
    if rule.starts_with('[') {
        if let Some((host, port)) = rule.rsplit_once("]:") {
            return (&rule[..host.len() + 1], port.parse().ok());
        }
        return (rule, None);
    }
    match rule.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (rule, None),
    }
}

fn in_network(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(https: &str, no_proxy: &str) -> ProxyEnv {
        ProxyEnv {
            https_proxy: Some(https.to_string()).filter(|v| !v.is_empty()),
            http_proxy: None,
            no_proxy: Some(no_proxy.to_string()).filter(|v| !v.is_empty()),
        }
    }

    fn chosen(server: &str, kubeconfig: Option<&str>, env: &ProxyEnv) -> Option<String> {
        proxy_for(&server.parse().unwrap(), kubeconfig, env)
            .unwrap()
            .map(|u| u.to_string())
    }

    #[test]
    fn the_kubeconfig_proxy_url_wins_and_ignores_no_proxy() {
        let e = env("http://env-proxy:3128", "*");
        assert_eq!(
            chosen(
                "https://127.0.0.1:6443",
                Some("socks5://127.0.0.1:1080"),
                &e
            ),
            Some("socks5://127.0.0.1:1080/".to_string())
        );
    }

    #[test]
    fn the_environment_proxies_remote_servers_by_scheme() {
        let e = ProxyEnv {
            https_proxy: Some("proxy.corp:3128".into()),
            http_proxy: Some("http://plain.corp:80".into()),
            no_proxy: None,
        };
        assert_eq!(
            chosen("https://api.prod.example:6443", None, &e),
            Some("http://proxy.corp:3128/".to_string()),
            "a value without a scheme is http://"
        );
        assert_eq!(
            chosen("http://api.prod.example:8080", None, &e),
            Some("http://plain.corp:80/".to_string())
        );
        assert_eq!(
            chosen("https://api.prod.example", None, &ProxyEnv::default()),
            None
        );
    }

    #[test]
    fn loopback_and_localhost_never_take_the_environment_proxy() {
        let e = env("http://proxy.corp:3128", "");
        for server in [
            "https://127.0.0.1:6443",
            "https://127.9.8.7:6443",
            "https://[::1]:6443",
            "https://LOCALHOST:6443",
        ] {
            assert_eq!(chosen(server, None, &e), None, "{server}");
        }
    }

    #[test]
    fn no_proxy_rules_match_as_go_matches_them() {
        let server = "https://api.prod.example.com:6443";
        let cases = [
            ("*", true),
            ("example.com", true),
            ("prod.example.com", true),
            (".example.com", true),
            ("*.example.com", true),
            ("api.prod.example.com:6443", true),
            ("api.prod.example.com:443", false),
            ("ample.com", false),
            ("other.org, example.com", true),
            ("10.0.0.0/8", false),
        ];
        for (rules, exempt) in cases {
            let got = chosen(server, None, &env("http://proxy:3128", rules));
            assert_eq!(got.is_none(), exempt, "NO_PROXY={rules}");
        }
        // `.example.com` does not match example.com itself; `example.com` does.
        let apex = "https://example.com";
        assert!(chosen(apex, None, &env("http://proxy:3128", ".example.com")).is_some());
        assert!(chosen(apex, None, &env("http://proxy:3128", "example.com")).is_none());
        let ip = "https://10.1.2.3:6443";
        for (rules, exempt) in [
            ("10.0.0.0/8", true),
            ("10.1.2.3", true),
            ("10.1.2.3:6443", true),
            ("10.1.2.4", false),
            ("192.168.0.0/16", false),
            ("fd00::/8", false),
        ] {
            let got = chosen(ip, None, &env("http://proxy:3128", rules));
            assert_eq!(got.is_none(), exempt, "NO_PROXY={rules}");
        }
        let v6 = "https://[fd00::5]:6443";
        assert!(chosen(v6, None, &env("http://proxy:3128", "fd00::/8")).is_none());
        assert!(chosen(v6, None, &env("http://proxy:3128", "[fd00::5]:6443")).is_none());
        assert!(chosen(v6, None, &env("http://proxy:3128", "fd00::6")).is_some());
    }

    #[test]
    fn unusable_proxies_are_named_with_their_origin() {
        let server: Uri = "https://api.prod.example:6443".parse().unwrap();
        let error = proxy_for(&server, None, &env("https://proxy.corp:3128", "")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "proxy \"https://proxy.corp:3128\" (from HTTPS_PROXY) uses https://; kubesurge \
             reaches the API server through http:// (HTTP CONNECT) or socks5:// proxies"
        );
        let error = proxy_for(&server, Some("http://"), &ProxyEnv::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the kubeconfig cluster's proxy-url"),
            "{error}"
        );
    }
}
