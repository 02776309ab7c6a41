#!/usr/bin/env bash
# The `query!` family's offline cache (`.sqlx/`): each static statement's description, checked against a database
# migrated from `migrations/`. Builds read the cache (`.cargo/config.toml` sets SQLX_OFFLINE), so they need no
# database.
#
#   bash .ci/sqlx.sh prepare   # after adding or changing a checked statement: rewrite .sqlx/ and commit it
#   bash .ci/sqlx.sh check     # CI: fails when .sqlx/ is not what the statements describe today
#
# Needs PostgreSQL at $SQLX_SERVER (default postgres://postgres@127.0.0.1:5432) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-check}
server=${SQLX_SERVER:-postgres://postgres@127.0.0.1:5432}
database=hattrick_sqlx_describe
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" -c "CREATE DATABASE $database"
for file in migrations/schema.sql migrations/routines.sql migrations/messages.sql; do
  psql -q -v ON_ERROR_STOP=1 "$server/$database" -f "$file" >/dev/null 2>&1 \
    || { echo "loading $file failed" >&2; exit 1; }
done
# The per-transaction scratch tables, as ordinary tables: a statement reading them is described like any other.
sed -e 's/CREATE TEMP TABLE/CREATE TABLE/' -e 's/ ON COMMIT DELETE ROWS//' crates/domain/src/scratch.sql \
  | psql -q -v ON_ERROR_STOP=1 "$server/$database" >/dev/null 2>&1 \
  || { echo "loading crates/domain/src/scratch.sql failed" >&2; exit 1; }

# Every crate with checked statements is rebuilt, so each macro describes its statement again and writes it out.
crates=$(grep -rl --include=*.rs -E 'sqlx::query(_as|_scalar)?!' crates | cut -d/ -f2 | sort -u)
for crate in $crates; do touch "crates/$crate/src/lib.rs"; done
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out" DATABASE_URL="$server/$database" \
  cargo check --workspace --all-targets --quiet
psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)"

case $mode in
  prepare)
    rm -rf .sqlx && mkdir .sqlx && cp "$out"/query-*.json .sqlx/
    echo "wrote $(ls .sqlx | wc -l) statement descriptions to .sqlx/"
    ;;
  check)
    if ! diff -r -q "$out" .sqlx >/dev/null; then
      diff -r -q "$out" .sqlx || true
      echo "error: .sqlx/ is stale: run 'bash .ci/sqlx.sh prepare' and commit .sqlx/" >&2
      exit 1
    fi
    echo ".sqlx/ matches the $(ls .sqlx | wc -l) checked statements"
    ;;
  *) echo "usage: .ci/sqlx.sh prepare|check" >&2; exit 2 ;;
esac
