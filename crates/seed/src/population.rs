//! The synthetic population: every row of every streamed table, derived user by user from `(seed, user index)`.
//!
//! A user's rows come from random streams keyed by the seed, a stream tag and the user's index, so they do not
//! depend on which other users were generated before. Rows that point at another user (a like, a referral, a
//! reply) recompute what they need of that user (its id, its sign-up time, how many comments it wrote) from its
//! index. Only the generation of "now" ties the data to the wall clock, and only through timestamps: every count
//! and amount is decided from durations (account age, days ago), so the same `(users, seed)` gives the same counts
//! and sums whenever it runs.

use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::copy::{RowBuf, Table};
use super::defaults::Plan;
use super::rng::{self, Rng, gcd};
use super::text::{
    AD_PLACEMENTS, AD_UNITS, APP_VERSIONS, BUSINESS_SUFFIXES, BUSINESS_WORDS, EN_FIRST, EN_LAST, EN_PHRASES, MARKETS,
    REACTIONS, SHORT_COMMENTS, TR_FIRST, TR_LAST, TR_PHRASES, ascii_lower,
};

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Users signed up over the last two years, more of them recently (the app grows).
const SIGNUP_SPAN: i64 = 730 * DAY;
/// The match calendar: a kick-off every 36 minutes (40 a day), from `SIGNUP_SPAN` ago on.
const MATCH_STEP: i64 = 36 * MINUTE;
/// Predictions are made up to a week ahead.
const PREDICTIONS_AHEAD: i64 = 7 * DAY;
const MATCH_ID_BASE: i64 = 100_000;
/// One partner per this many users.
const PARTNER_BLOCK: u64 = 2_000;
/// Days of local midnights kept per zone: the sign-up span and a margin.
const DAYS_KEPT: u64 = 740;
/// A referral expires this long after it is created.
const REFERRAL_TTL: i64 = 30 * DAY;

/// XP levels and their thresholds (docs/ledger.md).
pub(crate) const LEVELS: [(&str, i64); 6] =
    [("bronze", 0), ("silver", 500), ("gold", 2_000), ("platinum", 5_000), ("diamond", 10_000), ("vip_elite", 25_000)];

/// The user time zones besides the business zone (index 0, stored as NULL).
const USER_ZONES: [&str; 4] = ["Europe/London", "America/New_York", "Europe/Berlin", "Asia/Tokyo"];

/// Tags of the random streams; each kind of decision draws from its own stream so that changing one table's
/// generation leaves the others' rows as they were.
mod tag {
    pub const USER: u64 = 1;
    pub const SIGNUP: u64 = 2;
    pub const PROFILE: u64 = 3;
    pub const CODE: u64 = 4;
    pub const REFERRAL: u64 = 5;
    pub const IDENTITY: u64 = 6;
    pub const PROVIDER_ID: u64 = 7;
    pub const TOKEN: u64 = 8;
    pub const TOKEN_VALUE: u64 = 9;
    pub const DEVICE: u64 = 10;
    pub const XP: u64 = 11;
    pub const XP_TX: u64 = 12;
    pub const STREAK: u64 = 13;
    pub const DAILY: u64 = 14;
    pub const AD: u64 = 15;
    pub const CREDITS: u64 = 16;
    pub const CREDIT_TX: u64 = 17;
    pub const COMMENT_COUNT: u64 = 18;
    pub const COMMENT: u64 = 19;
    pub const LIKE: u64 = 20;
    pub const PREDICTION: u64 = 21;
    pub const SUBSCRIPTION: u64 = 22;
    pub const PARTNER: u64 = 23;
    pub const PARTNER_PLACE: u64 = 24;
    pub const SPEND: u64 = 25;
}

/// A time zone's "today" and its recent local midnights, computed once so that no row needs a zone lookup.
struct Zone {
    name: Option<&'static str>,
    /// Today's local date, in days since 1970-01-01.
    today: i64,
    /// `midnights[k]`: the instant (Unix seconds) the local date `today - k` began.
    midnights: Vec<i64>,
}

impl Zone {
    fn new(name: Option<&'static str>, tz: Tz, now: DateTime<Utc>) -> Self {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let today = now.with_timezone(&tz).date_naive();
        let midnights = (0..DAYS_KEPT)
            .map(|k| {
                let date = today.checked_sub_days(Days::new(k)).unwrap_or(today);
                local_midnight(tz, date)
            })
            .collect();
        Self { name, today: (today - epoch).num_days(), midnights }
    }

    fn midnight(&self, days_ago: i64) -> i64 {
        let last = self.midnights.len() - 1;
        self.midnights[usize::try_from(days_ago).unwrap_or(0).min(last)]
    }
}

/// The first instant of `date` in `tz` (the first valid one when midnight falls in a DST gap).
fn local_midnight(tz: Tz, date: NaiveDate) -> i64 {
    let naive = date.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.timestamp(),
        LocalResult::Ambiguous(earliest, _) => earliest.timestamp(),
        LocalResult::None => (1..=3)
            .find_map(|h| tz.from_local_datetime(&(naive + chrono::Duration::hours(h))).earliest())
            .map_or_else(|| naive.and_utc().timestamp(), |t| t.timestamp()),
    }
}

/// Everything every user's generation shares: the seed, the size, "now", the zones and the plans.
pub(crate) struct World {
    seed: u64,
    users: u64,
    now: i64,
    partners: u64,
    partner_offset: u64,
    zones: Vec<Zone>,
    daily_credits: [i64; 7],
    plans: Vec<Plan>,
}

impl World {
    /// The world of `users` users for `seed`, with "now" and the zones fixed. Dates are written in each user's
    /// zone, or all in `app_day_zone` when the app uses one zone for everyone (docs/engine.md).
    pub(crate) fn new(
        seed: u64,
        users: u64,
        now: DateTime<Utc>,
        business_zone: Tz,
        app_day_zone: Option<Tz>,
        daily_credits: [i64; 7],
    ) -> Self {
        let mut zones = vec![Zone::new(None, app_day_zone.unwrap_or(business_zone), now)];
        for name in USER_ZONES {
            let tz: Tz = name.parse().unwrap_or(business_zone);
            zones.push(Zone::new(Some(name), app_day_zone.unwrap_or(tz), now));
        }
        let partners = if users == 0 { 0 } else { (users / PARTNER_BLOCK).max(1) };
        let partner_offset = rng::hash(seed, tag::PARTNER_PLACE, 0, 0) % PARTNER_BLOCK.min(users.max(1));
        Self {
            seed,
            users,
            now: now.timestamp(),
            partners,
            partner_offset,
            zones,
            daily_credits,
            plans: super::defaults::plans(),
        }
    }

    /// How many users.
    pub(crate) fn users(&self) -> u64 {
        self.users
    }

    /// User `i`'s id: fully random, like the app's `gen_random_uuid()`, so the `customer_user_id` columns the
    /// jobs join on have no relation to the order rows are stored in.
    pub(crate) fn user_id(&self, i: u64) -> [u8; 16] {
        rng::uuid(self.seed, tag::USER, i, 0)
    }

