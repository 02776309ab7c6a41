-- hattrick's desired schema: the tables, columns, constraints and indexes it needs.
--
-- This file is a description of the end state, not a sequence of changes. `hattrick migrate` loads it into a
-- scratch schema, compares that with the live database and applies only the difference: a missing table is
-- created as written here, a missing column is added (nullable on a table that already has rows), a missing
-- check or foreign key is added NOT VALID and validated only when no row violates it, and a missing index is
-- built CONCURRENTLY unless an equivalent one (same definition, any name) already exists.
--
-- Rules for editing: one statement per table or index, tables before the tables that reference them, every
-- constraint and index named explicitly, no data changes here (see crates/db/src/migrate/fixups.rs).

-- Users and devices --------------------------------------------------------------------------------------------

CREATE TABLE customer_users (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    email varchar(255),
    phone varchar(20),
    full_name varchar(255),
    username varchar(100),
    is_active boolean NOT NULL DEFAULT true,
    is_push_allowed_mobile boolean NOT NULL DEFAULT true,
    locale_preference varchar(10) NOT NULL DEFAULT 'tr',
    referral_code varchar(20),
    timezone text,
    last_login_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz,
    deleted_at timestamptz,
    CONSTRAINT customer_users_pkey PRIMARY KEY (id),
    CONSTRAINT customer_users_email_key UNIQUE (email)
);
CREATE INDEX customer_users_referral_code_idx ON customer_users (referral_code);
-- The local-time jobs find the zones in use with a loose scan of this index and read a small zone's users through it.
CREATE INDEX customer_users_timezone_idx ON customer_users (timezone, id);

CREATE TABLE customer_oauth_identities (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    provider varchar(20) NOT NULL,
    provider_user_id varchar(255) NOT NULL,
    email varchar(255),
    last_login_at timestamptz,
    created_at timestamptz DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT customer_oauth_identities_pkey PRIMARY KEY (id),
    CONSTRAINT customer_oauth_identities_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT customer_oauth_identities_provider_check CHECK (provider IN ('google', 'apple', 'phone')),
    CONSTRAINT customer_oauth_identities_provider_user_key UNIQUE (provider, provider_user_id),
    CONSTRAINT customer_oauth_identities_user_provider_key UNIQUE (customer_user_id, provider)
);

CREATE TABLE customer_push_tokens (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    token text NOT NULL,
    platform varchar(10) NOT NULL,
    device_id text NOT NULL,
    app_version text,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    CONSTRAINT customer_push_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT customer_push_tokens_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT customer_push_tokens_platform_check CHECK (platform IN ('ios', 'android', 'web')),
    CONSTRAINT customer_push_tokens_user_device_key UNIQUE (customer_user_id, device_id)
);
CREATE INDEX customer_push_tokens_token_idx ON customer_push_tokens (token);

-- XP, credits and the ledgers -----------------------------------------------------------------------------------

CREATE TABLE customer_xp (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    xp_points integer NOT NULL DEFAULT 0,
    level varchar(20) NOT NULL DEFAULT 'bronze',
    level_progress numeric(5, 2) DEFAULT 0,
    total_earned integer NOT NULL DEFAULT 0,
    current_streak_days integer DEFAULT 0,
    longest_streak_days integer DEFAULT 0,
    last_activity_date date,
    next_level_xp integer,
    achievements_count integer DEFAULT 0,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    CONSTRAINT customer_xp_pkey PRIMARY KEY (id),
    CONSTRAINT customer_xp_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT customer_xp_user_key UNIQUE (customer_user_id),
    CONSTRAINT customer_xp_points_check CHECK (xp_points >= 0),
    CONSTRAINT customer_xp_level_check
        CHECK (level IN ('bronze', 'silver', 'gold', 'platinum', 'diamond', 'vip_elite')),
    CONSTRAINT customer_xp_total_earned_check CHECK (total_earned >= xp_points)
);

