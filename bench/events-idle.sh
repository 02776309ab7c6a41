#!/usr/bin/env bash
# What the event lane's looks cost while the app writes nothing (see BENCHMARKS.md): for each poll interval, an idle
# `hattrick serve --roles scheduler` (events on, every job's schedule moved out of the window) runs for SECONDS
# seconds, and the script counts the CPU its own process used and the CPU of the database backends serving it, from
# /proc, and the looks it made (the calls of its look statement, from pg_stat_statements when it is loaded).
# Needs a release build and PostgreSQL on 127.0.0.1:5432, on this host (the backends' /proc entries are read).
# Usage: bench/events-idle.sh [SECONDS] [INTERVALS]     e.g. bench/events-idle.sh 60 "100ms 5s"
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
intervals=${2:-"100ms 5s"}
db=hattrick_events_idle
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
bin=${HATTRICK_BIN:-target/release/hattrick}   # another build: HATTRICK_BIN=path
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT
ticks=$(getconf CLK_TCK)

psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
$bin migrate > /dev/null
statements=$(psql -At "$DATABASE_URL" -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")
if [ "$statements" = 0 ]; then
    psql "$DATABASE_URL" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" 2> /dev/null || true
fi
can_count() { psql -At "$DATABASE_URL" -c "SELECT count(*) FROM pg_stat_statements" > /dev/null 2>&1; }

# CPU seconds (user + system) of the processes in $@.
cpu() {
    local total=0 pid fields
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        # Fields 14 and 15 (utime, stime), counted after the command name, which may hold spaces.
        fields=$(sed 's/^.*) //' "/proc/$pid/stat")
        total=$((total + $(echo "$fields" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}
backends() {
    psql -At "$DATABASE_URL" -c "SELECT pid FROM pg_stat_activity
                                 WHERE datname = current_database() AND application_name LIKE 'hattrick%'"
}

# Every job's schedule out of the window: what remains is the scheduler's own pass and the event lane's looks.
off=()
for job in $($bin jobs --json | python3 -c 'import json, sys; print(" ".join(j["name"] for j in json.load(sys.stdin)))'); do
    key=$(echo "$job" | tr 'a-z-' 'A-Z_')
    off+=("HATTRICK_JOBS__${key}__SCHEDULE=0 3 1 1 *")
done

printf "   %-10s %12s %14s %16s %8s\n" interval "hattrick CPU" "its backends" "looks" "per look"
for interval in $intervals; do
    env "${off[@]}" HATTRICK_EVENTS__POLL_INTERVAL="$interval" HATTRICK_PUSH__QUIET_HOURS_START=off \
        $bin serve --roles scheduler --listen 127.0.0.1:0 2> "$work/serve-$interval.log" &
    serve=$!
    sleep 5   # started, pool connections open
    # The statements counted from here, as the CPU is: the window's looks only.
    can_count && psql -At "$DATABASE_URL" -c "SELECT pg_stat_statements_reset()" > /dev/null
    pids=$(backends)
    # shellcheck disable=SC2086
    before_app=$(cpu $serve) before_db=$(cpu $pids)
    sleep "$secs"
    # shellcheck disable=SC2086
    after_app=$(cpu $serve) after_db=$(cpu $(backends))
    kill -TERM $serve; wait $serve || true
    looks=- per=-
    if can_count; then
        read -r looks per < <(psql -At -F ' ' "$DATABASE_URL" -c "
            SELECT calls, round((total_exec_time / greatest(calls, 1) * 1000)::numeric) || ' us'
            FROM pg_stat_statements WHERE query LIKE '%FROM unnest(%hattrick_changes%' ORDER BY calls DESC LIMIT 1")
        looks=${looks:--} per=${per:--}
    fi
    awk -v i="$interval" -v a=$((after_app - before_app)) -v d=$((after_db - before_db)) -v t="$ticks" -v s="$secs" \
        -v l="$looks" -v p="$per" 'BEGIN {
        printf "   %-10s %10.2f %% %12.2f %% %16s %8s\n", i, a / t / s * 100, d / t / s * 100, l, p }'
done
psql "$admin" -c "DROP DATABASE $db WITH (FORCE)"
