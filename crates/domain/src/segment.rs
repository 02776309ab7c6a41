//! Campaign segment filters (docs/jobs/scheduled-notifications.md), compiled to parameterised SQL.
//!
//! A filter is a JSON object whose keys are whitelisted fields (or `all` / `any` with a list of filters) and whose
//! values are conditions: a scalar (equals), a list (in), or an object of operators `eq, ne, in, gt, gte, lt, lte`.
//! Every key of an object must hold. Field names and operators come from fixed lists and are never copied into the
//! SQL; every value is a bind parameter. Problems are reported with their path
//! (`segment_filter.any[1].xp_lvl: unknown field`), all of them at once.

use serde_json::Value;

/// The deepest nesting of `all` / `any` accepted.
pub const MAX_DEPTH: usize = 8;
/// The most conditions a filter may hold.
pub const MAX_CONDITIONS: usize = 64;
/// The longest `in` list.
pub const MAX_LIST: usize = 1000;
/// The longest string value.
pub const MAX_TEXT: usize = 200;

/// The XP levels in order (docs/ledger.md): `xp_level` compares by this order.
pub const LEVELS: [&str; 6] = ["bronze", "silver", "gold", "platinum", "diamond", "vip_elite"];

/// A bind parameter of a compiled filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A number.
    Int(i64),
    /// A text.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// Numbers, for `in`.
    Ints(Vec<i64>),
    /// Texts, for `in`.
    Texts(Vec<String>),
}

/// A filter compiled to a boolean SQL expression over the user row `u`, with its parameters (numbered from the
/// `first_param` given to [`compile`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledFilter {
    /// The SQL expression.
    pub sql: String,
    /// Its parameters, in order.
    pub params: Vec<Param>,
}

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Whole numbers, ordered.
    Int,
    /// `xp_level`: level names, ordered by rank.
    Level,
    /// Text, equality only.
    Text,
    /// true / false, equality only.
    Bool,
    /// A set membership (`has_badge`, `platform`): eq / in / ne.
    Membership,
}

/// Field name, kind, and SQL (`{zone}` stands for the user's zone, `{now}` for the campaign's now parameter). A
/// membership field is an array expression, never a bare subquery: `x = ANY (SELECT ...)` would compare with each
/// row instead of each element.
const FIELDS: [(&str, Kind, &str); 13] = [
    (
        "xp_level",
        Kind::Level,
        "coalesce((SELECT hattrick_level_rank(x.level) FROM customer_xp x WHERE x.customer_user_id = u.id), 1)",
    ),
    ("xp_points", Kind::Int, "coalesce((SELECT x.xp_points FROM customer_xp x WHERE x.customer_user_id = u.id), 0)"),
    (
        "current_streak_days",
        Kind::Int,
        "coalesce((SELECT x.current_streak_days FROM customer_xp x WHERE x.customer_user_id = u.id), 0)",
    ),
    (
        "longest_streak_days",
        Kind::Int,
        "coalesce((SELECT x.longest_streak_days FROM customer_xp x WHERE x.customer_user_id = u.id), 0)",
    ),
    (
        "credits_balance",
        Kind::Int,
        "coalesce((SELECT c.balance FROM customer_credits c WHERE c.customer_user_id = u.id), 0)",
    ),
    (
        "is_vip",
        Kind::Bool,
        "EXISTS (SELECT 1 FROM customer_subscriptions s WHERE s.customer_user_id = u.id AND s.status = 'active' AND s.expired_at > {now} AND s.deleted_at IS NULL)",
    ),
    ("locale", Kind::Text, "hattrick_language(u.locale_preference)"),
    (
        "platform",
        Kind::Membership,
        "coalesce((SELECT array_agg(DISTINCT t.platform::text) FROM customer_push_tokens t
                   WHERE t.customer_user_id = u.id AND t.is_active IS NOT FALSE), '{}'::text[])",
    ),
    ("days_since_signup", Kind::Int, "(({now} AT TIME ZONE {zone})::date - (u.created_at AT TIME ZONE {zone})::date)"),
    (
        "days_since_last_activity",
        Kind::Int,
        "(({now} AT TIME ZONE {zone})::date - (SELECT x.last_activity_date FROM customer_xp x WHERE x.customer_user_id = u.id))",
    ),
    (
        "has_badge",
        Kind::Membership,
        "coalesce((SELECT array_agg(b.slug::text) FROM customer_badges cb JOIN badges b ON b.id = cb.badge_id
                   WHERE cb.customer_user_id = u.id), '{}'::text[])",
    ),
    ("referral_count", Kind::Int, "(SELECT count(*) FROM referrals r WHERE r.referrer_user_id = u.id AND r.tier >= 2)"),
    ("partner_code", Kind::Text, "(SELECT r.referral_code::text FROM referrals r WHERE r.referred_user_id = u.id)"),
];

