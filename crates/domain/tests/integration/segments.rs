//! Segment filters, property-tested: random filters over random users, the compiled SQL against a reference
//! evaluation in Rust of docs/jobs/scheduled-notifications.md (missing rows read as defaults, `ne` matches NULL, and so
//! on).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use domain::DayZones;
use domain::campaign::{audience_sql, bind_params};
use serde_json::{Map, Value, json};
use testkit::{NewUser, TestDb};
use uuid::Uuid;

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const LEVELS: [&str; 6] = ["bronze", "silver", "gold", "platinum", "diamond", "vip_elite"];
const PLATFORMS: [&str; 3] = ["ios", "android", "web"];
const BADGES: [&str; 3] = ["b1", "b2", "b3"];
const CODES: [&str; 2] = ["P1", "P2"];

/// What the reference evaluation knows of a user.
#[derive(Debug, Clone)]
struct Person {
    id: Uuid,
    xp: Option<(usize, i64, i64, i64, Option<i64>)>, // level index, points, current, longest, days since activity
    credits: Option<i64>,
    vip: bool,
    locale: &'static str,
    platforms: BTreeSet<&'static str>,
    signup_days: i64,
    badges: BTreeSet<&'static str>,
    referrals: i64,
    partner: Option<&'static str>,
}

impl Person {
    fn random(rng: &mut Rng) -> Self {
        let xp = rng.chance(80).then(|| {
            let activity = rng.chance(80).then(|| rng.int(0, 10));
            (rng.below(6) as usize, rng.int(0, 30_000), rng.int(0, 12), rng.int(0, 40), activity)
        });
        Self {
            id: Uuid::new_v4(),
            xp,
            credits: rng.chance(80).then(|| rng.int(0, 500)),
            vip: rng.chance(30),
            locale: *rng.pick(&["tr", "en", "en-GB", "de"]),
            platforms: PLATFORMS.iter().copied().filter(|_| rng.chance(40)).collect(),
            signup_days: rng.int(0, 60),
            badges: BADGES.iter().copied().filter(|_| rng.chance(40)).collect(),
            referrals: rng.int(0, 3),
            partner: rng.chance(50).then(|| *rng.pick(&CODES)),
        }
    }

    /// A field's value as the SQL sees it: a number, a text, a bool, a set, or NULL.
    fn field(&self, name: &str) -> Field {
        let xp = self.xp.unwrap_or((0, 0, 0, 0, None));
        match name {
            "xp_level" => Field::Int(Some(xp.0 as i64 + 1)),
            "xp_points" => Field::Int(Some(xp.1)),
            "current_streak_days" => Field::Int(Some(xp.2)),
            "longest_streak_days" => Field::Int(Some(xp.3)),
            "days_since_last_activity" => Field::Int(self.xp.and_then(|x| x.4)),
            "credits_balance" => Field::Int(Some(self.credits.unwrap_or(0))),
            "days_since_signup" => Field::Int(Some(self.signup_days)),
            "referral_count" => Field::Int(Some(self.referrals)),
            "is_vip" => Field::Bool(self.vip),
            // The user's language: `en-GB` is `en`.
            "locale" => Field::Text(self.locale.split(['-', '_']).next().map(str::to_lowercase)),
            "partner_code" => Field::Text(self.partner.map(str::to_owned)),
            "platform" => Field::Set(self.platforms.iter().map(|s| (*s).to_owned()).collect()),
            "has_badge" => Field::Set(self.badges.iter().map(|s| (*s).to_owned()).collect()),
            other => panic!("no field {other}"),
        }
    }
}

enum Field {
    Int(Option<i64>),
    Bool(bool),
    Text(Option<String>),
    Set(BTreeSet<String>),
}

/// The operand as the field compares it (levels by rank).
fn operand(name: &str, value: &Value) -> Value {
    match (name, value) {
        ("xp_level", Value::String(level)) => json!(LEVELS.iter().position(|l| l == level).unwrap() as i64 + 1),
        _ => value.clone(),
    }
}

fn holds(person: &Person, filter: &Value) -> bool {
    filter.as_object().unwrap().iter().all(|(key, condition)| match key.as_str() {
        "all" => condition.as_array().unwrap().iter().all(|f| holds(person, f)),
        "any" => condition.as_array().unwrap().iter().any(|f| holds(person, f)),
        field => match condition {
            Value::Object(ops) => ops.iter().all(|(op, v)| compare(person, field, op, v)),
            Value::Array(_) => compare(person, field, "in", condition),
            scalar => compare(person, field, "eq", scalar),
        },
    })
}

