//! Streaming rows into PostgreSQL with `COPY ... FROM STDIN` (text format).
//!
//! The generator writes each table's rows into its own buffer; a full buffer (about 1 MiB) goes through a bounded
//! channel to that table's COPY task, which owns one connection. The channels' bounds are what keep memory flat:
//! however many users are generated, at most a few buffers per table are in flight, and a slow table makes the
//! generator wait instead of piling up rows.

use anyhow::Context as _;
use sqlx::PgConnection;
use tokio::sync::mpsc;

/// Size at which a table's buffer is handed to its COPY task.
pub(crate) const FLUSH_BYTES: usize = 1 << 20;

/// Buffers in flight per table beyond the one being filled.
pub(crate) const CHANNEL_DEPTH: usize = 4;

/// The tables the seed loads, in the order of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    Users,
    Identities,
    PushTokens,
    Xp,
    XpLedger,
    Credits,
    CreditLedger,
    DailyRewards,
    AdViews,
    Comments,
    Likes,
    Predictions,
    Referrals,
    Subscriptions,
    Partners,
}

impl Table {
    /// Every streamed table.
    pub(crate) const ALL: [Table; 15] = [
        Table::Users,
        Table::Identities,
        Table::PushTokens,
        Table::Xp,
        Table::XpLedger,
        Table::Credits,
        Table::CreditLedger,
        Table::DailyRewards,
        Table::AdViews,
        Table::Comments,
        Table::Likes,
        Table::Predictions,
        Table::Referrals,
        Table::Subscriptions,
        Table::Partners,
    ];

    /// The table's name in the database.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Table::Users => "customer_users",
            Table::Identities => "customer_oauth_identities",
            Table::PushTokens => "customer_push_tokens",
            Table::Xp => "customer_xp",
            Table::XpLedger => "customer_xp_transactions",
            Table::Credits => "customer_credits",
            Table::CreditLedger => "customer_credit_transactions",
            Table::DailyRewards => "customer_daily_rewards",
            Table::AdViews => "customer_ad_views",
            Table::Comments => "match_comments",
            Table::Likes => "match_comment_likes",
            Table::Predictions => "customer_predictions",
            Table::Referrals => "referrals",
            Table::Subscriptions => "customer_subscriptions",
            Table::Partners => "partners",
        }
    }

    /// The columns the generator writes, in the order it writes them.
    pub(crate) const fn columns(self) -> &'static str {
        match self {
            Table::Users => {
                "id, email, phone, full_name, username, is_active, is_push_allowed_mobile, locale_preference, \
                 referral_code, timezone, last_login_at, created_at, updated_at, deleted_at"
            }
            Table::Identities => {
                "id, customer_user_id, provider, provider_user_id, email, last_login_at, created_at, deleted_at"
            }
            Table::PushTokens => {
                "id, customer_user_id, token, platform, device_id, app_version, is_active, created_at, updated_at"
            }
            Table::Xp => {
                "id, customer_user_id, xp_points, level, level_progress, total_earned, current_streak_days, \
                 longest_streak_days, last_activity_date, next_level_xp, achievements_count, created_at, updated_at"
            }
            Table::XpLedger => {
                "id, customer_user_id, xp_amount, transaction_type, reference_id, reference_type, description, \
                 metadata, idempotency_key, created_at"
            }
            Table::Credits => "id, customer_user_id, balance, lifetime_earned, lifetime_spent, created_at, updated_at",
            Table::CreditLedger => {
                "id, customer_user_id, amount, transaction_type, reference_id, reference_type, description, \
                 balance_before, balance_after, metadata, idempotency_key, created_at"
            }
            Table::DailyRewards => {
                "id, customer_user_id, reward_date, day_number, reward_type, reward_amount, claimed_at"
            }
            Table::AdViews => {
                "id, customer_user_id, ad_network, ad_unit_id, ad_type, reward_amount, reward_granted, completed_at, \
                 metadata"
            }
            Table::Comments => {
                "id, match_id, customer_user_id, parent_comment_id, content, like_count, status, created_at, \
                 updated_at, deleted_at"
            }
            Table::Likes => "id, comment_id, customer_user_id, created_at",
            Table::Predictions => "id, customer_user_id, match_id, prediction, is_correct, settled_at, created_at",
            Table::Referrals => {
                "id, referrer_user_id, referred_user_id, referral_code, status, tier, referrer_reward_xp, \
                 referrer_reward_credits, referred_reward_xp, referred_reward_credits, referred_subscribed_at, \
                 reward_claimed_at, created_at, expires_at"
            }
            Table::Subscriptions => {
                "id, customer_user_id, plan_id, status, platform, amount, currency, auto_renew_enabled, started_at, \
                 expired_at, canceled_at, partner_id, referral_code, created_at, updated_at"
            }
            Table::Partners => {
                "id, customer_user_id, business_name, email, phone, status, commission_rate, referral_code, \
                 approved_at, created_at, updated_at"
            }
        }
    }

    /// The `COPY` statement that loads this table.
    pub(crate) fn copy_statement(self) -> String {
        format!("COPY {} ({}) FROM STDIN", self.name(), self.columns())
    }
}

