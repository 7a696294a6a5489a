//! SDK configuration: the standard AWS chain (environment, profile, SSO,
//! instance role) for credentials and endpoint, the pool's region, the
//! standard retry, and an HTTPS client over rustls with ring (the SDK's
//! default client needs aws-lc, a C library we do not build).

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::{Credentials, SharedHttpClient};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::config::ClientOptions;

/// The HTTPS client every SDK client of ours uses.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Load the SDK configuration: the standard chain, overridden by `region`
/// and by what `options` sets.
pub async fn load_sdk_config(region: Option<&str>, options: &ClientOptions) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(options.max_attempts.max(1))
                .with_initial_backoff(options.initial_backoff),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(options.attempt_timeout)
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some((key, secret)) = &options.static_credentials {
        loader = loader.credentials_provider(Credentials::new(
            key.clone(),
            secret.clone(),
            None,
            None,
            "kubesurge-static",
        ));
    }
    loader.load().await
}
