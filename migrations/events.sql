-- hattrick's change capture (docs/events.md): triggers on the app's tables record which users or referrals a write may
-- have made eligible for something, in hattrick_changes (topic = the job that should look, subject = a user id).
-- hattrick looks at that table every events.poll_interval.
--
-- Applied by `hattrick migrate` when events are on (`events.enabled`, the default) and removed by it when they are
-- off (CREATE OR REPLACE; the file runs as a whole in one transaction, under lock_timeout).
--
-- Rules every trigger here keeps, because it runs inside the app's own writes:
-- - statement-level with transition tables: one INSERT ... SELECT per statement, never one per row;
-- - no NOTIFY: a notifying transaction holds PostgreSQL's cluster-wide notification lock from just before its
--   commit until the commit is on disk, so the app's writes would commit one at a time and one slow flush would
--   stall all of them (docs/events.md);
-- - no exception blocks and nothing that can fail on the app's data: a plain INSERT into a table without
--   constraints beyond its key;
-- - hattrick's own sessions (application_name `hattrick...`) record nothing: its grants settle cascades on the next
--   sweep, and a bulk back-fill must not double its writes.

CREATE OR REPLACE FUNCTION hattrick_capture_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') LIKE 'hattrick%' THEN
        RETURN NULL;
    END IF;
    -- TG_ARGV[0]: the topic (job); new_rows.customer_user_id is the user.
    INSERT INTO hattrick_changes (topic, subject)
    SELECT DISTINCT TG_ARGV[0], n.customer_user_id FROM new_rows n WHERE n.customer_user_id IS NOT NULL;
    RETURN NULL;
END
$$;

-- A subscription may complete a tier-3 referral (its referred user) and a `subscription` badge.
CREATE OR REPLACE FUNCTION hattrick_capture_subscriptions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') LIKE 'hattrick%' THEN
        RETURN NULL;
    END IF;
    INSERT INTO hattrick_changes (topic, subject)
    SELECT DISTINCT 'badge-auto-unlock', n.customer_user_id FROM new_rows n WHERE n.customer_user_id IS NOT NULL
    UNION
    SELECT DISTINCT 'referral-tier3', n.customer_user_id FROM new_rows n
    WHERE n.status = 'active'
      AND EXISTS (SELECT 1 FROM referrals r WHERE r.referred_user_id = n.customer_user_id AND r.tier = 2
                                              AND r.status = 'completed');
    RETURN NULL;
END
$$;

-- A login of a user who was referred and not paid for yet may pay tier 2: users (last_login_at) and OAuth
-- identities (their own last_login_at) both stamp logins. TG_ARGV[0] names the column holding the user's id.
CREATE OR REPLACE FUNCTION hattrick_capture_logins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') LIKE 'hattrick%' THEN
        RETURN NULL;
    END IF;
    IF TG_ARGV[0] = 'id' THEN
        INSERT INTO hattrick_changes (topic, subject)
        SELECT DISTINCT 'referral-tier2', n.id FROM new_rows n
        WHERE n.last_login_at IS NOT NULL
          AND EXISTS (SELECT 1 FROM referrals r WHERE r.referred_user_id = n.id AND r.status = 'pending');
    ELSE
        INSERT INTO hattrick_changes (topic, subject)
        SELECT DISTINCT 'referral-tier2', n.customer_user_id FROM new_rows n
        WHERE n.last_login_at IS NOT NULL
          AND EXISTS (SELECT 1 FROM referrals r WHERE r.referred_user_id = n.customer_user_id
                                                  AND r.status = 'pending');
    END IF;
    RETURN NULL;
END
$$;

-- Badge inputs: comments (and their like counts), settled predictions, XP and streaks, credits earned.
CREATE OR REPLACE TRIGGER hattrick_changes_comments_insert AFTER INSERT ON match_comments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_users('badge-auto-unlock');
CREATE OR REPLACE TRIGGER hattrick_changes_comments_update AFTER UPDATE ON match_comments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_users('badge-auto-unlock');
CREATE OR REPLACE TRIGGER hattrick_changes_predictions_insert AFTER INSERT ON customer_predictions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_users('badge-auto-unlock');
CREATE OR REPLACE TRIGGER hattrick_changes_predictions_update AFTER UPDATE ON customer_predictions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_users('badge-auto-unlock');
CREATE OR REPLACE TRIGGER hattrick_changes_xp_insert AFTER INSERT ON customer_xp
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_users('badge-auto-unlock');
CREATE OR REPLACE TRIGGER hattrick_changes_xp_update AFTER UPDATE ON customer_xp
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_users('badge-auto-unlock');
CREATE OR REPLACE TRIGGER hattrick_changes_credits_insert AFTER INSERT ON customer_credits
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_users('badge-auto-unlock');
CREATE OR REPLACE TRIGGER hattrick_changes_credits_update AFTER UPDATE ON customer_credits
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_users('badge-auto-unlock');

-- Subscriptions: badges and tier 3.
CREATE OR REPLACE TRIGGER hattrick_changes_subscriptions_insert AFTER INSERT ON customer_subscriptions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_subscriptions();
CREATE OR REPLACE TRIGGER hattrick_changes_subscriptions_update AFTER UPDATE ON customer_subscriptions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_subscriptions();

-- Logins: tier 2.
CREATE OR REPLACE TRIGGER hattrick_changes_users_update AFTER UPDATE ON customer_users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_logins('id');
CREATE OR REPLACE TRIGGER hattrick_changes_identities_insert AFTER INSERT ON customer_oauth_identities
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_logins('customer_user_id');
CREATE OR REPLACE TRIGGER hattrick_changes_identities_update AFTER UPDATE ON customer_oauth_identities
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hattrick_capture_logins('customer_user_id');
