#!/usr/bin/env bash
# Cleanup against its floor (BENCHMARKS.md, "Cleanup near a plain DELETE"). Seeds USERS users (`hattrick seed
# --seed 1`) plus EXPIRED ad views past their retention, and copies the database. On the first copy it runs
# `old-logs-cleanup` and `dead-token-cleanup` with `cleanup.rest = 0`; on the second, one plain `DELETE` per table
# with the same conditions and cut-offs (the floor), then an ANALYZE of each table the jobs analyze (the jobs must,
# the floor's DELETEs need not: it is reported apart). Both start after a CHECKPOINT. Ledger compaction folds rather
# than deletes: its floor is one plain statement per ledger that writes the same rows (deletes every row older than
# the cut-off, keeps their keys in hattrick_compacted_user_keys, inserts each user's earned and spent carry-forward
# rows), then an ANALYZE of the ledger, as the job does.
# Usage: bench/cleanup.sh [USERS] [EXPIRED]   (default 100000 0; a release build, PostgreSQL on 127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-100000}
expired=${2:-0}
bin=${HATTRICK_BIN:-target/release/hattrick}   # another build: HATTRICK_BIN=path
admin=postgres://postgres@127.0.0.1:5432/postgres
seeded=hattrick_cleanup_seed
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
url() { echo "postgres://postgres@127.0.0.1:5432/$1"; }

psql "$admin" -c "DROP DATABASE IF EXISTS $seeded WITH (FORCE)" -c "CREATE DATABASE $seeded"
DATABASE_URL=$(url $seeded) $bin migrate > /dev/null
echo "== seed $users users, $expired extra expired ad views"
DATABASE_URL=$(url $seeded) $bin seed --users "$users" --seed 1 | tail -n 1
psql "$(url $seeded)" <<SQL
INSERT INTO customer_ad_views (customer_user_id, ad_network, ad_unit_id, ad_type, reward_amount, completed_at)
SELECT u.id, 'admob', 'expired', 'rewarded', 5, now() - interval '200 days' - (g % 300) * interval '1 day'
FROM generate_series(1, $expired) g
JOIN (SELECT row_number() OVER () AS n, id FROM customer_users) u ON u.n = g % $users + 1;
VACUUM ANALYZE;
SQL
for copy in job floor; do
    psql "$admin" -c "DROP DATABASE IF EXISTS hattrick_cleanup_$copy WITH (FORCE)" \
        -c "CREATE DATABASE hattrick_cleanup_$copy TEMPLATE $seeded"
done

echo "== the jobs, cleanup.rest = 0 and no WAL cap"
export DATABASE_URL=$(url hattrick_cleanup_job)
psql "$DATABASE_URL" -c CHECKPOINT
for job in old-logs-cleanup dead-token-cleanup; do
    start=$(date +%s.%N)
    HATTRICK_CLEANUP__REST=0 HATTRICK_CLEANUP__WAL_MB_PER_SECOND=0 $bin run $job --json > /tmp/hattrick-cleanup-$job.json
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" -v j=$job 'BEGIN { printf "    %s: %.2f s (the whole command)\n", j, e - s }'
    python3 - /tmp/hattrick-cleanup-$job.json <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
details = report.get("details", report)
def walk(name, w):
    if isinstance(w, dict) and "elapsed_ms" in w:
        what = f"{w['folded']} rows folded, {w['carried']} carried" if "folded" in w else f"{w.get('deleted', 0)} rows deleted"
        route = f", route {w['route']}" if "route" in w else ""
        print(f"      {name}: {what} in {w['elapsed_ms'] / 1000:.2f} s ({w.get('batches')} batches{route})")
def visit(prefix, node):
    if isinstance(node, dict):
        walk(prefix, node)
        for key, value in node.items():
            visit(key, value)
visit("total", details)
print(f"      run duration: {report.get('duration_ms', 0) / 1000:.2f} s")
PY
    rm -f /tmp/hattrick-cleanup-$job.json
done

