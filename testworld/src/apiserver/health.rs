//! `/healthz`, `/livez`, `/readyz` and their per-check children, worded as
//! the API server's health handlers write them
//! (`apiserver/pkg/server/healthz/healthz.go`): `ok`, or with `?verbose`
//! one `[+]<check> ok` line per check and `<endpoint> check passed`. The
//! emulator is healthy whenever it answers.

/// The checks of a kube-apiserver's health endpoints (a representative
/// subset of its post-start hooks); `/readyz` adds the readiness-only ones.
const CHECKS: &[&str] = &[
    "ping",
    "log",
    "etcd",
    "poststarthook/start-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/start-apiextensions-informers",
    "poststarthook/start-apiextensions-controllers",
    "poststarthook/crd-informer-synced",
    "poststarthook/start-system-namespaces-controller",
    "poststarthook/bootstrap-controller",
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
    "poststarthook/start-kube-aggregator-informers",
    "poststarthook/apiservice-registration-controller",
    "poststarthook/kube-apiserver-autoregistration",
    "autoregister-completion",
];
const READINESS_ONLY: &[&str] = &["etcd-readiness", "informer-sync", "shutdown"];

fn checks(endpoint: &str) -> Vec<&'static str> {
    let mut all = CHECKS.to_vec();
    if endpoint == "readyz" {
        // Upstream registers these after etcd and at the end.
        all.insert(3, READINESS_ONLY[0]);
        all.insert(4, READINESS_ONLY[1]);
        all.push(READINESS_ONLY[2]);
    }
    all
}

/// The answer to `/<endpoint>[/<check>]`, or `None` for an unknown check
/// (404).
pub(crate) fn answer(endpoint: &str, check: &str, verbose: bool) -> Option<String> {
    let known = checks(endpoint);
    if !check.is_empty() {
        return known.contains(&check).then(|| "ok".to_string());
    }
    if !verbose {
        return Some("ok".into());
    }
    let mut out: String = known.iter().map(|c| format!("[+]{c} ok\n")).collect();
    out.push_str(&format!("{endpoint} check passed\n"));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_lists_every_check() {
        let text = answer("readyz", "", true).unwrap();
        assert!(text.starts_with("[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n"));
        assert!(text.ends_with("[+]shutdown ok\nreadyz check passed\n"));
        let live = answer("livez", "", true).unwrap();
        assert!(!live.contains("shutdown") && live.ends_with("livez check passed\n"));
        assert_eq!(answer("readyz", "", false).unwrap(), "ok");
        assert_eq!(answer("livez", "etcd", false).unwrap(), "ok");
        assert_eq!(answer("livez", "nope", false), None);
    }
}
