//! Lists that follow every page.

use kube::Api;
use kube::api::{ListParams, ObjectList};
use serde::de::DeserializeOwned;

/// Items per list page: big enough that most clusters need one request,
/// small enough not to load the API server.
pub const PAGE_SIZE: u32 = 500;

/// Every item of a list, following `continue` tokens page by page. No
/// retry: callers that must ride an outage wrap it in
/// [`super::retry::with_retry`].
pub async fn list_all<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut params = params.limit(PAGE_SIZE);
    loop {
        let page: ObjectList<K> = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}
