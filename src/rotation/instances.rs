//! Calls to a pool's provider that every user of instances shares: retrying
//! through throttling, and terminating until the provider says gone
//! (design §9: deleting and waiting are the same idempotent loop).

use std::future::Future;
use std::time::Duration;

use super::deadlines::PROVIDER_RETRY_BUDGET;
use backon::{ExponentialBuilder, Retryable};
use kubesurge_provider::{CloudProvider, DeleteStatus, InstanceId, ProviderError};
use thiserror::Error;
use tokio::time::Instant;

/// First and longest pause between two delete calls on an instance that is
/// still terminating: EC2 takes tens of seconds, the test world
/// milliseconds.
const DELETE_POLL_FIRST: Duration = Duration::from_millis(100);
const DELETE_POLL_MAX: Duration = Duration::from_secs(5);

/// Why an instance could not be terminated.
#[derive(Debug, Error)]
pub enum DeleteError {
    /// The provider refused, or kept failing past its retry budget.
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    /// Termination started but did not finish in time.
    #[error("instance {id} still not terminated after {after:?}")]
    Timeout { id: InstanceId, after: Duration },
}

/// Retry a provider call through throttling and transient failures
/// ([`ProviderError::is_retryable`]), for up to [`PROVIDER_RETRY_BUDGET`];
/// any other error returns at once. `what` names the call in logs.
pub async fn provider_retry<T, F, Fut>(what: &str, call: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(PROVIDER_RETRY_BUDGET));
    call.retry(backoff)
        .when(ProviderError::is_retryable)
        .notify(|error, delay| {
            tracing::debug!(call = what, %error, ?delay, "provider call failed; retrying");
        })
        .await
}

/// Ask the provider to terminate `id` until it reports the instance gone,
/// for up to `timeout`. Already gone is success.
pub async fn delete_until_gone(
    provider: &dyn CloudProvider,
    id: &InstanceId,
    timeout: Duration,
) -> Result<(), DeleteError> {
    let deadline = Instant::now() + timeout;
    let mut delay = DELETE_POLL_FIRST;
    loop {
        match provider_retry("terminate", || provider.delete(id)).await? {
            DeleteStatus::Gone => return Ok(()),
            DeleteStatus::InProgress => {}
        }
        if Instant::now() >= deadline {
            return Err(DeleteError::Timeout {
                id: id.clone(),
                after: timeout,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(DELETE_POLL_MAX);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use kubesurge_provider::{Image, Instance, LaunchRequest, NodeRef, PoolRef};

    use super::*;

    /// A provider that answers `delete` from a script, then `Gone`, and
    /// lists `instances`; counts the delete calls.
    #[derive(Default)]
    pub(crate) struct Scripted {
        pub(crate) deletes: Mutex<VecDeque<Result<DeleteStatus, ProviderError>>>,
        pub(crate) delete_calls: Mutex<Vec<InstanceId>>,
        pub(crate) instances: Vec<Instance>,
    }

    impl Scripted {
        pub(crate) fn answering(
            answers: impl IntoIterator<Item = Result<DeleteStatus, ProviderError>>,
        ) -> Scripted {
            Scripted {
                deletes: Mutex::new(answers.into_iter().collect()),
                ..Scripted::default()
            }
        }

        pub(crate) fn calls(&self) -> usize {
            self.delete_calls.lock().unwrap().len()
        }
    }

    #[async_trait]
    impl CloudProvider for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        async fn list(&self, _: &PoolRef) -> Result<Vec<Instance>, ProviderError> {
            Ok(self.instances.clone())
        }
        async fn launch(&self, _: &LaunchRequest) -> Result<Instance, ProviderError> {
            Err(ProviderError::Other {
                message: "not scripted".into(),
            })
        }
        async fn get(&self, _: &InstanceId) -> Result<Option<Instance>, ProviderError> {
            Ok(None)
        }
        async fn delete(&self, id: &InstanceId) -> Result<DeleteStatus, ProviderError> {
            self.delete_calls.lock().unwrap().push(id.clone());
            self.deletes
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(DeleteStatus::Gone))
        }
        async fn instance_for(&self, _: &NodeRef) -> Result<Option<Instance>, ProviderError> {
            Ok(None)
        }
        async fn resolve_image(&self, _: &PoolRef, _: &str) -> Result<Image, ProviderError> {
            Err(ProviderError::NotFound {
                what: "image".into(),
            })
        }
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn deletes_until_the_provider_says_gone() {
        let provider = Scripted::answering([
            Ok(DeleteStatus::InProgress),
            Ok(DeleteStatus::InProgress),
            Ok(DeleteStatus::Gone),
        ]);
        delete_until_gone(&provider, &"i-1".into(), LONG)
            .await
            .unwrap();
        assert_eq!(provider.calls(), 3);
    }

    #[tokio::test]
    async fn throttling_is_retried_and_a_refusal_is_not() {
        let throttled = Scripted::answering([
            Err(ProviderError::Throttled {
                message: "slow down".into(),
            }),
            Ok(DeleteStatus::Gone),
        ]);
        delete_until_gone(&throttled, &"i-1".into(), LONG)
            .await
            .unwrap();
        assert_eq!(throttled.calls(), 2);

        let refused = Scripted::answering([Err(ProviderError::InvalidConfig {
            message: "not this cluster's instance".into(),
        })]);
        let error = delete_until_gone(&refused, &"i-2".into(), LONG)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                DeleteError::Provider(ProviderError::InvalidConfig { .. })
            ),
            "{error:?}"
        );
        assert_eq!(refused.calls(), 1);
    }

    #[tokio::test]
    async fn an_instance_that_stays_terminating_times_out_naming_it() {
        let provider =
            Scripted::answering(std::iter::repeat_n(Ok(DeleteStatus::InProgress), 1_000));
        let error = delete_until_gone(&provider, &"i-3".into(), Duration::from_millis(250))
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("instance i-3 still not terminated after"),
            "{error}"
        );
        assert!(provider.calls() >= 2, "{}", provider.calls());
    }
}