fn compare(person: &Person, name: &str, op: &str, value: &Value) -> bool {
    let value = match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| operand(name, v)).collect()),
        other => operand(name, other),
    };
    match person.field(name) {
        Field::Int(actual) => {
            let list = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect::<Vec<_>>();
            match (op, actual) {
                ("ne", a) => a != value.as_i64(),
                ("in", Some(a)) => list(&value).contains(&a),
                (_, None) => false,
                ("eq", Some(a)) => a == value.as_i64().unwrap(),
                ("gt", Some(a)) => a > value.as_i64().unwrap(),
                ("gte", Some(a)) => a >= value.as_i64().unwrap(),
                ("lt", Some(a)) => a < value.as_i64().unwrap(),
                ("lte", Some(a)) => a <= value.as_i64().unwrap(),
                _ => unreachable!(),
            }
        }
        Field::Bool(actual) => match op {
            "eq" => Some(actual) == value.as_bool(),
            "ne" => Some(actual) != value.as_bool(),
            _ => unreachable!(),
        },
        Field::Text(actual) => match op {
            "eq" => actual.is_some() && actual.as_deref() == value.as_str(),
            "ne" => actual.as_deref() != value.as_str(),
            "in" => actual.is_some_and(|a| value.as_array().unwrap().iter().any(|v| v.as_str() == Some(&a))),
            _ => unreachable!(),
        },
        Field::Set(actual) => match op {
            "eq" => actual.contains(value.as_str().unwrap()),
            "ne" => !actual.contains(value.as_str().unwrap()),
            "in" => value.as_array().unwrap().iter().any(|v| actual.contains(v.as_str().unwrap())),
            _ => unreachable!(),
        },
    }
}

/// A random valid condition on a random field.
fn condition(rng: &mut Rng) -> (String, Value) {
    let name = *rng.pick(&[
        "xp_level",
        "xp_points",
        "current_streak_days",
        "longest_streak_days",
        "credits_balance",
        "is_vip",
        "locale",
        "platform",
        "days_since_signup",
        "days_since_last_activity",
        "has_badge",
        "referral_count",
        "partner_code",
    ]);
    let scalar = |rng: &mut Rng| -> Value {
        match name {
            "xp_level" => json!(rng.pick(&LEVELS)),
            "xp_points" => json!(rng.int(0, 30_000)),
            "current_streak_days" => json!(rng.int(0, 12)),
            "longest_streak_days" => json!(rng.int(0, 40)),
            "credits_balance" => json!(rng.int(0, 500)),
            "days_since_signup" => json!(rng.int(0, 60)),
            "days_since_last_activity" => json!(rng.int(0, 10)),
            "referral_count" => json!(rng.int(0, 3)),
            "is_vip" => json!(rng.chance(50)),
            "locale" => json!(rng.pick(&["en", "tr", "de"])),
            "partner_code" => json!(rng.pick(&CODES)),
            "platform" => json!(rng.pick(&PLATFORMS)),
            "has_badge" => json!(rng.pick(&BADGES)),
            _ => unreachable!(),
        }
    };
    let ordered = !matches!(name, "is_vip" | "locale" | "partner_code" | "platform" | "has_badge");
    let listable = name != "is_vip";
    let mut ops: Vec<&str> = vec!["eq", "ne"];
    if listable {
        ops.push("in");
    }
    if ordered {
        ops.extend(["gt", "gte", "lt", "lte"]);
    }
    let value_for = |rng: &mut Rng, op: &str| {
        if op == "in" { Value::Array((0..rng.int(1, 3)).map(|_| scalar(rng)).collect()) } else { scalar(rng) }
    };
    let value = match rng.below(3) {
        0 => scalar(rng),
        1 if listable => value_for(rng, "in"),
        _ => {
            let mut object = Map::new();
            for _ in 0..rng.int(1, 2) {
                let op = *rng.pick(&ops);
                object.insert(op.to_owned(), value_for(rng, op));
            }
            Value::Object(object)
        }
    };
    (name.to_owned(), value)
}

fn filter(rng: &mut Rng, depth: usize) -> Value {
    let mut object = Map::new();
    for _ in 0..rng.int(1, 3) {
        if depth < 3 && rng.chance(25) {
            let group = if rng.chance(50) { "all" } else { "any" };
            let items: Vec<Value> = (0..rng.int(1, 3)).map(|_| filter(rng, depth + 1)).collect();
            object.insert(group.to_owned(), Value::Array(items));
        } else {
            let (name, value) = condition(rng);
            object.insert(name, value);
        }
    }
    Value::Object(object)
}

