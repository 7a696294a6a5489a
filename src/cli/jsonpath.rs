//! `-o jsonpath=TEMPLATE`, as kubectl reads and prints it
//! (k8s.io/client-go/util/jsonpath: parser.go, jsonpath.go): text outside
//! braces printed as is; inside, a path from the document's root (`.a.b`,
//! `['a']`, `[0]`, `[-1]`, `[1:3]`, `[*]`, `.*`, `..name`,
//! `[?(@.k=="v")]`, unions `[0,2]`), a quoted literal (`{"\n"}`), or
//! `range PATH` … `end`. Strings print bare, numbers and booleans as
//! their text, objects and arrays as compact JSON; several results of one
//! expression are joined by a space. A key that is missing prints nothing,
//! as `kubectl get` does (its `--allow-missing-template-keys` defaults to
//! true). Pure.

use serde_json::Value;
use thiserror::Error;

/// A template that cannot be read, with kubectl's kind of message.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("jsonpath template {template:?}: {reason}")]
pub struct JsonPathError {
    pub template: String,
    pub reason: String,
}

/// A template that fails on the document: an index outside its array, or
/// a slice that starts after it ends. kubectl fails there too, with the
/// same reason (`array index out of bounds: index 5, length 1`), where a
/// missing key prints nothing.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("error executing jsonpath {template:?}: {reason}")]
pub struct OutOfBounds {
    pub template: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range { path: Vec<Step>, body: Vec<Node> },
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Recursive(String),
    Wildcard,
    Index(Vec<i64>),
    /// `[from:to:step]`, the step 1 when absent.
    Slice(Option<i64>, Option<i64>, usize),
    Keys(Vec<String>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Vec<Step>,
    test: Option<(Comparison, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed template, ready to print documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    text: String,
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(template: &str) -> Result<Self, JsonPathError> {
        let fail = |reason: String| JsonPathError {
            template: template.to_string(),
            reason,
        };
        let mut stack: Vec<(Vec<Step>, Vec<Node>)> = Vec::new();
        let mut nodes = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                nodes.push(Node::Text(rest.to_string()));
                break;
            };
            if open > 0 {
                nodes.push(Node::Text(rest[..open].to_string()));
            }
            let inner_start = open + 1;
            let close = closing_brace(&rest[inner_start..])
                .ok_or_else(|| fail("unclosed action".to_string()))?;
            let action = rest[inner_start..inner_start + close].trim();
            rest = &rest[inner_start + close + 1..];
            if let Some(path) = action.strip_prefix("range ") {
                stack.push((
                    parse_path(path.trim()).map_err(fail)?,
                    std::mem::take(&mut nodes),
                ));
            } else if action == "end" {
                let (path, outer) = stack
                    .pop()
                    .ok_or_else(|| fail("not in range, nothing to end".to_string()))?;
                let body = std::mem::replace(&mut nodes, outer);
                nodes.push(Node::Range { path, body });
            } else if let Some(literal) = quoted(action) {
                nodes.push(Node::Text(unescape(literal)));
            } else {
                nodes.push(Node::Path(parse_path(action).map_err(fail)?));
            }
        }
        if !stack.is_empty() {
            return Err(fail("range without end".to_string()));
        }
        Ok(Self {
            text: template.to_string(),
            nodes,
        })
    }

    /// The text the template makes of `document`.
    pub fn render(&self, document: &Value) -> Result<String, OutOfBounds> {
        let mut out = String::new();
        render_nodes(&self.nodes, document, &mut out).map_err(|reason| OutOfBounds {
            template: self.text.clone(),
            reason,
        })?;
        Ok(out)
    }
}

/// The index of the `}` that closes an action, skipping quoted text.
fn closing_brace(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '}' => return Some(i),
            None => {}
        }
    }
    None
}

