#!/usr/bin/env bash
# The OpenAPI document is the contract: schemathesis (PyPI) runs every check against a seeded `hattrick serve`
# (api role) and fails on any mismatch between the document and the answers. Needs PostgreSQL on
# 127.0.0.1:5432 and a built binary: HATTRICK=path/to/hattrick (default target/debug/hattrick).
set -euo pipefail
cd "$(dirname "$0")/.."
hattrick=${HATTRICK:-target/debug/hattrick}
[ -x "$hattrick" ] || cargo build -p hattrick
venv=target/ci-venv
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
[ -x "$venv/bin/schemathesis" ] || "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'

database=hattrick_schemathesis
psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$database
export HATTRICK_ADMIN_TOKEN=schemathesis-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$hattrick" migrate >/dev/null
"$hattrick" seed --users 300 >/dev/null
port=18181
HATTRICK_PUSH__TRANSPORT=log "$hattrick" serve --roles api --listen "127.0.0.1:$port" >target/schemathesis-serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true;
      psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
"$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run --checks all --url "http://127.0.0.1:$port" \
  "http://127.0.0.1:$port/admin/openapi.json"