echo "== the floor: one plain statement per ledger and DELETE per table, then ANALYZE of the tables the jobs analyze"
export DATABASE_URL=$(url hattrick_cleanup_floor)
psql "$DATABASE_URL" -c CHECKPOINT
floor() {
    command psql -X -v ON_ERROR_STOP=1 "$DATABASE_URL" -c '\timing on' -c "$1" | grep -E "^(DELETE|INSERT|ANALYZE|Time)" \
        | paste - - | awk -v what="$2" '{
            rows = ($1 == "DELETE") ? $2 " rows" : ($1 == "INSERT") ? $3 " carried" : ""
            for (i = 1; i < NF; i++) if ($i == "Time:") ms = $(i + 1)
            printf "    %-32s %14s %8.2f s\n", what, rows, ms / 1000 }'
}
fold() { # ledger table, amount column, ledger name, balance columns, balance values: the job's rows in one statement
    echo "WITH folded AS (
              DELETE FROM $1 t WHERE t.created_at < now() - interval '365 days'
              RETURNING t.customer_user_id, t.$2 AS amount, t.idempotency_key),
          keys AS (
              INSERT INTO hattrick_compacted_user_keys (customer_user_id, ledger, idempotency_key, compacted_at)
              SELECT customer_user_id, '$3', idempotency_key, now() FROM folded WHERE idempotency_key IS NOT NULL
              ON CONFLICT DO NOTHING),
          sums AS (
              SELECT customer_user_id, count(*) AS n,
                     coalesce(sum(amount) FILTER (WHERE amount > 0), 0)::int AS earned,
                     coalesce(sum(amount) FILTER (WHERE amount < 0), 0)::int AS spent
              FROM folded GROUP BY customer_user_id)
          INSERT INTO $1 (id, customer_user_id, $2, transaction_type, description$4, metadata, idempotency_key, created_at)
          SELECT gen_random_uuid(), s.customer_user_id, r.amount, 'retention_rollup', 'Carried forward'$5,
                 jsonb_build_object('rollup', r.kind, 'rows', s.n),
                 'floor:$3:' || s.customer_user_id || ':' || r.kind, now() - interval '365 days'
          FROM sums s CROSS JOIN LATERAL (VALUES ('earned', s.earned, 0, s.earned), ('spent', s.spent, s.earned,
              s.earned + s.spent)) r(kind, amount, before, after)
          WHERE r.amount <> 0"
}
floor "$(fold customer_credit_transactions amount credits ', balance_before, balance_after' ', r.before, r.after')" \
    "customer_credit_transactions (fold)"
floor "$(fold customer_xp_transactions xp_amount xp '' '')" "customer_xp_transactions (fold)"
floor "DELETE FROM customer_ad_views t WHERE t.completed_at < now() - interval '180 days'" customer_ad_views
floor "DELETE FROM match_comment_likes t WHERE t.created_at < now() - interval '365 days'" match_comment_likes
floor "DELETE FROM scheduled_notifications t WHERE t.status IN ('sent', 'failed', 'cancelled')
       AND coalesce(t.sent_at, t.scheduled_at) < now() - interval '90 days'" scheduled_notifications
floor "DELETE FROM job_execution_logs t WHERE t.status <> 'running' AND t.started_at < now() - interval '90 days'" \
    job_execution_logs
floor "DELETE FROM push_outbox t WHERE t.status IN ('sent', 'failed', 'no_tokens', 'opted_out', 'cancelled')
       AND t.created_at < now() - interval '30 days'" push_outbox
floor "DELETE FROM customer_push_tokens t
       WHERE t.is_active IS FALSE OR coalesce(t.updated_at, t.created_at) < now() - interval '90 days'" \
    customer_push_tokens
for table in customer_credit_transactions customer_xp_transactions customer_ad_views match_comment_likes \
    scheduled_notifications customer_push_tokens; do
    floor "ANALYZE $table" "ANALYZE $table"
done
for db in $seeded hattrick_cleanup_job hattrick_cleanup_floor; do psql "$admin" -c "DROP DATABASE $db WITH (FORCE)"; done
