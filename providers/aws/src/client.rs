//! SDK configuration: the standard AWS chain (environment, profile, SSO,
//! instance role) for credentials and endpoint, the pool's region, the
//! standard retry, and an HTTPS client over rustls with ring (the SDK's
//! default client needs aws-lc, a C library we do not build) that goes
//! through the proxy the environment names, as the AWS CLI does
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, upper or lower case:
//! https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-proxy.html).

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::{Credentials, SharedHttpClient};
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use crate::config::ClientOptions;

/// The HTTPS client every SDK client of ours uses: through the
/// environment's proxy, except for the instance metadata service.
pub fn http_client() -> SharedHttpClient {
    SharedHttpClient::new(MetadataDirect {
        proxied: rustls_client(ProxyConfig::from_env()),
        direct: rustls_client(ProxyConfig::disabled()),
    })
}

/// The SDK's builder leaves proxies off unless its connector is given a
/// proxy setting, so the connector is made here as `Builder::build_https`
/// makes it (one per timeout setting, cached by the builder), with
/// `proxy`.
fn rustls_client(proxy: ProxyConfig) -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = Connector::builder().proxy_config(proxy.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build()
    })
}

/// The instance metadata service answers on a link-local address only the
/// instance itself reaches: through a proxy, the credential chain's
/// instance role would fail. The AWS CLI leaves this to the user
/// (`NO_PROXY=169.254.169.254`, in the page cited above); a CronJob on a
/// node of a cluster that sets `HTTP_PROXY` for every pod would lose its
/// credentials, so the metadata service is always reached directly.
#[derive(Debug)]
struct MetadataDirect {
    proxied: SharedHttpClient,
    direct: SharedHttpClient,
}

/// The metadata service's addresses (IPv4 and IPv6):
/// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html
const METADATA_HOSTS: [&str; 2] = ["169.254.169.254", "[fd00:ec2::254]"];

fn is_metadata(uri: &str) -> bool {
    let authority = uri
        .split_once("://")
        .map_or(uri, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => host,
        _ => authority,
    };
    METADATA_HOSTS.contains(&host)
}

impl HttpClient for MetadataDirect {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(MetadataDirectConnector {
            proxied: self.proxied.http_connector(settings, components),
            direct: self.direct.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct MetadataDirectConnector {
    proxied: SharedHttpConnector,
    direct: SharedHttpConnector,
}

impl HttpConnector for MetadataDirectConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if is_metadata(request.uri()) {
            self.direct.call(request)
        } else {
            self.proxied.call(request)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::is_metadata;

    #[test]
    fn only_the_metadata_service_is_reached_directly() {
        for uri in [
            "http://169.254.169.254/latest/api/token",
            "http://169.254.169.254:80/latest/meta-data/iam/security-credentials/",
            "http://[fd00:ec2::254]/latest/api/token",
            "http://[fd00:ec2::254]:80/latest/api/token",
        ] {
            assert!(is_metadata(uri), "{uri}");
        }
        for uri in [
            "https://ec2.eu-west-1.amazonaws.com/",
            "http://127.0.0.1:5000/?Action=DescribeInstances",
            "https://169.254.169.254.example.com/",
        ] {
            assert!(!is_metadata(uri), "{uri}");
        }
    }
}
