//! The campaign segment filter compiler on arbitrary JSON: it must never panic, every compiled filter must number
//! its parameters densely from the first one, and the SQL text must depend only on the filter's shape, never on
//! its values (values are bound, not spliced).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rewards::segment::compile;
use serde_json::Value;

/// The filter with every string value (not key) replaced by another valid-looking string.
fn with_other_strings(value: &Value) -> Value {
    match value {
        Value::String(s) if s.starts_with("en") => Value::String("tr".into()),
        Value::String(_) => Value::String("en".into()),
        Value::Array(items) => Value::Array(items.iter().map(with_other_strings).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), with_other_strings(v))).collect()),
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(filter) = serde_json::from_slice::<Value>(data) else { return };
    let compiled = match compile(&filter, "segment_filter", 2, "$1", "'UTC'") {
        Ok(compiled) => compiled,
        Err(errors) => {
            assert!(!errors.is_empty());
            return;
        }
    };
    for n in 2..2 + compiled.params.len() {
        assert!(compiled.sql.contains(&format!("${n}")), "parameter ${n} unused in {}", compiled.sql);
    }
    assert!(!compiled.sql.contains(&format!("${}", 2 + compiled.params.len())));
    if let Ok(other) = compile(&with_other_strings(&filter), "segment_filter", 2, "$1", "'UTC'") {
        assert_eq!(compiled.sql, other.sql, "the SQL text changed with the filter's values");
    }
});
