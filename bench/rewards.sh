#!/usr/bin/env bash
# Issue benchmarks of the rewards jobs on a seeded database (see BENCHMARKS.md):
#   (a) the first full badge sweep and the sweeps it takes to reach the fixed point, (b) a steady-state sweep and its floor (bench/badge-floor.sql in psql),
#   (c) referral tier 2 and tier 3 with about 100,000 eligible referrals each, and their floor
#       (bench/referral-floor.sql on a copy of the database).
# Usage: bench/rewards.sh [USERS]   (default 1000000; needs a release build and PostgreSQL on 127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-1000000}
db=hattrick_rewards_bench_$users
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
# The first sweep of a million users writes millions of unlocks: more than the default 15-minute timeout.
export HATTRICK_JOBS__BADGE_AUTO_UNLOCK__TIMEOUT=2h
bin=target/release/hattrick
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
timed() { /usr/bin/time -f "    elapsed %e s, peak RSS %M KB" "$@"; }
# The floor of a referral tier (bench/referral-floor.sql), on a copy of the database as it stands.
floor() {
    psql "$admin" -c "CREATE DATABASE ${db}_floor TEMPLATE $db"
    psql -v tier="$1" "${DATABASE_URL}_floor" -f bench/referral-floor.sql \
        | awk '/^Time:/ { total += $2 } END { printf "    floor: the same writes in plain SQL: %.2f s\n", total / 1000 }'
    psql "$admin" -c "DROP DATABASE ${db}_floor"
}

psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
$bin migrate > /dev/null
echo "== seed $users users"
timed $bin seed --users "$users" --seed 1 | tail -n 3

echo "== (a) first full badge sweep (it settles its own cascades: cascade_rounds)"
timed $bin run badge-auto-unlock --json | tr -s ' \n' ' '; echo
echo "== sweeps to the fixed point: each further sweep, until one finds nothing"
sweeps=1
for _ in 1 2 3 4 5; do
    out=$($bin run badge-auto-unlock --json | tr -s ' \n' ' ')
    items=$(sed -E 's/.*"items": ([0-9]+).*/\1/' <<<"$out")
    echo "    sweep $((sweeps + 1)) unlocked $items"
    [ "$items" = 0 ] && break
    sweeps=$((sweeps + 1))
done
echo "    sweeps to the fixed point: $sweeps"
echo "== (b) steady-state sweep (nothing new to unlock)"
timed $bin run badge-auto-unlock --json | tr -s ' \n' ' '; echo
echo "== (b) floor: the same aggregates alone in psql"
psql "$DATABASE_URL" -f bench/badge-floor.sql | grep -E "Execution Time"
echo "== (b) steady-state sweep again"
timed $bin run badge-auto-unlock --json | tr -s ' \n' ' '; echo

echo "== (c) setting up about 100,000 eligible tier-2 referrals"
psql "$DATABASE_URL" <<'SQL'
WITH referred AS (
    SELECT u.id, row_number() OVER (ORDER BY u.id) AS n FROM customer_users u
    WHERE u.deleted_at IS NULL AND u.is_active AND NOT EXISTS (SELECT 1 FROM referrals r WHERE r.referred_user_id = u.id)
    LIMIT 100000),
referrer AS (
    SELECT u.id, row_number() OVER (ORDER BY u.id DESC) AS n FROM customer_users u
    WHERE u.deleted_at IS NULL AND u.is_active LIMIT 100000)
INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, status, tier, created_at, expires_at)
SELECT referrer.id, referred.id, 'BENCH', 'pending', 1, now() - interval '2 days', now() + interval '28 days'
FROM referred JOIN referrer ON referrer.n = referred.n WHERE referrer.id <> referred.id;
UPDATE customer_users u SET last_login_at = now() - interval '1 day'
FROM referrals r WHERE r.referred_user_id = u.id AND r.referral_code = 'BENCH';
ANALYZE referrals; ANALYZE customer_users;
SQL
$bin run referral-tier2 --dry-run --json | tr -s ' \n' ' '; echo
floor 2
timed $bin run referral-tier2 --json | tr -s ' \n' ' '; echo

echo "== (c) setting up paid subscriptions for those referred users"
psql "$DATABASE_URL" <<'SQL'
INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, currency, started_at, expired_at)
SELECT r.referred_user_id, 'active', 'ios', 99.99, 'TRY', now() - interval '1 hour', now() + interval '30 days'
FROM referrals r WHERE r.referral_code = 'BENCH' AND r.status = 'completed';
ANALYZE customer_subscriptions;
SQL
$bin run referral-tier3 --dry-run --json | tr -s ' \n' ' '; echo
floor 3
timed $bin run referral-tier3 --json | tr -s ' \n' ' '; echo

echo "== ledger check"
$bin ledger check | head -n 2
psql "$admin" -c "DROP DATABASE $db WITH (FORCE)"
