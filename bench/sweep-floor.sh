#!/usr/bin/env bash
# A first badge sweep against its floor (BENCHMARKS.md "Unlocks at the cost of their rows"), on USERS seeded users
# (default 100,000):
#   (1) hattrick's first sweep (`run badge-auto-unlock`, cascades included) on a fresh copy of a seeded template;
#   (2) on another fresh copy, the statistics of a first pass alone (bench/badge-floor.sql), then the same rows
#       the sweep wrote, written by plain set-based SQL in one transaction per chunk (bench/badge-sweep-floor.sql).
# Prints each side's time, WAL (pg_stat_wal) and rows written, the time per unlock and the ratio. When
# pg_stat_statements is loaded (shared_preload_libraries; BENCHMARKS.md says how), also the sweep's statements
# by total time.
# AT_ONCE=N grants N chunks at once on both sides: the sweep with jobs.badge-auto-unlock.chunks_at_once = N, the
# floor with N sessions calling its chunks (session k the chunks k, k+N, ...); the floor's time is then the wall
# time of the sessions together.
# Usage: [AT_ONCE=N] bench/sweep-floor.sh [USERS]   (needs a release build or HATTRICK_BIN, PostgreSQL on
# 127.0.0.1:5432)
# The template (sweep_floor_tpl_USERS) is kept for further runs; drop it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-100000}
bin=${HATTRICK_BIN:-target/release/hattrick}
server=postgres://postgres@127.0.0.1:5432
template=sweep_floor_tpl_$users
at_once=${AT_ONCE:-1}
export HATTRICK_JOBS__BADGE_AUTO_UNLOCK__TIMEOUT=4h HATTRICK_EVENTS__ENABLED=false
export HATTRICK_JOBS__BADGE_AUTO_UNLOCK__CHUNKS_AT_ONCE=$at_once
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! psql -tA "$server/postgres" -c "SELECT 1 FROM pg_database WHERE datname = '$template'" | grep -q 1; then
    psql "$server/postgres" -c "CREATE DATABASE $template"
    DATABASE_URL=$server/$template "$bin" migrate > /dev/null
    DATABASE_URL=$server/$template "$bin" seed --users "$users" --seed 1 > /dev/null
fi
fresh() { # database
    psql "$server/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1 TEMPLATE $template"
    psql "$server/$1" -c "VACUUM ANALYZE" -c "CHECKPOINT"
}
statements=$(psql -tA "$server/postgres" -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")
[ "$(psql -tA "$server/postgres" -c "SHOW shared_preload_libraries")" = pg_stat_statements ] || statements=0
reset() { # database: zero the WAL counters (and the statements' when available)
    psql "$server/$1" -c "SELECT pg_stat_reset_shared('wal')" > /dev/null
    [ "$statements" = 1 ] && psql "$server/postgres" -c "SELECT pg_stat_statements_reset()" > /dev/null
    true
}
wal() { psql -tA "$server/$1" -c "SELECT pg_size_pretty(wal_bytes) || ' WAL, ' || wal_fpi || ' full pages' FROM pg_stat_wal"; }
top() { # database: its statements by total time, when pg_stat_statements is loaded
    [ "$statements" = 1 ] || return 0
    echo "   statements by total time (seconds, calls, rows, WAL, statement):"
    psql -tA -F ' | ' "$server/postgres" -c "SELECT round((s.total_exec_time / 1000)::numeric, 2), s.calls, s.rows,
        pg_size_pretty(s.wal_bytes), left(regexp_replace(s.query, '\s+', ' ', 'g'), 100)
        FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
        WHERE d.datname = '$1' AND s.query NOT LIKE 'CALL %' ORDER BY s.total_exec_time DESC LIMIT 14" | sed 's/^/     /'
}
rows() { # database: the rows a sweep writes
    psql -tA -F ' ' "$server/$1" -c "SELECT 'badges', count(*) FROM customer_badges WHERE unlocked_at >= '$2'
        UNION ALL SELECT 'xp rows', count(*) FROM customer_xp_transactions WHERE created_at >= '$2'
        UNION ALL SELECT 'credit rows', count(*) FROM customer_credit_transactions WHERE created_at >= '$2'
        UNION ALL SELECT 'pushes', count(*) FROM push_outbox WHERE created_at >= '$2'
        UNION ALL SELECT 'vip', count(*) FROM customer_subscriptions WHERE created_at >= '$2'" | paste -sd ' '
}

echo "== (1) hattrick's first sweep, $users users, $at_once chunk(s) at once"
fresh sweep_floor_run
start=$(psql -tA "$server/sweep_floor_run" -c "SELECT now()")
reset sweep_floor_run
DATABASE_URL=$server/sweep_floor_run /usr/bin/time -f "%e %M" -o "$work/time" "$bin" run badge-auto-unlock --json \
    > "$work/report.json"
read -r secs rss < "$work/time"
unlocks=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["items"])' < "$work/report.json")
echo "   $secs s, peak RSS $rss KB, $unlocks unlocks, $(wal sweep_floor_run)"
echo "   rows: $(rows sweep_floor_run "$start")"
python3 -c 'import json, sys; r = json.load(sys.stdin)["details"]; print("   passes:", r["passes"])' < "$work/report.json"
top sweep_floor_run
psql "$server/sweep_floor_run" -c "\\copy (SELECT customer_user_id, badge_id FROM customer_badges
    WHERE unlocked_at >= '$start') TO '$work/unlocks'"