struct Compiler<'a> {
    params: Vec<Param>,
    first_param: usize,
    errors: Vec<String>,
    conditions: usize,
    now: &'a str,
    zone: &'a str,
}

/// Compiles `filter` (found at `path`, e.g. `segment_filter`). `now` and `zone` are SQL expressions for the
/// campaign's now and the user's zone; the filter's own parameters are numbered from `first_param`. Returns
/// every problem found, each naming its path.
pub fn compile(
    filter: &Value,
    path: &str,
    first_param: usize,
    now: &str,
    zone: &str,
) -> Result<CompiledFilter, Vec<String>> {
    let mut compiler = Compiler { params: Vec::new(), first_param, errors: Vec::new(), conditions: 0, now, zone };
    let sql = compiler.object(filter, path, 0);
    if compiler.conditions > MAX_CONDITIONS {
        compiler.errors.push(format!("{path}: more than {MAX_CONDITIONS} conditions"));
    }
    if compiler.errors.is_empty() { Ok(CompiledFilter { sql, params: compiler.params }) } else { Err(compiler.errors) }
}

impl Compiler<'_> {
    fn param(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.first_param + self.params.len() - 1)
    }

    fn error(&mut self, path: &str, message: impl std::fmt::Display) -> String {
        self.errors.push(format!("{path}: {message}"));
        "false".to_owned()
    }

    /// An object: every key must hold.
    fn object(&mut self, value: &Value, path: &str, depth: usize) -> String {
        if depth > MAX_DEPTH {
            return self.error(path, format_args!("nested deeper than {MAX_DEPTH} levels"));
        }
        let Some(object) = value.as_object() else {
            return self.error(path, "must be an object of conditions");
        };
        if object.is_empty() {
            return self.error(path, "is empty (use the audience `all` to target everyone)");
        }
        let mut parts = Vec::new();
        for (key, condition) in object {
            let at = format!("{path}.{key}");
            let part = match key.as_str() {
                "all" | "any" => self.group(key, condition, &at, depth + 1),
                _ => self.field(key, condition, &at),
            };
            parts.push(part);
        }
        join(&parts, "AND")
    }

    fn group(&mut self, key: &str, value: &Value, path: &str, depth: usize) -> String {
        let Some(items) = value.as_array() else {
            return self.error(path, "must be a list of filters");
        };
        if items.is_empty() {
            return self.error(path, "is an empty list");
        }
        if items.len() > MAX_CONDITIONS {
            return self.error(path, format_args!("has more than {MAX_CONDITIONS} filters"));
        }
        let parts: Vec<String> =
            items.iter().enumerate().map(|(i, item)| self.object(item, &format!("{path}[{i}]"), depth)).collect();
        join(&parts, if key == "all" { "AND" } else { "OR" })
    }

    fn field(&mut self, name: &str, condition: &Value, path: &str) -> String {
        let Some((_, kind, template)) = FIELDS.iter().find(|(field, _, _)| *field == name) else {
            return self.error(path, "unknown field");
        };
        self.conditions += 1;
        let expr = template.replace("{now}", self.now).replace("{zone}", self.zone);
        match condition {
            Value::Object(ops) => {
                if ops.is_empty() {
                    return self.error(path, "has no operator");
                }
                let parts: Vec<String> = ops
                    .iter()
                    .map(|(op, operand)| self.operator(*kind, &expr, op, operand, &format!("{path}.{op}")))
                    .collect();
                join(&parts, "AND")
            }
            Value::Array(_) => self.operator(*kind, &expr, "in", condition, path),
            _ => self.operator(*kind, &expr, "eq", condition, path),
        }
    }

    fn operator(&mut self, kind: Kind, expr: &str, op: &str, operand: &Value, path: &str) -> String {
        let ordered = matches!(kind, Kind::Int | Kind::Level);
        let comparison = match op {
            "eq" => "=",
            "ne" => "<>",
            "gt" | "gte" | "lt" | "lte" if !ordered => {
                return self.error(path, "this field is not ordered: use eq, ne or in");
            }
            "gt" => ">",
            "gte" => ">=",
            "lt" => "<",
            "lte" => "<=",
            "in" => {
                let Some(items) = operand.as_array() else {
                    return self.error(path, "`in` needs a list");
                };
                if items.is_empty() || items.len() > MAX_LIST {
                    return self.error(path, format_args!("a list needs 1 to {MAX_LIST} values"));
                }
                return self.membership(kind, expr, items, path);
            }
            _ => return self.error(path, "unknown operator (use eq, ne, in, gt, gte, lt, lte)"),
        };
        let Some(value) = self.scalar(kind, operand, path) else { return "false".to_owned() };
        if kind == Kind::Membership {
            let p = self.param(value);
            return if comparison == "=" {
                format!("coalesce({p} = ANY ({expr}), false)")
            } else {
                format!("NOT coalesce({p} = ANY ({expr}), false)")
            };
        }
        let p = self.param(value);
        if comparison == "<>" {
            // `ne` matches NULL (docs/jobs/scheduled-notifications.md).
            format!("({expr}) IS DISTINCT FROM {p}")
        } else {
            format!("coalesce(({expr}) {comparison} {p}, false)")
        }
    }

    fn membership(&mut self, kind: Kind, expr: &str, items: &[Value], path: &str) -> String {
        let values: Vec<Param> =
            items.iter().enumerate().filter_map(|(i, item)| self.scalar(kind, item, &format!("{path}[{i}]"))).collect();
        if values.len() != items.len() {
            return "false".to_owned();
        }
        let list = if values.iter().all(|v| matches!(v, Param::Int(_))) {
            Param::Ints(values.into_iter().filter_map(|v| if let Param::Int(n) = v { Some(n) } else { None }).collect())
        } else if values.iter().all(|v| matches!(v, Param::Text(_))) {
            Param::Texts(
                values.into_iter().filter_map(|v| if let Param::Text(t) = v { Some(t) } else { None }).collect(),
            )
        } else {
            return self.error(path, "a list of booleans is not a condition: use true or false");
        };
        let p = self.param(list);
        if kind == Kind::Membership {
            format!("coalesce(({expr}) && {p}, false)")
        } else {
            format!("coalesce(({expr}) = ANY ({p}), false)")
        }
    }

    /// One operand, checked against the field's kind.
    fn scalar(&mut self, kind: Kind, value: &Value, path: &str) -> Option<Param> {
        let checked = match (kind, value) {
            (Kind::Int, Value::Number(n)) => n.as_i64().map(Param::Int).ok_or("must be a whole number"),
            (Kind::Int, _) => Err("must be a whole number"),
            (Kind::Level, Value::String(level)) => LEVELS
                .iter()
                .position(|l| l == level)
                .map(|rank| Param::Int(rank as i64 + 1))
                .ok_or("must be a level: bronze, silver, gold, platinum, diamond or vip_elite"),
            (Kind::Level, _) => Err("must be a level name"),
            (Kind::Bool, Value::Bool(b)) => Ok(Param::Bool(*b)),
            (Kind::Bool, _) => Err("must be true or false"),
            (Kind::Text | Kind::Membership, Value::String(text)) if text.chars().count() <= MAX_TEXT => {
                Ok(Param::Text(text.clone()))
            }
            (Kind::Text | Kind::Membership, Value::String(_)) => Err("is too long"),
            (Kind::Text | Kind::Membership, _) => Err("must be a string"),
        };
        match checked {
            Ok(param) => Some(param),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
    }
}

