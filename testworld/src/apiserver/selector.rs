//! Label selectors (the query-string syntax and `metav1.LabelSelector`
//! objects) and field selectors with the fields real servers index per
//! type (reference §6).

use serde_json::{Map, Value};

use crate::resources::{EVENTS, EVENTS_V1, NAMESPACES, NODES, PODS, Resource, SECRETS};

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelOp {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: LabelOp,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match self.op {
            LabelOp::Eq | LabelOp::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            LabelOp::NotEq | LabelOp::NotIn => {
                !value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::Gt | LabelOp::Lt => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == LabelOp::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A parsed `labelSelector` query parameter. Empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
}

fn lex(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    tokens.push(Token::DoubleEq);
                    i += 2;
                } else {
                    tokens.push(Token::Eq);
                    i += 1;
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    tokens.push(Token::NotEq);
                    i += 2;
                } else {
                    tokens.push(Token::Bang);
                    i += 1;
                }
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '>' => {
                tokens.push(Token::Gt);
                i += 1;
            }
            '<' => {
                tokens.push(Token::Lt);
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"=!(),<>".contains(chars[i])
                {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
        }
    }
    tokens
}

fn valid_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
    });
    name_ok && prefix_ok
}

fn valid_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

impl LabelSelector {
    /// Parse the `labelSelector` syntax: `k=v`, `k==v`, `k!=v`,
    /// `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>1`, `k<1`, comma-joined.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let tokens = lex(s);
        let mut requirements = Vec::new();
        let mut i = 0;
        let err = |what: &str| format!("unable to parse requirement: {what} in {s:?}");
        while i < tokens.len() {
            let requirement = if tokens[i] == Token::Bang {
                i += 1;
                let Some(Token::Ident(key)) = tokens.get(i) else {
                    return Err(err("expected a key after '!'"));
                };
                i += 1;
                Requirement {
                    key: key.clone(),
                    op: LabelOp::DoesNotExist,
                    values: vec![],
                }
            } else {
                let Some(Token::Ident(key)) = tokens.get(i) else {
                    return Err(err("expected a key"));
                };
                i += 1;
                match tokens.get(i) {
                    None | Some(Token::Comma) => Requirement {
                        key: key.clone(),
                        op: LabelOp::Exists,
                        values: vec![],
                    },
                    Some(
                        op @ (Token::Eq | Token::DoubleEq | Token::NotEq | Token::Gt | Token::Lt),
                    ) => {
                        let op = match op {
                            Token::NotEq => LabelOp::NotEq,
                            Token::Gt => LabelOp::Gt,
                            Token::Lt => LabelOp::Lt,
                            _ => LabelOp::Eq,
                        };
                        i += 1;
                        let value = match tokens.get(i) {
                            Some(Token::Ident(v)) => {
                                i += 1;
                                v.clone()
                            }
                            None | Some(Token::Comma)
                                if matches!(op, LabelOp::Eq | LabelOp::NotEq) =>
                            {
                                String::new()
                            }
                            _ => return Err(err("expected a value")),
                        };
                        if matches!(op, LabelOp::Gt | LabelOp::Lt) && value.parse::<i64>().is_err()
                        {
                            return Err(err(
                                "for 'Gt', 'Lt' operators, the value must be an integer",
                            ));
                        }
                        Requirement {
                            key: key.clone(),
                            op,
                            values: vec![value],
                        }
                    }
                    Some(Token::Ident(word)) if word == "in" || word == "notin" => {
                        let op = if word == "in" {
                            LabelOp::In
                        } else {
                            LabelOp::NotIn
                        };
                        i += 1;
                        if tokens.get(i) != Some(&Token::Open) {
                            return Err(err("expected '('"));
                        }
                        i += 1;
                        let mut values = Vec::new();
                        loop {
                            match tokens.get(i) {
                                Some(Token::Ident(v)) => {
                                    values.push(v.clone());
                                    i += 1;
                                }
                                Some(Token::Comma) | Some(Token::Close) => {
                                    values.push(String::new())
                                }
                                _ => return Err(err("expected a value")),
                            }
                            match tokens.get(i) {
                                Some(Token::Comma) => i += 1,
                                Some(Token::Close) => {
                                    i += 1;
                                    break;
                                }
                                _ => return Err(err("expected ',' or ')'")),
                            }
                        }
                        Requirement {
                            key: key.clone(),
                            op,
                            values,
                        }
                    }
                    _ => return Err(err("expected an operator")),
                }
            };
            if !valid_key(&requirement.key) {
                return Err(format!(
                    "unable to parse requirement: invalid label key {:?}: name part must consist of alphanumeric characters, '-', '_' or '.'",
                    requirement.key
                ));
            }
            if let Some(bad) = requirement.values.iter().find(|v| !valid_value(v)) {
                return Err(format!(
                    "unable to parse requirement: invalid label value: {bad:?}"
                ));
            }
            requirements.push(requirement);
            match tokens.get(i) {
                None => {}
                Some(Token::Comma) => {
                    i += 1;
                    if i == tokens.len() {
                        return Err(err("expected a requirement after ','"));
                    }
                }
                Some(_) => return Err(err("expected ','")),
            }
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Does an object with these labels match?
    pub fn matches_labels(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Does this object (its `metadata.labels`) match?
    pub fn matches(&self, object: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        self.matches_labels(
            object
                .pointer("/metadata/labels")
                .and_then(Value::as_object),
        )
    }

    /// From a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions`). `None` for an unparseable one.
    pub fn from_object(selector: &Value) -> Option<LabelSelector> {
        let mut requirements = Vec::new();
        if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                requirements.push(Requirement {
                    key: k.clone(),
                    op: LabelOp::Eq,
                    values: vec![v.as_str()?.to_string()],
                });
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key")?.as_str()?.to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e.get("operator")?.as_str()? {
                    "In" => LabelOp::In,
                    "NotIn" => LabelOp::NotIn,
                    "Exists" => LabelOp::Exists,
                    "DoesNotExist" => LabelOp::DoesNotExist,
                    _ => return None,
                };
                requirements.push(Requirement { key, op, values });
            }
        }
        Some(LabelSelector { requirements })
    }
}

