//! The run's cloud calls behind the run lock's fence (design §5 step 2): a
//! run that can no longer prove it holds the lock launches, terminates and
//! changes nothing more at the provider, as its Kubernetes clients write
//! nothing more. Reads go on.

use std::sync::Arc;

use async_trait::async_trait;
use kubesurge_provider::{
    CloudProvider, DeleteStatus, Image, Instance, InstanceId, LaunchRequest, NodeRef,
    PermissionCheck, PermissionProbe, PoolRef, ProviderError,
};

use super::EngineConfig;
use crate::kube::fence::Fence;

/// Every pool's provider of `config` behind `fence`.
pub fn behind_fence(mut config: EngineConfig, fence: &Fence) -> EngineConfig {
    for pool in &mut config.pools {
        pool.provider = Arc::new(FencedProvider {
            inner: pool.provider.clone(),
            fence: fence.clone(),
        });
    }
    config
}

struct FencedProvider {
    inner: Arc<dyn CloudProvider>,
    fence: Fence,
}

impl FencedProvider {
    fn check(&self) -> Result<(), ProviderError> {
        self.fence.check().map_err(|fenced| ProviderError::Other {
            message: fenced.to_string(),
        })
    }
}

#[async_trait]
impl CloudProvider for FencedProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn list(&self, pool: &PoolRef) -> Result<Vec<Instance>, ProviderError> {
        self.inner.list(pool).await
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, ProviderError> {
        self.check()?;
        self.inner.launch(request).await
    }

    async fn get(&self, id: &InstanceId) -> Result<Option<Instance>, ProviderError> {
        self.inner.get(id).await
    }

    async fn get_many(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, ProviderError> {
        self.inner.get_many(ids).await
    }

    async fn delete(&self, id: &InstanceId) -> Result<DeleteStatus, ProviderError> {
        self.check()?;
        self.inner.delete(id).await
    }

    async fn instance_for(&self, node: &NodeRef) -> Result<Option<Instance>, ProviderError> {
        self.inner.instance_for(node).await
    }

    async fn resolve_image(&self, pool: &PoolRef, version: &str) -> Result<Image, ProviderError> {
        self.inner.resolve_image(pool, version).await
    }

    async fn prepare_pool(
        &self,
        pool: &PoolRef,
        surge: u32,
        run_id: &str,
    ) -> Result<(), ProviderError> {
        self.check()?;
        self.inner.prepare_pool(pool, surge, run_id).await
    }

    async fn restore_pool(&self, pool: &PoolRef) -> Result<(), ProviderError> {
        // The pool may be the winner's by now: its record is its own.
        self.check()?;
        self.inner.restore_pool(pool).await
    }

    async fn check_permissions(&self, probe: &PermissionProbe) -> Vec<PermissionCheck> {
        // Dry runs: they change nothing.
        self.inner.check_permissions(probe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::instances::tests::Scripted;

    #[tokio::test]
    async fn once_fenced_only_reads_reach_the_provider() {
        let fence = Fence::new();
        let provider = FencedProvider {
            inner: Arc::new(Scripted::default()),
            fence: fence.clone(),
        };
        let pool = PoolRef {
            cluster: "c".into(),
            pool: "p".into(),
        };
        let id = InstanceId::from("i-1");
        assert!(provider.delete(&id).await.is_ok());
        fence.raise("taken over");
        let refused = provider.delete(&id).await.unwrap_err();
        assert!(
            refused.to_string().contains("no longer holds the run lock"),
            "{refused}"
        );
        assert!(provider.restore_pool(&pool).await.is_err());
        assert!(provider.prepare_pool(&pool, 1, "r").await.is_err());
        assert!(provider.list(&pool).await.is_ok());
    }
}
