//! Between k8s-pb's prost messages and the JSON the emulator stores: the
//! JSON form of each message is the Go type's (`encoding/json` of the
//! `k8s.io/api` structs). [`PbJson`] is implemented for every message the
//! served kinds reach by the generated table in `messages.rs`, which
//! gives each prost field its JSON name and whether the schema requires
//! it; the field conversions and the types with their own JSON form (time
//! stamps, quantities, int-or-string, raw extensions) are here.
//!
//! Go writes every non-pointer field into protobuf, so a decoded message
//! holds `Some("")` and `Some(0)` for fields its sender left empty. Empty
//! strings, lists and maps are left out of the JSON, as `omitempty` does,
//! unless the schema requires the field; numbers and booleans are kept
//! (a pointer's zero, `replicas: 0`, means something).

use std::collections::BTreeMap;

use base64::Engine;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use k8s_pb::apimachinery::pkg::api::resource::{Quantity, QuantityValue};
use k8s_pb::apimachinery::pkg::apis::meta::v1::{Duration, FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;

/// A message with a JSON form.
pub(crate) trait PbJson: Sized {
    /// The JSON form; `Null` for a value JSON leaves out (a zero time).
    fn to_json(&self) -> Value;
    fn from_json(value: &Value) -> Result<Self, String>;
}

/// One field of a message: how it appears in JSON.
pub(crate) trait Field: Sized {
    /// The JSON value, or `None` to leave the field out.
    fn emit(&self, required: bool) -> Option<Value>;
    fn read(value: &Value) -> Result<Self, String>;
}

fn expected(what: &str, got: &Value) -> String {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("expected {what}, got {kind}")
}

impl Field for Option<String> {
    fn emit(&self, required: bool) -> Option<Value> {
        self.as_ref()
            .filter(|s| required || !s.is_empty())
            .map(|s| Value::String(s.clone()))
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            other => Err(expected("string", other)),
        }
    }
}

fn read_i64(value: &Value) -> Result<i64, String> {
    value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i64)
        })
        .ok_or_else(|| expected("integer", value))
}

impl Field for Option<i64> {
    fn emit(&self, _required: bool) -> Option<Value> {
        self.map(|n| json!(n))
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => read_i64(v).map(Some),
        }
    }
}

impl Field for Option<i32> {
    fn emit(&self, _required: bool) -> Option<Value> {
        self.map(|n| json!(n))
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => i32::try_from(read_i64(v)?)
                .map(Some)
                .map_err(|_| "integer out of range".to_string()),
        }
    }
}

impl Field for Option<bool> {
    fn emit(&self, _required: bool) -> Option<Value> {
        self.map(Value::Bool)
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            other => Err(expected("bool", other)),
        }
    }
}

impl Field for Option<f64> {
    fn emit(&self, _required: bool) -> Option<Value> {
        self.map(|n| json!(n))
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => v.as_f64().map(Some).ok_or_else(|| expected("number", v)),
        }
    }
}

fn base64_text(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn read_base64(value: &Value) -> Result<Vec<u8>, String> {
    let text = value
        .as_str()
        .ok_or_else(|| expected("base64 string", value))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("illegal base64 data: {e}"))
}

impl Field for Option<Vec<u8>> {
    fn emit(&self, required: bool) -> Option<Value> {
        self.as_ref()
            .filter(|b| required || !b.is_empty())
            .map(|b| base64_text(b))
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => read_base64(v).map(Some),
        }
    }
}

impl<M: PbJson> Field for Option<M> {
    fn emit(&self, _required: bool) -> Option<Value> {
        self.as_ref().map(M::to_json).filter(|v| !v.is_null())
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => M::from_json(v).map(Some),
        }
    }
}

/// A list element's JSON form.
pub(crate) trait Element: Sized {
    fn to_element(&self) -> Value;
    fn from_element(value: &Value) -> Result<Self, String>;
}

impl Element for String {
    fn to_element(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_element(value: &Value) -> Result<Self, String> {
        value
            .as_str()
            .map(String::from)
            .ok_or_else(|| expected("string", value))
    }
}

impl Element for i32 {
    fn to_element(&self) -> Value {
        json!(self)
    }
    fn from_element(value: &Value) -> Result<Self, String> {
        i32::try_from(read_i64(value)?).map_err(|_| "integer out of range".to_string())
    }
}

impl Element for i64 {
    fn to_element(&self) -> Value {
        json!(self)
    }
    fn from_element(value: &Value) -> Result<Self, String> {
        read_i64(value)
    }
}

impl Element for Vec<u8> {
    fn to_element(&self) -> Value {
        base64_text(self)
    }
    fn from_element(value: &Value) -> Result<Self, String> {
        read_base64(value)
    }
}

impl<M: PbJson> Element for M {
    fn to_element(&self) -> Value {
        self.to_json()
    }
    fn from_element(value: &Value) -> Result<Self, String> {
        M::from_json(value)
    }
}

impl<E: Element> Field for Vec<E> {
    fn emit(&self, required: bool) -> Option<Value> {
        (required || !self.is_empty())
            .then(|| Value::Array(self.iter().map(E::to_element).collect()))
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| E::from_element(v).map_err(|e| format!("[{i}]: {e}")))
                .collect(),
            other => Err(expected("array", other)),
        }
    }
}