CREATE TABLE customer_xp_transactions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    xp_amount integer NOT NULL,
    transaction_type varchar(50) NOT NULL,
    reference_id uuid,
    reference_type varchar(50),
    description text,
    metadata jsonb DEFAULT '{}',
    idempotency_key text,
    created_at timestamptz DEFAULT now(),
    CONSTRAINT customer_xp_transactions_pkey PRIMARY KEY (id),
    CONSTRAINT customer_xp_transactions_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE
);
CREATE INDEX customer_xp_transactions_user_created_idx ON customer_xp_transactions (customer_user_id, created_at);
-- An idempotency key is unique per user (docs/ledger.md): another user's `order-42` is another payment. A database
-- whose keys were unique across users gets this index built concurrently, then loses the old one (a fix-up).
CREATE UNIQUE INDEX customer_xp_transactions_user_key_idx ON customer_xp_transactions (customer_user_id, idempotency_key);

CREATE TABLE customer_credits (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    balance integer NOT NULL DEFAULT 0,
    lifetime_earned integer NOT NULL DEFAULT 0,
    lifetime_spent integer NOT NULL DEFAULT 0,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    CONSTRAINT customer_credits_pkey PRIMARY KEY (id),
    CONSTRAINT customer_credits_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT customer_credits_user_key UNIQUE (customer_user_id),
    CONSTRAINT customer_credits_balance_check CHECK (balance >= 0),
    CONSTRAINT customer_credits_lifetime_check CHECK (lifetime_earned >= lifetime_spent)
);

CREATE TABLE customer_credit_transactions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    amount integer NOT NULL,
    transaction_type varchar(50) NOT NULL,
    reference_id uuid,
    reference_type varchar(50),
    description text,
    balance_before integer NOT NULL,
    balance_after integer NOT NULL,
    metadata jsonb DEFAULT '{}',
    idempotency_key text,
    created_at timestamptz DEFAULT now(),
    CONSTRAINT customer_credit_transactions_pkey PRIMARY KEY (id),
    CONSTRAINT customer_credit_transactions_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE
);
CREATE INDEX customer_credit_transactions_user_created_idx
    ON customer_credit_transactions (customer_user_id, created_at);
CREATE UNIQUE INDEX customer_credit_transactions_user_key_idx
    ON customer_credit_transactions (customer_user_id, idempotency_key);

CREATE TABLE customer_daily_rewards (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    reward_date date NOT NULL,
    day_number integer NOT NULL,
    reward_type varchar(50) NOT NULL,
    reward_amount integer NOT NULL,
    claimed_at timestamptz DEFAULT now(),
    CONSTRAINT customer_daily_rewards_pkey PRIMARY KEY (id),
    CONSTRAINT customer_daily_rewards_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT customer_daily_rewards_day_number_check CHECK (day_number BETWEEN 1 AND 7),
    CONSTRAINT customer_daily_rewards_reward_type_check
        CHECK (reward_type IN ('credits', 'xp', 'vip_day', 'special')),
    CONSTRAINT customer_daily_rewards_user_date_key UNIQUE (customer_user_id, reward_date)
);

CREATE TABLE customer_ad_views (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    ad_network varchar(50) NOT NULL,
    ad_unit_id varchar(255) NOT NULL,
    ad_type varchar(50) NOT NULL,
    reward_amount integer NOT NULL,
    reward_granted boolean DEFAULT false,
    completed_at timestamptz DEFAULT now(),
    metadata jsonb DEFAULT '{}',
    CONSTRAINT customer_ad_views_pkey PRIMARY KEY (id),
    CONSTRAINT customer_ad_views_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE
);
CREATE INDEX customer_ad_views_user_completed_idx ON customer_ad_views (customer_user_id, completed_at);

-- Badges and activity -------------------------------------------------------------------------------------------

CREATE TABLE badges (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    slug varchar(100) NOT NULL,
    name_tr varchar(255) NOT NULL,
    name_en varchar(255) NOT NULL,
    description_tr text,
    description_en text,
    icon_url text NOT NULL,
    category varchar(50) NOT NULL,
    rarity varchar(20) NOT NULL DEFAULT 'common',
    unlock_condition jsonb NOT NULL,
    reward_xp integer DEFAULT 0,
    reward_credits integer DEFAULT 0,
    reward_vip_days integer DEFAULT 0,
    is_active boolean DEFAULT true,
    display_order integer DEFAULT 0,
    total_unlocks integer DEFAULT 0,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT badges_pkey PRIMARY KEY (id),
    CONSTRAINT badges_slug_key UNIQUE (slug)
);