/// Does a `metav1.LabelSelector` object select these labels? `null` or a
/// missing selector selects nothing; `{}` selects everything (policy/v1
/// PodDisruptionBudget semantics).
pub fn selector_object_matches(
    selector: Option<&Value>,
    labels: Option<&Map<String, Value>>,
) -> bool {
    match selector {
        None | Some(Value::Null) => false,
        Some(s) => LabelSelector::from_object(s).is_some_and(|sel| sel.matches_labels(labels)),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    /// JSON pointer to the field, computed once.
    pointer: String,
    /// Booleans read as "false" when absent.
    boolean: bool,
    value: String,
    negate: bool,
}

/// A parsed `fieldSelector` for one resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// The fields a type can be selected by, besides `metadata.name` and
/// `metadata.namespace`.
fn type_fields(resource: &Resource) -> &'static [&'static str] {
    if resource == &PODS {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ]
    } else if resource == &NODES {
        &["spec.unschedulable"]
    } else if resource == &SECRETS {
        &["type"]
    } else if resource == &NAMESPACES {
        &["status.phase"]
    } else if resource == &EVENTS {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    } else if resource == &EVENTS_V1 {
        &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ]
    } else {
        &[]
    }
}

/// Where a selectable field lives in the object, and whether it is a
/// boolean (absent reads as "false").
fn field_pointer(field: &str) -> (String, bool) {
    match field {
        "spec.hostNetwork" | "spec.unschedulable" => {
            (format!("/{}", field.replace('.', "/")), true)
        }
        "status.podIPs" => ("/status/podIPs/0/ip".into(), false),
        "source" => ("/source/component".into(), false),
        other => (other.split('.').map(|p| format!("/{p}")).collect(), false),
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    parts.push(current);
    parts
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=')) => out.push(n),
                Some(n) => return Err(format!("invalid escape sequence: \\{n}")),
                None => return Err("unterminated escape sequence".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parse `fieldSelector` for `resource`; unknown fields are the 400
    /// real servers answer.
    pub fn parse(resource: &'static Resource, s: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        if !s.trim().is_empty() {
            for raw in split_unescaped(s, ',') {
                let raw = raw.trim();
                if raw.is_empty() {
                    continue;
                }
                let mut split = None;
                'scan: for (i, _) in raw.char_indices() {
                    if raw[..i].ends_with('\\') {
                        continue;
                    }
                    for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
                        if raw[i..].starts_with(op) {
                            split = Some((&raw[..i], &raw[i + op.len()..], negate));
                            break 'scan;
                        }
                    }
                }
                let Some((field, value, negate)) = split else {
                    return Err(format!(
                        "invalid selector: '{raw}'; can't understand '{raw}'"
                    ));
                };
                let field = field.trim();
                if field != "metadata.name"
                    && field != "metadata.namespace"
                    && !type_fields(resource).contains(&field)
                {
                    return Err(format!(
                        "{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    ));
                }
                let (pointer, boolean) = field_pointer(field);
                terms.push(FieldTerm {
                    pointer,
                    boolean,
                    value: unescape(value)?,
                    negate,
                });
            }
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|t| {
            let equal = match object.pointer(&t.pointer) {
                Some(Value::String(v)) => *v == t.value,
                Some(Value::Bool(b)) => t.value == if *b { "true" } else { "false" },
                Some(Value::Number(n)) => n.to_string() == t.value,
                None | Some(Value::Null) if t.boolean => t.value == "false",
                _ => t.value.is_empty(),
            };
            equal != t.negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels},
               "spec": {"nodeName": "n1", "restartPolicy": "Always"},
               "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}})
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap()
    }

    #[test]
    fn every_label_operator() {
        let p = pod(json!({"app": "web", "tier": "front", "n": "5"}));
        assert!(sel("").matches(&p));
        assert!(sel("app=web").matches(&p));
        assert!(sel("app==web").matches(&p));
        assert!(!sel("app=db").matches(&p));
        assert!(sel("app!=db").matches(&p));
        assert!(sel("missing!=x").matches(&p));
        assert!(!sel("app!=web").matches(&p));
        assert!(sel("app in (db, web)").matches(&p));
        assert!(!sel("app in (db)").matches(&p));
        assert!(sel("app notin (db)").matches(&p));
        assert!(sel("missing notin (db)").matches(&p));
        assert!(!sel("app notin (web,db)").matches(&p));
        assert!(sel("tier").matches(&p));
        assert!(!sel("missing").matches(&p));
        assert!(sel("!missing").matches(&p));
        assert!(!sel("!app").matches(&p));
        assert!(sel("app=web,tier=front,!missing").matches(&p));
        assert!(!sel("app=web,tier=back").matches(&p));
        assert!(sel("n>4").matches(&p) && !sel("n<4").matches(&p));
        assert!(
            sel("example.com/role in (a,b),app")
                .matches(&pod(json!({"example.com/role": "b", "app": "x"})))
        );
    }

    #[test]
    fn malformed_label_selectors_are_rejected() {
        for bad in [
            "app=",
            "=web",
            "app in web",
            "app in (a",
            "app=web,",
            "app notin",
            "a b",
            "app=we b",
            "n>x",
        ] {
            if bad == "app=" {
                // An empty value is valid: it matches an empty label value.
                assert!(LabelSelector::parse(bad).is_ok());
                continue;
            }
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selector_objects_null_selects_nothing_empty_selects_all() {
        let labels = json!({"app": "web"});
        let l = labels.as_object();
        assert!(!selector_object_matches(None, l));
        assert!(!selector_object_matches(Some(&Value::Null), l));
        assert!(selector_object_matches(Some(&json!({})), l));
        assert!(selector_object_matches(
            Some(&json!({"matchLabels": {"app": "web"}})),
            l
        ));
        assert!(!selector_object_matches(
            Some(&json!({"matchLabels": {"app": "db"}})),
            l
        ));
        assert!(selector_object_matches(
            Some(
                &json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]})
            ),
            l
        ));
        assert!(!selector_object_matches(
            Some(&json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]})),
            l
        ));
    }

    #[test]
    fn pod_field_selectors() {
        let p = pod(json!({}));
        let f = |s: &str| FieldSelector::parse(&PODS, s).unwrap().matches(&p);
        assert!(f("spec.nodeName=n1"));
        assert!(f(
            "spec.nodeName==n1,status.phase!=Failed,status.phase!=Succeeded"
        ));
        assert!(!f("spec.nodeName=n2"));
        assert!(f("metadata.name=p,metadata.namespace=ns"));
        assert!(f("spec.hostNetwork=false"));
        assert!(f("status.podIPs=10.0.0.1"));
        assert!(f("status.nominatedNodeName="));
        assert!(!f("spec.restartPolicy!=Always"));
    }

    #[test]
    fn unknown_fields_get_the_real_message() {
        let e = FieldSelector::parse(&NODES, "spec.providerID=x").unwrap_err();
        assert_eq!(
            e,
            "\"spec.providerID\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(FieldSelector::parse(&NODES, "spec.unschedulable=true").is_ok());
        assert!(FieldSelector::parse(&SECRETS, "type=bootstrap.kubernetes.io/token").is_ok());
        assert!(FieldSelector::parse(&PODS, "nonsense").is_err());
    }

    #[test]
    fn event_field_selectors_for_describe() {
        let ev = json!({"involvedObject": {"kind": "Node", "name": "n1", "namespace": ""},
                        "source": {"component": "kubelet"}, "type": "Normal", "reason": "Starting"});
        let fs = FieldSelector::parse(
            &EVENTS,
            "involvedObject.kind=Node,involvedObject.name=n1,involvedObject.namespace=,source=kubelet,type=Normal",
        )
        .unwrap();
        assert!(fs.matches(&ev));
    }

    #[test]
    fn escaped_values() {
        let obj = json!({"metadata": {"name": "a,b"}});
        assert!(
            FieldSelector::parse(&NODES, "metadata.name=a\\,b")
                .unwrap()
                .matches(&obj)
        );
    }
}