impl<E: Element> Field for BTreeMap<String, E> {
    fn emit(&self, required: bool) -> Option<Value> {
        (required || !self.is_empty()).then(|| {
            Value::Object(
                self.iter()
                    .map(|(k, v)| (k.clone(), v.to_element()))
                    .collect(),
            )
        })
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(BTreeMap::new()),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    E::from_element(v)
                        .map(|e| (k.clone(), e))
                        .map_err(|e| format!("{k}: {e}"))
                })
                .collect(),
            other => Err(expected("object", other)),
        }
    }
}

/// The members of a JSON object, or an error for anything else (`null`
/// reads as an empty object).
pub(crate) fn members(value: &Value) -> Result<Option<&Map<String, Value>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        other => Err(expected("object", other)),
    }
}

/// `impl PbJson` for generated messages: `path::Message { field: "json"
/// [required], ... }`.
macro_rules! messages {
    ($($($segment:ident)::+ { $($field:ident : $json:literal $($required:ident)?),* $(,)? })*) => {$(
        impl $crate::apiserver::protobuf::json::PbJson for k8s_pb::$($segment)::+ {
            fn to_json(&self) -> serde_json::Value {
                #[allow(unused_mut)]
                let mut out = serde_json::Map::new();
                $(
                    if let Some(v) = $crate::apiserver::protobuf::json::Field::emit(
                        &self.$field,
                        $crate::apiserver::protobuf::json::is_required!($($required)?),
                    ) {
                        out.insert($json.into(), v);
                    }
                )*
                serde_json::Value::Object(out)
            }

            #[allow(unused_variables)]
            fn from_json(value: &serde_json::Value) -> Result<Self, String> {
                #[allow(unused_mut)]
                let mut message = Self::default();
                if let Some(map) = $crate::apiserver::protobuf::json::members(value)? {
                    $(
                        if let Some(v) = map.get($json) {
                            message.$field = $crate::apiserver::protobuf::json::Field::read(v)
                                .map_err(|e| format!("{}: {e}", $json))?;
                        }
                    )*
                }
                Ok(message)
            }
        }
    )*};
}

pub(crate) use messages;

macro_rules! is_required {
    () => {
        false
    };
    (required) => {
        true
    };
}

pub(crate) use is_required;

/// `metav1.Time`: RFC 3339 in seconds, `null` when zero
/// (`apimachinery/pkg/apis/meta/v1/time.go` `MarshalJSON`).
impl PbJson for Time {
    fn to_json(&self) -> Value {
        timestamp_json(self.seconds, None)
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        let (seconds, _) = read_timestamp(value)?;
        Ok(Time {
            seconds,
            nanos: seconds.map(|_| 0),
        })
    }
}

/// `metav1.MicroTime`: RFC 3339 with six fraction digits
/// (`micro_time.go` `RFC3339Micro`).
impl PbJson for MicroTime {
    fn to_json(&self) -> Value {
        timestamp_json(self.seconds, Some(self.nanos.unwrap_or(0)))
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        let (seconds, nanos) = read_timestamp(value)?;
        Ok(MicroTime {
            seconds,
            nanos: seconds.map(|_| nanos / 1000 * 1000),
        })
    }
}

fn timestamp_json(seconds: Option<i64>, micro_nanos: Option<i32>) -> Value {
    let seconds = seconds.unwrap_or(0);
    if seconds == 0 && micro_nanos.unwrap_or(0) == 0 {
        return Value::Null;
    }
    let Ok(ts) = Timestamp::new(seconds, micro_nanos.unwrap_or(0)) else {
        return Value::Null;
    };
    match micro_nanos {
        None => Value::String(crate::store::rfc3339(ts)),
        Some(_) => Value::String(ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()),
    }
}

fn read_timestamp(value: &Value) -> Result<(Option<i64>, i32), String> {
    match value {
        Value::Null => Ok((None, 0)),
        Value::String(s) if s.is_empty() => Ok((None, 0)),
        Value::String(s) => {
            let ts: Timestamp = s.parse().map_err(|e| format!("invalid time {s:?}: {e}"))?;
            Ok((Some(ts.as_second()), ts.subsec_nanosecond()))
        }
        other => Err(expected("RFC 3339 time", other)),
    }
}