/// The token platforms a filter requires of every user it selects, when it says so plainly: `platform` equal to
/// or in a list, at the top level or inside `all` (never under `any` or `ne`). Such a campaign is sent only to the
/// user's tokens on those platforms (docs/push.md); None means every token.
pub fn required_platforms(filter: &Value) -> Option<Vec<String>> {
    let object = filter.as_object()?;
    let mut required: Option<Vec<String>> = None;
    let mut narrow = |platforms: Vec<String>| {
        required = Some(match required.take() {
            None => platforms,
            Some(current) => current.into_iter().filter(|p| platforms.contains(p)).collect(),
        });
    };
    for (key, condition) in object {
        match (key.as_str(), condition) {
            ("platform", Value::String(platform)) => narrow(vec![platform.clone()]),
            ("platform", Value::Array(items)) => narrow(strings(items)),
            ("platform", Value::Object(ops)) => {
                if let Some(Value::String(platform)) = ops.get("eq") {
                    narrow(vec![platform.clone()]);
                }
                if let Some(Value::Array(items)) = ops.get("in") {
                    narrow(strings(items));
                }
            }
            ("all", Value::Array(items)) => {
                for item in items {
                    if let Some(platforms) = required_platforms(item) {
                        narrow(platforms);
                    }
                }
            }
            _ => {}
        }
    }
    required
}