    /// The id of row `b` of kind `tag` of user `i`. Its first 32 bits grow with the user index (spread over the
    /// whole range, so ids still look random at a glance), the rest is random, and it keeps the version-4 bits.
    /// The rows of a table arrive in user order, so their primary-key inserts land at the right edge of the
    /// B-tree: with fully random ids every insert dirties a random page of an index far larger than
    /// `shared_buffers`, and at 1M users the load took about twice as long and wrote twice the WAL (full-page
    /// images after each checkpoint).
    fn row_id(&self, tag: u64, i: u64, b: u64) -> [u8; 16] {
        let prefix = ((u128::from(i) << 32) / u128::from(self.users.max(1))) as u32;
        let mut id = rng::uuid(self.seed, tag, i, b);
        id[..4].copy_from_slice(&prefix.to_be_bytes());
        id
    }

    /// Seconds since user `i` signed up. Users are numbered in sign-up order: the age falls with the index, and
    /// the square root puts more sign-ups in recent months.
    fn age(&self, i: u64) -> i64 {
        let fraction = (rng::hash(self.seed, tag::SIGNUP, i, 0) >> 11) as f64 / (1u64 << 53) as f64;
        let position = (i as f64 + fraction) / self.users as f64;
        ((SIGNUP_SPAN as f64 * (1.0 - position.sqrt())) as i64).max(HOUR)
    }

    /// User `i`'s referral code: 8 characters of Crockford base32 over a bijection of the index on 40 bits, so
    /// codes are distinct within a population (partners reuse their user's code, which must be unique).
    fn referral_code(&self, i: u64) -> [u8; 8] {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        const MASK: u64 = (1 << 40) - 1;
        let key = rng::hash(self.seed, tag::CODE, 0, 0);
        let mut x = (i.wrapping_add(key)) & MASK;
        x = x.wrapping_mul(0x9e37_79b9_7f4b) & MASK; // odd multiplier: a bijection modulo 2^40
        x ^= x >> 21;
        x = x.wrapping_mul(0x5851_f42d_4c95) & MASK;
        x ^= x >> 17;
        let mut code = [0u8; 8];
        for (k, c) in code.iter_mut().enumerate() {
            *c = ALPHABET[((x >> (35 - 5 * k)) & 31) as usize];
        }
        code
    }

    /// The partner whose user is `i`, if any: partner `p` belongs to user `p * 2000 + offset`.
    fn partner_of_user(&self, i: u64) -> Option<u64> {
        let p = i.checked_sub(self.partner_offset)? / PARTNER_BLOCK;
        (i % PARTNER_BLOCK == self.partner_offset % PARTNER_BLOCK && p < self.partners).then_some(p)
    }

    fn partner_user(&self, p: u64) -> u64 {
        p * PARTNER_BLOCK + self.partner_offset
    }

    /// How many partners belong to users numbered below `i` (signed up before user `i`).
    fn partners_before(&self, i: u64) -> u64 {
        if i <= self.partner_offset {
            0
        } else {
            ((i - self.partner_offset - 1) / PARTNER_BLOCK + 1).min(self.partners)
        }
    }

    fn partner_id(&self, p: u64) -> [u8; 16] {
        rng::uuid(self.seed, tag::PARTNER, p, 0)
    }

    /// How many comments user `i` wrote: most none or a few, a handful of users thousands.
    fn comment_count(&self, i: u64) -> u64 {
        let mut r = Rng::stream(self.seed, tag::COMMENT_COUNT, i, 0);
        if r.chance(0.48) { 0 } else { (r.pareto(1.6, 1.2) as u64).min(5_000) }
    }

    /// Kick-off of match `m`, in seconds relative to now.
    fn kickoff(m: i64) -> i64 {
        -SIGNUP_SPAN + m * MATCH_STEP
    }

    /// The first match that kicks off after user `i` signed up.
    fn first_match(age: i64) -> i64 {
        (SIGNUP_SPAN - age + MATCH_STEP - 1) / MATCH_STEP
    }

    /// The facts of comment `k` of user `i` that replies to it need, and the stream to draw the rest from.
    fn comment_core(&self, i: u64, k: u64, age: i64) -> (CommentCore, Rng) {
        let mut r = Rng::stream(self.seed, tag::COMMENT, i, k);
        let reply = r.chance(0.15);
        let last_played = (SIGNUP_SPAN - 1) / MATCH_STEP;
        let first = Self::first_match(age).min(last_played);
        let m = first + r.below((last_played - first + 1) as u64) as i64;
        let at = (self.now + Self::kickoff(m) + r.range(-30 * MINUTE, 3 * HOUR))
            .clamp(self.now - age + MINUTE, self.now - 1);
        (CommentCore { reply, m, at }, r)
    }
}

struct CommentCore {
    reply: bool,
    m: i64,
    at: i64,
}

/// One buffer and one row count per streamed table.
pub(crate) struct Rows {
    bufs: Vec<RowBuf>,
    counts: [u64; Table::ALL.len()],
}

impl Rows {
    /// Empty buffers.
    pub(crate) fn new() -> Self {
        Self { bufs: Table::ALL.iter().map(|_| RowBuf::new()).collect(), counts: [0; Table::ALL.len()] }
    }

    fn row(&mut self, table: Table) -> &mut RowBuf {
        &mut self.bufs[table as usize]
    }

    fn end(&mut self, table: Table) {
        self.bufs[table as usize].end_row();
        self.counts[table as usize] += 1;
    }

    /// Rows written so far, per table in [`Table::ALL`] order.
    pub(crate) fn counts(&self) -> [u64; Table::ALL.len()] {
        self.counts
    }

    /// The buffer of `table`, to flush it.
    pub(crate) fn buffer(&mut self, table: Table) -> &mut RowBuf {
        &mut self.bufs[table as usize]
    }
}

/// Per-user working space, reused from user to user so generation does not allocate per row.
#[derive(Default)]
pub(crate) struct Scratch {
    text: String,
    email: String,
    credit_events: Vec<CreditEvent>,
    xp_amounts: Vec<(i64, i64)>,
    claims: Vec<(i64, i64)>,
}

/// A change of a user's credits before it is placed in the ledger (spends are capped by the balance then).
#[derive(Clone, Copy)]
struct CreditEvent {
    at: i64,
    amount: i64,
    kind: &'static str,
    reference: Option<([u8; 16], &'static str)>,
    description: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReferralStatus {
    Pending,
    Completed,
    Rewarded,
    Expired,
}

impl ReferralStatus {
    fn as_str(self) -> &'static str {
        match self {
            ReferralStatus::Pending => "pending",
            ReferralStatus::Completed => "completed",
            ReferralStatus::Rewarded => "rewarded",
            ReferralStatus::Expired => "expired",
        }
    }

    fn tier(self) -> i64 {
        match self {
            ReferralStatus::Pending | ReferralStatus::Expired => 1,
            ReferralStatus::Completed => 2,
            ReferralStatus::Rewarded => 3,
        }
    }
}

/// How user `i` was referred.
struct Referral {
    referrer: u64,
    partner: Option<u64>,
    status: ReferralStatus,
    /// Seconds after the referral's creation.
    created_delay: i64,
    /// Seconds after sign-up of the first login that counts for tier 2 (docs/jobs/referral-tier2.md,
    /// docs/jobs/referral-tier3.md: 10 minutes or more after the referral), if there was one.
    login_after: Option<i64>,
}

/// The user being generated: the world, the user's index and id, when they signed up and how long ago.
#[derive(Clone, Copy)]
struct User<'a> {
    w: &'a World,
    i: u64,
    id: &'a [u8; 16],
    created: i64,
    age: i64,
}

