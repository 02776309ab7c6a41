-- hattrick's per-transaction scratch tables: a batch is staged here by `INSERT ... SELECT`, then written to the
-- ledgers and the outbox in the same transaction. They are temporary and `ON COMMIT DELETE ROWS`, so they are
-- empty at every commit whichever server session a transaction pooler handed the transaction.
--
-- `domain::scratch::prepare` runs this file at the start of each batch. `.ci/sqlx.sh` creates the same tables as
-- ordinary tables in the database it describes statements against, so statements reading them are checked at
-- compile time like any other. Keep one `CREATE TEMP TABLE IF NOT EXISTS ... ON COMMIT DELETE ROWS;` per table.

-- Credit grants of a batch (docs/ledger.md): one row per idempotency key.
CREATE TEMP TABLE IF NOT EXISTS hattrick_credit_grants (
    idempotency_key text PRIMARY KEY,
    customer_user_id uuid NOT NULL,
    amount int NOT NULL,
    transaction_type varchar(50) NOT NULL,
    description text,
    reference_id uuid,
    reference_type varchar(50),
    metadata jsonb NOT NULL DEFAULT '{}'
) ON COMMIT DELETE ROWS;

-- XP grants of a batch (docs/ledger.md).
CREATE TEMP TABLE IF NOT EXISTS hattrick_xp_grants (
    idempotency_key text PRIMARY KEY,
    customer_user_id uuid NOT NULL,
    xp_amount int NOT NULL,
    transaction_type varchar(50) NOT NULL,
    description text,
    reference_id uuid,
    reference_type varchar(50),
    metadata jsonb NOT NULL DEFAULT '{}'
) ON COMMIT DELETE ROWS;

-- Pushes of a batch, before their texts are rendered into `push_outbox` (docs/push.md).
CREATE TEMP TABLE IF NOT EXISTS hattrick_push_batch (
    dedupe_key text PRIMARY KEY,
    customer_user_id uuid NOT NULL,
    vars jsonb NOT NULL DEFAULT '{}',
    data jsonb NOT NULL DEFAULT '{}',
    image_url text
) ON COMMIT DELETE ROWS;

-- Badges just given, to be paid (docs/jobs/badge-auto-unlock.md).
CREATE TEMP TABLE IF NOT EXISTS hattrick_unlocks (
    customer_user_id uuid NOT NULL,
    badge_id uuid NOT NULL
) ON COMMIT DELETE ROWS;

-- Referrals a tier job moved in this batch (docs/jobs/referral-tier2.md, referral-tier3.md).
CREATE TEMP TABLE IF NOT EXISTS hattrick_referral_batch (
    id uuid PRIMARY KEY,
    referrer_user_id uuid NOT NULL,
    referred_user_id uuid NOT NULL
) ON COMMIT DELETE ROWS;