/// `metav1.Duration`: Go's `time.Duration` text (`1h2m3s`).
impl PbJson for Duration {
    fn to_json(&self) -> Value {
        Value::String(go_duration(self.duration.unwrap_or(0)))
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        let text = value.as_str().ok_or_else(|| expected("duration", value))?;
        parse_go_duration(text).map(|ns| Duration { duration: Some(ns) })
    }
}

/// `time.Duration.String()`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let fraction = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let width = unit.ilog10() as usize;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(n, 1_000_000));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = n % 3_600_000_000_000 / 60_000_000_000;
    let seconds = fraction(n % 60_000_000_000, 1_000_000_000);
    let mut out = sign.to_string();
    if hours > 0 {
        out += &format!("{hours}h");
    }
    if hours > 0 || minutes > 0 {
        out += &format!("{minutes}m");
    }
    out + &format!("{seconds}s")
}

/// `time.ParseDuration`.
fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total += number * unit;
        rest = &rest[unit_end..];
    }
    let nanos = total.round() as i64;
    Ok(if negative { -nanos } else { nanos })
}

/// `intstr.IntOrString`: the number or the string it holds
/// (`apimachinery/pkg/util/intstr`: type 0 is an int, 1 a string).
impl PbJson for IntOrString {
    fn to_json(&self) -> Value {
        match self.r#type {
            Some(1) => Value::String(self.str_val.clone().unwrap_or_default()),
            _ => json!(self.int_val.unwrap_or(0)),
        }
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(IntOrString {
                r#type: Some(1),
                int_val: Some(0),
                str_val: Some(s.clone()),
            }),
            v => Ok(IntOrString {
                r#type: Some(0),
                int_val: Some(
                    i32::try_from(read_i64(v)?).map_err(|_| "integer out of range".to_string())?,
                ),
                str_val: Some(String::new()),
            }),
        }
    }
}

fn quantity_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(expected("quantity", other)),
    }
}

/// `resource.Quantity`: its canonical text.
impl PbJson for Quantity {
    fn to_json(&self) -> Value {
        Value::String(self.string.clone().unwrap_or_default())
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        quantity_text(value).map(|s| Quantity { string: Some(s) })
    }
}

impl PbJson for QuantityValue {
    fn to_json(&self) -> Value {
        Value::String(self.string.clone().unwrap_or_default())
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        quantity_text(value).map(|s| QuantityValue { string: Some(s) })
    }
}

fn raw_json(raw: Option<&Vec<u8>>) -> Value {
    raw.filter(|r| !r.is_empty())
        .and_then(|r| serde_json::from_slice(r).ok())
        .unwrap_or(Value::Null)
}

/// `runtime.RawExtension`: the embedded JSON object itself.
impl PbJson for RawExtension {
    fn to_json(&self) -> Value {
        raw_json(self.raw.as_ref())
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        Ok(RawExtension {
            raw: Some(serde_json::to_vec(value).unwrap_or_default()),
        })
    }
}

/// `metav1.FieldsV1`: the field set's JSON tree.
impl PbJson for FieldsV1 {
    fn to_json(&self) -> Value {
        raw_json(self.raw.as_ref())
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        Ok(FieldsV1 {
            raw: Some(serde_json::to_vec(value).unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        let t = Time::from_json(&json!("2025-01-02T03:04:05Z")).unwrap();
        assert_eq!(t.seconds, Some(1_735_787_045));
        assert_eq!(t.to_json(), json!("2025-01-02T03:04:05Z"));
        assert_eq!(Time::default().to_json(), Value::Null);
        let m = MicroTime::from_json(&json!("2025-01-02T03:04:05.123456Z")).unwrap();
        assert_eq!(m.to_json(), json!("2025-01-02T03:04:05.123456Z"));
    }

    #[test]
    fn int_or_string_and_quantities() {
        let i = IntOrString::from_json(&json!(8080)).unwrap();
        assert_eq!(i.to_json(), json!(8080));
        let s = IntOrString::from_json(&json!("25%")).unwrap();
        assert_eq!(s.to_json(), json!("25%"));
        assert_eq!(
            Quantity::from_json(&json!(2)).unwrap().to_json(),
            json!("2")
        );
    }

    #[test]
    fn go_durations() {
        for (ns, text) in [
            (0, "0s"),
            (1_500_000_000, "1.5s"),
            (3_723_000_000_000, "1h2m3s"),
            (2_000_000, "2ms"),
        ] {
            assert_eq!(go_duration(ns), text);
            assert_eq!(parse_go_duration(text).unwrap(), ns);
        }
        assert!(parse_go_duration("5 parsecs").is_err());
    }
}
