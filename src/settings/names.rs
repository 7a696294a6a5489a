//! Syntax of names the configuration hands to Kubernetes and the cloud.
//! Messages complete "`<path>`: ".

/// Kubernetes DNS label (RFC 1123): what a cluster or pool name must be,
/// since both end up in tags, label values and object names.
pub fn check_dns_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty (expected a DNS label such as prod-eu1)".into());
    }
    if value.len() > 63 {
        return Err(format!("{value:?} is longer than 63 characters"));
    }
    if !is_dns_label(value) {
        return Err(format!(
            "{value:?} is not a DNS label (lowercase letters, digits and '-', \
             starting and ending with a letter or digit, such as prod-eu1)"
        ));
    }
    Ok(())
}

fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_label)
}

/// The name part of a label key, and a label value when non-empty.
fn is_label_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label (or taint) key: `[prefix/]name`.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(is_dns_subdomain);
    if !prefix_ok || !is_label_name(name) {
        return Err(format!(
            "{key:?} is not a valid label key (an optional DNS prefix and '/', then up to \
             63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// A label (or taint) value: empty, or up to 63 letters, digits, `-_.`.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid label value (up to 63 letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit)"
        ))
    }
}

/// Labels a kubelet may register its node with. The NodeRestriction
/// admission plugin, and the kubelet itself since v1.16, refuse labels under
/// `kubernetes.io` and `k8s.io` except these, so a node configured with
/// another one would never join.
pub fn check_kubelet_may_set(key: &str) -> Result<(), String> {
    const ALLOWED: [&str; 11] = [
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    ];
    let Some((prefix, _)) = key.split_once('/') else {
        return Ok(());
    };
    let under = |domain: &str| prefix == domain || prefix.ends_with(&format!(".{domain}"));
    let restricted = under("kubernetes.io") || under("k8s.io");
    let open_namespace = under("kubelet.kubernetes.io") || under("node.kubernetes.io");
    if restricted && !open_namespace && !ALLOWED.contains(&key) {
        return Err(format!(
            "{key:?} cannot be set by a kubelet (labels under kubernetes.io and k8s.io are \
             refused except node.kubernetes.io/ and kubelet.kubernetes.io/), so a new node \
             would never join; use your own prefix such as example.com/role"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["prod-eu1", "a", "general", "x1-2"] {
            assert!(check_dns_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Prod", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["kubesurge.io/pool", "app", "a.b-c_d", "example.com/x.y"] {
            assert!(check_label_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/x",
            "Example.com/x",
            "a/b/c",
            "-x",
            "x-",
            "kubesurge.io/",
        ] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
        for ok in ["", "general", "v1.2_3", "A"] {
            assert!(check_label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-x", "a b", &"a".repeat(64)] {
            assert!(check_label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kubelet_label_restrictions() {
        for ok in [
            "kubesurge.io/pool",
            "node.kubernetes.io/lifecycle",
            "team.node.kubernetes.io/x",
            "kubelet.kubernetes.io/x",
            "topology.kubernetes.io/zone",
            "plain",
        ] {
            assert!(check_kubelet_may_set(ok).is_ok(), "{ok}");
        }
        for bad in [
            "node-role.kubernetes.io/worker",
            "kubernetes.io/role",
            "k8s.io/x",
            "foo.k8s.io/x",
        ] {
            assert!(check_kubelet_may_set(bad).is_err(), "{bad}");
        }
    }
}
