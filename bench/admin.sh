#!/usr/bin/env bash
# Admin API under load (see BENCHMARKS.md): wrk against GET /admin/jobs and a 30-day partner analytics range,
#   (1) with only the api role running (baseline), then
#   (2) while the same instance's dispatcher sends a MESSAGES-user campaign to the fake FCM (5 ms per message).
# The database holds 200 partners with a year of analytics and 20,000 runs of history per job.
# Usage: bench/admin.sh [MESSAGES] [SECONDS]   (default 1000000 and 30; needs a release build, wrk, PostgreSQL
# on 127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
secs=${2:-30}
db=hattrick_admin_bench
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
export HATTRICK_ADMIN_TOKEN=bench-admin-token-0123456789
bin=target/release/hattrick
port=18099
command -v wrk > /dev/null || { echo "bench/admin.sh needs wrk: apt-get install wrk" >&2; exit 1; }
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
open_rows() { psql -At "$DATABASE_URL" -c "SELECT count(*) FROM push_outbox WHERE status IN ('pending', 'sending')"; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT

psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
$bin migrate > /dev/null
echo "== $n users with one token each, 200 partners x 365 days of analytics, 11 jobs x 20,000 runs"
psql "$DATABASE_URL" <<SQL
INSERT INTO customer_users (id, email, timezone)
SELECT gen_random_uuid(), 'user' || n || '@example.com', 'UTC' FROM generate_series(1, $n) n;
INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id)
SELECT id, 'tok-' || id, 'android', 'phone' FROM customer_users;
INSERT INTO partners (customer_user_id, business_name, email, phone, status, referral_code)
SELECT id, 'Partner ' || row_number() OVER (), 'p@example.com', '555', 'approved', 'P' || row_number() OVER ()
FROM (SELECT id FROM customer_users LIMIT 200) u;
INSERT INTO partner_analytics (partner_id, date, new_signups, new_subscriptions, revenue, commission,
                               active_subscribers, churn_count)
SELECT p.id, d::date, (random() * 20)::int, (random() * 5)::int, round((random() * 500)::numeric, 2),
       round((random() * 100)::numeric, 2), (random() * 300)::int, (random() * 3)::int
FROM partners p CROSS JOIN generate_series(current_date - 365, current_date - 1, '1 day') d;
VACUUM ANALYZE;
SQL
# Jobs are registered by any command that loads the registry; then a history for each.
$bin jobs > /dev/null
psql "$DATABASE_URL" <<'SQL'
INSERT INTO job_execution_logs (job_name, scheduled_for, started_at, completed_at, status, trigger, attempt,
                                duration_ms, items_processed, details)
SELECT j.name, now() - g * interval '5 minutes', now() - g * interval '5 minutes',
       now() - g * interval '5 minutes' + interval '2 seconds', 'success', 'schedule', 1,
       (random() * 4000)::int, (random() * 1000)::int, '{"bench": true}'
FROM hattrick_jobs j CROSS JOIN generate_series(1, 20000) g;
VACUUM ANALYZE job_execution_logs;
SQL

echo "== the fake FCM, 5 ms per message"
$bin fake-fcm --listen 127.0.0.1:0 --write-service-account "$work/key.json" --latency-ms 5 > "$work/fake.env" 2> /dev/null &
while ! grep -q TRANSPORT "$work/fake.env" 2> /dev/null; do sleep 0.1; done
set -a; . "$work/fake.env"; set +a
export HATTRICK_PUSH__QUIET_HOURS_START=off

to=$(date -u -d yesterday +%F)
from=$(date -u -d '30 days ago' +%F)
jobs_url="http://127.0.0.1:$port/admin/jobs"
partners_url="http://127.0.0.1:$port/admin/partners/analytics?from=$from&to=$to"
load() { # label url
    printf '   %-34s' "$1"
    wrk -t 2 -c 16 -d "${secs}s" --latency -H "Authorization: Bearer $HATTRICK_ADMIN_TOKEN" "$2" > "$work/wrk.out"
    awk '/Requests\/sec/ { rps = $2 } / 50%/ { p50 = $2 } / 99%/ { p99 = $2 } /Non-2xx/ { bad = $NF }
         END { printf "%8.0f req/s   p50 %-8s p99 %-8s non-2xx %s\n", rps, p50, p99, bad + 0 }' "$work/wrk.out"
}
wait_up() { while ! curl -sf "http://127.0.0.1:$port/readyz" > /dev/null; do sleep 0.2; done; }

echo "== (1) baseline: api role only, nothing dispatching"
$bin serve --roles api --listen 127.0.0.1:$port 2> "$work/serve-api.log" &
serve=$!
wait_up
load "GET /admin/jobs" "$jobs_url"
load "GET /admin/partners/analytics (30 d)" "$partners_url"
kill -TERM $serve; wait $serve || true

echo "== (2) while dispatching a campaign to $n users"
psql "$DATABASE_URL" -c "INSERT INTO scheduled_notifications (title_tr, title_en, body_tr, body_en, target_audience,
    scheduled_at) VALUES ('Büyük maç bu akşam!', 'Big match tonight!', 'Tahminini yap', 'Make your pick', 'all', now())"
$bin run scheduled-notifications > /dev/null
echo "   outbox rows: $(open_rows)"
start=$(date +%s.%N)
$bin serve --roles dispatcher,api --listen 127.0.0.1:$port 2> "$work/serve-dispatch.log" &
serve=$!
wait_up
load "GET /admin/jobs" "$jobs_url"
load "GET /admin/partners/analytics (30 d)" "$partners_url"
left=$(open_rows)
end=$(date +%s.%N)
awk -v n="$n" -v left="$left" -v s="$start" -v e="$end" \
    'BEGIN { printf "   dispatcher meanwhile: %d messages in %.0f s (%.0f/s), %d still open\n", n - left, e - s, (n - left) / (e - s), left }'
kill -TERM $serve; wait $serve || true
psql "$admin" -c "DROP DATABASE $db WITH (FORCE)"
