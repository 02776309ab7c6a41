-- The floor of a first badge sweep's writes (BENCHMARKS.md "Unlocks at the cost of their rows"): the rows
-- badge-auto-unlock wrote for the unlocks in `floor_unlocks` (customer_user_id, badge_id; loaded by
-- bench/sweep-floor.sh from hattrick's own run on another copy of the same database), written again by plain
-- set-based statements, one transaction per chunk of about 10,000 unlocks (a user's never split) as hattrick's
-- chunks are: the badge rows, the badges' unlock counters, the XP ledger rows and balances with their levels, a
-- credit grant and a push for every level crossed, the credit ledger rows and balances, the promotional VIP
-- subscriptions and the unlock pushes.
-- Left out, as a floor should: idempotency checks, the balance locks in user order, running balances
-- (`balance_before/after` are 0), the catalogue's texts in each user's language, budgets and the run's
-- bookkeeping. The unlocks are given, so the statistics that find them are not part of this floor either
-- (bench/badge-floor.sql measures those). Run as `psql -f` on a database holding `floor_unlocks`: it defines
-- `floor_chunk(n)` and the chunks, and bench/sweep-floor.sh calls them.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE INDEX ON floor_unlocks (customer_user_id);
-- A user's chunk: the number of unlocks before theirs, in user order, divided by 10,000.
CREATE TABLE floor_chunks AS
SELECT customer_user_id, ((sum(unlocks) OVER (ORDER BY customer_user_id))::bigint - unlocks) / 10000 AS chunk
FROM (SELECT customer_user_id, count(*) AS unlocks FROM floor_unlocks GROUP BY customer_user_id) u;
CREATE INDEX ON floor_chunks (chunk);
ANALYZE floor_unlocks, floor_chunks;

CREATE PROCEDURE floor_chunk(n bigint) LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS chunk_unlocks (customer_user_id uuid, badge_id uuid) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS chunk_level_ups (customer_user_id uuid, level text, credits int)
        ON COMMIT DELETE ROWS;
    INSERT INTO chunk_unlocks
    SELECT f.customer_user_id, f.badge_id FROM floor_chunks c JOIN floor_unlocks f USING (customer_user_id)
    WHERE c.chunk = n;
    INSERT INTO customer_badges (id, customer_user_id, badge_id, unlocked_at, metadata)
    SELECT hattrick_uuid7(), customer_user_id, badge_id, now(), '{"source": "floor"}' FROM chunk_unlocks;
    -- XP: ledger rows, balances and levels; every level crossed becomes a credit grant and a push.
    INSERT INTO customer_xp_transactions (id, customer_user_id, xp_amount, transaction_type, description,
        reference_id, reference_type, metadata, idempotency_key, created_at)
    SELECT hattrick_uuid7(), u.customer_user_id, b.reward_xp, 'badge_unlock', 'Rozet: ' || b.name_tr, b.id, 'badge',
           jsonb_build_object('badge', b.slug), 'badge:' || b.id || ':' || u.customer_user_id || ':xp', now()
    FROM chunk_unlocks u JOIN badges b ON b.id = u.badge_id WHERE b.reward_xp > 0;
    WITH moved AS (
        UPDATE customer_xp x
        SET xp_points = x.xp_points + p.total, total_earned = x.total_earned + p.total,
            level = hattrick_level_for(x.xp_points + p.total),
            level_progress = hattrick_level_progress(x.xp_points + p.total),
            next_level_xp = hattrick_next_level_xp(x.xp_points + p.total), updated_at = now()
        FROM (SELECT u.customer_user_id, sum(b.reward_xp)::int AS total
              FROM chunk_unlocks u JOIN badges b ON b.id = u.badge_id WHERE b.reward_xp > 0
              GROUP BY u.customer_user_id) p
        WHERE x.customer_user_id = p.customer_user_id
        RETURNING x.customer_user_id, x.xp_points - p.total AS before, x.xp_points AS after)
    INSERT INTO chunk_level_ups
    SELECT m.customer_user_id, l.level, l.credits
    FROM moved m JOIN hattrick_levels() l ON l.xp_from > m.before AND l.xp_from <= m.after WHERE l.credits > 0;
    -- Credits: the badges' and the level-ups', then the balances.
    INSERT INTO customer_credit_transactions (id, customer_user_id, amount, transaction_type, description,
        reference_id, reference_type, balance_before, balance_after, metadata, idempotency_key, created_at)
    SELECT hattrick_uuid7(), u.customer_user_id, b.reward_credits, 'badge_reward', 'Rozet: ' || b.name_tr, b.id,
           'badge', 0, 0, jsonb_build_object('badge', b.slug),
           'badge:' || b.id || ':' || u.customer_user_id || ':credits', now()
    FROM chunk_unlocks u JOIN badges b ON b.id = u.badge_id WHERE b.reward_credits > 0
    UNION ALL
    SELECT hattrick_uuid7(), customer_user_id, credits, 'promotional', 'Level up', NULL, NULL, 0, 0,
           jsonb_build_object('level_up', level), 'level-up:' || customer_user_id || ':' || level, now()
    FROM chunk_level_ups;
    UPDATE customer_credits c
    SET balance = c.balance + p.total, lifetime_earned = c.lifetime_earned + p.total, updated_at = now()
    FROM (SELECT customer_user_id, sum(amount)::int AS total FROM (
              SELECT u.customer_user_id, b.reward_credits AS amount
              FROM chunk_unlocks u JOIN badges b ON b.id = u.badge_id WHERE b.reward_credits > 0
              UNION ALL SELECT customer_user_id, credits FROM chunk_level_ups) g
          GROUP BY customer_user_id) p
    WHERE c.customer_user_id = p.customer_user_id;
    INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, started_at, expired_at,
        auto_renew_enabled, created_at, updated_at)
    SELECT u.customer_user_id, 'active', 'promo', 0, now(), now() + b.reward_vip_days * interval '1 day', false,
           now(), now()
    FROM chunk_unlocks u JOIN badges b ON b.id = u.badge_id WHERE b.reward_vip_days > 0;
    -- The pushes: one per unlock, one per level crossed.
    INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, image_url, deep_link, data,
        not_before, created_at)
    SELECT u.customer_user_id, 'reward', 'badge:' || b.id || ':' || u.customer_user_id, 'Yeni rozet',
           b.name_tr || ' rozetini kazandın', b.icon_url, 'goalgpt://badges',
           jsonb_build_object('type', 'badge_unlock', 'deepLink', 'goalgpt://badges', 'badgeId', b.id::text,
                              'badgeSlug', b.slug),
           now(), now()
    FROM chunk_unlocks u JOIN badges b ON b.id = u.badge_id
    UNION ALL
    SELECT customer_user_id, 'reward', 'level-up:' || customer_user_id || ':' || level, 'Seviye atladın', level,
           NULL, 'goalgpt://profile', jsonb_build_object('type', 'level_up', 'level', level), now(), now()
    FROM chunk_level_ups;
    -- The counters last, locked in id order, as hattrick raises them: chunks run at once share only these rows.
    PERFORM 1 FROM badges WHERE id IN (SELECT badge_id FROM chunk_unlocks) ORDER BY id FOR NO KEY UPDATE;
    UPDATE badges b SET total_unlocks = coalesce(b.total_unlocks, 0) + n.count, updated_at = now()
    FROM (SELECT badge_id, count(*) AS count FROM chunk_unlocks GROUP BY badge_id) n WHERE b.id = n.badge_id;
END $$;

-- The chunks are then called by bench/sweep-floor.sh, one session after another or AT_ONCE sessions at once.
