//! JSON Schema (draft-07) fragments for the configuration file, so that an
//! editor validates a `RotationConfig` as it is typed and completes its
//! fields. The walkers (`config::Checker` and each section's own) remain
//! the authority: a schema here never refuses a file the walker accepts,
//! and it cannot say everything the walker checks (a duration that is not
//! zero, a token outliving the join wait). Each mapping's properties are
//! the walker's own list of fields, which the tests beside each schema
//! hold equal.

use serde_json::{Map, Value, json};

/// The draft editors support most widely (VS Code's YAML extension,
/// JetBrains IDEs, `check-jsonschema`).
pub const DRAFT: &str = "http://json-schema.org/draft-07/schema#";

/// A mapping with exactly these fields (the walker refuses any other),
/// `required` among them.
pub fn mapping(description: &str, properties: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let properties: Map<String, Value> = properties
        .into_iter()
        .map(|(name, schema)| (name.to_string(), schema))
        .collect();
    let mut schema = json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// A string.
pub fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// A string matching an ECMA-262 `pattern`.
pub fn pattern(description: &str, pattern: &str) -> Value {
    json!({ "type": "string", "description": description, "pattern": pattern })
}

/// One of `values`.
pub fn choice(description: &str, values: &[&str]) -> Value {
    json!({ "type": "string", "description": description, "enum": values })
}

/// A list of strings.
pub fn string_list(description: &str) -> Value {
    json!({ "type": "array", "description": description, "items": { "type": "string" } })
}

/// A mapping of names to string values.
pub fn string_map(description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": { "type": "string" },
    })
}

/// The names of a mapping schema's properties, sorted: what the tests
/// compare with the walker's list of fields.
pub fn property_names(schema: &Value) -> Vec<&str> {
    schema["properties"]
        .as_object()
        .map(|properties| properties.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_refuses_other_fields_and_lists_its_required_ones() {
        let schema = mapping(
            "a section",
            vec![
                ("name", string("its name")),
                ("size", choice("how big", &["s", "m"])),
            ],
            &["name"],
        );
        assert_eq!(property_names(&schema), ["name", "size"]);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["name"]));
        assert_eq!(schema["properties"]["size"]["enum"], json!(["s", "m"]));
        let optional = mapping("another", vec![("name", string("its name"))], &[]);
        assert!(optional.get("required").is_none());
    }
}
