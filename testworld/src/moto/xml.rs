//! Just enough XML to read EC2's query-API answers: elements, text and
//! the five predefined entities plus character references. Attributes,
//! comments, processing instructions and CDATA are skipped or kept as text.

use thiserror::Error;

/// An element: its local name, its text (concatenated) and its children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed XML at byte {at}: {what}")]
pub struct XmlError {
    pub at: usize,
    pub what: String,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at a `/`-separated path of child names.
    pub fn at(&self, path: &str) -> Option<&Element> {
        path.split('/')
            .filter(|p| !p.is_empty())
            .try_fold(self, |e, name| e.child(name))
    }

    /// The text at a path, if the element exists.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        self.at(path).map(|e| e.text.as_str())
    }

    /// The `item` children of the element at `path` (EC2's lists).
    pub fn items<'a>(&'a self, path: &str) -> Vec<&'a Element> {
        self.at(path)
            .map(|e| e.all("item").collect())
            .unwrap_or_default()
    }
}

fn decode(raw: &str, at: usize) -> Result<String, XmlError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let semi = tail.find(';').ok_or_else(|| XmlError {
            at,
            what: "unterminated entity".into(),
        })?;
        let entity = &tail[1..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
            }
        };
        match ch {
            Some(c) => out.push(c),
            None => {
                return Err(XmlError {
                    at,
                    what: format!("unknown entity &{entity};"),
                });
            }
        }
        rest = &tail[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse a document; returns its root element.
pub fn parse(doc: &str) -> Result<Element, XmlError> {
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut pos = 0;
    let bytes = doc.as_bytes();
    while pos < doc.len() {
        let Some(lt) = doc[pos..].find('<').map(|i| i + pos) else {
            let text = decode(&doc[pos..], pos)?;
            if let Some(top) = stack.last_mut() {
                top.text.push_str(&text);
            }
            break;
        };
        if lt > pos {
            let text = decode(&doc[pos..lt], pos)?;
            if let Some(top) = stack.last_mut() {
                top.text.push_str(&text);
            }
        }
        let err = |what: &str| XmlError {
            at: lt,
            what: what.to_string(),
        };
        if doc[lt..].starts_with("<?") {
            pos = doc[lt..].find("?>").ok_or_else(|| err("unterminated <?"))? + lt + 2;
        } else if doc[lt..].starts_with("<!--") {
            pos = doc[lt..]
                .find("-->")
                .ok_or_else(|| err("unterminated comment"))?
                + lt
                + 3;
        } else if doc[lt..].starts_with("<![CDATA[") {
            let end = doc[lt..]
                .find("]]>")
                .ok_or_else(|| err("unterminated CDATA"))?
                + lt;
            if let Some(top) = stack.last_mut() {
                top.text.push_str(&doc[lt + 9..end]);
            }
            pos = end + 3;
        } else if doc[lt..].starts_with("<!") {
            pos = doc[lt..].find('>').ok_or_else(|| err("unterminated <!"))? + lt + 1;
        } else {
            let gt = doc[lt..].find('>').ok_or_else(|| err("unterminated tag"))? + lt;
            let inner = &doc[lt + 1..gt];
            pos = gt + 1;
            if let Some(name) = inner.strip_prefix('/') {
                let done = stack.pop().ok_or_else(|| err("unbalanced close"))?;
                if done.name != local(name.trim()) {
                    return Err(err(&format!("</{}> closes <{}>", name.trim(), done.name)));
                }
                let parent = stack.last_mut().ok_or_else(|| err("close of the root"))?;
                parent.children.push(done);
            } else {
                let self_closing = inner.ends_with('/') || bytes.get(gt - 1) == Some(&b'/');
                let inner = inner.trim_end_matches('/');
                let name = inner.split_whitespace().next().unwrap_or_default();
                let element = Element {
                    name: local(name).to_string(),
                    ..Default::default()
                };
                if self_closing {
                    let parent = stack.last_mut().ok_or_else(|| err("no parent"))?;
                    parent.children.push(element);
                } else {
                    stack.push(element);
                }
            }
        }
    }
    if stack.len() != 1 {
        return Err(XmlError {
            at: doc.len(),
            what: "unclosed elements".into(),
        });
    }
    let mut document = stack.pop().unwrap_or_default();
    document
        .children
        .pop()
        .filter(|_| document.children.is_empty())
        .ok_or(XmlError {
            at: 0,
            what: "not exactly one root element".into(),
        })
}

/// `Foo` of `ns:Foo`.
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_ec2_answer() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>abc</requestId>
  <reservationSet>
    <item><instancesSet><item>
      <instanceId>i-1</instanceId>
      <tagSet><item><key>a&amp;b</key><value>&lt;x&gt; &#65;&#x42;</value></item></tagSet>
      <empty/>
    </item></instancesSet></item>
  </reservationSet>
  <nextToken>t</nextToken>
</DescribeInstancesResponse>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "DescribeInstancesResponse");
        assert_eq!(root.text_at("nextToken"), Some("t"));
        let reservations = root.items("reservationSet");
        assert_eq!(reservations.len(), 1);
        let instance = reservations[0].items("instancesSet")[0];
        assert_eq!(instance.text_at("instanceId"), Some("i-1"));
        let tag = instance.items("tagSet")[0];
        assert_eq!(tag.text_at("key"), Some("a&b"));
        assert_eq!(tag.text_at("value"), Some("<x> AB"));
        assert!(instance.child("empty").is_some());
    }

    #[test]
    fn rejects_broken_documents() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse("<a>&bogus;</a>").is_err());
        assert!(parse("").is_err());
    }
}