CREATE TABLE customer_badges (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    badge_id uuid NOT NULL,
    unlocked_at timestamptz DEFAULT now(),
    claimed_at timestamptz,
    is_displayed boolean DEFAULT false,
    metadata jsonb DEFAULT '{}',
    CONSTRAINT customer_badges_pkey PRIMARY KEY (id),
    CONSTRAINT customer_badges_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT customer_badges_badge_fkey FOREIGN KEY (badge_id) REFERENCES badges (id) ON DELETE CASCADE,
    CONSTRAINT customer_badges_user_badge_key UNIQUE (customer_user_id, badge_id)
);

CREATE TABLE match_comments (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    match_id integer NOT NULL,
    customer_user_id uuid NOT NULL,
    parent_comment_id uuid,
    content text NOT NULL,
    like_count integer DEFAULT 0,
    status varchar(20) DEFAULT 'active',
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT match_comments_pkey PRIMARY KEY (id),
    CONSTRAINT match_comments_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT match_comments_parent_fkey FOREIGN KEY (parent_comment_id) REFERENCES match_comments (id),
    CONSTRAINT match_comments_status_check CHECK (status IN ('active', 'hidden', 'deleted', 'flagged')),
    CONSTRAINT match_comments_content_check CHECK (length(content) BETWEEN 3 AND 1000)
);
CREATE INDEX match_comments_user_idx ON match_comments (customer_user_id);

CREATE TABLE match_comment_likes (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    comment_id uuid NOT NULL,
    customer_user_id uuid NOT NULL,
    created_at timestamptz DEFAULT now(),
    CONSTRAINT match_comment_likes_pkey PRIMARY KEY (id),
    CONSTRAINT match_comment_likes_comment_fkey FOREIGN KEY (comment_id)
        REFERENCES match_comments (id) ON DELETE CASCADE,
    CONSTRAINT match_comment_likes_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT match_comment_likes_comment_user_key UNIQUE (comment_id, customer_user_id)
);
CREATE INDEX match_comment_likes_created_idx ON match_comment_likes (created_at);

CREATE TABLE customer_predictions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    match_id bigint NOT NULL,
    prediction varchar(50) NOT NULL,
    is_correct boolean,
    settled_at timestamptz,
    created_at timestamptz DEFAULT now(),
    CONSTRAINT customer_predictions_pkey PRIMARY KEY (id),
    CONSTRAINT customer_predictions_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT customer_predictions_user_match_prediction_key UNIQUE (customer_user_id, match_id, prediction)
);

-- Referrals, subscriptions, partners ----------------------------------------------------------------------------

