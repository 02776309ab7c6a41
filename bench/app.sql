-- The app's traffic for pgbench (bench/replay.sh, bench/turn.sh): each transaction one of the demo simulator's
-- actions for a random user, in its proportions. Needs the tables bench_users and bench_new (the live users, and
-- those who never commented, numbered from 1) and `pgbench -D users=N -D new=M` with their sizes. Comments come
-- from users who never commented, so each first comment earns the seeded `first_comment` badge.
\set pick random(1, 1000)
\set n random(1, :users)
\if :pick <= 330
UPDATE customer_users SET last_login_at = now() WHERE id = (SELECT id FROM bench_users WHERE n = :n);
UPDATE customer_xp SET current_streak_days = current_streak_days + 1,
    longest_streak_days = greatest(longest_streak_days, current_streak_days + 1), last_activity_date = current_date
WHERE customer_user_id = (SELECT id FROM bench_users WHERE n = :n) AND last_activity_date IS DISTINCT FROM current_date;
\elif :pick <= 550
\set m random(1, :new)
INSERT INTO match_comments (match_id, customer_user_id, content, created_at, updated_at)
SELECT 9000 + :m % 40, id, 'Bu maç çok iyi!', now(), now() FROM bench_new WHERE n = :m;
\elif :pick <= 880
UPDATE customer_predictions SET is_correct = random() < 0.5, settled_at = now()
WHERE id = (SELECT id FROM customer_predictions WHERE customer_user_id = (SELECT id FROM bench_users WHERE n = :n) AND is_correct IS NULL LIMIT 1);
\elif :pick <= 990
INSERT INTO customer_daily_rewards (customer_user_id, reward_date, day_number, reward_type, reward_amount, claimed_at)
VALUES ((SELECT id FROM bench_users WHERE n = :n), current_date, 1, 'credits', 10, now()) ON CONFLICT (customer_user_id, reward_date) DO NOTHING;
SELECT hattrick_grant_credits((SELECT id FROM bench_users WHERE n = :n), 10, 'daily_reward', 'replay-claim:' || (SELECT id FROM bench_users WHERE n = :n) || ':' || current_date, NULL, '{}', now());
\elif :pick <= 995
WITH friend AS (INSERT INTO customer_users (email, created_at, timezone)
                VALUES ('friend-' || gen_random_uuid() || '@replay.example', now(), 'Europe/Istanbul') RETURNING id)
INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, created_at, expires_at)
SELECT (SELECT id FROM bench_users WHERE n = :n), id, 'REPLAY', now(), now() + interval '30 days' FROM friend;
\else
INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, currency, started_at, expired_at,
    auto_renew_enabled, created_at, updated_at)
VALUES ((SELECT id FROM bench_users WHERE n = :n), 'active', 'ios', 99.90, 'TRY', now(), now() + interval '30 days', true, now(), now());
\endif
