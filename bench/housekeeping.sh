#!/usr/bin/env bash
# Issue benchmarks of the engagement and housekeeping jobs on a seeded database (see BENCHMARKS.md):
#   (a) each engagement job at its local time (20:00, 22:00, 10:00 in the business zone, where 90 % of the seeded
#       users live), then a repeat tick inside the same window and one after the deadline;
#   (b) partner-analytics for the seeded 500 partners with subscriptions topped up to 1M: the nightly run (it
#       recomputes two days) and a 30-day backfill;
#   (c) old-logs-cleanup with EXPIRED expired ad views added (default 10M), while pgbench inserts at a fixed rate;
#       the same pgbench workload alone first (ALONE seconds, default 300), for the p99 ratio.
# Usage: bench/housekeeping.sh [USERS] [EXPIRED]   (defaults 1000000 10000000; needs a release build, PostgreSQL
# on 127.0.0.1:5432, pgbench (Debian postgresql-client) and python3). SECTIONS="c" runs part (c) alone on the
# database a previous run seeded (default: "seed a b c").
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-1000000}
expired=${2:-10000000}
db=hattrick_housekeeping_bench_$users
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
export HATTRICK_JOBS__OLD_LOGS_CLEANUP__TIMEOUT=2h
bin=target/release/hattrick
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
# Runs a job at a business time and prints its duration, items and the figures of its details that matter.
run_at() {
    local job=$1 at=$2
    shift 2
    /usr/bin/time -f "%e %M" -o "$work/time" $bin run "$job" --at "$at" --force --json "$@" > "$work/report.json"
    python3 - "$work/report.json" "$work/time" "$job" "$at" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
elapsed, rss = open(sys.argv[2]).read().split()
details = report.get("details") or {}
details.pop("days", None)
if "tables" in details:
    details["tables"] = {t: v for t, v in details["tables"].items() if v.get("deleted") or v.get("folded")}
print(f"    {sys.argv[3]} at {sys.argv[4]}: {elapsed} s (peak RSS {int(rss) // 1024} MB), items {report.get('items')}")
print(f"      {json.dumps(details)}")
EOF
}

sections=${SECTIONS:-seed a b c}
section() { [[ " $sections " == *" $1 "* ]]; }
today=$(date -u +%F)
tomorrow=$(date -u -d "$today + 1 day" +%F)

if section seed; then
    psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    $bin migrate > /dev/null
    echo "== seed $users users"
    $bin seed --users "$users" --seed 1 | tail -n 2
fi

if section a; then
echo "== (a) engagement jobs at their local times (business zone UTC+3)"
run_at daily-reward-reminders "${today}T17:00:00Z"
run_at daily-reward-reminders "${today}T17:15:00Z"
run_at daily-reward-reminders "${today}T20:15:00Z"
run_at streak-break-warnings "${today}T19:00:00Z"
run_at streak-break-warnings "${today}T19:15:00Z"
run_at streak-break-warnings "${today}T21:15:00Z"
run_at subscription-expiry-alerts "${tomorrow}T07:00:00Z"
run_at subscription-expiry-alerts "${tomorrow}T07:15:00Z"
run_at subscription-expiry-alerts "${tomorrow}T10:15:00Z"
fi

if section b; then
echo "== (b) partner analytics: subscriptions topped up to 1,000,000"
psql "$DATABASE_URL" <<'EOF'
CREATE TEMP TABLE u AS SELECT row_number() OVER () AS n, id FROM customer_users;
CREATE TEMP TABLE p AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id, referral_code FROM partners;
INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, currency, auto_renew_enabled,
                                    started_at, expired_at, canceled_at, partner_id, referral_code, created_at)
SELECT u.id,
       CASE WHEN s.started + interval '30 days' < now() THEN 'expired' ELSE 'active' END,
       CASE WHEN g % 2 = 0 THEN 'ios' ELSE 'android' END,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 49.90 + (g % 5) * 25 END,
       CASE WHEN g % 50 = 0 THEN 'USD' ELSE 'TRY' END,
       g % 3 = 0, s.started, s.started + interval '30 days',
       CASE WHEN g % 7 = 0 THEN s.started + interval '10 days' END,
       CASE WHEN g % 4 IN (0, 1) THEN p.id END,
       CASE WHEN g % 4 = 2 THEN p.referral_code END,
       s.started
