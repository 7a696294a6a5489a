//! Lists of any length, page by page: the one place that follows the API
//! server's `continue` tokens.

use std::fmt::Debug;
use std::ops::ControlFlow;

use kube::Api;
use kube::api::{ListParams, ObjectList};
use serde::de::DeserializeOwned;

/// Items per list page: big enough that most clusters need one request,
/// small enough not to load the API server (kubectl's chunk size).
pub const PAGE_SIZE: u32 = 500;

/// Every item of a list, following `continue` tokens page by page.
pub async fn list_all<K>(api: &Api<K>, params: &ListParams) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut items = Vec::new();
    let found = visit_pages(api, params, |page: Vec<K>| {
        items.extend(page);
        ControlFlow::<()>::Continue(())
    })
    .await?;
    debug_assert!(found.is_none());
    Ok(items)
}

/// Hand each page of a list to `visit` until it breaks with an answer
/// (`Some`) or the list ends (`None`): a search reads no further page than
/// it needs.
pub async fn visit_pages<K, T>(
    api: &Api<K>,
    params: &ListParams,
    mut visit: impl FnMut(Vec<K>) -> ControlFlow<T>,
) -> Result<Option<T>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    pages(api, params, |page| visit(page.items)).await
}

/// [`visit_pages`] with each page's list metadata.
async fn pages<K, T>(
    api: &Api<K>,
    params: &ListParams,
    mut visit: impl FnMut(ObjectList<K>) -> ControlFlow<T>,
) -> Result<Option<T>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut params = params.clone().limit(PAGE_SIZE);
    loop {
        let mut page: ObjectList<K> = api.list(&params).await?;
        let token = page
            .metadata
            .continue_
            .take()
            .filter(|token| !token.is_empty());
        if let ControlFlow::Break(answer) = visit(page) {
            return Ok(Some(answer));
        }
        match token {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(None),
        }
    }
}