CREATE TABLE referrals (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    referrer_user_id uuid NOT NULL,
    referred_user_id uuid NOT NULL,
    referral_code varchar(20) NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'pending',
    tier integer DEFAULT 1,
    referrer_reward_xp integer DEFAULT 0,
    referrer_reward_credits integer DEFAULT 0,
    referred_reward_xp integer DEFAULT 0,
    referred_reward_credits integer DEFAULT 0,
    referred_subscribed_at timestamptz,
    reward_claimed_at timestamptz,
    created_at timestamptz DEFAULT now(),
    expires_at timestamptz DEFAULT (now() + interval '30 days'),
    CONSTRAINT referrals_pkey PRIMARY KEY (id),
    CONSTRAINT referrals_referrer_fkey FOREIGN KEY (referrer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT referrals_referred_fkey FOREIGN KEY (referred_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT referrals_referred_user_key UNIQUE (referred_user_id),
    CONSTRAINT referrals_status_check CHECK (status IN ('pending', 'completed', 'rewarded', 'expired')),
    CONSTRAINT referrals_not_self_check CHECK (referrer_user_id <> referred_user_id)
);
CREATE INDEX referrals_referrer_idx ON referrals (referrer_user_id);
CREATE INDEX referrals_referral_code_idx ON referrals (referral_code);

CREATE TABLE subscription_plans (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name varchar(100),
    platform varchar(50),
    price numeric(10, 2),
    duration_in_days integer,
    is_active boolean DEFAULT true,
    CONSTRAINT subscription_plans_pkey PRIMARY KEY (id)
);

CREATE TABLE partners (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    business_name varchar(255) NOT NULL,
    email varchar(255) NOT NULL,
    phone varchar(20) NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'pending',
    commission_rate numeric(5, 2) DEFAULT 20.00,
    referral_code varchar(20) NOT NULL,
    total_referrals integer DEFAULT 0,
    total_subscriptions integer DEFAULT 0,
    total_revenue numeric(10, 2) DEFAULT 0,
    total_commission numeric(10, 2) DEFAULT 0,
    approved_at timestamptz,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    CONSTRAINT partners_pkey PRIMARY KEY (id),
    CONSTRAINT partners_user_fkey FOREIGN KEY (customer_user_id) REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT partners_user_key UNIQUE (customer_user_id),
    CONSTRAINT partners_referral_code_key UNIQUE (referral_code),
    CONSTRAINT partners_status_check CHECK (status IN ('pending', 'approved', 'rejected', 'suspended'))
);

CREATE TABLE customer_subscriptions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    customer_user_id uuid NOT NULL,
    plan_id uuid,
    status varchar(50) NOT NULL,
    platform varchar(50),
    amount numeric(10, 2),
    currency varchar(10),
    auto_renew_enabled boolean DEFAULT false,
    started_at timestamptz,
    expired_at timestamptz,
    canceled_at timestamptz,
    partner_id uuid,
    referral_code varchar(20),
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT customer_subscriptions_pkey PRIMARY KEY (id),
    CONSTRAINT customer_subscriptions_user_fkey FOREIGN KEY (customer_user_id)
        REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT customer_subscriptions_plan_fkey FOREIGN KEY (plan_id) REFERENCES subscription_plans (id),
    CONSTRAINT customer_subscriptions_partner_fkey FOREIGN KEY (partner_id) REFERENCES partners (id)
);
CREATE INDEX customer_subscriptions_user_idx ON customer_subscriptions (customer_user_id);
CREATE INDEX customer_subscriptions_partner_idx ON customer_subscriptions (partner_id);
CREATE INDEX customer_subscriptions_expired_at_idx ON customer_subscriptions (expired_at);

CREATE TABLE partner_analytics (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    partner_id uuid NOT NULL,
    date date NOT NULL,
    new_signups integer DEFAULT 0,
    new_subscriptions integer DEFAULT 0,
    revenue numeric(10, 2) DEFAULT 0,
    commission numeric(10, 2) DEFAULT 0,
    active_subscribers integer DEFAULT 0,
    churn_count integer DEFAULT 0,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz,
    CONSTRAINT partner_analytics_pkey PRIMARY KEY (id),
    CONSTRAINT partner_analytics_partner_fkey FOREIGN KEY (partner_id) REFERENCES partners (id) ON DELETE CASCADE,
    CONSTRAINT partner_analytics_partner_date_key UNIQUE (partner_id, date)
);

-- Notifications -------------------------------------------------------------------------------------------------

CREATE TABLE scheduled_notifications (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    title_tr varchar(255) NOT NULL,
    title_en varchar(255),
    body_tr text NOT NULL,
    body_en text,
    deep_link_url text,
    image_url text,
    target_audience varchar(50) NOT NULL DEFAULT 'all',
    segment_filter jsonb,
    scheduled_at timestamptz NOT NULL,
    sent_at timestamptz,
    status varchar(20) NOT NULL DEFAULT 'pending',
    recipient_count integer,
    success_count integer DEFAULT 0,
    failure_count integer DEFAULT 0,
    error text,
    created_by uuid,
    created_at timestamptz DEFAULT now(),
    -- Local-time delivery (docs/jobs/scheduled-notifications.md): this wall-clock time in each user's zone;
    -- `if_passed` says what happens to users whose time had passed when the campaign went out.
    local_time timestamp,
    if_passed varchar(10),
    missed_count integer,
    expanded_until timestamptz,
    -- An experiment: 2 to 5 variants (a JSON array of texts, links, images and weights) and a holdout; the
    -- conversion read-out counts `conversion_event` within `conversion_window_hours` of each user's send.
    variants jsonb,
    holdout_percent integer,
    conversion_event varchar(20),
    conversion_window_hours integer,
    CONSTRAINT scheduled_notifications_pkey PRIMARY KEY (id),
    CONSTRAINT scheduled_notifications_status_check
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    CONSTRAINT scheduled_notifications_audience_check CHECK (target_audience IN ('all', 'vip', 'free', 'segment')),
    CONSTRAINT scheduled_notifications_if_passed_check CHECK (if_passed IN ('next_day', 'skip')),
    CONSTRAINT scheduled_notifications_holdout_check CHECK (holdout_percent BETWEEN 0 AND 50),
    CONSTRAINT scheduled_notifications_conversion_check
        CHECK (conversion_event IN ('daily_reward', 'comment', 'subscription')),
    CONSTRAINT scheduled_notifications_window_check CHECK (conversion_window_hours BETWEEN 1 AND 720),
    CONSTRAINT scheduled_notifications_variants_check CHECK (jsonb_typeof(variants) = 'array')
);
CREATE INDEX scheduled_notifications_status_scheduled_idx ON scheduled_notifications (status, scheduled_at);

-- An experiment's assignment of each user of the audience (docs/jobs/scheduled-notifications.md): variant 0 is the
-- holdout, who gets nothing; `send_at` is when the user's push goes (or, for the holdout, would have gone) out,
-- from which the conversion window runs. Deterministic per (campaign, user), written once at expansion.
CREATE TABLE hattrick_campaign_assignments (
    campaign_id uuid NOT NULL,
    customer_user_id uuid NOT NULL,
    variant smallint NOT NULL,
    send_at timestamptz NOT NULL,
    CONSTRAINT hattrick_campaign_assignments_pkey PRIMARY KEY (campaign_id, customer_user_id),
    CONSTRAINT hattrick_campaign_assignments_campaign_fkey
        FOREIGN KEY (campaign_id) REFERENCES scheduled_notifications (id) ON DELETE CASCADE,
    CONSTRAINT hattrick_campaign_assignments_user_fkey
        FOREIGN KEY (customer_user_id) REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT hattrick_campaign_assignments_variant_check CHECK (variant BETWEEN 0 AND 5)
);
-- The user foreign key's own index (the primary key leads with the campaign): a deleted user's assignments are
-- found by key, not by a scan of every experiment's audience.
CREATE INDEX hattrick_campaign_assignments_user_idx ON hattrick_campaign_assignments (customer_user_id);

-- A user's choice per push category (docs/push.md "Preferences"): no row means on. The app writes it through
-- hattrick_set_push_preference(); `is_push_allowed_mobile` stays the switch for every push.
-- The push texts (docs/push.md "Messages and languages"): hattrick's own Turkish and English texts (`builtin`,
-- rewritten by every migration that changes them, migrations/messages.sql) and a deployment's texts, which add
-- locales or replace a built-in text of the same locale. A user gets the text of their locale, else of its language,
-- else English, else Turkish (hattrick_message()).
CREATE TABLE hattrick_messages (
    kind varchar(40) NOT NULL,
    locale varchar(35) NOT NULL,
    builtin boolean NOT NULL DEFAULT false,
    title text NOT NULL,
    body text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hattrick_messages_pkey PRIMARY KEY (kind, locale, builtin),
    CONSTRAINT hattrick_messages_locale_check CHECK (locale ~ '^[a-z]{2,3}(-[a-z0-9]{1,8})*$'),
    CONSTRAINT hattrick_messages_text_check CHECK (title <> '' AND body <> '')
);