fn decide_referral(w: &World, i: u64, age: i64) -> Option<Referral> {
    let mut r = Rng::stream(w.seed, tag::REFERRAL, i, 0);
    if i == 0 || !r.chance(0.30) {
        return None;
    }
    let partners = w.partners_before(i);
    let pick = r.unit();
    let (referrer, partner) = if pick < 0.35 && partners > 0 {
        // Older partners have had longer to bring people in.
        let p = ((partners as f64) * r.unit().powi(2)) as u64;
        (w.partner_user(p.min(partners - 1)), Some(p.min(partners - 1)))
    } else if pick < 0.50 {
        // Influencers: the earliest users gather most referrals.
        (((i as f64) * r.unit().powi(4)) as u64, None)
    } else {
        (r.below(i), None)
    };
    let created_delay = r.range(0, 5 * MINUTE);
    let status = if age - created_delay < REFERRAL_TTL {
        [ReferralStatus::Pending, ReferralStatus::Completed, ReferralStatus::Rewarded][r.weighted(&[60, 30, 10])]
    } else {
        [ReferralStatus::Completed, ReferralStatus::Rewarded, ReferralStatus::Expired, ReferralStatus::Pending]
            [r.weighted(&[52, 13, 27, 8])]
    };
    let window = (age - MINUTE).min(REFERRAL_TTL);
    let logged_in = match status {
        ReferralStatus::Completed | ReferralStatus::Rewarded => true,
        // Young pending referrals whose user came back: referral-tier2 will pay them.
        ReferralStatus::Pending if age < REFERRAL_TTL => r.chance(0.5),
        _ => false,
    };
    let login_after = (logged_in && window > 16 * MINUTE).then(|| r.range(16 * MINUTE, window));
    let status = match (status, login_after) {
        (ReferralStatus::Completed | ReferralStatus::Rewarded, None) => ReferralStatus::Pending,
        (status, _) => status,
    };
    Some(Referral { referrer, partner, status, created_delay, login_after })
}

/// Generates every row of user `i`.
pub(crate) fn generate_user(w: &World, i: u64, rows: &mut Rows, s: &mut Scratch) {
    let seed = w.seed;
    let now = w.now;
    let id = w.user_id(i);
    let age = w.age(i);
    let created = now - age;
    let mut r = Rng::stream(seed, tag::PROFILE, i, 0);

    let english = r.chance(0.15);
    let zone_index = if r.chance(0.90) { 0 } else { 1 + r.below(4) as usize };
    let zone = &w.zones[zone_index];
    let (first, last) = if english { (r.pick(EN_FIRST), r.pick(EN_LAST)) } else { (r.pick(TR_FIRST), r.pick(TR_LAST)) };
    let deleted_at = r.chance(0.01).then(|| created + r.below(age as u64) as i64);
    let is_active = deleted_at.is_none() && r.chance(0.985);
    let push_allowed = r.chance(0.90);
    let referral = decide_referral(w, i, age);

    // Logins: most users come back, recently more than long ago; referral states need a matching history.
    let last_login = match &referral {
        Some(Referral { login_after: Some(after), .. }) => {
            let span = (age - after).max(0) as f64;
            Some(now - (span * r.unit().powi(2)) as i64)
        }
        Some(_) => r.chance(0.5).then_some(created),
        None => r.chance(0.88).then(|| now - (age as f64 * r.unit().powi(2)) as i64),
    };

    s.email.clear();
    ascii_lower(first, &mut s.email);
    s.email.push('.');
    ascii_lower(last, &mut s.email);
    let name_len = s.email.len();
    s.text.clear();
    s.text.push_str(&s.email[..name_len]);
    s.text.push_str(&(i % 1000).to_string());
    s.email.push_str(&format!(".{i}@s{seed}.example.com"));
    let phone = if english {
        format!("+447{:09}", r.below(1_000_000_000))
    } else {
        format!("+905{:09}", r.below(1_000_000_000))
    };
    let code = w.referral_code(i);
    let code = std::str::from_utf8(&code).unwrap_or_default();
    let full_name = format!("{first} {last}");
    {
        let row = rows.row(Table::Users);
        row.uuid(&id)
            .text(&s.email)
            .text(&phone)
            .text(&full_name)
            .text(&s.text)
            .bool(is_active)
            .bool(push_allowed)
            .text(if english { "en" } else { "tr" })
            .text(code)
            .opt_text(zone.name)
            .opt_ts(last_login)
            .ts(created)
            .ts(last_login.unwrap_or(created).max(deleted_at.unwrap_or(created)))
            .opt_ts(deleted_at);
        rows.end(Table::Users);
    }

    let user = User { w, i, id: &id, created, age };
    identities(&user, last_login, rows, s);
    push_tokens(&user, rows, s);
    let streak = xp(&user, zone, rows, s);

    s.credit_events.clear();
    daily_rewards(&user, zone, &streak, rows, s);
    ad_views(&user, rows, s);
    let first_paid = subscriptions(&user, &referral, rows, s);
    if let Some(referral) = &referral {
        referral_row(&user, referral, first_paid, rows, s);
    }
    credits(&user, rows, s);
    comments(&user, english, rows, s);
    predictions(&user, rows);
    if let Some(p) = w.partner_of_user(i) {
        partner_row(&user, p, code, rows, s);
    }
}

fn identities(user: &User<'_>, last_login: Option<i64>, rows: &mut Rows, s: &mut Scratch) {
    let User { w, i, id, created, age } = *user;
    let mut r = Rng::stream(w.seed, tag::IDENTITY, i, 0);
    let count = 1 + r.weighted(&[35, 50, 15]);
    let mut providers = [0usize, 1, 2];
    for k in (1..providers.len()).rev() {
        providers.swap(k, r.below(k as u64 + 1) as usize);
    }
    let unique = rng::injective(w.seed, tag::PROVIDER_ID, i);
    let extra = rng::hash(w.seed, tag::PROVIDER_ID, i, 1);
    for (n, &provider) in providers[..count].iter().enumerate() {
        let (name, provider_user_id, email) = match provider {
            0 => ("google", format!("1{unique:020}"), Some(s.email.clone())),
            1 => {
                let relay = r.chance(0.4);
                let email = if relay {
                    format!("{:010x}@privaterelay.appleid.com", extra & 0xff_ffff_ffff)
                } else {
                    s.email.clone()
                };
                (
                    "apple",
                    format!("{:06}.{unique:016x}{extra:016x}.{:04}", extra % 1_000_000, (extra >> 20) % 10_000),
                    Some(email),
                )
            }
            _ => ("phone", firebase_uid(unique, extra), None),
        };
        let identity_created = if n == 0 { created } else { created + r.below(age as u64) as i64 };
        let identity_login = match last_login {
            _ if n == 0 => last_login,
            Some(login) if login > identity_created && r.chance(0.5) => {
                Some(identity_created + r.below((login - identity_created) as u64) as i64)
            }
            _ => None,
        };
        let deleted =
            (n > 0 && r.chance(0.03)).then(|| identity_created + r.below((w.now - identity_created) as u64 + 1) as i64);
        let row = rows.row(Table::Identities);
        row.uuid(&w.row_id(tag::IDENTITY, i, n as u64))
            .uuid(id)
            .text(name)
            .text(&provider_user_id)
            .opt_text(email.as_deref())
            .opt_ts(identity_login)
            .ts(identity_created)
            .opt_ts(deleted);
        rows.end(Table::Identities);
    }
}

