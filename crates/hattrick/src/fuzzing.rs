//! The properties hattrick's parsers of untrusted input must keep, on arbitrary bytes. The `cargo fuzz` targets in
//! `fuzz/` call these functions; the workspace test `fuzz_corpora` replays every committed corpus file through
//! them, so CI checks the corpora without fuzzing. Each function panics when a property is broken.

use serde_json::Value;

/// Campaign segment filters (`rewards::segment::compile`): never panics; parameters are numbered densely from the
/// first one; the SQL text depends only on the filter's shape, never on its values (values are bound, not spliced).
pub fn segment_filter(data: &[u8]) {
    let Ok(filter) = serde_json::from_slice::<Value>(data) else { return };
    let compiled = match rewards::segment::compile(&filter, "segment_filter", 2, "$1", "'UTC'") {
        Ok(compiled) => compiled,
        Err(errors) => {
            assert!(!errors.is_empty(), "a rejected filter names at least one problem");
            assert!(errors.iter().all(|e| e.starts_with("segment_filter")), "every problem names its path: {errors:?}");
            return;
        }
    };
    for n in 2..2 + compiled.params.len() {
        assert!(compiled.sql.contains(&format!("${n}")), "parameter ${n} unused in {}", compiled.sql);
    }
    assert!(!compiled.sql.contains(&format!("${}", 2 + compiled.params.len())));
    if let Ok(other) = rewards::segment::compile(&with_other_strings(&filter), "segment_filter", 2, "$1", "'UTC'") {
        assert_eq!(compiled.sql, other.sql, "the SQL text changed with the filter's values");
    }
}

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

/// Configuration files (`Settings::from_toml`): never panics; a rejection lists at least one problem, each naming
/// a setting or the file; an accepted configuration has no problems left and prints without its secrets.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match crate::config::Settings::from_toml(text) {
        Ok(settings) => {
            assert!(settings.problems().is_empty(), "accepted with problems: {:?}", settings.problems());
            let printed = settings.to_redacted_toml();
            for (_, secret) in settings.admin.named_tokens() {
                assert!(!printed.contains(&secret), "a token is printed");
            }
        }
        Err(error) => {
            assert!(!error.problems.is_empty(), "a rejected configuration names at least one problem");
            assert!(error.problems.iter().all(|p| !p.trim().is_empty()));
        }
    }
}

/// Badge unlock conditions (`rewards::conditions::Condition::parse`): never panics; an accepted condition turns
/// into a test that holds no text from the input but numbers (no quote, no statement separator, no comment).
pub fn badge_condition(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    match rewards::conditions::Condition::parse(&value) {
        Ok(condition) => {
            assert!(!condition.kind().is_empty());
            if let Some(test) = condition.sql_test() {
                assert!(!test.contains(';') && !test.contains("--") && !test.contains('\''), "unsafe SQL: {test}");
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
}

/// FCM responses (`push::classify`): never panics, whatever the status, body and `Retry-After`; a 2xx is a
/// delivery and nothing else is; a retry never comes back sooner than the server asked.
pub fn fcm_response(data: &[u8]) {
    let [high, low, rest @ ..] = data else { return };
    let status = 100 + u16::from_be_bytes([*high, *low]) % 500;
    let text = String::from_utf8_lossy(rest);
    let (retry_after, body) = match text.split_once('\n') {
        Some((header, body)) => (Some(header), body),
        None => (None, text.as_ref()),
    };
    let outcome = push::classify(status, body, retry_after);
    assert_eq!(matches!(outcome, push::Outcome::Delivered), (200..300).contains(&status), "{status}: {outcome:?}");
    if let (push::Outcome::Retry { after: Some(after), .. }, Some(Ok(seconds))) =
        (&outcome, retry_after.map(|h| h.trim().parse::<u64>()))
    {
        assert!(after.as_secs() >= seconds.min(3600), "retried after {after:?}, asked {seconds} s");
    }
}
