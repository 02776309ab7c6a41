#!/usr/bin/env bash
# The first badge sweep of two hattrick binaries side by side (BENCHMARKS.md "One sweep to the fixed point"): each
# binary migrates and seeds a template of its own with the same population, then the binaries take turns, each on
# a fresh copy of its template, after a CHECKPOINT. Prints each run's duration, unlocks and first pass.
# Usage: bench/ab-sweep.sh OLD_BINARY NEW_BINARY [USERS] [ROUNDS]
#   e.g. git worktree add ../before <commit> && (cd ../before && cargo build --release)
#        bench/ab-sweep.sh ../before/target/release/hattrick target/release/hattrick 100000 2
# JOB=NAME runs that job's first run instead of the badge sweep (a referral tier: its first backlog).
# APP_RATE=N: while each sweep runs, pgbench plays the app's writes to the balance rows the sweep pays into, N
# transactions a second on 8 connections, each for a random user: half a login's streak (`customer_xp`), half a
# reward claimed through `hattrick_grant_credits` (`customer_credits`), for APP_SECONDS (default 120; longer than
# the sweep, which the script checks). Each run then prints the time in the server (pgbench's latency less its
# schedule lag) of the app's transactions that ended during the sweep, at p50, p99, p99.9 and max, and how many
# took over 100 and 500 ms: how long the app waited on the rows the sweep held (BENCHMARKS.md "The app's rows
# locked last").
# Needs PostgreSQL on 127.0.0.1:5432, psql and python3 (and pgbench with APP_RATE). The templates are kept for
# further rounds.
set -euo pipefail
old=$1; new=$2; users=${3:-100000}; rounds=${4:-2}; job=${JOB:-badge-auto-unlock}
server=postgres://postgres@127.0.0.1:5432
export HATTRICK_JOBS__BADGE_AUTO_UNLOCK__TIMEOUT=2h
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT
cat > "$work/app.sql" <<'SQL'
\set n random(1, :users)
\if random(0, 1) = 0
UPDATE customer_xp SET current_streak_days = current_streak_days + 1, updated_at = now()
WHERE customer_user_id = (SELECT id FROM ab_app_users WHERE n = :n);
\else
SELECT hattrick_grant_credits((SELECT id FROM ab_app_users WHERE n = :n), 10, 'daily_reward',
                              'ab-app:' || gen_random_uuid(), NULL, '{}', now());
\endif
SQL
declare -A bins=([old]=$old [new]=$new)
for v in old new; do
    template=ab_sweep_${v}_$users
    if ! psql -tA "$server/postgres" -c "SELECT 1 FROM pg_database WHERE datname = '$template'" | grep -q 1; then
        psql "$server/postgres" -c "CREATE DATABASE $template"
        DATABASE_URL=$server/$template "${bins[$v]}" migrate > /dev/null
        DATABASE_URL=$server/$template "${bins[$v]}" seed --users "$users" --seed 1 > /dev/null
    fi
done
for _ in $(seq "$rounds"); do
    for v in old new; do
        run=ab_sweep_run
        psql "$server/postgres" -c "DROP DATABASE IF EXISTS $run WITH (FORCE)" \
            -c "CREATE DATABASE $run TEMPLATE ab_sweep_${v}_$users" 2>/dev/null
        if [ -n "${APP_RATE:-}" ]; then
            psql "$server/$run" -c "CREATE TABLE ab_app_users AS
                                        SELECT row_number() OVER (ORDER BY id) AS n, id FROM customer_users" \
                -c "ALTER TABLE ab_app_users ADD PRIMARY KEY (n)" -c "VACUUM ANALYZE ab_app_users"
            app_users=$(psql -tA "$server/$run" -c "SELECT count(*) FROM ab_app_users")
        fi
        psql "$server/$run" -c "CHECKPOINT"
        if [ -n "${APP_RATE:-}" ]; then
            rm -f "$work"/app.[0-9]*
            pgbench -n -c 8 -j 2 -R "$APP_RATE" -T "${APP_SECONDS:-120}" -D users="$app_users" -f "$work/app.sql" \
                -l --log-prefix="$work/app" "$server/$run" > "$work/pgbench.out" 2>&1 &
            app=$!
            sleep 2
        fi
        start=$(date +%s.%N)
        DATABASE_URL=$server/$run "${bins[$v]}" run "$job" --json | JOB=$job V=$v python3 -c '
import json, os, sys
r = json.load(sys.stdin)
passes = r["details"].get("passes")
first = "%d ms, %d unlocks" % (passes[0]["ms"], passes[0]["unlocks"]) if passes else "the whole run"
items = "unlocks" if os.environ["JOB"] == "badge-auto-unlock" else "items"
print("%s: run %d ms, %d %s; first pass %s" % (os.environ["V"], r["duration_ms"], r["items"], items, first))'
        end=$(date +%s.%N)
        if [ -n "${APP_RATE:-}" ]; then
            # pgbench writes its logs as it goes and completes them only when it ends by itself.
            wait "$app" || { cat "$work/pgbench.out" >&2; exit 1; }
            awk -v start="$start" -v end="$end" 'END { if ($5 + $6 / 1e6 < end) exit 1 }' "$work"/app.[0-9]* ||
                { echo "APP_SECONDS=${APP_SECONDS:-120} ends before the sweep: raise it" >&2; exit 1; }
            cat "$work"/app.[0-9]* | awk -v start="$start" -v end="$end" \
                '$5 + $6 / 1e6 >= start && $5 + $6 / 1e6 <= end { print ($3 - $7) / 1000 }' | sort -n | python3 -c '
import sys
ms = [float(line) for line in sys.stdin]
pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print("   the app during it: %d transactions, in the server p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms;"
      " %d over 100 ms, %d over 500 ms" % (len(ms), pick(0.5), pick(0.99), pick(0.999), ms[-1],
                                          sum(m > 100 for m in ms), sum(m > 500 for m in ms)))'
        fi
    done
done
psql "$server/postgres" -c "DROP DATABASE IF EXISTS ab_sweep_run WITH (FORCE)"