/// A Firebase-style 28-character uid; `unique` keeps it distinct within the population.
fn firebase_uid(unique: u64, extra: u64) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(28);
    let mut value = u128::from(unique) << 64 | u128::from(extra);
    for _ in 0..22 {
        out.push(char::from(ALPHABET[(value % 62) as usize]));
        value /= 62;
    }
    let mut tail = rng::mix64(extra);
    for _ in 0..6 {
        out.push(char::from(ALPHABET[(tail % 62) as usize]));
        tail /= 62;
    }
    out
}

/// An FCM registration token of user `j`'s device `k` (about 150 characters, as real ones).
fn token_value(seed: u64, j: u64, k: u64, out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut r = Rng::stream(seed, tag::TOKEN_VALUE, j, k);
    out.clear();
    let mut push = |out: &mut String, n: usize| {
        let mut bits = 0u64;
        let mut left = 0;
        for _ in 0..n {
            if left == 0 {
                bits = r.next_u64();
                left = 10;
            }
            out.push(char::from(ALPHABET[(bits & 63) as usize]));
            bits >>= 6;
            left -= 1;
        }
    };
    push(out, 22);
    out.push_str(":APA91b");
    push(out, 120);
}

fn push_tokens(user: &User<'_>, rows: &mut Rows, s: &mut Scratch) {
    let User { w, i, id, created, age } = *user;
    let mut r = Rng::stream(w.seed, tag::TOKEN, i, 0);
    let count = 1 + r.weighted(&[35, 50, 15]) as u64;
    let primary = r.weighted(&[45, 50, 5]);
    for k in 0..count {
        let platform = if k == 0 { primary } else { r.weighted(&[45, 50, 5]) };
        // A token seen on two accounts (a shared or handed-down phone): docs/push.md sends it once per user and
        // deactivates every row holding it.
        if i > 0 && r.chance(0.002) {
            token_value(w.seed, r.below(i), 0, &mut s.text);
        } else {
            token_value(w.seed, i, k, &mut s.text);
        }
        let device = rng::uuid(w.seed, tag::DEVICE, i, k);
        // iOS reports an upper-case IDFV, Android a 16-hex-digit ANDROID_ID, the web a uuid of our own.
        let device_id = if platform == 1 {
            let mut high = [0u8; 8];
            high.copy_from_slice(&device[..8]);
            format!("{:016x}", u64::from_be_bytes(high))
        } else {
            let mut text = Vec::with_capacity(36);
            super::copy::push_uuid(&mut text, &device);
            let text = String::from_utf8(text).unwrap_or_default();
            if platform == 0 { text.to_ascii_uppercase() } else { text }
        };
        let is_active = r.chance(0.85);
        // Stale: not refreshed for more than 90 days (dead-token-cleanup removes them).
        let stale = age > 91 * DAY && r.chance(0.12);
        let updated_ago = if stale { r.range(91 * DAY, age) } else { r.below((age.min(90 * DAY)) as u64) as i64 };
        let created_ago = r.range(updated_ago, age);
        let row = rows.row(Table::PushTokens);
        row.uuid(&w.row_id(tag::TOKEN, i, k))
            .uuid(id)
            .text(&s.text)
            .text(["ios", "android", "web"][platform])
            .text(&device_id)
            .text(r.pick(APP_VERSIONS))
            .bool(is_active)
            .ts(created.max(w.now - created_ago))
            .ts(w.now - updated_ago);
        rows.end(Table::PushTokens);
    }
}

/// A user's streak facts, which the daily claims follow.
struct Streak {
    current: i64,
    /// Days before today (user's zone) of the last activity.
    last_activity_ago: Option<i64>,
}

const XP_TYPES: [(&str, &str, u32); 9] = [
    ("daily_login", "Günlük giriş", 30),
    ("prediction_correct", "Doğru tahmin", 25),
    ("match_comment", "Maç yorumu", 15),
    ("comment_like", "Yorum beğenisi", 8),
    ("streak_bonus", "Seri bonusu", 8),
    ("ad_watch", "Reklam izleme", 6),
    ("referral_signup", "Arkadaş daveti", 3),
    ("subscription_purchase", "VIP abonelik", 3),
    ("admin_grant", "Destek ekibi hediyesi", 2),
];

