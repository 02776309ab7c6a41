#!/usr/bin/env bash
# App traffic against a seeded population at a fixed rate, with and without hattrick (BENCHMARKS.md "The curves"):
# what hattrick costs a running app and how fast it reacts. pgbench plays the app (bench/app.sql): RATE transactions
# per second on 4 connections, each one of the demo simulator's actions for a random user, in its proportions (a login
# with its streak, a comment, a prediction settled, a daily reward claimed through hattrick_grant_credits, and now and
# then a friend signing up with a referral code or a subscription sold). Comments come from users who never commented,
# so each one's first comment in the replay earns the seeded `first_comment` badge: reaction latency is the time from
# that comment's commit to the badge row. A phase counts only the first comments made in it: a user who commented in
# an earlier phase has the badge already (about 5 % of a 20-minute phase's commenters per phase before it, at a
# million users).
# Three phases of MINUTES minutes each, one after the other on the same database:
#   (1) the app alone: no change-capture triggers, no hattrick;
#   (2) `hattrick serve` (scheduler and dispatcher, pushes to a fake FCM), events off: the scheduled jobs only;
#   (3) the same with events on (triggers installed, event runs).
# Per phase: the app's latency p50/p99, hattrick's CPU (share of one core), the rest of the machine's busy CPU
# (PostgreSQL, less pgbench's own) and what it adds over phase 1, and the reaction latency p50/p99.
# Usage: bench/replay.sh [USERS] [MINUTES] [RATE]   (defaults 1000000 60 100); MINUTES is one length for every phase
# or one per phase run, in order ("20 60" with PHASES="1 3": the app alone for 20 minutes, then events on for 60).
# PHASES: the phases to run, in order (default "1 2 3"; "3" runs the events-on phase alone). STATEMENTS=N: after
# the last phase, its N statements that took the server longest (pg_stat_statements must be loaded, with
# `pg_stat_statements.track_planning = on` for planning times). KEEP=DIR (a new or empty directory) keeps the run's
# files there: pgbench's per-transaction logs (appN.*: client, transaction, latency in µs, ..., epoch second; to
# look at a part of a phase, `bench/replay-minutes.py DIR N` reads them minute by minute), and hattrick's log of
# each phase (serveN.log); N is the phase's place in PHASES, counted from 1.
# Uses the database bench/curves.sh left for USERS (hattrick_curves_USERS) when there is one, after marking its
# pending pushes sent; else seeds hattrick_replay_USERS. Needs a release build (or HATTRICK_BIN), pgbench,
# python3 and PostgreSQL on 127.0.0.1:5432. Run on an otherwise idle machine: CPU is measured machine-wide.
# HATTRICK_BINS="A B ...": one binary per phase, in order, to compare two builds on the same database taking turns
# (PHASES="1 3 3 3 3" HATTRICK_BINS="old new old new old"; the first also seeds); each phase's `migrate` installs
# its own build's triggers, and the phase's label names its binary.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-1000000}
minutes=${2:-60}
rate=${3:-100}
read -r -a phase_minutes <<< "$minutes"
for m in "${phase_minutes[@]}"; do
    [[ $m =~ ^[1-9][0-9]*$ ]] || { echo "MINUTES: '$m' is not a whole number of minutes" >&2; exit 2; }
done
phases=${PHASES:-1 2 3}
read -r -a phase_list <<< "$phases"
if [ "${#phase_minutes[@]}" -ne 1 ] && [ "${#phase_minutes[@]}" -ne "${#phase_list[@]}" ]; then
    echo "MINUTES: ${#phase_minutes[@]} lengths for ${#phase_list[@]} phases ($phases)" >&2; exit 2
fi
bin=${HATTRICK_BIN:-target/release/hattrick}
read -r -a phase_bins <<< "${HATTRICK_BINS:-}"
if [ "${#phase_bins[@]}" -ne 0 ]; then
    [ "${#phase_bins[@]}" -eq "${#phase_list[@]}" ] ||
        { echo "HATTRICK_BINS: ${#phase_bins[@]} binaries for ${#phase_list[@]} phases ($phases)" >&2; exit 2; }
    for b in "${phase_bins[@]}"; do [ -x "$b" ] || { echo "HATTRICK_BINS: $b is not an executable" >&2; exit 2; }; done
    bin=${phase_bins[0]}
fi
admin=postgres://postgres@127.0.0.1:5432/postgres
db=hattrick_curves_$users
. bench/lib.sh
work_dir
if ! psql -tA "$admin" -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    db=hattrick_replay_$users
    psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db HATTRICK_EVENTS__ENABLED=false $bin migrate > /dev/null
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db $bin seed --users "$users" --seed 1 > /dev/null
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db HATTRICK_JOBS__BADGE_AUTO_UNLOCK__TIMEOUT=4h \
        $bin run badge-auto-unlock --silent > /dev/null
fi
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
echo "== $users users ($db), $rate app transactions/s, phases of $minutes minutes"
HATTRICK_EVENTS__ENABLED=false $bin migrate > /dev/null
psql "$DATABASE_URL" -f bench/app-tables.sql
all=$(psql -tA "$DATABASE_URL" -c "SELECT count(*) FROM bench_users")
new=$(psql -tA "$DATABASE_URL" -c "SELECT count(*) FROM bench_new")
echo "   $all live users, $new of them never commented"

