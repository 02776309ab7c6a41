# Pieces shared by the benchmarks that play the app beside hattrick (bench/replay.sh, bench/turn.sh). Sourced from
# the repository's root, after `bin` (the hattrick binary) is set.

# psql that reads no ~/.psqlrc and stops at the first error.
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# Sets `work`, the run's directory: KEEP when set (new or empty: the run's files are found there by name, and an
# earlier run's would mix in), else a temporary one. On exit the script's background jobs are stopped and a
# temporary directory removed.
work_dir() {
    if [ -n "${KEEP:-}" ]; then
        [ -z "$(ls -A "$KEEP" 2> /dev/null)" ] || { echo "KEEP=$KEEP: not an empty directory" >&2; exit 2; }
        mkdir -p "$KEEP"
        work=$KEEP
    else
        work=$(mktemp -d)
    fi
    trap 'kill $(jobs -p) 2> /dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
}

# Starts the fake FCM (answers after 5 ms) with its settings in $work/fake.env and its pid in `fake`, and returns
# once it listens.
fake_fcm() {
    $bin fake-fcm --listen 127.0.0.1:0 --write-service-account "$work/key.json" --latency-ms 5 --accept-token bench \
        > "$work/fake.env" 2> /dev/null &
    fake=$!
    while ! grep -q TRANSPORT "$work/fake.env" 2> /dev/null; do sleep 0.1; done
}

# The machine's busy CPU so far, in jiffies over all cores; and a process's (0 for no pid).
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
ticks() { if [ -n "$1" ]; then awk '{ print $14 + $15 }' "/proc/$1/stat"; else echo 0; fi; }