fn xp(user: &User<'_>, zone: &Zone, rows: &mut Rows, s: &mut Scratch) -> Streak {
    let User { w, i, id, created, age } = *user;
    let mut r = Rng::stream(w.seed, tag::XP, i, 0);
    let level = r.weighted(&[45, 28, 15, 7, 4, 1]);
    let points = match level {
        0 if r.chance(0.3) => 0,
        0 => r.range(1, 499),
        5 => r.range(25_000, 60_000),
        l => r.range(LEVELS[l].1, LEVELS[l + 1].1 - 1),
    };
    // A few users lost XP to a correction: the ledger then earns more than the balance shows.
    let deduction = if points >= 1_000 && r.chance(0.02) { r.range(50, 300) } else { 0 };
    let grants = if points == 0 { 0 } else { (1 + points / 1_200 + r.below(2) as i64).min(40).min(points) };
    let earned = points + deduction;

    // Split `earned` into `grants` positive amounts at random times, oldest first.
    s.xp_amounts.clear();
    if grants > 0 {
        let weights: Vec<i64> = (0..grants).map(|_| 1 + r.below(100) as i64).collect();
        let total_weight: i64 = weights.iter().sum();
        let spread = earned - grants;
        let mut given = 0;
        for (k, weight) in weights.iter().enumerate() {
            let mut amount = 1 + spread * weight / total_weight;
            if k as i64 == grants - 1 {
                amount = earned - given;
            }
            given += amount;
            let at = w.now - r.below(age as u64) as i64;
            s.xp_amounts.push((at, amount));
        }
        s.xp_amounts.sort_by_key(|(at, _)| *at);
        // The correction comes last, so the points never go below zero on the way.
        if deduction > 0 {
            let last = s.xp_amounts.last().map_or(created, |(at, _)| *at);
            s.xp_amounts.push((last + r.range(0, (w.now - last).max(0)), -deduction));
        }
    }
    for (k, &(at, amount)) in s.xp_amounts.iter().enumerate() {
        let (kind, description) = if amount < 0 {
            ("admin_deduct", "Düzeltme")
        } else {
            let (kind, description, _) = XP_TYPES[r.weighted(&XP_TYPES.map(|(_, _, weight)| weight))];
            (kind, description)
        };
        let row = rows.row(Table::XpLedger);
        row.uuid(&w.row_id(tag::XP_TX, i, k as u64))
            .uuid(id)
            .int(amount)
            .text(kind)
            .null()
            .null()
            .text(description)
            .text("{}")
            .null()
            .ts(at);
        rows.end(Table::XpLedger);
    }

    // Streaks: a third of the users are on one; a few have kept one for months.
    let mut t = Rng::stream(w.seed, tag::STREAK, i, 0);
    let age_days = age / DAY;
    let mut current = 0;
    if age_days >= 1 && t.chance(0.30) {
        current = if t.chance(0.03) { t.range(20, 150) } else { 1 + t.geometric(3.0) as i64 };
        current = current.min(age_days);
    }
    let mut longest = current;
    if t.chance(0.5) {
        longest += t.geometric(6.0) as i64;
    }
    if t.chance(0.006) {
        longest = longest.max(t.range(100, 200));
    }
    let longest = longest.min(age_days);
    let last_activity_ago = if current > 0 {
        Some(t.range(0, 1))
    } else if age_days >= 2 && (longest > 0 || t.chance(0.5)) {
        Some(t.range(2, age_days))
    } else {
        None
    };
    let level = LEVELS.iter().rposition(|(_, from)| points >= *from).unwrap_or(0);
    let (progress, next) = match LEVELS.get(level + 1) {
        Some((_, next)) => {
            let from = LEVELS[level].1;
            // Hundredths of a percent, rounded half up as `hattrick_level_progress` (routines.sql) rounds.
            let span = next - from;
            ((2 * (points - from) * 10_000 + span) / (2 * span), Some(*next))
        }
        None => (10_000, None),
    };
    let updated = s.xp_amounts.last().map_or(created, |(at, _)| *at);
    let row = rows.row(Table::Xp);
    row.uuid(&w.row_id(tag::XP, i, 0))
        .uuid(id)
        .int(points)
        .text(LEVELS[level].0)
        .cents(progress)
        .int(earned)
        .int(current)
        .int(longest)
        .opt_date(last_activity_ago.map(|ago| zone.today - ago))
        .opt_int(next)
        .int(0)
        .ts(created)
        .ts(updated);
    rows.end(Table::Xp);
    Streak { current, last_activity_ago }
}

const DAILY_DESCRIPTIONS: [&str; 7] = [
    "Günlük ödül (1. gün)",
    "Günlük ödül (2. gün)",
    "Günlük ödül (3. gün)",
    "Günlük ödül (4. gün)",
    "Günlük ödül (5. gün)",
    "Günlük ödül (6. gün)",
    "Günlük ödül (7. gün, büyük ödül)",
];

fn daily_rewards(user: &User<'_>, zone: &Zone, streak: &Streak, rows: &mut Rows, s: &mut Scratch) {
    let User { w, i, id, created, age } = *user;
    let mut r = Rng::stream(w.seed, tag::DAILY, i, 0);
    // Claims start on the first full day after sign-up, so each is after the account's creation.
    let oldest = age / DAY - 1;
    if oldest < 0 {
        return;
    }
    // Runs of consecutive days, newest first, as (days ago of the newest claim, length); a run's claims count
    // 1..7 and start over, and at least one unclaimed day separates runs, so every run starts at day 1.
    s.claims.clear();
    let mut end = match streak.last_activity_ago {
        Some(ago) if streak.current > 0 => {
            s.claims.push((ago, streak.current.min(21)));
            None
        }
        _ if r.chance(0.30) => Some(2 + r.geometric(10.0) as i64),
        _ => None,
    };
    if let Some(newest) = end.take() {
        s.claims.push((newest, 1 + r.geometric(1.2) as i64));
    }
    while !s.claims.is_empty() && s.claims.len() < 6 && r.chance(0.25) {
        let (newest, length) = s.claims[s.claims.len() - 1];
        s.claims.push((newest + length + 1 + r.geometric(12.0) as i64, 1 + r.geometric(1.2) as i64));
    }
    let mut n = 0u64;
    for run in (0..s.claims.len()).rev() {
        let (newest, length) = s.claims[run];
        if newest > oldest {
            continue;
        }
        let first = (newest + length - 1).min(oldest);
        for (position, ago) in (newest..=first).rev().enumerate() {
            let day = position % 7;
            let amount = w.daily_credits[day];
            let midnight = zone.midnight(ago);
            let claimed = if ago == 0 {
                midnight + r.below((w.now - midnight).max(1) as u64) as i64
            } else {
                midnight + r.range(HOUR, 22 * HOUR)
            }
            .clamp(created + MINUTE, w.now - 1);
            let claim_id = w.row_id(tag::DAILY, i, n);
            let row = rows.row(Table::DailyRewards);
            row.uuid(&claim_id)
                .uuid(id)
                .date(zone.today - ago)
                .int(day as i64 + 1)
                .text("credits")
                .int(amount)
                .ts(claimed);
            rows.end(Table::DailyRewards);
            s.credit_events.push(CreditEvent {
                at: claimed,
                amount,
                kind: "daily_reward",
                reference: Some((claim_id, "daily_reward")),
                description: DAILY_DESCRIPTIONS[day],
            });
            n += 1;
        }
    }
}

fn ad_views(user: &User<'_>, rows: &mut Rows, s: &mut Scratch) {
    let User { w, i, id, age, .. } = *user;
    let mut r = Rng::stream(w.seed, tag::AD, i, 0);
    let count = if r.chance(0.6) { 0 } else { (1 + r.geometric(1.5)).min(200) };
    for k in 0..count {
        let (network, rewarded_unit, interstitial_unit) = r.pick(AD_UNITS);
        let rewarded = r.chance(0.75);
        let granted = rewarded && r.chance(0.95);
        let reward = if rewarded { r.pick(&[5, 5, 10]) } else { 0 };
        let at = w.now - (age as f64 * r.unit().powf(1.5)) as i64;
        let view_id = w.row_id(tag::AD, i, k);
        let placement = r.pick(AD_PLACEMENTS);
        s.text.clear();
        s.text.push_str("{\"placement\": \"");
        s.text.push_str(placement);
        s.text.push_str("\"}");
        let row = rows.row(Table::AdViews);
        row.uuid(&view_id)
            .uuid(id)
            .text(network)
            .text(if rewarded { rewarded_unit } else { interstitial_unit })
            .text(if rewarded { "rewarded" } else { "interstitial" })
            .int(reward)
            .bool(granted)
            .ts(at)
            .text(&s.text);
        rows.end(Table::AdViews);
        if granted {
            s.credit_events.push(CreditEvent {
                at,
                amount: reward,
                kind: "ad_reward",
                reference: Some((view_id, "ad_view")),
                description: "Reklam ödülü",
            });
        }
    }
}

