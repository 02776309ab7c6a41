-- The tables bench/app.sql picks its users from, rebuilt from the database as it is now: every live user, and the
-- live users who never commented, each numbered from 1. Pending pushes left by the seed are marked sent first, so
-- that what a dispatcher sends in a run is the run's own.
SET client_min_messages = warning;
UPDATE push_outbox SET status = 'sent', sent_at = now() WHERE status IN ('pending', 'sending');
DROP TABLE IF EXISTS bench_users, bench_new;
CREATE TABLE bench_users AS SELECT row_number() OVER () AS n, id FROM customer_users
    WHERE deleted_at IS NULL AND is_active IS NOT FALSE;
ALTER TABLE bench_users ADD PRIMARY KEY (n);
CREATE TABLE bench_new AS SELECT row_number() OVER () AS n, id FROM customer_users u
    WHERE deleted_at IS NULL AND is_active IS NOT FALSE
      AND NOT EXISTS (SELECT 1 FROM match_comments c WHERE c.customer_user_id = u.id);
ALTER TABLE bench_new ADD PRIMARY KEY (n);
VACUUM ANALYZE;
CHECKPOINT;
