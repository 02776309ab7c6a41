#!/usr/bin/env bash
# Event latency and trigger cost (see BENCHMARKS.md), on USERS users (default 1,000,000):
#   a load generator (pgbench, as the app) inserts RATE comments per second for SECONDS seconds, each by a random
#   user, against a badge that the first comment unlocks;
#   (1) without the change-capture triggers and without hattrick: the app's insert latency alone (baseline);
#   (1b) with the triggers, without hattrick: what the triggers alone cost the app;
#   (2) with the triggers and `hattrick serve` (scheduler role, events on): the app's insert latency, and the
#       latency from each comment's commit to its badge row.
# Needs a release build, pgbench (postgresql-contrib) and PostgreSQL on 127.0.0.1:5432.
# Usage: bench/events.sh [USERS] [RATE] [SECONDS]
# PIN=1 pins PostgreSQL (every process of the local server) and pgbench to CPU 0 and hattrick to CPU 1 for all
# three phases (util-linux taskset; run as the server's owner or root): the database gets a core hattrick's own
# process never takes, as when hattrick runs on another host; its queries still run on the database's core.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-1000000}
rate=${2:-200}
secs=${3:-60}
db=hattrick_events_bench
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
bin=${HATTRICK_BIN:-target/release/hattrick}   # another build: HATTRICK_BIN=path
pin_db=() pin_app=()
if [ "${PIN:-0}" = 1 ]; then
    for pid in $(pgrep -x postgres); do taskset -pc 0 "$pid" > /dev/null; done
    pin_db=(taskset -c 0) pin_app=(taskset -c 1)
    echo "== pinned: PostgreSQL and pgbench on CPU 0, hattrick on CPU 1"
fi
unpin() { [ "${PIN:-0}" = 1 ] && for pid in $(pgrep -x postgres); do taskset -pc 0-$(($(nproc) - 1)) "$pid" > /dev/null; done; true; }
command -v pgbench > /dev/null || { echo "bench/events.sh needs pgbench (apt-get install postgresql-contrib)" >&2; exit 1; }
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"; unpin' EXIT

psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
HATTRICK_EVENTS__ENABLED=false $bin migrate > /dev/null
echo "== $users users; a badge for the first comment"
psql "$DATABASE_URL" <<SQL
INSERT INTO customer_users (id, email, timezone)
SELECT gen_random_uuid(), 'fan' || n || '@example.com', 'Europe/Istanbul' FROM generate_series(1, $users) n;
CREATE TABLE bench_users (n int PRIMARY KEY, id uuid NOT NULL);
INSERT INTO bench_users SELECT row_number() OVER (), id FROM customer_users;
INSERT INTO badges (slug, name_tr, name_en, icon_url, category, unlock_condition, reward_xp, reward_credits)
VALUES ('first-words', 'İlk Söz', 'First Words', 'https://example.com/b.png', 'social',
        '{"type": "comments", "count": 1}', 10, 1);
VACUUM ANALYZE;
SQL
cat > "$work/comment.sql" <<SQL
\set n random(1, $users)
INSERT INTO match_comments (match_id, customer_user_id, content) SELECT 1, id, 'what a match' FROM bench_users WHERE n = :n;
SQL
generate() { # label
    "${pin_db[@]}" pgbench -n -c 4 -j 2 -R "$rate" -T "$secs" -f "$work/comment.sql" -l --log-prefix="$work/$1" "$DATABASE_URL" \
        > "$work/$1.out" 2>&1
    # Per-transaction log: client, tx, latency (us), ...
    cat "$work/$1".* | awk '{ print $3 / 1000 }' | sort -n > "$work/$1.ms"
    awk -v label="$1" '{ v[NR] = $1 } END {
        printf "   %-28s %6d inserts   p50 %.2f ms   p99 %.2f ms   max %.2f ms\n", label, NR, v[int(NR * 0.5)], v[int(NR * 0.99)], v[NR] }' \
        "$work/$1.ms"
}

echo "== (1) baseline: no triggers, no hattrick; $rate comments/s for $secs s"
generate baseline

echo "== (1b) triggers on, hattrick not running: the triggers' own cost; $rate comments/s for $secs s"
$bin migrate > /dev/null
psql "$DATABASE_URL" -c "TRUNCATE match_comments, hattrick_changes CASCADE" -c "VACUUM ANALYZE match_comments"
generate triggers