/// A subscription row before it is written.
struct Subscription {
    plan: Option<usize>,
    status: &'static str,
    platform: &'static str,
    amount: Option<i64>,
    currency: Option<&'static str>,
    auto_renew: bool,
    started: i64,
    expired: i64,
    canceled: Option<i64>,
}

/// Writes user `i`'s subscriptions; returns when its first paid subscription started, if it has one.
fn subscriptions(user: &User<'_>, referral: &Option<Referral>, rows: &mut Rows, s: &mut Scratch) -> Option<i64> {
    let User { w, i, id, created, age } = *user;
    enum Branch {
        None,
        Active,
        Churned,
        Trial,
        Promo,
        BillingIssue,
    }
    let mut r = Rng::stream(w.seed, tag::SUBSCRIPTION, i, 0);
    let rewarded = referral.as_ref().is_some_and(|referral| referral.status == ReferralStatus::Rewarded);
    let branch = if rewarded {
        if r.chance(0.35) { Branch::Active } else { Branch::Churned }
    } else {
        [Branch::None, Branch::Active, Branch::Churned, Branch::Trial, Branch::Promo, Branch::BillingIssue]
            .into_iter()
            .nth(r.weighted(&[892, 69, 20, 10, 5, 4]))
            .unwrap_or(Branch::None)
    };
    let ios = r.chance(0.55);
    let platform = if ios { "ios" } else { "android" };
    // Plans come in (weekly, monthly, yearly) per platform.
    let mut plan = (if ios { 0 } else { 3 }) + [1, 2, 0][r.weighted(&[60, 22, 18])];
    let earliest = created + HOUR;
    let currency = ["TRY", "USD", "EUR"][r.weighted(&[94, 4, 2])];
    let price = |plan: usize| {
        let list = w.plans[plan].price_cents;
        if currency == "TRY" { list } else { (list / 32 / 10) * 10 + 9 }
    };
    let mut paid: Vec<Subscription> = Vec::new();
    let mut other: Option<Subscription> = None;
    match branch {
        Branch::None => {}
        Branch::Active => {
            let mut period = w.plans[plan].days * DAY;
            if age < 2 * HOUR + period / 4 {
                plan = if ios { 0 } else { 3 };
                period = w.plans[plan].days * DAY;
            }
            let soon = r.chance(0.12);
            let (started, expired, auto_renew) = if soon && period - DAY < age - HOUR {
                // Expiring within 1..4 days with auto-renew off: subscription-expiry-alerts picks these up.
                let expired = w.now + r.range(DAY, 4 * DAY);
                (expired - period, expired, false)
            } else {
                let started = (w.now - r.below((period - HOUR).max(1) as u64) as i64).max(earliest);
                (started, started + period, r.chance(0.8))
            };
            let started = started.max(earliest);
            let mut history: Vec<Subscription> = Vec::new();
            if r.chance(0.15) {
                let mut end = started;
                for _ in 0..1 + r.below(2) {
                    let start = end - period;
                    if start < earliest {
                        break;
                    }
                    history.push(Subscription {
                        plan: Some(plan),
                        status: "expired",
                        platform,
                        amount: Some(price(plan)),
                        currency: Some(currency),
                        auto_renew: true,
                        started: start,
                        expired: end,
                        canceled: None,
                    });
                    end = start;
                }
            }
            paid.extend(history.into_iter().rev());
            paid.push(Subscription {
                plan: Some(plan),
                status: "active",
                platform,
                amount: Some(price(plan)),
                currency: Some(currency),
                auto_renew,
                started,
                expired,
                canceled: None,
            });
        }
        Branch::Churned => {
            let mut period = w.plans[plan].days * DAY;
            if age < period + 2 * DAY {
                plan = if ios { 0 } else { 3 };
                period = w.plans[plan].days * DAY;
            }
            if age >= period + 2 * DAY {
                let mut end = w.now - r.range(DAY, age - period - HOUR);
                let canceled = r.chance(0.4);
                let mut periods = Vec::new();
                for n in 0..1 + r.below(2) {
                    let start = end - period;
                    if start < earliest {
                        break;
                    }
                    let last = n == 0;
                    periods.push(Subscription {
                        plan: Some(plan),
                        status: if last && canceled { "canceled" } else { "expired" },
                        platform,
                        amount: Some(price(plan)),
                        currency: Some(currency),
                        auto_renew: !last,
                        started: start,
                        expired: end,
                        canceled: (last && canceled).then(|| start + r.below(period as u64) as i64),
                    });
                    end = start;
                }
                paid.extend(periods.into_iter().rev());
            }
        }
        Branch::Trial => {
            let started = w.now - r.below((7 * DAY).min(age - MINUTE) as u64) as i64;
            other = Some(Subscription {
                plan: None,
                status: if r.chance(0.7) { "trial" } else { "trialing" },
                platform,
                amount: None,
                currency: None,
                auto_renew: true,
                started,
                expired: started + 7 * DAY,
                canceled: None,
            });
        }
        Branch::Promo => {
            let expired = w.now + r.range(DAY, 30 * DAY);
            other = Some(Subscription {
                plan: None,
                status: "active",
                platform: "promo",
                amount: Some(0),
                currency: Some("TRY"),
                auto_renew: false,
                started: (expired - 30 * DAY).clamp(created + MINUTE, w.now - MINUTE),
                expired,
                canceled: None,
            });
        }
        Branch::BillingIssue => {
            let period = w.plans[plan].days * DAY;
            let expired = w.now - r.range(HOUR, 3 * DAY);
            paid.push(Subscription {
                plan: Some(plan),
                status: if r.chance(0.5) { "billing_error" } else { "past_due" },
                platform,
                amount: Some(price(plan)),
                currency: Some(currency),
                auto_renew: true,
                started: (expired - period).max(earliest),
                expired,
                canceled: None,
            });
        }
    }
    let partner = referral.as_ref().and_then(|referral| referral.partner);
    let link = r.weighted(&[60, 30, 10]);
    let first_paid = paid.first().map(|sub| sub.started);
    if let Some(first) = paid.first() {
        s.credit_events.push(CreditEvent {
            at: first.started + r.range(MINUTE, HOUR).min((w.now - first.started).max(0)),
            amount: 100,
            kind: "subscription_bonus",
            reference: Some((w.row_id(tag::SUBSCRIPTION, i, 0), "subscription")),
            description: "VIP abonelik bonusu",
        });
    }
    for (k, sub) in paid.iter().chain(other.iter()).enumerate() {
        let linked = sub.plan.is_some().then_some(partner).flatten();
        let partner_id = linked.filter(|_| link != 1).map(|p| w.partner_id(p));
        let partner_code = linked.filter(|_| link != 0).map(|p| w.referral_code(w.partner_user(p)));
        let updated = sub.canceled.unwrap_or(sub.started).max(sub.expired.min(w.now));
        let row = rows.row(Table::Subscriptions);
        row.uuid(&w.row_id(tag::SUBSCRIPTION, i, k as u64))
            .uuid(id)
            .opt_uuid(sub.plan.map(|p| w.plans[p].id).as_ref())
            .text(sub.status)
            .text(sub.platform)
            .opt_cents(sub.amount)
            .opt_text(sub.currency)
            .bool(sub.auto_renew)
            .ts(sub.started)
            .ts(sub.expired)
            .opt_ts(sub.canceled)
            .opt_uuid(partner_id.as_ref())
            .opt_text(partner_code.as_ref().map(|c| std::str::from_utf8(c).unwrap_or_default()))
            .ts(sub.started)
            .ts(updated);
        rows.end(Table::Subscriptions);
    }
    first_paid
}

