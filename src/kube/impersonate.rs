//! Acting as another user (`--as`, `--as-group`, or the kubeconfig user's
//! `as`, `as-groups`, `as-uid`, `as-user-extra`), as kubectl does: every
//! request carries the `Impersonate-*` headers and the API server
//! authorizes it as that user, after checking that the real one may
//! `impersonate` (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation).
//!
//! kube reads these kubeconfig fields but sends no header for them: without
//! this layer a kubeconfig meant to act with fewer rights would act with
//! all of its user's.

use std::collections::BTreeMap;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower::{Layer, Service};

/// Who requests act as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    pub fn is_none(&self) -> bool {
        self.user.is_none() && self.groups.is_empty() && self.uid.is_none() && self.extra.is_empty()
    }

    /// The headers, in the order kubectl sends them. A value that cannot be
    /// a header (a newline in a user name) is left out: the request is then
    /// made as the real user, and the API server's answer says so.
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        let mut push = |name: &str, value: &str| {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.push((name, value));
            }
        };
        if let Some(user) = &self.user {
            push("impersonate-user", user);
        }
        if let Some(uid) = &self.uid {
            push("impersonate-uid", uid);
        }
        for group in &self.groups {
            push("impersonate-group", group);
        }
        for (key, values) in &self.extra {
            // Keys are percent-encoded in the header name (RFC 3986
            // unreserved characters kept), as client-go's transport does.
            let key: String = key
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            for value in values {
                push(&format!("impersonate-extra-{key}"), value);
            }
        }
        headers
    }
}

/// Adds the impersonation headers to every request.
#[derive(Clone, Debug)]
pub struct ImpersonateLayer {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ImpersonateLayer {
    pub fn new(impersonation: &Impersonation) -> Self {
        Self {
            headers: impersonation.headers(),
        }
    }
}

impl<S> Layer<S> for ImpersonateLayer {
    type Service = Impersonating<S>;

    fn layer(&self, inner: S) -> Impersonating<S> {
        Impersonating {
            inner,
            headers: self.headers.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Impersonating<S> {
    inner: S,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl<S, B> Service<Request<B>> for Impersonating<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        for (name, value) in &self.headers {
            request.headers_mut().append(name.clone(), value.clone());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_the_user_its_groups_uid_and_extras() {
        let impersonation = Impersonation {
            user: Some("system:serviceaccount:kube-system:kubesurge".into()),
            groups: vec!["system:serviceaccounts".into(), "ops".into()],
            uid: Some("42".into()),
            extra: BTreeMap::from([("scopes.example.com/x y".into(), vec!["a".into()])]),
        };
        let headers: Vec<(String, String)> = impersonation
            .headers()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let expected = [
            (
                "impersonate-user",
                "system:serviceaccount:kube-system:kubesurge",
            ),
            ("impersonate-uid", "42"),
            ("impersonate-group", "system:serviceaccounts"),
            ("impersonate-group", "ops"),
            // Header names travel in lower case; the API server unescapes
            // %2f as %2F.
            ("impersonate-extra-scopes.example.com%2fx%20y", "a"),
        ];
        assert_eq!(
            headers,
            expected
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
        assert!(Impersonation::default().headers().is_empty());
        assert!(Impersonation::default().is_none());
    }
}