fn strings(items: &[Value]) -> Vec<String> {
    items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

fn join(parts: &[String], op: &str) -> String {
    if parts.len() == 1 { parts[0].clone() } else { format!("({})", parts.join(&format!(" {op} "))) }
}

// The property the `cargo fuzz` target in `fuzz/` checks on arbitrary bytes; `fuzz_corpora` in hattrick's tests
// replays every committed corpus file through it. Panics when the property is broken.
/// Campaign segment filters (`compile`): never panics; parameters are numbered densely from the
/// first one; the SQL text depends only on the filter's shape, never on its values (values are bound, not spliced).
pub fn fuzz_compile(data: &[u8]) {
    let Ok(filter) = serde_json::from_slice::<Value>(data) else { return };
    let compiled = match compile(&filter, "segment_filter", 2, "$1", "'UTC'") {
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
    if let Ok(other) = compile(&with_other_strings(&filter), "segment_filter", 2, "$1", "'UTC'") {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(filter: Value) -> Vec<String> {
        compile(&filter, "segment_filter", 3, "$1", "$2").unwrap_err()
    }

    #[test]
    fn the_first_versions_filters_compile_to_parameters() {
        let compiled = compile(
            &json!({"xp_level": ["gold", "platinum", "diamond", "vip_elite"]}),
            "segment_filter",
            3,
            "$1",
            "$2",
        )
        .unwrap();
        assert_eq!(compiled.params, vec![Param::Ints(vec![3, 4, 5, 6])]);
        assert!(compiled.sql.contains("= ANY ($3)"), "{}", compiled.sql);
        let compiled = compile(&json!({"current_streak_days": {"gte": 7}}), "segment_filter", 3, "$1", "$2").unwrap();
        assert_eq!(compiled.params, vec![Param::Int(7)]);
        let compiled = compile(&json!({"xp_level": {"gte": "gold"}}), "segment_filter", 1, "$9", "$8").unwrap();
        assert_eq!(compiled.params, vec![Param::Int(3)]);
        assert!(compiled.sql.contains(">= $1"), "{}", compiled.sql);
    }

    #[test]
    fn problems_name_their_path_and_all_are_reported() {
        assert_eq!(
            errors(json!({"any": [{"locale": "en"}, {"xp_lvl": 3}], "xp_points": {"between": 1}})),
            vec![
                "segment_filter.any[1].xp_lvl: unknown field",
                "segment_filter.xp_points.between: unknown operator (use eq, ne, in, gt, gte, lt, lte)",
            ]
        );
        assert_eq!(
            errors(json!({"xp_level": {"gte": "golden"}})),
            vec!["segment_filter.xp_level.gte: must be a level: bronze, silver, gold, platinum, diamond or vip_elite"]
        );
        assert_eq!(
            errors(json!({"locale": {"gt": "en"}})),
            vec!["segment_filter.locale.gt: this field is not ordered: use eq, ne or in"]
        );
        assert_eq!(errors(json!({"is_vip": "yes"})), vec!["segment_filter.is_vip: must be true or false"]);
        assert_eq!(errors(json!([1])), vec!["segment_filter: must be an object of conditions"]);
        assert_eq!(errors(json!({"xp_points": [1, "2"]})), vec!["segment_filter.xp_points[1]: must be a whole number"]);
    }

    #[test]
    fn plain_platform_conditions_restrict_the_tokens_used() {
        assert_eq!(required_platforms(&json!({"platform": "ios"})), Some(vec!["ios".to_owned()]));
        assert_eq!(
            required_platforms(
                &json!({"platform": ["ios", "android"], "all": [{"platform": {"in": ["android", "web"]}}]})
            ),
            Some(vec!["android".to_owned()])
        );
        assert_eq!(required_platforms(&json!({"any": [{"platform": "ios"}, {"locale": "en"}]})), None);
        assert_eq!(required_platforms(&json!({"platform": {"ne": "web"}})), None);
        assert_eq!(required_platforms(&json!({"xp_points": {"gt": 5}})), None);
    }

    #[test]
    fn hostile_input_never_reaches_the_sql_text() {
        let evil = "x'); DROP TABLE customer_users; --";
        let compiled = compile(&json!({"partner_code": evil, "has_badge": [evil]}), "f", 1, "$9", "$8").unwrap();
        assert!(!compiled.sql.contains("DROP"), "{}", compiled.sql);
        assert_eq!(errors(json!({ evil: 1 })), vec![format!("segment_filter.{evil}: unknown field")]);
        let mut deep = json!({"locale": "en"});
        for _ in 0..20 {
            deep = json!({ "all": [deep] });
        }
        assert_eq!(errors(deep).len(), 1);
        let huge: Vec<i64> = (0..5000).collect();
        assert_eq!(errors(json!({"xp_points": huge})), vec!["segment_filter.xp_points: a list needs 1 to 1000 values"]);
        assert_eq!(errors(json!({"locale": "x".repeat(500)})), vec!["segment_filter.locale: is too long"]);
    }
}