/// Rows in PostgreSQL's COPY text format: fields separated by tabs, rows ended by a newline, `\N` for NULL, and
/// backslash, tab, newline and carriage return escaped inside values.
#[derive(Debug, Default)]
pub(crate) struct RowBuf {
    bytes: Vec<u8>,
}

impl RowBuf {
    /// An empty buffer with room for one flush.
    pub(crate) fn new() -> Self {
        Self { bytes: Vec::with_capacity(FLUSH_BYTES + FLUSH_BYTES / 8) }
    }

    /// The bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Hands over the bytes written so far and starts afresh.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.bytes, Vec::with_capacity(FLUSH_BYTES + FLUSH_BYTES / 8))
    }

    /// Ends the current row (every field writer appends a tab; the last one becomes the newline).
    pub(crate) fn end_row(&mut self) {
        if let Some(last) = self.bytes.last_mut() {
            *last = b'\n';
        }
    }

    /// A text value, escaped.
    pub(crate) fn text(&mut self, value: &str) -> &mut Self {
        for &byte in value.as_bytes() {
            match byte {
                b'\\' => self.bytes.extend_from_slice(b"\\\\"),
                b'\t' => self.bytes.extend_from_slice(b"\\t"),
                b'\n' => self.bytes.extend_from_slice(b"\\n"),
                b'\r' => self.bytes.extend_from_slice(b"\\r"),
                other => self.bytes.push(other),
            }
        }
        self.bytes.push(b'\t');
        self
    }

    /// A text value, or NULL.
    pub(crate) fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    /// NULL.
    pub(crate) fn null(&mut self) -> &mut Self {
        self.bytes.extend_from_slice(b"\\N\t");
        self
    }

    /// A boolean.
    pub(crate) fn bool(&mut self, value: bool) -> &mut Self {
        self.bytes.extend_from_slice(if value { b"t\t" } else { b"f\t" });
        self
    }

    /// A boolean, or NULL.
    pub(crate) fn opt_bool(&mut self, value: Option<bool>) -> &mut Self {
        match value {
            Some(value) => self.bool(value),
            None => self.null(),
        }
    }

    /// An integer.
    pub(crate) fn int(&mut self, value: i64) -> &mut Self {
        push_int(&mut self.bytes, value);
        self.bytes.push(b'\t');
        self
    }

    /// An integer, or NULL.
    pub(crate) fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => self.int(value),
            None => self.null(),
        }
    }

    /// A `numeric(_, 2)` given in hundredths (`14999` is `149.99`).
    pub(crate) fn cents(&mut self, hundredths: i64) -> &mut Self {
        if hundredths < 0 {
            self.bytes.push(b'-');
        }
        let value = hundredths.unsigned_abs();
        push_int(&mut self.bytes, (value / 100) as i64);
        self.bytes.push(b'.');
        push_two_digits(&mut self.bytes, (value % 100) as u32);
        self.bytes.push(b'\t');
        self
    }

    /// A `numeric(_, 2)` in hundredths, or NULL.
    pub(crate) fn opt_cents(&mut self, hundredths: Option<i64>) -> &mut Self {
        match hundredths {
            Some(value) => self.cents(value),
            None => self.null(),
        }
    }

    /// A uuid.
    pub(crate) fn uuid(&mut self, id: &[u8; 16]) -> &mut Self {
        push_uuid(&mut self.bytes, id);
        self.bytes.push(b'\t');
        self
    }

    /// A uuid, or NULL.
    pub(crate) fn opt_uuid(&mut self, id: Option<&[u8; 16]>) -> &mut Self {
        match id {
            Some(id) => self.uuid(id),
            None => self.null(),
        }
    }

    /// A `timestamptz` given in Unix seconds, written in UTC.
    pub(crate) fn ts(&mut self, unix_seconds: i64) -> &mut Self {
        let days = unix_seconds.div_euclid(86_400);
        let secs = unix_seconds.rem_euclid(86_400) as u32;
        push_date(&mut self.bytes, days);
        self.bytes.push(b' ');
        push_two_digits(&mut self.bytes, secs / 3600);
        self.bytes.push(b':');
        push_two_digits(&mut self.bytes, secs / 60 % 60);
        self.bytes.push(b':');
        push_two_digits(&mut self.bytes, secs % 60);
        self.bytes.extend_from_slice(b"+00\t");
        self
    }

    /// A `timestamptz` in Unix seconds, or NULL.
    pub(crate) fn opt_ts(&mut self, unix_seconds: Option<i64>) -> &mut Self {
        match unix_seconds {
            Some(value) => self.ts(value),
            None => self.null(),
        }
    }

    /// A `date` given in days since 1970-01-01.
    pub(crate) fn date(&mut self, days: i64) -> &mut Self {
        push_date(&mut self.bytes, days);
        self.bytes.push(b'\t');
        self
    }

    /// A `date` in days since 1970-01-01, or NULL.
    pub(crate) fn opt_date(&mut self, days: Option<i64>) -> &mut Self {
        match days {
            Some(value) => self.date(value),
            None => self.null(),
        }
    }
}

