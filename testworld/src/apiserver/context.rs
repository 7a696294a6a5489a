//! What a resource handler sees of one request: who asks, the route,
//! query, headers and body, and how to answer (Table, partial metadata,
//! protobuf).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, header};

use super::rbac::UserInfo;
use super::route::{Query, ResourceRequest};
use super::shared::Shared;
use super::table::TableRequest;

/// What a resource handler sees of the request.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    /// Who is asking.
    pub user: &'a UserInfo,
    pub method: &'a Method,
    pub req: &'a ResourceRequest,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub table: Option<TableRequest>,
    /// Answer with `PartialObjectMetadata` instead of whole objects.
    pub partial: bool,
    /// Answer objects and lists in protobuf (the client prefers it).
    pub protobuf: bool,
    /// `Warning` headers for the answer (unknown fields under
    /// `fieldValidation=Warn`).
    pub warnings: Mutex<Vec<String>>,
}

impl Ctx<'_> {
    pub fn store(&self) -> &crate::store::Store {
        &self.shared.store
    }

    /// The namespace of the URL, `""` for cluster-scoped requests.
    pub fn namespace(&self) -> &str {
        self.req.namespace.as_deref().unwrap_or("")
    }

    /// The object name of the URL, `""` for collections.
    pub fn name(&self) -> &str {
        self.req.name.as_deref().unwrap_or("")
    }

    /// Add `Warning` headers to the answer.
    pub fn warn(&self, texts: Vec<String>) {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(texts);
    }

    /// The `Content-Type` without parameters.
    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default()
    }

    /// `fieldManager`, or what real servers derive from the User-Agent.
    pub fn field_manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        agent
            .split('/')
            .next()
            .unwrap_or("unknown")
            .chars()
            .take(128)
            .collect()
    }
}
