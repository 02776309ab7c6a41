#!/usr/bin/env bash
# What an event run's badge candidates cost the server to plan and to run (BENCHMARKS.md, "Planning an event run's
# candidates"), on the database bench/replay.sh leaves (hattrick_replay_USERS: seeded, first sweep paid,
# `bench_users` numbered):
#   capture SERVER_LOG   runs event runs (a first comment, a referred user's login) with log_min_duration_statement
#                        = 0 and copies the statements they sent that read their subjects from the server's log (the
#                        file the server writes its log to): $OUT/event.sql (the badge candidates, every badge),
#                        $OUT/cascade.sql (the cascade round's) and $OUT/referral.sql (the tier-2 queue);
#   plan FILE [SECONDS] [SQL]
#                        pgbench on one connection, extended protocol (unnamed statements, planned each time as
#                        hattrick's are): each transaction puts 3 random users in the run's subjects and runs FILE;
#                        prints transactions a second and FILE's mean planning and execution time
#                        (pg_stat_statements, loaded with track_planning on); SQL runs first in each transaction;
#   subjects FILE K      FILE over K subjects, with the subjects' statistics left from small runs and refreshed
#                        with the K rows (`ANALYZE`, as an event run of 1,000 subjects or more does): the median
#                        execution of 7, with JIT off as in job transactions;
#   catchup K            a comment by each of K random users written while hattrick is stopped, then `hattrick
#                        serve` (scheduler, events on) started from the statistics small runs leave: its first badge
#                        event run takes them all at once, as after an outage; prints that run's time and passes.
# FILE is a captured statement: $1 (now) and $2 (the run id) are replaced here.
# Usage: bench/event-plans.sh capture|plan|subjects|catchup ...   (USERS=100000 by default; OUT=bench-out by default)
set -euo pipefail
cd "$(dirname "$0")/.."
users=${USERS:-100000}
out=${OUT:-bench-out}
bin=${HATTRICK_BIN:-target/release/hattrick}
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/hattrick_replay_$users
run=00000000-0000-0000-0000-0000000000aa
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
statement() { # FILE: the statement on one line, for now and the bench's run
    sed "s/\\\$1::timestamptz/now()/g; s/\\\$1/now()/g; s/\\\$2/'$run'/g" "$1" | tr '\n' ' '
}
small_runs() { # the subjects' table empty, with the statistics small event runs leave: three runs of 5 subjects
    psql <<SQL
DELETE FROM hattrick_run_subjects;
INSERT INTO hattrick_run_subjects (run_id, subject)
SELECT r, id FROM (SELECT id FROM bench_users WHERE n <= 5) u,
     (VALUES ('00000000-0000-0000-0000-0000000000b1'::uuid), ('00000000-0000-0000-0000-0000000000b2'::uuid),
             ('00000000-0000-0000-0000-0000000000b3'::uuid)) v(r);
ANALYZE hattrick_run_subjects;
DELETE FROM hattrick_run_subjects;
VACUUM hattrick_run_subjects;
SQL
}
serve_events() { # [COMMAND...]: `hattrick serve` (scheduler, events on) run by COMMAND (`timeout 10`), if any; the
    # 5-minute sweep is moved out of the way, so the event runs are the only badge runs. It replaces the shell it
    # runs in, so `serve_events &` leaves its process in $!.
    HATTRICK_EVENTS__ENABLED=true HATTRICK_PUSH__QUIET_HOURS_START=off HATTRICK_JOBS__BADGE_AUTO_UNLOCK__SCHEDULE="0 3 1 1 *" \
        exec "$@" $bin serve --roles scheduler --listen 127.0.0.1:0 2> /dev/null
}
case ${1:-} in
capture)
    log=$2
    mkdir -p "$out"
    from=$(wc -c < "$log")
    psql -c "ALTER DATABASE hattrick_replay_$users SET log_min_duration_statement = 0"
    HATTRICK_EVENTS__ENABLED=true $bin migrate > /dev/null
    serve_events timeout 10 &
    sleep 4
    psql -c "INSERT INTO match_comments (match_id, customer_user_id, content)
             SELECT 9000, id, 'Bu maç çok iyi!' FROM customer_users u WHERE deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM match_comments c WHERE c.customer_user_id = u.id) LIMIT 1" \
        -c "UPDATE customer_users SET last_login_at = now() WHERE id = (SELECT referred_user_id FROM referrals
                                                                     WHERE status = 'pending' LIMIT 1)"
    wait || true
    psql -c "ALTER DATABASE hattrick_replay_$users RESET log_min_duration_statement"
    tail -c +"$((from + 1))" "$log" | python3 -c '
import re, sys
text = sys.stdin.read()
found = re.findall(r"execute <unnamed>: (INSERT INTO hattrick_run_(?:badge_candidates|referral_queue) .*?)\n(?=\S)",
                   text, re.S)