CREATE TABLE hattrick_push_preferences (
    customer_user_id uuid NOT NULL,
    category varchar(20) NOT NULL,
    enabled boolean NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT hattrick_push_preferences_pkey PRIMARY KEY (customer_user_id, category),
    CONSTRAINT hattrick_push_preferences_user_fkey
        FOREIGN KEY (customer_user_id) REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT hattrick_push_preferences_category_check
        CHECK (category IN ('rewards', 'streaks', 'reminders', 'subscription', 'campaigns'))
);

CREATE TABLE push_outbox (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    customer_user_id uuid NOT NULL,
    category varchar(20) NOT NULL,
    dedupe_key text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    image_url text,
    deep_link text,
    data jsonb NOT NULL DEFAULT '{}',
    campaign_id uuid,
    not_before timestamptz NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    tokens_sent integer NOT NULL DEFAULT 0,
    tokens_failed integer NOT NULL DEFAULT 0,
    last_error text,
    expires_at timestamptz,
    created_at timestamptz NOT NULL,
    sent_at timestamptz,
    platforms text[],
    CONSTRAINT push_outbox_pkey PRIMARY KEY (id),
    CONSTRAINT push_outbox_user_fkey FOREIGN KEY (customer_user_id) REFERENCES customer_users (id) ON DELETE CASCADE,
    CONSTRAINT push_outbox_campaign_fkey FOREIGN KEY (campaign_id)
        REFERENCES scheduled_notifications (id) ON DELETE SET NULL,
    CONSTRAINT push_outbox_dedupe_key UNIQUE (dedupe_key),
    CONSTRAINT push_outbox_category_check CHECK (category IN ('reward', 'engagement', 'campaign', 'test')),
    CONSTRAINT push_outbox_status_check
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'no_tokens', 'opted_out', 'cancelled'))
);
CREATE INDEX push_outbox_due_idx ON push_outbox (not_before) WHERE status = 'pending';
CREATE INDEX push_outbox_campaign_idx ON push_outbox (campaign_id) WHERE campaign_id IS NOT NULL;
-- Claimed rows whose lease may have run out (a dispatcher died holding them).
CREATE INDEX push_outbox_sending_idx ON push_outbox (not_before) WHERE status = 'sending';
-- Two uses, one index: the user foreign key's (without it, every user the app deletes scans the whole outbox to
-- cascade), and the daily cap (a user's pushes sent today, status and category checked on the few rows found). It
-- replaces push_outbox_capped_sent_idx, partial to the capped rows, which the migrator drops once this one is
-- built (crates/db/src/migrate/fixups.rs, RETIRED_INDEXES).
CREATE INDEX push_outbox_user_sent_idx ON push_outbox (customer_user_id, sent_at);

-- One row per outbox row and device token tried: what FCM said. A retried row skips the tokens already final, so
-- a token is sent a message once however often its row is retried.
CREATE TABLE hattrick_push_deliveries (
    outbox_id bigint NOT NULL,
    token text NOT NULL,
    platform varchar(10),
    status varchar(20) NOT NULL,
    attempts integer NOT NULL DEFAULT 1,
    error text,
    updated_at timestamptz NOT NULL,
    CONSTRAINT hattrick_push_deliveries_pkey PRIMARY KEY (outbox_id, token),
    CONSTRAINT hattrick_push_deliveries_outbox_fkey
        FOREIGN KEY (outbox_id) REFERENCES push_outbox (id) ON DELETE CASCADE,
    CONSTRAINT hattrick_push_deliveries_status_check CHECK (status IN ('sent', 'failed', 'retry'))
);

-- Engine --------------------------------------------------------------------------------------------------------

CREATE TABLE job_execution_logs (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    job_name varchar(100) NOT NULL,
    started_at timestamptz NOT NULL,
    completed_at timestamptz,
    status varchar(20) NOT NULL,
    items_processed integer DEFAULT 0,
    error_message text,
    duration_ms integer,
    created_at timestamptz DEFAULT now(),
    scheduled_for timestamptz,
    trigger varchar(20),
    instance text,
    attempt integer,
    heartbeat_at timestamptz,
    reason varchar(20),
    details jsonb,
    retry_at timestamptz,
    CONSTRAINT job_execution_logs_pkey PRIMARY KEY (id),
    CONSTRAINT job_execution_logs_status_check CHECK (status IN ('running', 'success', 'failed', 'skipped', 'interrupted')),
    CONSTRAINT job_execution_logs_trigger_check
        CHECK (trigger IN ('schedule', 'manual', 'catchup', 'event', 'retry')),
    CONSTRAINT job_execution_logs_reason_check
        CHECK (reason IN ('missed', 'overlap', 'paused', 'abandoned', 'timeout', 'error', 'shutdown'))
);
CREATE UNIQUE INDEX job_execution_logs_tick_attempt_key ON job_execution_logs (job_name, scheduled_for, attempt);
CREATE INDEX job_execution_logs_job_started_idx ON job_execution_logs (job_name, started_at DESC);
CREATE INDEX job_execution_logs_status_started_idx ON job_execution_logs (status, started_at DESC);
-- The engine's hot lookups: is this job running, which failed ticks wait for a retry.
CREATE INDEX job_execution_logs_running_idx ON job_execution_logs (job_name) WHERE status = 'running';
CREATE INDEX job_execution_logs_retry_idx ON job_execution_logs (retry_at) WHERE retry_at IS NOT NULL;

-- Job definitions, shared by every instance (docs/engine.md): configuration seeds them at start-up, operators pause
-- and resume them, and every instance follows what is stored here. `cursor` is the latest tick accounted for: every
-- tick up to it has a row in job_execution_logs (run, skipped or missed).
CREATE TABLE hattrick_jobs (
    name varchar(100) NOT NULL,
    schedule text NOT NULL,
    timezone text NOT NULL,
    misfire varchar(20) NOT NULL,
    timeout_ms bigint NOT NULL,
    retries integer NOT NULL,
    retry_backoff_ms bigint NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    paused boolean NOT NULL DEFAULT false,
    cursor timestamptz,
    paused_cursor timestamptz,
    updated_at timestamptz NOT NULL,
    updated_by text,
    CONSTRAINT hattrick_jobs_pkey PRIMARY KEY (name),
    CONSTRAINT hattrick_jobs_misfire_check CHECK (misfire IN ('run_once', 'skip', 'all', 'latest')),
    CONSTRAINT hattrick_jobs_timeout_check CHECK (timeout_ms > 0 AND retries >= 0 AND retry_backoff_ms >= 0)
);

-- hattrick's own bookkeeping ------------------------------------------------------------------------------------

CREATE TABLE hattrick_schema_state (
    key text NOT NULL,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hattrick_schema_state_pkey PRIMARY KEY (key)
);

-- The IANA zone names PostgreSQL knows, copied from pg_timezone_names by the migrator: jobs join users'
-- `timezone` against it so that one unknown name falls back to the business zone instead of failing a
-- statement that serves every user.
CREATE TABLE hattrick_time_zones (
    name text NOT NULL,
    CONSTRAINT hattrick_time_zones_pkey PRIMARY KEY (name)
);

-- Local-time jobs (docs/engine.md, docs/jobs/README.md): each user's outcome for a local date, decided once. `served`
-- wrote the push, `skipped` found the user only after the deadline, `no_token` found no active device. The jobs prune
-- their rows after a week; the counts of older days stay in the run log.
CREATE TABLE hattrick_local_sends (
    job_name varchar(100) NOT NULL,
    local_date date NOT NULL,
    customer_user_id uuid NOT NULL,
    outcome varchar(10) NOT NULL,
    decided_at timestamptz NOT NULL,
    CONSTRAINT hattrick_local_sends_pkey PRIMARY KEY (job_name, local_date, customer_user_id),
    CONSTRAINT hattrick_local_sends_outcome_check CHECK (outcome IN ('served', 'skipped', 'no_token'))
);

-- Which (job, zone, local date) a local-time job has opened and which it has closed: a closed day was decided for
-- every user of the zone, so later ticks skip the zone at once until its next target time.
CREATE TABLE hattrick_local_days (
    job_name varchar(100) NOT NULL,
    zone text NOT NULL,
    local_date date NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    CONSTRAINT hattrick_local_days_pkey PRIMARY KEY (job_name, zone, local_date)
);

-- Idempotency keys of ledger rows folded into carry-forward rows by compaction (docs/ledger.md): a key stays used
-- after its row is gone, so nothing can be paid twice. Keys are per user and per ledger, like the ledgers' own.
CREATE TABLE hattrick_compacted_user_keys (
    customer_user_id uuid NOT NULL,
    ledger varchar(10) NOT NULL,
    idempotency_key text NOT NULL,
    compacted_at timestamptz NOT NULL,
    CONSTRAINT hattrick_compacted_user_keys_pkey PRIMARY KEY (customer_user_id, idempotency_key, ledger),
    CONSTRAINT hattrick_compacted_user_keys_ledger_check CHECK (ledger IN ('xp', 'credits'))
);

-- Keys compacted before keys were scoped to users (their user is not known): each still counts as used for every
-- user, so nothing compacted then can be paid again. Nothing is written here any more.
CREATE TABLE hattrick_compacted_keys (
    idempotency_key text NOT NULL,
    ledger varchar(10) NOT NULL,
    compacted_at timestamptz NOT NULL,
    CONSTRAINT hattrick_compacted_keys_pkey PRIMARY KEY (idempotency_key),
    CONSTRAINT hattrick_compacted_keys_ledger_check CHECK (ledger IN ('xp', 'credits'))
);

-- Sign-ins to the admin page. The cookie is signed by the admin token; the row says whether it was signed out
-- (revoked_at), so signing out ends a session on every instance, copies of the cookie included.
CREATE TABLE hattrick_admin_sessions (
    id uuid NOT NULL,
    actor text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CONSTRAINT hattrick_admin_sessions_pkey PRIMARY KEY (id)
);

-- Every write made through the admin API or page: who (the admin token's name), what, on what, when.
CREATE TABLE hattrick_audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    action varchar(50) NOT NULL,
    target text,
    details jsonb NOT NULL DEFAULT '{}',
    request_id text,
    CONSTRAINT hattrick_audit_log_pkey PRIMARY KEY (id)
);
CREATE INDEX hattrick_audit_log_at_idx ON hattrick_audit_log (at DESC);
-- The admin API's Idempotency-Key look-up (one key is one operator request).
CREATE INDEX hattrick_audit_log_key_idx ON hattrick_audit_log ((details ->> 'key'))
    WHERE action IN ('credits.adjust', 'xp.adjust');

-- Change capture (docs/events.md): the app's writes, through the triggers of migrations/events.sql, record which
-- subject (a user id) a job should look at again; `topic` is the job. Event runs take rows, act on their subjects and
-- delete exactly the rows they took; the scheduled sweep stays the safety net.
CREATE TABLE hattrick_changes (
    id bigint GENERATED ALWAYS AS IDENTITY,
    topic varchar(100) NOT NULL,
    subject uuid NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT hattrick_changes_pkey PRIMARY KEY (id)
);
CREATE INDEX hattrick_changes_topic_idx ON hattrick_changes (topic, id);

-- Scratch rows of runs that span several transactions: the changes an event run took and their subjects, a badge
-- run's candidates and its cascade, a referral run's queue. They are keyed by run instead of living in a session's
-- temporary tables, because behind a pooler in transaction mode a session is handed to other clients between
-- transactions (docs/pooler.md). UNLOGGED: cheap to write, and emptied by a crash, which is what the rows of a run
-- that died need anyway. A run deletes its rows as it ends, by run id through the primary key; rows older than a
-- day (a run killed half-way) are deleted by the next scheduled or manual run of badge-auto-unlock or a referral
-- tier, which purges these tables (event runs never read a table whole).
CREATE UNLOGGED TABLE hattrick_run_changes (
    run_id uuid NOT NULL,
    change_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hattrick_run_changes_pkey PRIMARY KEY (run_id, change_id)
);
CREATE UNLOGGED TABLE hattrick_run_subjects (
    run_id uuid NOT NULL,
    subject uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hattrick_run_subjects_pkey PRIMARY KEY (run_id, subject)
);
CREATE UNLOGGED TABLE hattrick_run_badge_candidates (
    run_id uuid NOT NULL,
    customer_user_id uuid NOT NULL,
    badge_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hattrick_run_badge_candidates_pkey PRIMARY KEY (run_id, customer_user_id, badge_id)
);
CREATE UNLOGGED TABLE hattrick_run_cascade (
    run_id uuid NOT NULL,
    subject uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hattrick_run_cascade_pkey PRIMARY KEY (run_id, subject)
);
CREATE UNLOGGED TABLE hattrick_run_referral_queue (
    run_id uuid NOT NULL,
    referral_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hattrick_run_referral_queue_pkey PRIMARY KEY (run_id, referral_id)
);