psql "$server/postgres" -c "DROP DATABASE sweep_floor_run WITH (FORCE)"

echo "== (2) the floor, on a fresh copy"
fresh sweep_floor_floor
stats=$(psql "$server/sweep_floor_floor" -f bench/badge-floor.sql | sed -nE 's/.*Execution Time: ([0-9.]+) ms.*/\1/p')
echo "   the statistics of one pass (bench/badge-floor.sql): $(awk -v ms="$stats" 'BEGIN { printf "%.2f s", ms / 1000 }')"
psql "$server/sweep_floor_floor" -c "CREATE TABLE floor_unlocks (customer_user_id uuid, badge_id uuid)" \
    -c "\\copy floor_unlocks FROM '$work/unlocks'"
start=$(psql -tA "$server/sweep_floor_floor" -c "SELECT now()")
reset sweep_floor_floor
# The procedure's statements are counted one by one (pg_stat_statements.track = all); the session is named as
# hattrick's are, so the change-capture triggers skip its writes as they skip hattrick's.
psql "$server/sweep_floor_floor" -f bench/badge-sweep-floor.sql
last=$(psql -tA "$server/sweep_floor_floor" -c "SELECT max(chunk) FROM floor_chunks")
began=$(date +%s.%N)
sessions=()
for ((k = 0; k < at_once; k++)); do
    echo "SELECT format('CALL floor_chunk(%s)', n) FROM generate_series($k, $last, $at_once) n \\gexec" |
        PGAPPNAME=hattrick-floor PGOPTIONS="-c pg_stat_statements.track=all -c client_min_messages=warning" \
        psql "$server/sweep_floor_floor" &
    sessions+=($!)
done
for session in "${sessions[@]}"; do wait "$session"; done
writes=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
echo "   the writes ($at_once session(s) at once): $writes s, $(wal sweep_floor_floor)"
echo "   rows: $(rows sweep_floor_floor "$start")"
top sweep_floor_floor
psql "$server/postgres" -c "DROP DATABASE sweep_floor_floor WITH (FORCE)"

awk -v s="$secs" -v w="$writes" -v st="$stats" -v n="$unlocks" 'BEGIN {
    f = w + st / 1000
    printf "== sweep %.1f s = %.1f us per unlock; floor %.1f s (writes %.1f s + statistics %.1f s) = %.1f us per unlock; ratio %.2fx\n",
        s, s * 1e6 / n, f, w, st / 1000, f * 1e6 / n, s / f }'