fn referral_row(user: &User<'_>, referral: &Referral, first_paid: Option<i64>, rows: &mut Rows, s: &mut Scratch) {
    let User { w, i, id, created, .. } = *user;
    let mut r = Rng::stream(w.seed, tag::REFERRAL, i, 1);
    let referral_id = w.row_id(tag::REFERRAL, i, 0);
    let referral_created = created + referral.created_delay;
    let status = match (referral.status, first_paid) {
        (ReferralStatus::Rewarded, None) => ReferralStatus::Completed,
        (status, _) => status,
    };
    let (referrer_xp, referrer_credits, referred_credits) = match status {
        ReferralStatus::Completed => (0, 50, 10),
        ReferralStatus::Rewarded => (500, 250, 10),
        _ => (0, 0, 0),
    };
    let subscribed = first_paid.filter(|_| status == ReferralStatus::Rewarded);
    let claimed = subscribed.map(|at| (at + r.range(MINUTE, HOUR)).min(w.now - 1));
    if let (ReferralStatus::Completed | ReferralStatus::Rewarded, Some(after)) = (status, referral.login_after) {
        s.credit_events.push(CreditEvent {
            at: (created + after + r.range(0, MINUTE)).min(w.now - 1),
            amount: 10,
            kind: "referral_bonus",
            reference: Some((referral_id, "referral")),
            description: "Hoş geldin! Giriş bonusu",
        });
    }
    let referrer_code = w.referral_code(referral.referrer);
    let row = rows.row(Table::Referrals);
    row.uuid(&referral_id)
        .uuid(&w.user_id(referral.referrer))
        .uuid(id)
        .text(std::str::from_utf8(&referrer_code).unwrap_or_default())
        .text(status.as_str())
        .int(status.tier())
        .int(referrer_xp)
        .int(referrer_credits)
        .int(0)
        .int(referred_credits)
        .opt_ts(subscribed)
        .opt_ts(claimed)
        .ts(referral_created)
        .ts(referral_created + REFERRAL_TTL);
    rows.end(Table::Referrals);
}

/// Orders user `i`'s credit changes in time, adds spends and writes the ledger with an exact balance chain
/// (each spend is capped by the balance at its time, so the balance never goes below zero) and the balance row.
fn credits(user: &User<'_>, rows: &mut Rows, s: &mut Scratch) {
    let User { w, i, id, created, age } = *user;
    let mut r = Rng::stream(w.seed, tag::CREDITS, i, 0);
    if r.chance(0.04) {
        for _ in 0..1 + r.geometric(0.7) {
            let amount = [100, 250, 500, 1_000, 2_500, 5_000][r.weighted(&[30, 30, 20, 12, 6, 2])];
            s.credit_events.push(CreditEvent {
                at: w.now - r.below(age as u64) as i64,
                amount,
                kind: "purchase",
                reference: None,
                description: "Kredi paketi satın alma",
            });
        }
    }
    if r.chance(0.005) {
        let (kind, description) = r.pick(&[("admin_grant", "Destek ekibi hediyesi"), ("refund", "İade")]);
        s.credit_events.push(CreditEvent {
            at: w.now - r.below(age as u64) as i64,
            amount: r.range(1, 20) * 5,
            kind,
            reference: None,
            description,
        });
    }
    // Each spend follows an earning of its own, shortly after it, and takes at most what that earning gave: the
    // balance then never goes below zero whatever the order of the other events. Capping spends by the running
    // balance instead would make amounts depend on how claims (placed on local dates) interleave with other
    // events, which depends on the time of day of "now".
    let earnings = s.credit_events.len();
    if earnings > 0 {
        let mut spend = Rng::stream(w.seed, tag::SPEND, i, 0);
        let count = (spend.geometric(0.45) as usize).min(20).min(earnings);
        let first = spend.below(earnings as u64) as usize;
        for n in 0..count {
            let anchor = s.credit_events[(first + n * earnings / count) % earnings];
            s.credit_events.push(CreditEvent {
                at: (anchor.at + spend.range(MINUTE, 3 * HOUR)).min(w.now - 1).max(anchor.at),
                amount: -(spend.range(2, 12) * 5).min(anchor.amount),
                kind: "prediction_purchase",
                reference: None,
                description: "Premium tahmin",
            });
        }
    }
    // Stable: a spend at the second of its earning stays after it. Then one second apart, so that ordering the
    // ledger by created_at gives the chain.
    s.credit_events.sort_by_key(|event| event.at);
    let mut previous = i64::MIN;
    for event in &mut s.credit_events {
        event.at = event.at.max(previous + 1);
        previous = event.at;
    }
    let (mut balance, mut earned, mut spent, mut k) = (0i64, 0i64, 0i64, 0u64);
    let mut updated = created;
    for event in &s.credit_events {
        debug_assert!(balance + event.amount >= 0, "a spend without its earning");
        let amount = event.amount;
        if amount == 0 {
            // A daily reward configured at 0 credits moves nothing.
            continue;
        }
        let before = balance;
        balance += amount;
        if amount > 0 {
            earned += amount;
        } else {
            spent -= amount;
        }
        updated = event.at;
        let row = rows.row(Table::CreditLedger);
        row.uuid(&w.row_id(tag::CREDIT_TX, i, k))
            .uuid(id)
            .int(amount)
            .text(event.kind)
            .opt_uuid(event.reference.as_ref().map(|(id, _)| id))
            .opt_text(event.reference.map(|(_, kind)| kind))
            .text(event.description)
            .int(before)
            .int(balance)
            .text("{}")
            .null()
            .ts(event.at);
        rows.end(Table::CreditLedger);
        k += 1;
    }
    let row = rows.row(Table::Credits);
    row.uuid(&w.row_id(tag::CREDITS, i, 0)).uuid(id).int(balance).int(earned).int(spent).ts(created).ts(updated);
    rows.end(Table::Credits);
}

/// Writes a comment's text: a few fragments, now and then a long rant, 3 to 1000 characters.
fn comment_text(r: &mut Rng, english: bool, out: &mut String) {
    out.clear();
    let phrases = if english { EN_PHRASES } else { TR_PHRASES };
    let count = if r.chance(0.05) { r.range(4, 24) } else { 1 + r.geometric(0.6) as i64 };
    let mut chars = 0;
    for n in 0..count {
        let phrase = r.pick(phrases);
        let len = phrase.chars().count();
        if n > 0 && chars + len + 2 > 990 {
            break;
        }
        if n > 0 {
            out.push_str(if r.chance(0.5) { ". " } else { ", " });
            chars += 2;
        }
        out.push_str(phrase);
        chars += len;
    }
    if r.chance(0.25) {
        out.push(' ');
        out.push_str(r.pick(REACTIONS));
    }
    if r.chance(0.04) {
        // Now and then just an exclamation.
        out.clear();
        out.push_str(r.pick(SHORT_COMMENTS));
    }
}

