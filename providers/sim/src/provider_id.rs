//! The providerID of a simulated machine, `sim:///<zone>/<id>`: the cloud
//! gives it to each instance, a machine registers its Node with it, and
//! the provider reads the instance id back from it.

use kubesurge_provider::ProviderIdRule;

/// `sim:///<zone>/<id>`. A simulated machine puts its own providerID into
/// its join configuration where the user data's placeholder is; a script
/// run on one reads it from the simulated metadata.
pub const PROVIDER_ID: ProviderIdRule = ProviderIdRule {
    script: "  cat /run/kubesurge-sim/provider-id",
    instance_id: |provider_id| parse_provider_id(provider_id).map(|(_, id)| id),
};

/// The provider id of an instance: `sim:///<zone>/<id>`.
pub fn provider_id(zone: &str, id: &str) -> String {
    format!("sim:///{zone}/{id}")
}

/// The zone and instance id of a `sim:///<zone>/<id>` provider id; the
/// zone-less `sim:////<id>` gives an empty zone (as cloud-provider-aws
/// reads `aws:////<id>`).
pub fn parse_provider_id(provider_id: &str) -> Option<(&str, &str)> {
    let rest = provider_id.strip_prefix("sim:///")?;
    let (zone, id) = rest.split_once('/')?;
    (id.starts_with("i-") && id.len() > 2 && !id.contains('/')).then_some((zone, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_round_trip() {
        assert_eq!(
            parse_provider_id("sim:///zone-a/i-0123456789abcdef0"),
            Some(("zone-a", "i-0123456789abcdef0"))
        );
        assert_eq!(parse_provider_id("aws:///zone-a/i-1"), None);
        assert_eq!(parse_provider_id("sim:///zone-a/"), None);
        assert_eq!(parse_provider_id("sim:////i-0abc"), Some(("", "i-0abc")));
    }

    #[test]
    fn provider_ids_read_back() {
        assert_eq!(
            (PROVIDER_ID.instance_id)("sim:///zone-a/i-0123456789abcdef0"),
            Some("i-0123456789abcdef0")
        );
        assert_eq!((PROVIDER_ID.instance_id)("aws:///zone-a/i-1"), None);
    }
}
