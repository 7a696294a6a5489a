//! Reading configuration written by users: a YAML tree (as
//! [`serde_json::Value`]) checked field by field, every problem collected
//! with its full path (`pools[1].aws.image.owners`) and what was expected.
//!
//! The core's settings and each provider's pool section are checked with
//! the same [`Checker`], so every message reads the same and a provider's
//! problems are reported together with the core's, all at once.

use std::fmt;

use serde_json::{Map, Value};

/// One problem at one place of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where, as a user would write it: `pools[1].maxSurge`,
    /// `pools[0].selector["kubesurge.io/pool"]`. Empty for the document as a
    /// whole. A field set by a flag reads `drain.timeout (--drain-timeout)`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A field path being built: `pools[1].aws.image`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The document itself.
    pub fn root() -> FieldPath {
        FieldPath::default()
    }

    /// The field `key` below this one: `.key`, or `["key"]` when the key is
    /// not a plain word (a label key such as `kubesurge.io/pool`).
    pub fn key(&self, key: &str) -> FieldPath {
        let simple = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match (self.0.is_empty(), simple) {
            (true, true) => FieldPath(key.to_string()),
            (false, true) => FieldPath(format!("{}.{key}", self.0)),
            (_, false) => FieldPath(format!("{}[{key:?}]", self.0)),
        }
    }

    /// The list item `index` below this one: `[index]`.
    pub fn index(&self, index: usize) -> FieldPath {
        FieldPath(format!("{}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a YAML value is, for "expected X, found Y".
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A scalar as the user wrote it, for messages.
pub fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) | Value::Object(_) => kind_of(value).to_string(),
        other => other.to_string(),
    }
}

/// A present, non-null field. YAML `key:` with nothing after it is null,
/// which counts as not set.
pub fn field<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// `a, b, c`.
pub fn list_words(words: &[&str]) -> String {
    words.join(", ")
}