echo "== (2) triggers on, hattrick serve with events; $rate comments/s for $secs s"
psql "$DATABASE_URL" -c "TRUNCATE match_comments, hattrick_changes CASCADE" -c "VACUUM ANALYZE match_comments"
# The 5-minute sweep is moved out of the window, so the figures are the event path's alone. The lane looks at the
# change table every events.poll_interval (docs/events.md).
HATTRICK_JOBS__BADGE_AUTO_UNLOCK__SCHEDULE="0 3 1 1 *" HATTRICK_PUSH__QUIET_HOURS_START=off \
    "${pin_app[@]}" $bin serve --roles scheduler --listen 127.0.0.1:0 2> "$work/serve.log" &
serve=$!
sleep 3
generate events
# Let the last events settle.
for _ in $(seq 1 30); do
    left=$(psql -At "$DATABASE_URL" -c "SELECT count(*) FROM hattrick_changes")
    [ "$left" = 0 ] && break
    sleep 1
done
kill -TERM $serve; wait $serve || true

echo "== latency from a user's first comment (its commit) to the badge row (its insert, uuid7 time)"
psql -At "$DATABASE_URL" > "$work/latency.txt" <<'SQL'
WITH first AS (SELECT customer_user_id, min(created_at) AS at FROM match_comments GROUP BY customer_user_id),
badge AS (SELECT customer_user_id,
                 to_timestamp(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0) AS at
          FROM customer_badges)
SELECT count(*), count(b.customer_user_id),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM b.at - f.at))::numeric * 1000),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM b.at - f.at))::numeric * 1000),
       round(max(extract(epoch FROM b.at - f.at))::numeric * 1000)
FROM first f LEFT JOIN badge b USING (customer_user_id);
SQL
IFS='|' read -r commenters unlocked p50 p99 max < "$work/latency.txt"
echo "   $commenters users commented, $unlocked badges: p50 ${p50} ms, p99 ${p99} ms, max ${max} ms"
runs=$(psql -At "$DATABASE_URL" -c "SELECT count(*) || ' event runs, ' || round(avg(duration_ms)) || ' ms each on average'
                                   FROM job_execution_logs WHERE trigger = 'event'")
echo "   $runs"
# What else ran while the comments came: the slowest reactions, and the scheduled runs beside them.
echo "   the 5 slowest reactions (comment time, ms), and the scheduled runs that overlapped the window:"
psql -At "$DATABASE_URL" <<'SQL' | sed 's/^/     /'
WITH first AS (SELECT customer_user_id, min(created_at) AS at FROM match_comments GROUP BY customer_user_id),
badge AS (SELECT customer_user_id,
                 to_timestamp(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0) AS at
          FROM customer_badges)
(SELECT 'slow reaction ' || to_char(f.at, 'HH24:MI:SS.MS') || ' ' || round(extract(epoch FROM b.at - f.at) * 1000)
 FROM first f JOIN badge b USING (customer_user_id) ORDER BY b.at - f.at DESC LIMIT 5)
UNION ALL
(SELECT 'first event run ' || to_char(started_at, 'HH24:MI:SS.MS') || ' ' || duration_ms || ' ms, ' || items_processed
        || ' items, passes ' || coalesce(details -> 'passes', 'null')::text
 FROM job_execution_logs WHERE trigger = 'event' ORDER BY started_at LIMIT 3)
UNION ALL
(SELECT 'run ' || job_name || ' ' || to_char(started_at, 'HH24:MI:SS.MS') || ' ' || duration_ms || ' ms'
 FROM job_execution_logs
 WHERE trigger IS DISTINCT FROM 'event' AND status <> 'skipped'
   AND started_at BETWEEN (SELECT min(created_at) FROM match_comments) AND (SELECT max(created_at) FROM match_comments)
 ORDER BY started_at);
SQL
p99() { awk '{ v[NR] = $1 } END { print v[int(NR * 0.99)] }' "$work/$1.ms"; }
awk -v b="$(p99 baseline)" -v t="$(p99 triggers)" -v e="$(p99 events)" 'BEGIN {
    printf "   app insert p99, triggers alone / baseline: %.2f; triggers and hattrick serving / baseline: %.2f\n", t / b, e / b }'
psql "$admin" -c "DROP DATABASE $db WITH (FORCE)"
