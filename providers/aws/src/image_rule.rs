//! The image rule of an existing pool (for `kubesurge init`), read from
//! the images its machines run now and the Kubernetes version each of
//! their nodes runs: the owner, and a tag or a name pattern that carries
//! the version where `{version}` will stand. Pure.

use std::collections::BTreeMap;

use crate::config::{ImageSource, VERSION_PLACEHOLDER, normalize_version};

/// What DescribeImages says of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFacts {
    pub id: String,
    pub owner: Option<String>,
    pub name: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The rule that finds `image` again for `version` (`v1.35.3`), with how
/// it was read; `None` when neither a tag nor the name carries the version
/// as `{version}` spells it (`v1.35.3`).
///
/// A tag whose value is the version wins (exact, and what the world's and
/// most image pipelines' images carry); else the name with the version
/// replaced by the placeholder and what follows it by a wildcard (a build
/// date, a revision).
pub fn rule_for(image: &ImageFacts, version: &str) -> Option<(ImageSource, String)> {
    let owner = image.owner.clone()?;
    let version = normalize_version(version);
    if let Some((key, _)) = image.tags.iter().find(|(_, v)| **v == version) {
        let rule = ImageSource::Lookup {
            owners: vec![owner],
            filters: BTreeMap::from([(
                format!("tag:{key}"),
                vec![VERSION_PLACEHOLDER.to_string()],
            )]),
        };
        let how = format!("image {} is tagged {key}={version}", image.id);
        return Some((rule, how));
    }
    let name = image.name.as_deref()?;
    let at = name.find(&version)?;
    let (before, after) = (&name[..at], &name[at + version.len()..]);
    // Keep a separator that follows the version, so that v1.35.3 does not
    // also find v1.35.30.
    let rest = match after.chars().next() {
        None => String::new(),
        Some(c) if !c.is_ascii_alphanumeric() => format!("{c}*"),
        Some(_) => return None,
    };
    let pattern = format!("{before}{VERSION_PLACEHOLDER}{rest}");
    let rule = ImageSource::Lookup {
        owners: vec![owner],
        filters: BTreeMap::from([("name".to_string(), vec![pattern.clone()])]),
    };
    let how = format!("image {} is named {name}", image.id);
    Some((rule, how))
}

/// The rule most machines' images agree on, how it was read, and the
/// machines whose image follows another rule or none (by image id).
pub fn common_rule<'a>(
    images: impl IntoIterator<Item = (&'a ImageFacts, &'a str)>,
) -> (Option<(ImageSource, String)>, Vec<String>) {
    let mut votes: Vec<(ImageSource, String, usize)> = Vec::new();
    let mut unruled = Vec::new();
    for (image, version) in images {
        match rule_for(image, version) {
            Some((rule, how)) => match votes.iter_mut().find(|(r, _, _)| *r == rule) {
                Some((_, _, n)) => *n += 1,
                None => votes.push((rule, how, 1)),
            },
            None => unruled.push(image.id.clone()),
        }
    }
    // The first of the most followed, so the choice is stable.
    let best = votes
        .iter()
        .enumerate()
        .max_by_key(|(i, (_, _, n))| (*n, std::cmp::Reverse(*i)))
        .map(|(i, _)| i);
    let Some(best) = best else {
        return (None, unruled);
    };
    let (rule, how, _) = votes.remove(best);
    let mut others = unruled;
    others.extend(votes.into_iter().map(|(_, how, _)| how));
    (Some((rule, how)), others)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, name: &str, tags: &[(&str, &str)]) -> ImageFacts {
        ImageFacts {
            id: id.into(),
            owner: Some("123456789012".into()),
            name: Some(name.into()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn filters(rule: &ImageSource) -> BTreeMap<String, Vec<String>> {
        match rule {
            ImageSource::Lookup { filters, .. } => filters.clone(),
            ImageSource::Id(_) => panic!("a lookup"),
        }
    }

    #[test]
    fn a_version_tag_wins_over_the_name() {
        let (rule, how) = rule_for(
            &image(
                "ami-1",
                "k8s-v1.35.3",
                &[("team", "x"), ("kubernetes-version", "v1.35.3")],
            ),
            "1.35.3",
        )
        .expect("a rule");
        assert_eq!(
            filters(&rule),
            BTreeMap::from([(
                "tag:kubernetes-version".to_string(),
                vec!["{version}".to_string()]
            )])
        );
        assert!(how.contains("tagged kubernetes-version=v1.35.3"), "{how}");
        let ImageSource::Lookup { owners, .. } = rule else {
            panic!()
        };
        assert_eq!(owners, ["123456789012"]);
    }

    #[test]
    fn a_name_with_the_version_becomes_a_pattern() {
        let rule = |name: &str| {
            rule_for(&image("ami-1", name, &[]), "v1.35.3")
                .map(|(r, _)| filters(&r)["name"][0].clone())
        };
        assert_eq!(rule("node-v1.35.3").as_deref(), Some("node-{version}"));
        assert_eq!(
            rule("node-v1.35.3-20260101").as_deref(),
            Some("node-{version}-*")
        );
        assert_eq!(rule("node-v1.35.30"), None, "another version");
        assert_eq!(rule("node-1.35.3"), None, "{{version}} is written v1.35.3");
    }

    #[test]
    fn without_an_owner_or_a_version_there_is_no_rule() {
        let mut i = image("ami-1", "node-v1.35.3", &[]);
        i.owner = None;
        assert_eq!(rule_for(&i, "v1.35.3"), None);
        assert_eq!(rule_for(&image("ami-2", "ubuntu", &[]), "v1.35.3"), None);
    }

    #[test]
    fn the_rule_most_images_follow_is_chosen_and_the_others_named() {
        let a = image("ami-a", "x", &[("k8s", "v1.35.3")]);
        let b = image("ami-b", "x", &[("k8s", "v1.34.2")]);
        let c = image("ami-c", "node-v1.35.3", &[]);
        let d = image("ami-d", "ubuntu", &[]);
        let (best, others) = common_rule([
            (&a, "v1.35.3"),
            (&b, "v1.34.2"),
            (&c, "v1.35.3"),
            (&d, "v1.35.3"),
        ]);
        let (rule, _) = best.expect("a rule");
        assert!(filters(&rule).contains_key("tag:k8s"));
        assert_eq!(others.len(), 2, "{others:?}");
        assert!(others.contains(&"ami-d".to_string()));
        assert!(others.iter().any(|o| o.contains("ami-c")));
    }
}
