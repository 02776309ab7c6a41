#!/usr/bin/env bash
# Every job at each population size (BENCHMARKS.md "The curves"): for each USERS given, seeds a fresh database
# (`hattrick seed --seed 1`), then runs every job once at the business time it is meant for, as a scheduler would
# on the first day, and records its time, peak RSS and the database rows it touched (pg_stat_database: rows
# inserted, updated and deleted; rows read) as one CSV line per job in OUT (default docs/curves.csv; lines of the
# same size are replaced). bench/curves.py draws the file.
# Usage: bench/curves.sh USERS...   e.g. bench/curves.sh 100000 1000000 3000000
# Needs a release build (or HATTRICK_BIN), PostgreSQL on 127.0.0.1:5432 and python3. A million users takes about
# 20 minutes, most of it the first badge sweep; the database of the last size is kept for bench/replay.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${HATTRICK_BIN:-target/release/hattrick}
out=${OUT:-docs/curves.csv}
admin=postgres://postgres@127.0.0.1:5432/postgres
export HATTRICK_EVENTS__ENABLED=false HATTRICK_PUSH__QUIET_HOURS_START=off
# The housekeeping jobs' rest by WAL (`cleanup.wal_mb_per_second`) is a deployment's choice of pace, not work: the
# curves measure the work, as they did before the cap existed.
export HATTRICK_CLEANUP__WAL_MB_PER_SECOND=0
for job in badge-auto-unlock scheduled-notifications old-logs-cleanup partner-analytics dead-token-cleanup; do
    export "HATTRICK_JOBS__$(tr 'a-z-' 'A-Z_' <<<"$job")__TIMEOUT=4h"
done
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -f "$out" ] || echo "users,job,seconds,peak_rss_kb,rows_written,rows_read,items" > "$out"
today=$(date -u +%F)
tomorrow=$(date -u -d "$today + 1 day" +%F)

counters() { # the database's row counters, flushed by the job's connections as they closed
    psql -tA -F ' ' "$admin" -c "SELECT tup_inserted + tup_updated + tup_deleted, tup_returned + tup_fetched
                                FROM pg_stat_database WHERE datname = '$db'"
}
measure() { # label users job [args...]: runs the job, appends its line
    local label=$1 users=$2 job=$3
    shift 3
    sleep 1 # the previous statement's counters reach pg_stat_database
    read -r written0 read0 < <(counters)
    /usr/bin/time -f "%e %M" -o "$work/time" "$bin" run "$job" --force --json "$@" > "$work/report.json"
    sleep 1
    read -r written1 read1 < <(counters)
    read -r secs rss < "$work/time"
    items=$(python3 -c 'import json, sys; print(json.load(sys.stdin).get("items") or 0)' < "$work/report.json")
    echo "$users,$label,$secs,$rss,$((written1 - written0)),$((read1 - read0)),$items" | tee -a "$out"
}

for users in "$@"; do
    db=hattrick_curves_$users
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
    grep -v "^$users," "$out" > "$work/kept" || true
    cp "$work/kept" "$out"
    psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    "$bin" migrate > /dev/null
    /usr/bin/time -f "%e %M" -o "$work/time" "$bin" seed --users "$users" --seed 1 > /dev/null
    read -r secs rss < "$work/time"
    echo "$users,seed,$secs,$rss,,,$users" | tee -a "$out"
    psql "$DATABASE_URL" -c "VACUUM ANALYZE" -c CHECKPOINT
    measure "badge-auto-unlock (first sweep)" "$users" badge-auto-unlock
    measure "badge-auto-unlock (steady)" "$users" badge-auto-unlock
    measure referral-tier2 "$users" referral-tier2
    measure referral-tier3 "$users" referral-tier3
    psql "$DATABASE_URL" -c "INSERT INTO scheduled_notifications (title_tr, title_en, body_tr, body_en,
        target_audience, scheduled_at) VALUES ('Büyük maç bu akşam!', 'Big match tonight!', 'Tahminini yap',
        'Make your pick', 'all', now())"
    measure "scheduled-notifications (campaign to all)" "$users" scheduled-notifications
    measure daily-reward-reminders "$users" daily-reward-reminders --at "${today}T17:00:00Z"
    measure streak-break-warnings "$users" streak-break-warnings --at "${today}T19:00:00Z"
    measure streak-reset "$users" streak-reset --at "${today}T21:01:00Z"
    measure partner-analytics "$users" partner-analytics --at "${today}T21:05:00Z"
    measure subscription-expiry-alerts "$users" subscription-expiry-alerts --at "${tomorrow}T07:00:00Z"
    measure dead-token-cleanup "$users" dead-token-cleanup
    measure old-logs-cleanup "$users" old-logs-cleanup
    [ "$users" = "${*: -1}" ] || psql "$admin" -c "DROP DATABASE $db WITH (FORCE)"
done
