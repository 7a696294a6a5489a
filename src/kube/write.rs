//! Writes whose answer the engine does not read.
//!
//! A POST, PATCH or DELETE answers with the whole object it wrote (or a
//! `Status`). `Api::create`, `Api::patch` and `Api::delete` decode it into
//! the typed object, which for a Node is most of what the request costs
//! the client: allocating every field of an object nothing looks at. These
//! send the request kube's `Api` builds and read the answer only for
//! success or failure: an error answer still becomes `kube::Error::Api`
//! (what `with_retry`, 404 and 409 handling look at), as with `Api`.

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::Request;
use kube::{Client, Resource};
use serde::Serialize;

/// The collection URL of `K` (in `namespace` when it is namespaced).
fn collection<K: Resource<DynamicType = ()>>(namespace: Option<&str>) -> Request {
    Request::new(K::url_path(&(), namespace))
}

async fn send(client: &Client, request: http::Request<Vec<u8>>) -> Result<(), kube::Error> {
    client.request_text(request).await.map(drop)
}

/// POST `object` to its collection.
pub async fn create<K>(
    client: &Client,
    namespace: Option<&str>,
    object: &K,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let request = collection::<K>(namespace)
        .create(&PostParams::default(), body)
        .map_err(kube::Error::BuildRequest)?;
    send(client, request).await
}

/// PATCH the object `name` with `patch`.
pub async fn patch<K, P>(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
    patch: &Patch<P>,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()>,
    P: Serialize,
{
    let request = collection::<K>(namespace)
        .patch(name, &PatchParams::default(), patch)
        .map_err(kube::Error::BuildRequest)?;
    send(client, request).await
}

/// DELETE the object `name`.
pub async fn delete<K>(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
    params: &DeleteParams,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    let request = collection::<K>(namespace)
        .delete(name, params)
        .map_err(kube::Error::BuildRequest)?;
    send(client, request).await
}