FROM generate_series(1, greatest(0, 1000000 - (SELECT count(*) FROM customer_subscriptions))) g
JOIN u ON u.n = g % (SELECT count(*) FROM u) + 1
JOIN p ON p.n = g % (SELECT count(*) FROM p)
CROSS JOIN LATERAL (SELECT now() - (g % 400) * interval '1 day' - (g % 1440) * interval '1 minute' AS started) s;
ANALYZE customer_subscriptions;
EOF
psql "$DATABASE_URL" -Atc "SELECT 'subscriptions: ' || count(*) || ', linked to a partner: ' ||
    count(*) FILTER (WHERE partner_id IS NOT NULL OR referral_code IS NOT NULL) FROM customer_subscriptions"
run_at partner-analytics "${today}T21:05:00Z"
run_at partner-analytics "${today}T21:05:00Z" --from "$(date -u -d "$today - 30 days" +%F)" --to "$today"
fi

section c || exit 0

echo "== (c) old-logs-cleanup of $expired expired ad views under a concurrent insert workload"
psql "$DATABASE_URL" <<EOF
DROP TABLE IF EXISTS bench_users;
CREATE TABLE bench_users AS SELECT row_number() OVER () AS n, id FROM customer_users LIMIT 100000;
ALTER TABLE bench_users ADD PRIMARY KEY (n);
INSERT INTO customer_ad_views (customer_user_id, ad_network, ad_unit_id, ad_type, reward_amount, completed_at)
SELECT b.id, 'admob', 'expired', 'rewarded', 5, now() - interval '200 days' - (g % 300) * interval '1 day'
FROM generate_series(1, $expired) g JOIN bench_users b ON b.n = g % 100000 + 1;
VACUUM ANALYZE customer_ad_views;
EOF
# Neither phase pays for the other's writes: dirty pages are flushed before each.
psql "$DATABASE_URL" -c CHECKPOINT
cat > "$work/insert.sql" <<'EOF'
\set n random(1, 100000)
INSERT INTO customer_ad_views (customer_user_id, ad_network, ad_unit_id, ad_type, reward_amount)
SELECT id, 'admob', 'live', 'rewarded', 5 FROM bench_users WHERE n = :n;
INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id)
SELECT id, md5(random()::text), 'android', 'bench' FROM bench_users WHERE n = :n
ON CONFLICT (customer_user_id, device_id) DO UPDATE SET token = excluded.token, updated_at = now();
EOF
# The workload: 400 transactions per second on 4 connections; latency percentiles from pgbench's per-transaction log.
workload() {
    (cd "$work" && pgbench -n -c 4 -j 2 -R 400 -T "$2" -l --log-prefix="$1" -f insert.sql "$DATABASE_URL" > /dev/null 2>&1)
}
percentiles() {
    cat "$work"/$1.* | python3 -c '
import sys
lat = sorted(int(line.split()[2]) / 1000 for line in sys.stdin)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{len(lat)} {pick(0.5):.2f} {pick(0.99):.2f} {lat[-1]:.2f}")'
}
# Alone for ALONE seconds (default 300, about as long as the cleanup runs): the app's own WAL forces checkpoints
# too (about 6 MB/s of it here, one every 80 s on a stock server), and a shorter window right after the CHECKPOINT
# above would leave their stalls out of the baseline.
alone=${ALONE:-300}
workload alone "$alone"
read -r n p50 p99 max < <(percentiles alone)
echo "    workload alone ($alone s): $n transactions, p50 $p50 ms, p99 $p99 ms, max $max ms"
psql "$DATABASE_URL" -c CHECKPOINT
# During the cleanup: the workload in 5-second slices for as long as the cleanup runs.
run_at old-logs-cleanup "$(date -u +%FT%TZ)" > "$work/cleanup.txt" &
cleanup=$!
slice=0
while kill -0 "$cleanup" 2> /dev/null; do
    workload "during$slice" 5
    slice=$((slice + 1))
done
wait "$cleanup"
cat "$work/cleanup.txt"
read -r n_d p50_d p99_d max_d < <(percentiles 'during*')
echo "    workload during cleanup ($((slice * 5)) s): $n_d transactions, p50 $p50_d ms, p99 $p99_d ms, max $max_d ms"
python3 -c "print(f'    p99 ratio during/alone: {$p99_d / $p99:.2f}')"
# Which part of the run costs the app: p99 of each 5-second slice, in order.
for ((i = 0; i < slice; i++)); do read -r _ _ p _ < <(percentiles "during$i"); printf '%s ' "$p"; done \
    | fold -w 100 -s | sed 's/^/    p99 by slice (ms): /'
echo