async fn insert(db: &TestDb, person: &Person, now: DateTime<Utc>, rng: &mut Rng) {
    let pool = db.pool();
    NewUser::new()
        .id(person.id)
        .locale(person.locale)
        .timezone("Europe/Istanbul")
        .created_at(now - Duration::days(person.signup_days))
        .insert(pool)
        .await;
    if let Some((level, points, current, longest, activity)) = person.xp {
        db::query(
            "INSERT INTO customer_xp (customer_user_id, level, xp_points, total_earned, current_streak_days,
                                      longest_streak_days, last_activity_date)
             VALUES ($1, $2, $3, $3, $4, $5, ($6::timestamptz AT TIME ZONE 'Europe/Istanbul')::date - $7::int)",
        )
        .bind(person.id)
        .bind(LEVELS[level])
        .bind(points as i32)
        .bind(current as i32)
        .bind(longest as i32)
        .bind(now)
        .bind(activity.map(|d| d as i32))
        .execute(pool)
        .await
        .unwrap();
    }
    if let Some(balance) = person.credits {
        db::query("INSERT INTO customer_credits (customer_user_id, balance, lifetime_earned) VALUES ($1, $2, $2)")
            .bind(person.id)
            .bind(balance as i32)
            .execute(pool)
            .await
            .unwrap();
    }
    if person.vip {
        db::query(
            "INSERT INTO customer_subscriptions (customer_user_id, status, platform, started_at, expired_at)
             VALUES ($1, 'active', 'ios', $2 - interval '1 day', $2 + interval '1 day')",
        )
        .bind(person.id)
        .bind(now)
        .execute(pool)
        .await
        .unwrap();
    }
    for (n, platform) in person.platforms.iter().enumerate() {
        db::query(
            "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(person.id)
        .bind(format!("{}-{n}", person.id))
        .bind(platform)
        .bind(format!("d{n}"))
        .execute(pool)
        .await
        .unwrap();
    }
    // An inactive token never counts.
    db::query(
        "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id, is_active)
         VALUES ($1, $2, 'web', 'old', false)",
    )
    .bind(person.id)
    .bind(format!("{}-old", person.id))
    .execute(pool)
    .await
    .unwrap();
    for badge in &person.badges {
        db::query("INSERT INTO customer_badges (customer_user_id, badge_id) SELECT $1, id FROM badges WHERE slug = $2")
            .bind(person.id)
            .bind(badge)
            .execute(pool)
            .await
            .unwrap();
    }
    // Referrals need other users: deleted ones, which no audience includes.
    let filler = |pool: &db::Pool| {
        let pool = pool.clone();
        async move { NewUser::new().deleted(true).insert(&pool).await }
    };
    for n in 0..person.referrals + rng.int(0, 1) {
        let referred = filler(pool).await;
        // Below tier 2 never counts: one extra tier-1 referral now and then.
        let tier = if n < person.referrals { 2 } else { 1 };
        db::query(
            "INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, status, tier)
             VALUES ($1, $2, 'X', 'completed', $3)",
        )
        .bind(person.id)
        .bind(referred)
        .bind(tier)
        .execute(pool)
        .await
        .unwrap();
    }
    if let Some(code) = person.partner {
        let referrer = filler(pool).await;
        db::query("INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code) VALUES ($1, $2, $3)")
            .bind(referrer)
            .bind(person.id)
            .bind(code)
            .execute(pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn compiled_filters_select_exactly_the_users_the_reference_evaluation_selects() {
    let db = TestDb::new().await;
    let now = DateTime::parse_from_rfc3339("2026-06-10T09:00:00Z").unwrap().with_timezone(&Utc);
    for slug in BADGES {
        db::query(
            "INSERT INTO badges (slug, name_tr, name_en, icon_url, category, unlock_condition)
             VALUES ($1, $1, $1, 'x', 'test', '{\"type\": \"manual\"}')",
        )
        .bind(slug)
        .execute(db.pool())
        .await
        .unwrap();
    }
    let mut rng = Rng(20_261_129);
    let people: Vec<Person> = (0..60).map(|_| Person::random(&mut rng)).collect();
    for person in &people {
        insert(&db, person, now, &mut rng).await;
    }
    let zones = DayZones { business: chrono_tz::Europe::Istanbul, app_day_zone: None };
    let mut non_trivial = 0;
    for case in 0..150 {
        let filter = filter(&mut rng, 0);
        let (condition, params) = audience_sql("segment", Some(&filter), &zones, 2)
            .unwrap_or_else(|errors| panic!("case {case}: {filter} was refused: {errors:?}"));
        let sql = format!("SELECT u.id FROM customer_users u WHERE {condition} ORDER BY u.id");
        let rows = bind_params(db::query(sqlx::AssertSqlSafe(sql)).bind(now), &params)
            .fetch_all(db.pool())
            .await
            .unwrap_or_else(|e| panic!("case {case}: {filter}: {e}\n{condition}\n{params:?}"));
        let selected: Vec<Uuid> = rows.iter().map(|row| sqlx::Row::get(row, 0)).collect();
        let mut expected: Vec<Uuid> = people.iter().filter(|p| holds(p, &filter)).map(|p| p.id).collect();
        expected.sort();
        assert_eq!(selected, expected, "case {case}: {filter}");
        if !expected.is_empty() && expected.len() < people.len() {
            non_trivial += 1;
        }
    }
    // The generator must exercise real selections, not only "everyone" or "no one".
    assert!(non_trivial > 50, "only {non_trivial} non-trivial cases");
}