/// The closest of `candidates` to `input`, if close enough to be a typo:
/// the same letters ignoring case, `-` and `_`, or at most two edits away
/// (one for inputs of three letters or fewer).
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let normalize = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let wanted = normalize(input);
    if let Some(exact) = candidates.iter().find(|c| normalize(c) == wanted) {
        return Some(exact);
    }
    let limit = if input.chars().count() <= 3 { 1 } else { 2 };
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(&wanted, &normalize(c)), *c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Collects the problems of a walk over a YAML tree. The helpers report
/// what is wrong at the path given and return `None`; a caller goes on
/// with the other fields, so that one pass finds every problem.
#[derive(Debug, Default)]
pub struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    pub fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(FieldError::new(path.as_str(), message));
    }

    /// Problems found elsewhere (a provider's section), in order.
    pub fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        self.errors.extend(errors);
    }

    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// `value` when the walk found no problem at all; every problem
    /// otherwise.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(self.errors),
        }
    }

    /// A mapping whose keys must all be in `fields`; reports unknown keys
    /// (with a suggestion for near misses) and returns the map.
    pub fn mapping<'v>(
        &mut self,
        path: &FieldPath,
        value: &'v Value,
        fields: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            self.error(
                path,
                format!(
                    "expected a mapping with fields {}, found {}",
                    list_words(fields),
                    kind_of(value)
                ),
            );
            return None;
        };
        for key in map.keys() {
            if !fields.contains(&key.as_str()) {
                let message = match did_you_mean(key, fields) {
                    Some(suggestion) => format!("unknown field; did you mean {suggestion:?}?"),
                    None => format!("unknown field (expected one of: {})", list_words(fields)),
                };
                self.error(&path.key(key), message);
            }
        }
        Some(map)
    }

    /// A non-empty string. A number or boolean is refused with a hint to
    /// quote it, since YAML reads `1` and `true` as such.
    pub fn string<'v>(&mut self, path: &FieldPath, value: &'v Value) -> Option<&'v str> {
        match value {
            Value::String(s) if s.trim().is_empty() => {
                self.error(path, "must not be empty");
                None
            }
            Value::String(s) => Some(s.as_str()),
            Value::Bool(_) | Value::Number(_) => {
                self.error(
                    path,
                    format!(
                        "expected a string, found {} (quote it: \"{value}\")",
                        kind_of(value)
                    ),
                );
                None
            }
            other => {
                self.error(path, format!("expected a string, found {}", kind_of(other)));
                None
            }
        }
    }

    /// The field `key` of `map`, reported as required (`expected` says
    /// what it holds) when it is missing.
    pub fn required<'v>(
        &mut self,
        parent: &FieldPath,
        map: &'v Map<String, Value>,
        key: &str,
        expected: &str,
    ) -> Option<&'v Value> {
        let value = field(map, key);
        if value.is_none() {
            self.error(&parent.key(key), format!("required ({expected})"));
        }
        value
    }

    pub fn required_string<'v>(
        &mut self,
        parent: &FieldPath,
        map: &'v Map<String, Value>,
        key: &str,
        expected: &str,
    ) -> Option<&'v str> {
        let value = self.required(parent, map, key, expected)?;
        self.string(&parent.key(key), value)
    }

    /// A string that must be one of `choices` (case-sensitive).
    pub fn choice<'c>(
        &mut self,
        path: &FieldPath,
        value: &Value,
        choices: &[&'c str],
    ) -> Option<&'c str> {
        let text = self.string(path, value)?;
        if let Some(choice) = choices.iter().find(|c| **c == text) {
            return Some(choice);
        }
        let hint = match did_you_mean(text, choices) {
            Some(suggestion) => format!("; did you mean {suggestion:?}?"),
            None => String::new(),
        };
        self.error(
            path,
            format!("{text:?} is not one of {}{hint}", list_words(choices)),
        );
        None
    }

    /// A list of non-empty strings.
    pub fn string_list(&mut self, path: &FieldPath, value: &Value) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            self.error(
                path,
                format!("expected a list of strings, found {}", kind_of(value)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(&path.index(i), item) {
                Some(s) => out.push(s.to_string()),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_as_a_user_writes_them() {
        let pools = FieldPath::root().key("pools");
        assert_eq!(pools.index(1).key("aws").to_string(), "pools[1].aws");
        assert_eq!(
            pools
                .index(0)
                .key("selector")
                .key("kubesurge.io/pool")
                .as_str(),
            "pools[0].selector[\"kubesurge.io/pool\"]"
        );
        assert_eq!(FieldPath::root().as_str(), "");
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let fields = ["maxSurge", "maxUnavailable", "nodeLabels", "name"];
        assert_eq!(did_you_mean("maxsurge", &fields), Some("maxSurge"));
        assert_eq!(did_you_mean("max_surge", &fields), Some("maxSurge"));
        assert_eq!(did_you_mean("maxSurg", &fields), Some("maxSurge"));
        assert_eq!(did_you_mean("nodeLabel", &fields), Some("nodeLabels"));
        assert_eq!(did_you_mean("nmae", &fields), Some("name"));
        assert_eq!(did_you_mean("region", &fields), None);
    }

    #[test]
    fn a_walk_reports_every_problem_and_builds_nothing_then() {
        let mut check = Checker::new();
        let root = FieldPath::root().key("section");
        let value = json!({"name": 1, "colour": "blue", "size": "XL"});
        let map = check.mapping(&root, &value, &["name", "color", "size"]);
        let name = map.and_then(|m| check.required_string(&root, m, "name", "a name"));
        let size = map
            .and_then(|m| field(m, "size"))
            .and_then(|v| check.choice(&root.key("size"), v, &["S", "M"]));
        assert_eq!((name, size), (None, None));
        let errors = check.finish(Some(())).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "section.colour: unknown field; did you mean \"color\"?",
                "section.name: expected a string, found a number (quote it: \"1\")",
                "section.size: \"XL\" is not one of S, M",
            ]
        );
        assert_eq!(Checker::new().finish(Some(7)), Ok(7));
        assert!(Checker::new().finish::<u8>(None).is_err());
    }
}
