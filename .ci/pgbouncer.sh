#!/usr/bin/env bash
# Starts Debian's PgBouncer in transaction mode in front of the test server (127.0.0.1:5432), listening on
# 127.0.0.1:${PGBOUNCER_PORT:-6432}: the way the app's managed pooler behaves. Every database of the server is
# reachable through it (the wildcard entry), so the tests' throwaway databases are too.
#
# `server_round_robin = 1` hands each transaction the least recently used server connection instead of the last
# one: a client that carried state from one transaction to the next (a prepared statement, a temporary table, a
# session setting) meets another server connection at once, instead of only under production load.
set -euo pipefail
port="${PGBOUNCER_PORT:-6432}"
dir="${PGBOUNCER_DIR:-/tmp/hattrick-pgbouncer}"
if pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
  echo "a pooler already answers on 127.0.0.1:$port"
  exit 0
fi
mkdir -p "$dir"
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
server_round_robin = 1
default_pool_size = 20
max_client_conn = 2000
max_db_connections = 0
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
admin_users = postgres
INI
printf '"postgres" ""\n' >"$dir/userlist.txt"
if [ "$(id -u)" = 0 ]; then
  chown -R postgres "$dir"
  runuser -u postgres -- pgbouncer -d "$dir/pgbouncer.ini"
else
  pgbouncer -d "$dir/pgbouncer.ini"
fi
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null && exit 0
  sleep 0.2
done
echo "pgbouncer did not come up on 127.0.0.1:$port; its log:" >&2
cat "$dir/pgbouncer.log" >&2
exit 1
