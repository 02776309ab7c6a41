#!/usr/bin/env bash
# A local-time turn beside the app (BENCHMARKS.md "A local-time turn beside the app"): what one zone's daily-reward
# reminders cost the app's latency, split into the job that writes the pushes and the dispatcher that sends them.
# pgbench plays the app (bench/app.sql) at RATE transactions per second for the whole run. After 60 s of the app
# alone, `hattrick run daily-reward-reminders` serves the business zone's users at once (their reminder time is set
# to a minute ago); 30 s after it ends, `hattrick serve --roles dispatcher` sends its pushes to a fake FCM; once the
# outbox is drained the dispatcher stops and the app runs on alone to the end (APP_SECONDS, default 300).
# Prints, for each part (the app alone, the job, the pause, the dispatch, the app alone again), how long it took,
# the app's latency p50 / p99 / max, the WAL the server wrote, and the CPU (in cores) of the machine, of hattrick's
# process and of the fake FCM; and the app's p99 every 10 seconds.
# Usage: bench/turn.sh [USERS] [RATE] [NAME=VALUE ...]   (defaults 1000000 100)
# The settings given (hattrick's environment, e.g. HATTRICK_ENGAGEMENT__PARALLELISM=1 or
# HATTRICK_PUSH__RATE_PER_MINUTE=60000) apply to the job and to the dispatcher. Every run is on a fresh copy of
# hattrick_turn_USERS (seeded the first time it is missing), so runs with different settings serve the same users.
# KEEP=DIR keeps pgbench's per-transaction logs and hattrick's output there. Needs a release build (or
# HATTRICK_BIN), pgbench, python3 and PostgreSQL on 127.0.0.1:5432; run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-1000000}
rate=${2:-100}
shift $(($# < 2 ? $# : 2))
for setting in "$@"; do
    [[ $setting =~ ^HATTRICK_[A-Z0-9_]+=.*$ ]] || { echo "'$setting' is not a NAME=VALUE of hattrick's environment" >&2; exit 2; }
done
secs=${APP_SECONDS:-300}
bin=${HATTRICK_BIN:-target/release/hattrick}
admin=postgres://postgres@127.0.0.1:5432/postgres
template=hattrick_turn_$users
db=hattrick_turn_run
. bench/lib.sh
work_dir
if ! psql -tA "$admin" -c "SELECT 1 FROM pg_database WHERE datname = '$template'" | grep -q 1; then
    psql "$admin" -c "CREATE DATABASE $template"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/$template HATTRICK_EVENTS__ENABLED=false $bin migrate > /dev/null
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/$template $bin seed --users "$users" --seed 1 > /dev/null
    psql "postgres://postgres@127.0.0.1:5432/$template" -f bench/app-tables.sql
fi
psql "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE $template"
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
psql "$DATABASE_URL" -c "VACUUM ANALYZE" -c "CHECKPOINT"
all=$(psql -tA "$DATABASE_URL" -c "SELECT count(*) FROM bench_users")
new=$(psql -tA "$DATABASE_URL" -c "SELECT count(*) FROM bench_new")

# The business zone: one whose clock reads between 08:00 and 21:00 now, so that no push of the turn meets quiet
# hours or the users' midnight while the run lasts; its users' reminder time is a minute ago.
read -r zone at < <(python3 -c '
import datetime, zoneinfo
now = datetime.datetime.now(datetime.timezone.utc)
for name in ["Europe/Istanbul", "Asia/Tokyo", "Europe/London", "America/New_York", "America/Los_Angeles"]:
    local = now.astimezone(zoneinfo.ZoneInfo(name))
    if 8 <= local.hour < 21:
        print(name, (local - datetime.timedelta(minutes=1)).strftime("%H:%M"))
        break')
export HATTRICK_TIME__BUSINESS_ZONE=$zone HATTRICK_ENGAGEMENT__DAILY_REWARD_REMINDER_AT=$at
for setting in "$@"; do export "${setting?}"; done
echo "== $users users, $rate app transactions/s; the turn of $zone at $at${*:+; $*}"

fake_fcm
serve=""
mark() { # part: the wall clock, the WAL written so far, the machine's busy CPU, the fake's and the dispatcher's
    echo "$1 $(date +%s.%N) $(psql -tA "$DATABASE_URL" -c "SELECT wal_bytes FROM pg_stat_wal") $(busy)" \
        "$(ticks "$fake") $(ticks "$serve")" >> "$work/marks"
}
pending() {
    psql -tA "$DATABASE_URL" -c "SELECT count(*) FROM push_outbox WHERE status IN ('pending', 'sending') AND not_before <= now()"
}
pgbench -n -c 4 -j 2 -R "$rate" -T "$secs" -D users="$all" -D new="$new" -f bench/app.sql -l \
    --log-prefix="$work/app" "$DATABASE_URL" > "$work/pgbench.out" 2>&1 &
app=$!
mark alone
sleep 60
mark job
/usr/bin/time -f "%U %S" -o "$work/job.cpu" $bin run daily-reward-reminders --json > "$work/job.json"
mark pause
sleep 30
mark dispatch
(set -a; . "$work/fake.env"; set +a; exec $bin serve --roles dispatcher 2> "$work/serve.log") &
serve=$!
while [ "$(pending)" != 0 ]; do sleep 1; done
mark again
kill -TERM "$serve"; wait "$serve" || true
serve=""
wait "$app"
mark end
python3 - "$work" "$(getconf CLK_TCK)" <<'EOF'
import glob, json, sys
work, hz = sys.argv[1], int(sys.argv[2])
marks = [(f[0], float(f[1]), *map(int, f[2:])) for f in (line.split() for line in open(f"{work}/marks"))]
start = marks[0][1]
job_cpu = sum(map(float, open(f"{work}/job.cpu").read().split()))
ended = []  # (when the transaction ended, seconds from the start; its latency, ms)
for name in glob.glob(f"{work}/app.[0-9]*"):
    for line in open(name):
        f = line.split()  # client, transaction, latency µs, script, epoch second, µs
        ended.append((int(f[4]) + int(f[5]) / 1e6 - start, int(f[2]) / 1000))
def stats(a, b):
    ms = sorted(latency for at, latency in ended if a <= at < b)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    return f"{len(ms)}|{pick(0.5):.2f}|{pick(0.99):.2f}|{ms[-1]:.2f}" if ms else "0|-|-|-"
report = json.load(open(f"{work}/job.json"))
print(f"the job: {report['items']} pushes written in {report['duration_ms'] / 1000:.1f} s")
# CPU in cores: the machine's busy time, hattrick's (the job's process, or the dispatcher's) and the fake FCM's.
print("part|seconds|app transactions|app p50 ms|app p99 ms|app max ms|WAL MiB|machine CPU|hattrick CPU|fake FCM CPU")
for (name, t0, w0, b0, f0, s0), (_, t1, w1, b1, f1, s1) in zip(marks, marks[1:]):
    took = t1 - t0
    hattrick = {"job": job_cpu, "dispatch": (s1 - s0) / hz}.get(name, 0)
    print(f"{name}|{took:.1f}|{stats(t0 - start, t1 - start)}|{(w1 - w0) / 2**20:.0f}|"
          f"{(b1 - b0) / hz / took:.2f}|{hattrick / took:.2f}|{(f1 - f0) / hz / took:.2f}")
print("app p99 ms every 10 s: " + " ".join(
    stats(s, s + 10).split("|")[2] for s in range(0, int(marks[-1][1] - start), 10)))
EOF
