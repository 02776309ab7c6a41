#!/usr/bin/env bash
# The long chaos run (see RELIABILITY.md): three `hattrick serve` processes on a private PostgreSQL cluster, a
# faulty fake FCM, an app simulator, a SIGKILL every 10 s and one database crash, then the audit of every promise.
# CI runs the same test for 40 s as part of `cargo nextest run --workspace`.
# Usage: bench/chaos.sh [SECONDS]   (default 600; needs PostgreSQL's binaries: initdb, pg_ctl)
set -euo pipefail
cd "$(dirname "$0")/.."
HATTRICK_CHAOS_SECONDS=${1:-600} exec cargo nextest run -P long -p hattrick -E 'test(/^chaos::/)' --no-capture