fn quoted(action: &str) -> Option<&str> {
    let bytes = action.as_bytes();
    if action.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[action.len() - 1] == bytes[0]
    {
        Some(&action[1..action.len() - 1])
    } else {
        None
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn parse_path(text: &str) -> Result<Vec<Step>, String> {
    let text = text.trim();
    let text = text
        .strip_prefix('$')
        .or_else(|| text.strip_prefix('@'))
        .unwrap_or(text);
    let chars: Vec<char> = text.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                let (name, next) = identifier(&chars, i + 2);
                if name.is_empty() {
                    return Err("a name must follow '..'".to_string());
                }
                steps.push(Step::Recursive(name));
                i = next;
            }
            '.' if chars.get(i + 1) == Some(&'*') => {
                steps.push(Step::Wildcard);
                i += 2;
            }
            '.' => {
                let (name, next) = identifier(&chars, i + 1);
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
                i = next;
            }
            '[' => {
                let close = matching_bracket(&chars, i)
                    .ok_or_else(|| format!("unterminated array at {}", i))?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(bracket(inner.trim())?);
                i = close + 1;
            }
            c if c.is_whitespace() => i += 1,
            c => return Err(format!("unrecognized character in action: {c:?}")),
        }
    }
    Ok(steps)
}

/// A field name up to the next `.` or `[`; `\.` is a dot inside the
/// name (`.metadata.labels.kubernetes\.io/os`).
fn identifier(chars: &[char], start: usize) -> (String, usize) {
    let mut name = String::new();
    let mut end = start;
    while end < chars.len() && !matches!(chars[end], '.' | '[') && !chars[end].is_whitespace() {
        if chars[end] == '\\' && chars.get(end + 1) == Some(&'.') {
            name.push('.');
            end += 2;
        } else {
            name.push(chars[end]);
            end += 1;
        }
    }
    (name, end)
}

fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        return parse_filter(filter.trim()).map(Step::Filter);
    }
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    if parts.iter().all(|p| quoted(p).is_some()) {
        return Ok(Step::Keys(
            parts
                .iter()
                .filter_map(|p| quoted(p))
                .map(unescape)
                .collect(),
        ));
    }
    if let [part] = parts.as_slice()
        && let Some((from, to)) = part.split_once(':')
    {
        let bound = |b: &str| -> Result<Option<i64>, String> {
            let b = b.trim();
            if b.is_empty() {
                Ok(None)
            } else {
                b.parse()
                    .map(Some)
                    .map_err(|_| format!("invalid slice bound {b:?}"))
            }
        };
        // client-go's `evalArray`: a step must be above zero, 1 when absent.
        let (to, step) = to.split_once(':').unwrap_or((to, ""));
        let step = match step.trim() {
            "" => 1,
            text => match text.parse::<i64>() {
                Ok(step) if step > 0 => step as usize,
                Ok(_) => return Err("step must be > 0".into()),
                Err(_) => return Err(format!("invalid slice step {text:?}")),
            },
        };
        return Ok(Step::Slice(bound(from)?, bound(to)?, step));
    }
    parts
        .iter()
        .map(|p| {
            p.parse::<i64>()
                .map_err(|_| format!("invalid array index {p:?}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Step::Index)
}

fn parse_filter(filter: &str) -> Result<Filter, String> {
    const OPERATORS: [(&str, Comparison); 6] = [
        ("==", Comparison::Eq),
        ("!=", Comparison::Ne),
        ("<=", Comparison::Le),
        (">=", Comparison::Ge),
        ("<", Comparison::Lt),
        (">", Comparison::Gt),
    ];
    for (symbol, comparison) in OPERATORS {
        if let Some((left, right)) = filter.split_once(symbol) {
            let right = right.trim();
            let value = match quoted(right) {
                Some(text) => Value::String(unescape(text)),
                None => serde_json::from_str(right)
                    .map_err(|_| format!("invalid filter value {right:?}"))?,
            };
            return Ok(Filter {
                left: parse_path(left.trim())?,
                test: Some((comparison, value)),
            });
        }
    }
    Ok(Filter {
        left: parse_path(filter)?,
        test: None,
    })
}

/// An index outside its array: the index as kubectl reports it, and the
/// array's length.
/// Why a template fails on a document, in client-go's words.
type Bounds = String;

fn render_nodes(nodes: &[Node], current: &Value, out: &mut String) -> Result<(), Bounds> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Path(steps) => {
                let results = select(steps, current)?;
                let texts: Vec<String> = results.iter().map(|v| text_of(v)).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range { path, body } => {
                for item in select(path, current)? {
                    render_nodes(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Paths inside a range start from the range's item, as kubectl's do.
fn select<'a>(steps: &[Step], current: &'a Value) -> Result<Vec<&'a Value>, Bounds> {
    let mut values = vec![current];
    for step in steps {
        let mut next = Vec::new();
        for value in values {
            next.extend(apply(step, value)?);
        }
        values = next;
    }
    Ok(values)
}

fn apply<'a>(step: &Step, value: &'a Value) -> Result<Vec<&'a Value>, Bounds> {
    Ok(match step {
        Step::Field(name) => value.get(name).into_iter().collect(),
        Step::Keys(names) => names.iter().filter_map(|n| value.get(n)).collect(),
        Step::Wildcard => match value {
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => map.values().collect(),
            _ => Vec::new(),
        },
        Step::Recursive(name) => {
            let mut found = Vec::new();
            descend(value, name, &mut found);
            found
        }
        Step::Index(indexes) => {
            let Value::Array(items) = value else {
                return Ok(Vec::new());
            };
            let mut found = Vec::new();
            for &index in indexes {
                found.extend(slice(items, Some(index), Some(index + 1), 1, index == -1)?);
            }
            found
        }
        Step::Slice(from, to, step) => {
            let Value::Array(items) = value else {
                return Ok(Vec::new());
            };
            slice(items, *from, *to, *step, to.is_none())?
        }
        Step::Filter(filter) => {
            let candidates: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let mut passing = Vec::new();
            for item in candidates {
                if passes(filter, item)? {
                    passing.push(item);
                }
            }
            passing
        }
    })
}

/// `items[from:to:step]` as client-go's `evalArray` takes it
/// (`k8s.io/client-go/util/jsonpath/jsonpath.go`): negative bounds count
/// from the end, an absent end is the length (`to_end`: `[-1]` is `[-1:]`),
/// a slice of no items is empty whatever its bounds, a range reaching
/// outside the array or starting after its end is an error, and every
/// `step`th item from `from` is taken.
fn slice(
    items: &[Value],
    from: Option<i64>,
    to: Option<i64>,
    step: usize,
    to_end: bool,
) -> Result<Vec<&Value>, Bounds> {
    let length = items.len() as i64;
    let mut start = from.unwrap_or(0);
    if start < 0 {
        start += length;
    }
    let mut end = if to_end { length } else { to.unwrap_or(length) };
    if end < 0 {
        end += length;
    }
    if start == end {
        return Ok(Vec::new());
    }
    let out_of_bounds =
        |index: i64| format!("array index out of bounds: index {index}, length {length}");
    if start < 0 || start >= length {
        return Err(out_of_bounds(start));
    }
    if end < 0 || end > length {
        return Err(out_of_bounds(end - 1));
    }
    if start > end {
        return Err(format!(
            "starting index {start} is greater than ending index {end}"
        ));
    }
    Ok(items[start as usize..end as usize]
        .iter()
        .step_by(step)
        .collect())
}

fn descend<'a>(value: &'a Value, name: &str, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if let Some(v) = map.get(name) {
                found.push(v);
            }
            for v in map.values() {
                descend(v, name, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| descend(v, name, found)),
        _ => {}
    }
}

fn passes(filter: &Filter, item: &Value) -> Result<bool, Bounds> {
    let left = select(&filter.left, item)?;
    let Some((comparison, right)) = &filter.test else {
        return Ok(!left.is_empty());
    };
    Ok(left.iter().any(|l| compare(l, *comparison, right)))
}

fn compare(left: &Value, comparison: Comparison, right: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (left, right) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) if a == b => Some(Ordering::Equal),
        _ => None,
    };
    match comparison {
        Comparison::Eq => ordering == Some(Ordering::Equal),
        Comparison::Ne => ordering != Some(Ordering::Equal),
        Comparison::Lt => ordering == Some(Ordering::Less),
        Comparison::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        Comparison::Gt => ordering == Some(Ordering::Greater),
        Comparison::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({
            "kind": "RotationReport",
            "outcome": {"result": "succeeded", "replaced": 3, "ok": true},
            "slots": [
                {"oldNode": "a", "newNode": "a2", "pool": "blue", "seconds": 12.5},
                {"oldNode": "b", "newNode": "b2", "pool": "green", "seconds": 7},
                {"oldNode": "c", "pool": "blue", "seconds": 30}
            ],
            "labels": {"kubesurge.io/pool": "blue"}
        })
    }

    fn render(template: &str) -> String {
        Template::parse(template).unwrap().render(&doc()).unwrap()
    }

    #[test]
    fn paths_print_scalars_bare_and_structures_as_json() {
        assert_eq!(render("{.outcome.result}"), "succeeded");
        assert_eq!(render("{$.outcome.replaced}"), "3");
        assert_eq!(render("{.outcome.ok}"), "true");
        assert_eq!(render("{.slots[0].seconds}"), "12.5");
        assert_eq!(render("{.slots[-1].oldNode}"), "c");
        assert_eq!(render("{.labels}"), r#"{"kubesurge.io/pool":"blue"}"#);
        assert_eq!(render("{.labels['kubesurge.io/pool']}"), "blue");
        assert_eq!(render("{.labels.kubesurge\\.io/pool}"), "blue");
        assert_eq!(render("result={.outcome.result}\n"), "result=succeeded\n");
    }

    #[test]
    fn many_results_are_joined_by_a_space() {
        assert_eq!(render("{.slots[*].oldNode}"), "a b c");
        assert_eq!(render("{.slots[0:2].oldNode}"), "a b");
        assert_eq!(render("{.slots[0:3:2].oldNode}"), "a c");
        assert_eq!(render("{.slots[1::2].oldNode}"), "b");
        assert_eq!(render("{.slots[::1].oldNode}"), "a b c");
        assert_eq!(render("{.slots[0,2].oldNode}"), "a c");
        assert_eq!(render("{..newNode}"), "a2 b2");
        assert_eq!(render("{.slots[?(@.pool==\"blue\")].oldNode}"), "a c");
        assert_eq!(render("{.slots[?(@.seconds>10)].oldNode}"), "a c");
        assert_eq!(render("{.slots[?(@.newNode)].oldNode}"), "a b");
    }

    #[test]
    fn range_repeats_its_body_for_each_item() {
        assert_eq!(
            render(r#"{range .slots[*]}{.oldNode}{"\t"}{.pool}{"\n"}{end}"#),
            "a\tblue\nb\tgreen\nc\tblue\n"
        );
    }

    #[test]
    fn missing_keys_print_nothing_and_indexes_outside_fail() {
        assert_eq!(render("[{.outcome.nothing}]"), "[]");
        assert_eq!(render("[{.slots[*].nothing}]"), "[]");
        let out_of_bounds = |template: &str| {
            Template::parse(template)
                .unwrap()
                .render(&doc())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            out_of_bounds("{.slots[9].oldNode}"),
            "error executing jsonpath \"{.slots[9].oldNode}\": array index out of bounds: index 9, length 3"
        );
        assert!(out_of_bounds("{.slots[0:5]}").contains("index 4, length 3"));
        assert!(out_of_bounds("{.slots[-4]}").contains("index -1, length 3"));
        assert_eq!(render("{.slots[-1:].oldNode}"), "c");
        assert_eq!(render("{.slots[:-1].oldNode}"), "a b");
        // No items asked for: no error, whatever the bounds.
        assert_eq!(render("{.slots[3:].oldNode}"), "");
        assert_eq!(render("{.slots[7:7].oldNode}"), "");
        assert!(
            out_of_bounds("{.slots[2:1]}")
                .contains("starting index 2 is greater than ending index 1")
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for template in [
            "{.a",
            "{range .slots[*]}{.a}",
            "{end}",
            "{.a[x]}",
            "{.a[0}",
            "{.a[0:2:0]}",
            "{.a[0:2:-1]}",
            "{.a[0:2:x]}",
        ] {
            assert!(Template::parse(template).is_err(), "{template}");
        }
    }
}
