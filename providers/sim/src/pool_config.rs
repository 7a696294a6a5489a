//! What the core is handed of the `sim` provider: `pools[].sim` of the
//! configuration, checked and read, and [`KIND`] with the providerID rule.

use std::sync::Arc;

use kubesurge_provider::ProviderKind;
use kubesurge_provider::config::{Checker, FieldError, FieldPath};
use serde_json::Value;

use crate::provider::SimProvider;
use crate::provider_id::PROVIDER_ID;

/// The `sim` provider as the core is handed it.
pub const KIND: ProviderKind = ProviderKind {
    name: "sim",
    section_summary: "endpoint",
    check_pool: |section, path| parse_pool_config(section, path).err().unwrap_or_default(),
    pool_schema,
    pool_provider: |cluster, section, path| {
        let config = parse_pool_config(section, path)?;
        Ok(Arc::new(SimProvider::new(&config.endpoint, cluster)))
    },
    provider_id: PROVIDER_ID,
};

/// `pools[].sim`: the simulated cloud a pool launches in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimPoolConfig {
    /// `http(s)://host:port` of the simulated cloud.
    pub endpoint: String,
}

const SIM_FIELDS: &[&str] = &["endpoint"];

/// The JSON Schema of `pools[].sim`, for editors.
fn pool_schema() -> Value {
    use kubesurge_provider::json_schema::{mapping, pattern};
    mapping(
        "The simulated cloud the pool launches in",
        vec![(
            "endpoint",
            pattern(
                "http(s)://host:port of the simulated cloud",
                "^https?://[^/]",
            ),
        )],
        &["endpoint"],
    )
}

/// The pool's `sim` section at `path` (`pools[0].sim`), or every problem
/// with it.
pub fn parse_pool_config(
    section: &Value,
    path: &FieldPath,
) -> Result<SimPoolConfig, Vec<FieldError>> {
    let mut check = Checker::new();
    let config = sim(&mut check, path, section);
    check.finish(config)
}

fn sim(check: &mut Checker, path: &FieldPath, value: &Value) -> Option<SimPoolConfig> {
    let sim = check.mapping(path, value, SIM_FIELDS)?;
    let endpoint =
        check.required_string(path, sim, "endpoint", "a URL such as http://127.0.0.1:8080")?;
    match endpoint.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty()) =>
        {
            Some(SimPoolConfig {
                endpoint: endpoint.to_string(),
            })
        }
        _ => {
            check.error(
                &path.key("endpoint"),
                format!("{endpoint:?} is not an http(s) URL (such as http://127.0.0.1:8080)"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_has_the_fields_the_walker_reads() {
        let schema = pool_schema();
        assert_eq!(
            kubesurge_provider::json_schema::property_names(&schema),
            SIM_FIELDS
        );
    }

    fn path() -> FieldPath {
        FieldPath::root().key("pools").index(0).key("sim")
    }

    #[test]
    fn an_endpoint_is_an_http_url() {
        assert_eq!(
            parse_pool_config(&json!({"endpoint": "http://127.0.0.1:9"}), &path()),
            Ok(SimPoolConfig {
                endpoint: "http://127.0.0.1:9".into()
            })
        );
        let errors =
            parse_pool_config(&json!({"endpoint": "not-a-url"}), &path()).expect_err("invalid");
        assert_eq!(errors[0].path, "pools[0].sim.endpoint");
        assert!(
            errors[0]
                .message
                .contains("\"not-a-url\" is not an http(s) URL"),
            "{errors:?}"
        );
        let errors =
            parse_pool_config(&json!({"endpoit": "http://h:1"}), &path()).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "pools[0].sim.endpoit: unknown field; did you mean \"endpoint\"?",
                "pools[0].sim.endpoint: required (a URL such as http://127.0.0.1:8080)",
            ]
        );
    }
}
