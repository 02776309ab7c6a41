#!/usr/bin/env bash
# The first badge sweep of two hattrick binaries side by side (BENCHMARKS.md "One sweep to the fixed point"): each
# binary migrates and seeds a template of its own with the same population, then the binaries take turns, each on
# a fresh copy of its template, after a CHECKPOINT. Prints each run's duration, unlocks and first pass.
# Usage: bench/ab-sweep.sh OLD_BINARY NEW_BINARY [USERS] [ROUNDS]
#   e.g. git worktree add ../before <commit> && (cd ../before && cargo build --release)
#        bench/ab-sweep.sh ../before/target/release/hattrick target/release/hattrick 100000 2
# Needs PostgreSQL on 127.0.0.1:5432, psql and python3. The templates are kept for further rounds.
set -euo pipefail
old=$1; new=$2; users=${3:-100000}; rounds=${4:-2}
server=postgres://postgres@127.0.0.1:5432
export HATTRICK_JOBS__BADGE_AUTO_UNLOCK__TIMEOUT=2h
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
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
        psql "$server/$run" -c "CHECKPOINT"
        DATABASE_URL=$server/$run "${bins[$v]}" run badge-auto-unlock --json | V=$v python3 -c '
import json, os, sys
r = json.load(sys.stdin)
passes = r["details"].get("passes")
first = "%d ms, %d unlocks" % (passes[0]["ms"], passes[0]["unlocks"]) if passes else "the whole run"
print("%s: run %d ms, %d unlocks; first pass %s" % (os.environ["V"], r["duration_ms"], r["items"], first))'
    done
done
psql "$server/postgres" -c "DROP DATABASE IF EXISTS ab_sweep_run WITH (FORCE)"
