#!/usr/bin/env bash
# Push benchmarks (see BENCHMARKS.md), on MESSAGES users with one token each:
#   (b) materialising an `all` campaign of every user into the outbox (`hattrick run scheduled-notifications`);
#   (a) the dispatcher (`hattrick serve`) sending those pushes to the fake FCM with 5 ms latency, against h2load
#       (Debian's nghttp2-client) posting the same message to the same fake in the same run.
# Usage: bench/push.sh [MESSAGES]   (default 1000000; needs a release build and PostgreSQL on 127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
db=hattrick_push_bench
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
bin=${HATTRICK_BIN:-target/release/hattrick}   # another build: HATTRICK_BIN=path
command -v h2load > /dev/null || { echo "bench/push.sh needs h2load: apt-get install nghttp2-client" >&2; exit 1; }
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
open_rows() { psql -At "$DATABASE_URL" -c "SELECT count(*) FROM push_outbox WHERE status IN ('pending', 'sending')"; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null; rm -rf "$work"' EXIT

psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
$bin migrate > /dev/null
echo "== $n users, one token each"
psql "$DATABASE_URL" <<SQL
INSERT INTO customer_users (id, email, timezone)
SELECT gen_random_uuid(), 'user' || n || '@example.com', 'UTC' FROM generate_series(1, $n) n;
INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id)
SELECT id, 'tok-' || id, 'android', 'phone' FROM customer_users;
VACUUM ANALYZE;
SQL

echo "== (b) materialising an 'all' campaign of $n users"
psql "$DATABASE_URL" -c "INSERT INTO scheduled_notifications (title_tr, title_en, body_tr, body_en, target_audience,
    scheduled_at) VALUES ('Büyük maç bu akşam!', 'Big match tonight!', 'Tahminini yap', 'Make your pick', 'all', now())"
/usr/bin/time -f "    elapsed %e s, peak RSS %M KB" $bin run scheduled-notifications --json | tr -s ' \n' ' ' \
    | grep -oE '"duration_ms": [0-9]+|"expanded": \{[^}]*\}'
echo "    outbox rows: $(open_rows)"

echo "== the fake FCM, 5 ms per message"
$bin fake-fcm --listen 127.0.0.1:0 --write-service-account "$work/key.json" --latency-ms 5 --accept-token bench \
    > "$work/fake.env" 2> /dev/null &
while ! grep -q TRANSPORT "$work/fake.env" 2> /dev/null; do sleep 0.1; done
set -a; . "$work/fake.env"; set +a
send_url="$HATTRICK_PUSH__FCM_ENDPOINT/v1/projects/hattrick-fake/messages:send"
printf '%s' '{"message":{"token":"tok-h2load","notification":{"title":"Big match tonight!","body":"Make your pick"},"data":{"type":"campaign","deepLink":"goalgpt://matches"},"android":{"priority":"HIGH","notification":{"channel_id":"default"}},"apns":{"payload":{"aps":{"sound":"default"}}}}}' > "$work/body.json"

echo "== (a) raw: h2load, 200,000 requests, 4 connections x 64 streams"
h2load -n 200000 -c 4 -m 64 -H 'authorization: Bearer bench' -H 'content-type: application/json' \
    -d "$work/body.json" "$send_url" | grep -E "^finished in|requests:|status codes:"

echo "== (a) hattrick serve dispatching the campaign"
start=$(date +%s.%N)
HATTRICK_PUSH__QUIET_HOURS_START=off $bin serve --listen 127.0.0.1:0 > /dev/null 2> "${SERVE_LOG:-$work/serve.log}" &
serve=$!
while [ "$(open_rows)" != 0 ]; do sleep 1; done
end=$(date +%s.%N)
kill -TERM $serve; wait $serve || true
sent=$(psql -At "$DATABASE_URL" -c "SELECT count(*) FROM push_outbox WHERE status = 'sent'")
awk -v n="$sent" -v s="$start" -v e="$end" \
    'BEGIN { printf "    %d rows sent in %.1f s: %.0f messages/s\n", n, e - s, n / (e - s) }'
psql "$admin" -c "DROP DATABASE $db WITH (FORCE)"