# Event runs read their subjects (hattrick_run_subjects): the badges (every badge first, then the cascade round
# after) and the tier-2 referrals.
kinds = {"event": None, "cascade": None, "referral": None}
for sql in found:
    if "hattrick_run_subjects" in sql:
        kind = "referral" if "referral_queue" in sql else "event" if "FROM referrals" in sql else "cascade"
        kinds[kind] = sql.replace("\n\t", "\n") + "\n"
for kind, sql in kinds.items():
    if sql is None:
        sys.exit(f"no {kind} statement in the log")
    open(f"'"$out"'/{kind}.sql", "w").write(sql)
    print(f"'"$out"'/{kind}.sql")'

    ;;
plan)
    file=$2 secs=${3:-15} setting=${4:-}
    script=$(mktemp)
    trap 'rm -f "$script"' EXIT
    {
        all=$(psql -tA -c "SELECT count(*) FROM bench_users")
        echo "\\set a random(1, $all)"
        echo "\\set b random(1, $all)"
        echo "\\set c random(1, $all)"
        echo 'BEGIN;'
        [ -n "$setting" ] && echo "$setting"
        echo "INSERT INTO hattrick_run_subjects (run_id, subject)
              SELECT '$run', id FROM bench_users WHERE n IN (:a, :b, :c);"
        echo "$(statement "$file");"
        echo 'ROLLBACK;'
    } > "$script"
    # The planner's work depends on what it expects of the subjects' table: every measurement starts from the same
    # statistics (transactions rolled back leave dead rows, which it would count as pages of the table).
    small_runs
    psql -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
        -c "SELECT pg_stat_statements_reset()" > /dev/null
    tps=$(pgbench -n -M extended -c 1 -T "$secs" -f "$script" "$DATABASE_URL" 2>&1 | grep -oP 'tps = \K[0-9.]+')
    psql -tA -c "SELECT '$file: ' || round($tps) || ' tx/s, planning ' || round(mean_plan_time::numeric, 2)
                        || ' ms, execution ' || round(mean_exec_time::numeric, 2) || ' ms'
                 FROM pg_stat_statements WHERE query LIKE 'INSERT INTO hattrick_run_%' AND calls > 1
                   AND query NOT LIKE 'INSERT INTO hattrick_run_subjects%'"
    ;;
subjects)
    file=$2 k=$3
    for analyse in 0 1; do
        small_runs
        {
            echo "BEGIN; SET LOCAL jit = off;"
            echo "INSERT INTO hattrick_run_subjects (run_id, subject)
                  SELECT '$run', id FROM bench_users ORDER BY random() LIMIT $k;"
            [ "$analyse" = 1 ] && echo "ANALYZE hattrick_run_subjects;"
            for _ in 1 2 3 4 5 6 7; do
                echo "SAVEPOINT s; EXPLAIN (ANALYZE, SUMMARY, TIMING OFF) $(statement "$file"); ROLLBACK TO SAVEPOINT s;"
            done
            echo "ROLLBACK;"
        } | psql | awk -v k="$k" -v analyse="$analyse" '/Execution Time/ { t[++n] = $3 }
            END { asort(t); printf "%s subjects, statistics %s: %.1f ms\n", k, analyse ? "refreshed" : "from small runs", t[4] }'
    done
    ;;
catchup)
    k=$2
    HATTRICK_EVENTS__ENABLED=true $bin migrate > /dev/null
    small_runs
    start=$(psql -tA -c "SELECT now()")
    psql -c "INSERT INTO match_comments (match_id, customer_user_id, content)
             SELECT 9000, id, 'Bu maç çok iyi!' FROM bench_users ORDER BY random() LIMIT $k"
    serve_events &
    serve=$!
    trap 'kill $serve 2> /dev/null || true' EXIT
    report=""
    for _ in $(seq 1 600); do
        report=$(psql -tA -F ' ' -c "SELECT duration_ms, items_processed, details->>'users_evaluated',
                                            (SELECT string_agg(p->>'ms', '+') FROM jsonb_array_elements(details->'passes') p)
                                     FROM job_execution_logs WHERE job_name = 'badge-auto-unlock' AND trigger = 'event'
                                       AND started_at >= '$start' AND status = 'success'
                                     ORDER BY started_at LIMIT 1")
        [ -n "$report" ] && break
        sleep 0.2
    done
    kill -TERM $serve
    wait $serve || true
    [ -n "$report" ] || { echo "no badge event run succeeded within 120 s" >&2; exit 1; }
    read -r ms unlocked evaluated passes <<< "$report"
    echo "$k users' comments caught up: $ms ms, $unlocked unlocks, $evaluated users evaluated, passes $passes ms"
    ;;
*)
    sed -n '2,21p' "$0" >&2
    exit 2
    ;;
esac
