//! EC2's idempotency of `RunInstances` by `ClientToken`, which moto does
//! not keep: moto 5 reads the token into the instance
//! (`moto/ec2/responses/instances.py`, `run_instances`: `"client_token":
//! self._get_param("ClientToken")`) and launches again on every repeat.
//!
//! EC2 ("RunInstances idempotency",
//! <https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html>;
//! "Ensuring idempotency",
//! <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Run_Instance_Idempotency.html>):
//! - a repeat with the same token and the same parameters returns the
//!   original answer and launches nothing; "the only information that might
//!   vary in the response is the state of the instance";
//! - a repeat with the same token and any other parameter changed fails
//!   with `IdempotentParameterMismatch`;
//! - "the client token is valid for at least 24 hours after the
//!   termination of the instance" — a world lives far less, so a binding
//!   here is never dropped;
//! - the same token in another Region launches there: bindings are per
//!   Region.
//!
//! The proxy keeps the bindings ([`Bindings`]) and answers repeats from
//! them; the decisions below are pure.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::proxy::Ec2Fault;
use super::xml;

/// A token's binding: the parameters of the launch that first used it and
/// EC2's answer to it.
#[derive(Clone, Debug)]
struct Binding {
    parameters: Vec<(String, String)>,
    answer: Bytes,
}

/// What EC2 does with a `RunInstances` that carries a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token is new: launch, then [`Bindings::bind`] the answer.
    Launch,
    /// The same launch again: the original answer, with the current state
    /// of each of its instances.
    Repeat {
        answer: Bytes,
        instances: Vec<String>,
    },
    /// The token was used by a launch with other parameters.
    Mismatch,
}

/// The tokens the world's EC2 has seen, by Region.
#[derive(Default)]
pub struct Bindings {
    bound: Mutex<HashMap<(String, String), Binding>>,
    /// Held across a token's first launch, so a repeat sent while it is in
    /// flight (an SDK retry after a timeout) waits for its answer instead
    /// of launching a second time.
    pub launching: tokio::sync::Mutex<()>,
}

/// The `ClientToken` of a `RunInstances` form, and the parameters that
/// must match on a repeat (every other field, in a fixed order).
pub fn token_of(form: &[(String, String)]) -> Option<(String, Vec<(String, String)>)> {
    let token = form
        .iter()
        .find(|(k, _)| k == "ClientToken")
        .map(|(_, v)| v.clone())
        .filter(|t| !t.is_empty())?;
    let mut parameters: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| k != "ClientToken")
        .cloned()
        .collect();
    parameters.sort();
    Some((token, parameters))
}

impl Bindings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Binding>> {
        self.bound.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verdict on a launch with `token` and `parameters` in `region`.
    pub fn verdict(&self, region: &str, token: &str, parameters: &[(String, String)]) -> Verdict {
        match self.lock().get(&(region.to_string(), token.to_string())) {
            None => Verdict::Launch,
            Some(b) if b.parameters == parameters => Verdict::Repeat {
                answer: b.answer.clone(),
                instances: instances_of(&b.answer),
            },
            Some(_) => Verdict::Mismatch,
        }
    }

    /// Bind `token` to the launch EC2 answered with `answer`.
    pub fn bind(
        &self,
        region: &str,
        token: &str,
        parameters: Vec<(String, String)>,
        answer: Bytes,
    ) {
        self.lock().insert(
            (region.to_string(), token.to_string()),
            Binding { parameters, answer },
        );
    }
}

/// The instance ids of a `RunInstancesResponse`.
fn instances_of(answer: &[u8]) -> Vec<String> {
    xml::parse(&String::from_utf8_lossy(answer))
        .map(|root| {
            root.items("instancesSet")
                .iter()
                .filter_map(|i| i.text_at("instanceId").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// EC2's answer to a token reused with other parameters (the message the
/// AWS CLI prints for it: "Arguments on this idempotent request are
/// inconsistent with arguments used in previous request(s).").
pub fn mismatch() -> Ec2Fault {
    Ec2Fault {
        status: 400,
        code: "IdempotentParameterMismatch".into(),
        message: "Arguments on this idempotent request are inconsistent with arguments used in \
                  previous request(s)."
            .into(),
    }
}

/// `answer` with each instance's `instanceState` replaced by its state now
/// (`(code, name)` by instance id); instances without one keep theirs.
pub fn with_states(answer: &[u8], states: &HashMap<String, (String, String)>) -> Bytes {
    let mut text = String::from_utf8_lossy(answer).into_owned();
    for (id, (code, name)) in states {
        let Some(at) = text.find(&format!("<instanceId>{id}</instanceId>")) else {
            continue;
        };
        let Some(start) = text[at..].find("<instanceState>").map(|s| at + s) else {
            continue;
        };
        let close = "</instanceState>";
        let Some(end) = text[start..].find(close).map(|e| start + e + close.len()) else {
            continue;
        };
        text.replace_range(
            start..end,
            &format!("<instanceState><code>{code}</code><name>{name}</name></instanceState>"),
        );
    }
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ANSWER: &str = "<RunInstancesResponse><instancesSet><item><instanceId>i-1</instanceId>\
        <imageId>ami-1</imageId><instanceState><code>0</code><name>pending</name></instanceState>\
        </item></instancesSet></RunInstancesResponse>";

    #[test]
    fn the_token_is_read_and_the_rest_compared_in_any_order() {
        let (token, a) = token_of(&form(&[
            ("Action", "RunInstances"),
            ("ClientToken", "t-1"),
            ("ImageId", "ami-1"),
            ("UserData", "x"),
        ]))
        .unwrap();
        assert_eq!(token, "t-1");
        let (_, b) = token_of(&form(&[
            ("UserData", "x"),
            ("ImageId", "ami-1"),
            ("ClientToken", "t-1"),
            ("Action", "RunInstances"),
        ]))
        .unwrap();
        assert_eq!(a, b);
        assert!(token_of(&form(&[("Action", "RunInstances")])).is_none());
        assert!(token_of(&form(&[("ClientToken", "")])).is_none());
    }

    #[test]
    fn a_repeat_is_answered_as_first_other_parameters_are_refused_per_region() {
        let bindings = Bindings::default();
        let (token, first) = token_of(&form(&[("ClientToken", "t"), ("UserData", "a")])).unwrap();
        let (_, other) = token_of(&form(&[("ClientToken", "t"), ("UserData", "b")])).unwrap();
        assert_eq!(bindings.verdict("r1", &token, &first), Verdict::Launch);
        bindings.bind("r1", &token, first.clone(), Bytes::from(ANSWER));
        assert_eq!(
            bindings.verdict("r1", &token, &first),
            Verdict::Repeat {
                answer: Bytes::from(ANSWER),
                instances: vec!["i-1".into()],
            }
        );
        assert_eq!(bindings.verdict("r1", &token, &other), Verdict::Mismatch);
        assert_eq!(bindings.verdict("r2", &token, &other), Verdict::Launch);
    }

    #[test]
    fn a_repeat_shows_the_instance_as_it_is_now() {
        let states = HashMap::from([(
            "i-1".to_string(),
            ("48".to_string(), "terminated".to_string()),
        )]);
        let now = String::from_utf8_lossy(&with_states(ANSWER.as_bytes(), &states)).into_owned();
        assert!(
            now.contains("<instanceState><code>48</code><name>terminated</name></instanceState>"),
            "{now}"
        );
        assert!(!now.contains("pending"));
        assert!(now.contains("<imageId>ami-1</imageId>"));
    }
}
