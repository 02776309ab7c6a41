//! Test support for every hattrick crate (dev-only).
//!
//! [`TestDb::new`] gives each test its own freshly migrated database on the server at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), cloned from a migrated template so it costs a `CREATE DATABASE`,
//! and drops it when the test ends. When no server answers there, a throwaway cluster is started from the machine's
//! PostgreSQL binaries under the temp directory and reused by later tests (stop it with
//! `pg_ctl -D $TMPDIR/hattrick-testkit-pg/data stop`).

mod database;
mod ledger;
mod users;
pub mod webdriver;

pub use database::{TestDb, server_url};
pub use engine::Clock;
pub use ledger::assert_ledger_invariants;
pub use users::{NewUser, utc};

/// A database shaped like the app's long-lived production database: the first version's tables, ids the app
/// generates (no default), `timestamp without time zone`, `fcm_token` instead of `token`, and columns and
/// constraints hattrick does not know. `db`'s migrator test and the CLI's every-job test load it.
pub const LEGACY_SCHEMA: &str = r#"
CREATE TABLE customer_users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email varchar(255) UNIQUE,
    full_name varchar(255),
    is_active boolean DEFAULT true,
    is_push_allowed_mobile boolean,
    locale_preference varchar(10),
    referral_code varchar(20),
    created_at timestamp without time zone DEFAULT now(),
    deleted_at timestamp without time zone
);
CREATE TABLE customer_push_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_user_id uuid REFERENCES customer_users(id),
    fcm_token text,
    platform varchar(10),
    is_active boolean DEFAULT true,
    created_at timestamp without time zone DEFAULT now()
);
CREATE INDEX legacy_tokens_by_user ON customer_push_tokens (customer_user_id);
CREATE TABLE customer_subscriptions (
    id uuid PRIMARY KEY,
    customer_user_id uuid REFERENCES customer_users(id),
    status varchar(50) NOT NULL,
    platform varchar(50),
    started_at timestamp without time zone,
    expired_at timestamp without time zone,
    store_receipt text,
    CONSTRAINT legacy_subscriptions_platform_check CHECK (platform IS NULL OR length(platform) > 0)
);
CREATE TABLE customer_credits (
    id uuid PRIMARY KEY,
    customer_user_id uuid NOT NULL UNIQUE REFERENCES customer_users(id),
    balance integer NOT NULL DEFAULT 0,
    lifetime_earned integer NOT NULL DEFAULT 0,
    lifetime_spent integer NOT NULL DEFAULT 0,
    legacy_tier varchar(20) DEFAULT 'none',
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);
CREATE TABLE referrals (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    referrer_user_id uuid NOT NULL REFERENCES customer_users(id),
    referred_user_id uuid NOT NULL REFERENCES customer_users(id),
    referral_code varchar(20) NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'pending',
    tier integer DEFAULT 1,
    created_at timestamp with time zone DEFAULT now()
);
CREATE TABLE scheduled_notifications (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title_tr varchar(255) NOT NULL,
    body_tr text NOT NULL,
    target_audience varchar(50) NOT NULL DEFAULT 'all',
    scheduled_at timestamp with time zone NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'pending'
);
CREATE TABLE job_execution_logs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_name varchar(100) NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone,
    status varchar(20) NOT NULL,
    rows_affected integer,
    metadata jsonb,
    CONSTRAINT job_execution_logs_status_check CHECK (status IN ('running', 'success', 'failed'))
);
CREATE INDEX idx_job_logs_name_started ON job_execution_logs (job_name, started_at DESC);

INSERT INTO customer_users (id, email, is_active, is_push_allowed_mobile, locale_preference, created_at) VALUES
    ('00000000-0000-4000-8000-000000000001', 'a@example.com', true, NULL, NULL, '2025-01-01 10:00:00'),
    ('00000000-0000-4000-8000-000000000002', 'b@example.com', NULL, true, 'en', '2025-02-01 10:00:00');
INSERT INTO customer_push_tokens (customer_user_id, fcm_token, platform) VALUES
    ('00000000-0000-4000-8000-000000000001', 'tok-a', 'ios'),
    ('00000000-0000-4000-8000-000000000002', 'tok-b', 'android');
INSERT INTO customer_subscriptions (id, customer_user_id, status, platform, started_at, expired_at) VALUES
    ('00000000-0000-4000-9000-000000000001', '00000000-0000-4000-8000-000000000001', 'active', 'ios',
     '2026-01-01 00:00:00', '2027-01-01 00:00:00');
INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, status) VALUES
    ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 'CODEA', 'weird');
INSERT INTO scheduled_notifications (title_tr, body_tr, scheduled_at, status) VALUES
    ('Eski', 'Gönderiliyor', '2025-06-01T10:00:00Z', 'sending'),
    ('Yeni', 'Bekliyor', '2027-06-01T10:00:00Z', 'pending');
INSERT INTO job_execution_logs (job_name, started_at, finished_at, status, rows_affected) VALUES
    ('badge-auto-unlock', '2025-06-01T10:00:00Z', '2025-06-01T10:00:05Z', 'success', 12);
"#;