fn comments(user: &User<'_>, english: bool, rows: &mut Rows, s: &mut Scratch) {
    let User { w, i, id, age, .. } = *user;
    let count = w.comment_count(i);
    let users = w.users;
    for k in 0..count {
        let (core, mut r) = w.comment_core(i, k, age);
        let mut parent = None;
        if core.reply {
            // A reply answers another top-level comment on that comment's match.
            for _ in 0..3 {
                let j = r.below(users);
                let comments_of_j = w.comment_count(j);
                if comments_of_j == 0 {
                    continue;
                }
                let kk = r.below(comments_of_j);
                let (parent_core, _) = w.comment_core(j, kk, w.age(j));
                if !parent_core.reply {
                    parent = Some((w.row_id(tag::COMMENT, j, kk), parent_core));
                    break;
                }
            }
        }
        let (m, at) = match &parent {
            Some((_, p)) => (p.m, (p.at.max(w.now - age) + r.range(MINUTE, 6 * HOUR)).min(w.now - 1)),
            None => (core.m, core.at),
        };
        comment_text(&mut r, english, &mut s.text);
        let status = ["active", "hidden", "deleted", "flagged"][r.weighted(&[95, 2, 2, 1])];
        let deleted_at = (status == "deleted").then(|| at + r.below((w.now - at) as u64 + 1) as i64);
        let edited = r.chance(0.03).then(|| at + r.below((w.now - at) as u64 + 1) as i64);
        let likes = if users < 2 || r.chance(0.6) { 0 } else { (r.pareto(1.0, 1.5) as u64).min(2_000).min(users - 1) };
        let comment_id = w.row_id(tag::COMMENT, i, k);
        let row = rows.row(Table::Comments);
        row.uuid(&comment_id)
            .int(MATCH_ID_BASE + m)
            .uuid(id)
            .opt_uuid(parent.as_ref().map(|(pid, _)| pid))
            .text(&s.text)
            .int(likes as i64)
            .text(status)
            .ts(at)
            .ts(edited.unwrap_or(at).max(deleted_at.unwrap_or(at)))
            .opt_ts(deleted_at);
        rows.end(Table::Comments);
        if likes > 0 {
            // Distinct likers without a set: walk the users with a stride coprime to their number, skipping
            // the author.
            let start = r.below(users);
            let mut step = 1 + r.below(users - 1);
            while gcd(step, users) != 1 {
                step = if step + 1 >= users { 1 } else { step + 1 };
            }
            let mut liker = start;
            let mut made = 0;
            let mut n = 0u64;
            while made < likes {
                if liker != i {
                    let liker_since = w.now - w.age(liker);
                    let liked = (at.max(liker_since) + r.range(MINUTE, 2 * DAY)).min(w.now - 1);
                    let row = rows.row(Table::Likes);
                    row.uuid(&w.row_id(tag::LIKE, i, k << 24 | n)).uuid(&comment_id).uuid(&w.user_id(liker)).ts(liked);
                    rows.end(Table::Likes);
                    made += 1;
                }
                n += 1;
                liker = (liker + step) % users;
            }
        }
    }
}

fn predictions(user: &User<'_>, rows: &mut Rows) {
    let User { w, i, id, created, age } = *user;
    let mut r = Rng::stream(w.seed, tag::PREDICTION, i, 0);
    if r.chance(0.42) {
        return;
    }
    let wanted = (r.pareto(1.6, 1.35) as i64).min(800);
    let first = World::first_match(age);
    let last = (SIGNUP_SPAN + PREDICTIONS_AHEAD) / MATCH_STEP;
    let available = last - first + 1;
    let count = wanted.min(available);
    // A user predicts within a window of matches (distinct matches keep (user, match, prediction) unique). Some
    // users are predicting the coming week (open predictions); the others' window ends in the past, mostly
    // recently (settled ones).
    let window = available.min((count * 4).max(120));
    let earliest_end = first + window - 1;
    let end = if r.chance(0.15) {
        last
    } else {
        let recent = (SIGNUP_SPAN / MATCH_STEP).clamp(earliest_end, last);
        recent - ((recent - earliest_end) as f64 * r.unit().powi(3)) as i64
    };
    let start = end - window + 1;
    let mut step = 1 + r.below(window as u64);
    while gcd(step, window as u64) != 1 {
        step = if step + 1 > window as u64 { 1 } else { step + 1 };
    }
    let offset = r.below(window as u64);
    let skill = 0.30 + 0.58 * r.unit().powf(1.5);
    for n in 0..count {
        let m = start + ((offset + n as u64 * step) % window as u64) as i64;
        let kickoff = w.now + World::kickoff(m);
        let made = (kickoff - r.range(10 * MINUTE, 2 * DAY)).max(created + MINUTE).min(w.now - 1);
        let settle_delay = 2 * HOUR + r.range(0, 30 * MINUTE);
        let settled = World::kickoff(m) + settle_delay <= 0;
        let correct = settled.then(|| r.chance(skill));
        let row = rows.row(Table::Predictions);
        row.uuid(&w.row_id(tag::PREDICTION, i, n as u64))
            .uuid(id)
            .int(MATCH_ID_BASE + m)
            .text(r.pick(MARKETS))
            .opt_bool(correct)
            .opt_ts(settled.then_some(kickoff + settle_delay))
            .ts(made);
        rows.end(Table::Predictions);
    }
}

fn partner_row(user: &User<'_>, p: u64, code: &str, rows: &mut Rows, s: &mut Scratch) {
    let User { w, id, created, age, .. } = *user;
    let mut r = Rng::stream(w.seed, tag::PARTNER, p, 1);
    let status = ["approved", "pending", "rejected", "suspended"][r.weighted(&[80, 8, 6, 6])];
    let partner_created = created + r.below((age / 4).max(1) as u64) as i64;
    let approved =
        matches!(status, "approved" | "suspended").then(|| (partner_created + r.range(HOUR, 14 * DAY)).min(w.now - 1));
    let commission = [2_000, 1_500, 2_500, 3_000][r.weighted(&[80, 5, 10, 5])];
    s.text.clear();
    s.text.push_str(r.pick(BUSINESS_WORDS));
    s.text.push(' ');
    s.text.push_str(r.pick(BUSINESS_WORDS));
    s.text.push(' ');
    s.text.push_str(r.pick(BUSINESS_SUFFIXES));
    let row = rows.row(Table::Partners);
    row.uuid(&w.partner_id(p))
        .uuid(id)
        .text(&s.text)
        .text(&format!("partner{p}@s{}.example.com", w.seed))
        .text(&format!("+90212{:07}", r.below(10_000_000)))
        .text(status)
        .cents(commission)
        .text(code)
        .opt_ts(approved)
        .ts(partner_created)
        .ts(approved.unwrap_or(partner_created));
    rows.end(Table::Partners);
}