fn push_int(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    let mut value = value.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_two_digits(out: &mut Vec<u8>, value: u32) {
    out.push(b'0' + (value / 10 % 10) as u8);
    out.push(b'0' + (value % 10) as u8);
}

/// Appends the 36-character hyphenated form of a uuid.
pub(crate) fn push_uuid(out: &mut Vec<u8>, id: &[u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (index, byte) in id.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0x0f)]);
    }
}

/// The proleptic Gregorian `(year, month, day)` of a day number (days since 1970-01-01), by Howard Hinnant's
/// `civil_from_days`: formatting millions of timestamps through chrono would cost more than generating them.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe as i64 + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_date(out: &mut Vec<u8>, days: i64) {
    let (year, month, day) = civil_from_days(days);
    push_int(out, year);
    out.push(b'-');
    push_two_digits(out, month);
    out.push(b'-');
    push_two_digits(out, day);
}

/// What the generator sends a COPY task.
#[derive(Debug)]
pub(crate) enum CopyMsg {
    /// Rows to send.
    Data(Vec<u8>),
    /// Every row was sent: commit the COPY. A channel that closes without this aborts it instead, so a failed
    /// generation leaves nothing half-loaded behind.
    Finish,
}

/// A COPY was aborted because the generator stopped (the generator's own error says why).
#[derive(Debug)]
pub(crate) struct GeneratorStopped;

impl std::fmt::Display for GeneratorStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("COPY aborted: the generator stopped")
    }
}

impl std::error::Error for GeneratorStopped {}

/// Loads one table from `rx` on a connection of its own, inside a transaction that it leaves open: the caller
/// commits every table's transaction once all of them have loaded, so a failure anywhere leaves nothing behind.
/// Returns the connection and the rows PostgreSQL reports.
pub(crate) async fn copy_task(
    url: String,
    table: Table,
    mut rx: mpsc::Receiver<CopyMsg>,
) -> anyhow::Result<(PgConnection, u64)> {
    let mut conn =
        db::connect_one(&url, "hattrick seed").await.with_context(|| format!("connecting to load {}", table.name()))?;
    // A lost commit on a crash only costs a re-seed: do not wait for the WAL flush. One simple-protocol message
    // that leaves the transaction open, so behind a pooler the COPY and the commit stay on its server connection.
    sqlx::raw_sql("BEGIN; SET LOCAL synchronous_commit = off")
        .execute(&mut conn)
        .await
        .with_context(|| format!("starting to load {}", table.name()))?;
    let mut copy = conn
        .copy_in_raw(&table.copy_statement())
        .await
        .with_context(|| format!("starting COPY into {}", table.name()))?;
    let rows = loop {
        match rx.recv().await {
            Some(CopyMsg::Data(bytes)) => {
                copy.send(bytes).await.with_context(|| format!("COPY into {}", table.name()))?;
            }
            Some(CopyMsg::Finish) => {
                break copy.finish().await.with_context(|| format!("COPY into {}", table.name()))?;
            }
            None => {
                copy.abort("hattrick seed: the generator stopped").await.ok();
                return Err(GeneratorStopped.into());
            }
        }
    };
    Ok((conn, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut RowBuf)) -> String {
        let mut buf = RowBuf::new();
        f(&mut buf);
        buf.end_row();
        String::from_utf8(buf.take()).expect("utf-8")
    }

    #[test]
    fn fields_are_tab_separated_and_escaped() {
        let row = written(|b| {
            b.text("a\tb\\c\nd\re").null().int(-42).bool(true).cents(14_999).cents(5);
        });
        assert_eq!(row, "a\\tb\\\\c\\nd\\re\t\\N\t-42\tt\t149.99\t0.05\n");
    }

    #[test]
    fn timestamps_and_dates_are_iso() {
        assert_eq!(
            written(|b| {
                b.ts(0);
            }),
            "1970-01-01 00:00:00+00\n"
        );
        assert_eq!(
            written(|b| {
                b.ts(1_709_251_199).date(19_782);
            }),
            "2024-02-29 23:59:59+00\t2024-02-29\n"
        );
        assert_eq!(
            written(|b| {
                b.ts(-1);
            }),
            "1969-12-31 23:59:59+00\n"
        );
    }

    #[test]
    fn civil_dates_match_chrono() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
        for days in (-1000..30_000).step_by(7) {
            let date = epoch + chrono::Duration::days(days);
            let (y, m, d) = civil_from_days(days);
            assert_eq!(format!("{y:04}-{m:02}-{d:02}"), date.format("%Y-%m-%d").to_string());
        }
    }

    #[test]
    fn uuids_are_hyphenated() {
        let mut out = Vec::new();
        push_uuid(&mut out, &[0xab; 16]);
        assert_eq!(String::from_utf8(out).expect("utf-8"), "abababab-abab-abab-abab-abababababab");
    }
}