fake_fcm
hz=$(getconf CLK_TCK)
phase() { # number label events(true|false|none) binary
    local label=$2 events=$3 bin=$4 serve="" cpu0 cpu1 hat=0 start
    if [ "$events" != none ]; then
        HATTRICK_EVENTS__ENABLED=$events $bin migrate > /dev/null
        (set -a; . "$work/fake.env"; set +a
         HATTRICK_EVENTS__ENABLED=$events HATTRICK_PUSH__QUIET_HOURS_START=off \
             exec $bin serve --roles scheduler,dispatcher 2> "$work/serve$1.log") &
        serve=$!
        sleep 5
    fi
    start=$(psql -tA "$DATABASE_URL" -c "SELECT now()")
    [ -n "${STATEMENTS:-}" ] && psql "$DATABASE_URL" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
        -c "SELECT pg_stat_statements_reset()" > /dev/null
    [ -n "$serve" ] && hat=$(ticks "$serve")
    cpu0=$(busy)
    /usr/bin/time -f "%U %S" -o "$work/pgbench.cpu" pgbench -n -c 4 -j 2 -R "$rate" -T "$secs" \
        -D users="$all" -D new="$new" -f bench/app.sql -l --log-prefix="$work/app$1" "$DATABASE_URL" > "$work/pgbench$1.out" 2>&1
    cpu1=$(busy)
    [ -n "$serve" ] && hat=$(($(ticks "$serve") - hat))
    # Comments of the last minutes still settling: a sweep runs every 5 minutes.
    [ "$events" = false ] && sleep "${SETTLE_SECONDS:-300}"
    [ -n "$serve" ] && { kill -TERM "$serve"; wait "$serve" || true; }
    read -r pu ps < "$work/pgbench.cpu"
    cat "$work"/app"$1".* | awk '{ print $3 / 1000 }' | sort -n > "$work/app$1.ms"
    psql -tA -F ' ' "$DATABASE_URL" > "$work/reaction$1" <<SQL
WITH first AS (SELECT customer_user_id, min(created_at) AS at FROM match_comments
               WHERE content = 'Bu maç çok iyi!' GROUP BY customer_user_id HAVING min(created_at) >= '$start'),
badge AS (SELECT b.customer_user_id,
                 to_timestamp(('x' || substr(replace(b.id::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0) AS at
          FROM customer_badges b JOIN badges d ON d.id = b.badge_id AND d.slug = 'first_comment'
          WHERE b.unlocked_at >= '$start')
SELECT count(*), count(b.customer_user_id),
       coalesce(round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM b.at - f.at))::numeric * 1000), 0),
       coalesce(round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM b.at - f.at))::numeric * 1000), 0)
FROM first f LEFT JOIN badge b USING (customer_user_id);
SQL
    read -r commenters unlocked r50 r99 < "$work/reaction$1"
    python3 - "$work/app$1.ms" "$label" "$cpu0" "$cpu1" "$hat" "$pu" "$ps" "$hz" "$secs" \
        "$commenters" "$unlocked" "$r50" "$r99" >> "$work/summary" <<'EOF'
import sys
ms = [float(line) for line in open(sys.argv[1])]
label, cpu0, cpu1, hat, pu, ps, hz, secs = sys.argv[2], *map(float, sys.argv[3:10])
commenters, unlocked, r50, r99 = sys.argv[10:]
pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
machine = (cpu1 - cpu0) / hz / secs            # cores busy
hattrick = hat / hz / secs
app = (pu + ps) / secs
database = machine - hattrick - app
print(f"{label}|{len(ms) / secs:.0f}|{pick(0.5):.2f}|{pick(0.99):.2f}|{hattrick * 100:.1f}|{database * 100:.1f}|"
      f"{commenters}|{unlocked}|{r50}|{r99}")
EOF
    tail -n 1 "$work/summary"
}
echo "phase|app tx/s|app p50 ms|app p99 ms|hattrick CPU % of a core|database CPU % of a core|first comments|badges|reaction p50 ms|reaction p99 ms"
i=0
for p in "${phase_list[@]}"; do
    # PHASE_SECONDS: every phase that short, to try the script.
    secs=${PHASE_SECONDS:-$((${phase_minutes[$i]:-${phase_minutes[0]}} * 60))}
    pbin=${phase_bins[$i]:-$bin}
    by=${phase_bins[$i]:+ ($(basename "$pbin"))}
    i=$((i + 1))
    case $p in
    1) phase $i "app alone" none "$pbin" ;;
    2) phase $i "hattrick, events off$by" false "$pbin" ;;
    3) phase $i "hattrick, events on$by" true "$pbin" ;;
    *) echo "PHASES: $p is not a phase (1, 2 or 3)" >&2; exit 2 ;;
    esac
done
if [ "${phases%% *}" = 1 ]; then
    base=$(awk -F'|' 'NR == 1 { print $6 }' "$work/summary")
    awk -F'|' -v base="$base" 'NR > 1 { printf "   %s: the database works %+.1f %% of a core more than for the app alone; app p99 %.2fx\n", $1, $6 - base, $4 / p99 }
        NR == 1 { p99 = $4 }' "$work/summary"
fi
if [ -n "${STATEMENTS:-}" ]; then
    # The last phase's statements, by time spent planning and running them (pg_stat_statements, loaded, with
    # track_planning on; reset as each phase starts).
    psql "$DATABASE_URL" -c "SELECT calls, round(total_plan_time) AS plan_ms, round(total_exec_time) AS exec_ms,
                                    left(regexp_replace(query, '\s+', ' ', 'g'), 100) AS statement
                             FROM pg_stat_statements WHERE query NOT LIKE '%bench_%'
                             ORDER BY total_plan_time + total_exec_time DESC LIMIT $STATEMENTS"
fi
