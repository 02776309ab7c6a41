-- The floor of referral-tier2 and referral-tier3 on the benchmark's referrals (referral_code 'BENCH'): the rows
-- each tier must write (ledger rows, balance increments, pushes, the referral's new state), written by plain
-- set-based statements in one transaction, with no idempotency checks, no locking order, no running balances and
-- no batching. Run by bench/rewards.sh on a copy of the database, as `psql -v tier=2` or `-v tier=3`.
\timing on
BEGIN;
CREATE TEMP TABLE floor_credits AS
SELECT 'floor:' || id || ':referrer' AS k, referrer_user_id AS u, CASE WHEN :tier = 2 THEN 50 ELSE 200 END AS amount, id
FROM referrals WHERE referral_code = 'BENCH' AND status = CASE WHEN :tier = 2 THEN 'pending' ELSE 'completed' END
UNION ALL
SELECT 'floor:' || id || ':referred', referred_user_id, 10, id
FROM referrals WHERE referral_code = 'BENCH' AND status = 'pending' AND :tier = 2;
INSERT INTO customer_credit_transactions (id, customer_user_id, amount, transaction_type, description, reference_id,
    reference_type, balance_before, balance_after, metadata, idempotency_key, created_at)
SELECT hattrick_uuid7(), u, amount, 'referral_bonus', 'floor', id, 'referral', 0, 0, '{}', k, now()
FROM floor_credits;
UPDATE customer_credits c SET balance = c.balance + p.total, lifetime_earned = c.lifetime_earned + p.total,
    updated_at = now()
FROM (SELECT u, sum(amount)::int AS total FROM floor_credits GROUP BY u) p WHERE c.customer_user_id = p.u;
INSERT INTO customer_xp_transactions (id, customer_user_id, xp_amount, transaction_type, description, reference_id,
    reference_type, metadata, idempotency_key, created_at)
SELECT hattrick_uuid7(), u, 500, 'referral_signup', 'floor', id, 'referral', '{}', k, now()
FROM floor_credits WHERE :tier = 3;
UPDATE customer_xp x SET xp_points = x.xp_points + 500, total_earned = x.total_earned + 500,
    level = hattrick_level_for(x.xp_points + 500), updated_at = now()
FROM floor_credits f WHERE x.customer_user_id = f.u AND :tier = 3;
INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, deep_link, data, not_before, created_at)
SELECT u, 'reward', k, 'title', 'body ' || amount, 'goalgpt://referrals', jsonb_build_object('referralId', id::text),
       now(), now()
FROM floor_credits
UNION ALL
SELECT referred_user_id, 'reward', 'floor:' || id || ':vip', 'title', 'body', 'goalgpt://home',
       jsonb_build_object('referralId', id::text), now(), now()
FROM referrals WHERE referral_code = 'BENCH' AND status = 'completed' AND :tier = 3;
UPDATE referrals SET status = CASE WHEN :tier = 2 THEN 'completed' ELSE 'rewarded' END, tier = :tier
WHERE referral_code = 'BENCH' AND status = CASE WHEN :tier = 2 THEN 'pending' ELSE 'completed' END;
COMMIT;
