-- hattrick's SQL functions: levels, and the ledger functions the app calls for its own writes (docs/ledger.md).
--
-- Applied by `hattrick migrate` whenever this file changes (CREATE OR REPLACE; the file is run as a whole in one
-- transaction). Every function that moves XP or credits locks the user's balance row first, so concurrent grants
-- and spends on one user are serialised and `balance_before/after` are exact; an idempotency key makes a repeated
-- call a no-op.

-- Levels (docs/ledger.md) ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION hattrick_levels()
RETURNS TABLE (level text, rank int, xp_from int, credits int, name_tr text, name_en text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    VALUES ('bronze', 1, 0, 0, 'Bronz', 'Bronze'),
           ('silver', 2, 500, 25, 'Gümüş', 'Silver'),
           ('gold', 3, 2000, 50, 'Altın', 'Gold'),
           ('platinum', 4, 5000, 100, 'Platin', 'Platinum'),
           ('diamond', 5, 10000, 250, 'Elmas', 'Diamond'),
           ('vip_elite', 6, 25000, 500, 'VIP Elite', 'VIP Elite')
$$;

CREATE OR REPLACE FUNCTION hattrick_level_for(xp int) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN xp >= 25000 THEN 'vip_elite' WHEN xp >= 10000 THEN 'diamond' WHEN xp >= 5000 THEN 'platinum'
                WHEN xp >= 2000 THEN 'gold' WHEN xp >= 500 THEN 'silver' ELSE 'bronze' END
$$;

CREATE OR REPLACE FUNCTION hattrick_level_rank(level text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE level WHEN 'bronze' THEN 1 WHEN 'silver' THEN 2 WHEN 'gold' THEN 3 WHEN 'platinum' THEN 4
                      WHEN 'diamond' THEN 5 WHEN 'vip_elite' THEN 6 END
$$;

-- The XP at which the level after `xp`'s begins (NULL at the top level).
CREATE OR REPLACE FUNCTION hattrick_next_level_xp(xp int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN xp >= 25000 THEN NULL WHEN xp >= 10000 THEN 25000 WHEN xp >= 5000 THEN 10000
                WHEN xp >= 2000 THEN 5000 WHEN xp >= 500 THEN 2000 ELSE 500 END
$$;

-- Percent through the current level (100 at the top level).
CREATE OR REPLACE FUNCTION hattrick_level_progress(xp int) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN xp >= 25000 THEN 100::numeric
                ELSE round(100.0 * (greatest(xp, 0) - f.xp_from) / (hattrick_next_level_xp(xp) - f.xp_from), 2) END
    FROM (SELECT CASE WHEN xp >= 10000 THEN 10000 WHEN xp >= 5000 THEN 5000 WHEN xp >= 2000 THEN 2000
                      WHEN xp >= 500 THEN 500 ELSE 0 END AS xp_from) f
$$;

-- A time-ordered UUID (the version 7 layout: 48 bits of Unix milliseconds, then random bits). hattrick gives its
-- ledger and badge rows these ids, so that their primary-key inserts land at the right edge of the index instead of
-- on random pages: a batch of grants dirties a handful of index pages, not one per row (and as many full-page
-- images in the WAL).
CREATE OR REPLACE FUNCTION hattrick_uuid7(p_at timestamptz DEFAULT clock_timestamp()) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(set_bit(set_bit(
        overlay(uuid_send(gen_random_uuid())
                PLACING substring(int8send(floor(extract(epoch FROM p_at) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
        52, 1), 53, 1), 'hex')::uuid
$$;

-- Languages (docs/push.md "Messages and languages") ---------------------------------------------------------------

-- A user's locale as the catalogue writes locales: lower case, `_` read as `-`, none meaning Turkish (the app's
-- default).
CREATE OR REPLACE FUNCTION hattrick_locale(p_preference text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(replace(coalesce(nullif(btrim(p_preference), ''), 'tr'), '_', '-'))
$$;

-- The language of a user's locale (`pt-br` -> `pt`).
CREATE OR REPLACE FUNCTION hattrick_language(p_preference text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT split_part(hattrick_locale(p_preference), '-', 1)
$$;

-- The locales whose texts a user can get, best first: their locale, its language, English, Turkish.
CREATE OR REPLACE FUNCTION hattrick_locale_chain(p_preference text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[hattrick_locale(p_preference), hattrick_language(p_preference), 'en', 'tr']
$$;

-- The catalogue's texts of one push kind, one per locale: a deployment's text before the built-in one.
CREATE OR REPLACE FUNCTION hattrick_message_texts(p_kind text) RETURNS TABLE (locale text, title text, body text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT DISTINCT ON (m.locale) m.locale::text, m.title, m.body
    FROM hattrick_messages m WHERE m.kind = p_kind
    ORDER BY m.locale, m.builtin
$$;

-- The catalogue's text of one push kind for a user's locale (the first locale of the chain that has one), with
-- the locale it is written in. Batches pick the same text by joining hattrick_message_texts() on the user's locale
-- and language, with English, else Turkish, behind (domain::messages::TextJoin): no lookup per user.
CREATE OR REPLACE FUNCTION hattrick_message(p_kind text, p_preference text)
RETURNS TABLE (locale text, title text, body text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT t.locale, t.title, t.body
    FROM hattrick_message_texts(p_kind) t
    WHERE t.locale = ANY (hattrick_locale_chain(p_preference))
    ORDER BY array_position(hattrick_locale_chain(p_preference), t.locale)
    LIMIT 1
$$;

-- Fills a text's `{name}` placeholders from a JSON object of values; a placeholder without one stays as written.
-- (Jobs render their batches with one `replace` per placeholder of their kind instead: domain::messages.)
CREATE OR REPLACE FUNCTION hattrick_fill(p_text text, p_vars jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    v_var record;
    v_out text := p_text;
BEGIN
    FOR v_var IN SELECT key, value FROM jsonb_each_text(coalesce(p_vars, '{}'::jsonb)) WHERE value IS NOT NULL LOOP
        v_out := replace(v_out, '{' || v_var.key || '}', v_var.value);
    END LOOP;
    RETURN v_out;
END $$;

-- Enqueues the level-up push of docs/ledger.md for `level` (once per user and level: the dedupe key), in the user's
-- language. Deleted and inactive users get no push; opted-out users' rows are written and stopped at send time.
CREATE OR REPLACE FUNCTION hattrick_enqueue_level_up(p_user uuid, p_level text, p_at timestamptz) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, deep_link, data, not_before,
                             created_at)
    SELECT u.id, 'reward', 'level-up:' || u.id || ':' || l.level,
           replace(replace(t.title, '{name_tr}', l.name_tr), '{name_en}', l.name_en),
           replace(replace(t.body, '{name_tr}', l.name_tr), '{name_en}', l.name_en),
           'goalgpt://profile',
           jsonb_build_object('type', 'level_up', 'level', l.level, 'deepLink', 'goalgpt://profile'),
           p_at, p_at
    FROM customer_users u
    JOIN hattrick_levels() l ON l.level = p_level
    CROSS JOIN LATERAL hattrick_message('level_up', u.locale_preference) t
    WHERE u.id = p_user AND u.deleted_at IS NULL AND u.is_active IS NOT FALSE
    ON CONFLICT (dedupe_key) DO NOTHING
$$;

-- Push categories and priorities (docs/push.md "Preferences" and "Daily cap") ---------------------------------

-- The preference category of an outbox row, from its category and its `data.type`: what a user can turn off.
CREATE OR REPLACE FUNCTION hattrick_push_preference_category(p_category text, p_kind text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_category = 'campaign' THEN 'campaigns'
        WHEN p_category = 'test' THEN NULL
        WHEN p_kind = 'streak_warning' THEN 'streaks'
        WHEN p_kind = 'subscription_expiry' THEN 'subscription'
        WHEN p_category = 'engagement' THEN 'reminders'
        ELSE 'rewards'
    END
$$;

-- The priority of a capped push (engagement and campaign rows) under the daily cap: a push counts toward its cap
-- only the pushes of the same or a higher priority sent that day, so a lower-priority push sent earlier never
-- takes a higher-priority push's place. 3: the user is about to lose something (a streak, a subscription);
-- 2: reminders; 1: campaigns.
CREATE OR REPLACE FUNCTION hattrick_push_priority(p_category text, p_kind text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_category = 'campaign' THEN 1
        WHEN p_kind IN ('streak_warning', 'subscription_expiry') THEN 3
        ELSE 2
    END
$$;

-- For the app: turns one push category on or off for a user (`rewards`, `streaks`, `reminders`, `subscription`
-- or `campaigns`). Pushes of a category turned off end `opted_out` with the category in `last_error`, and campaign
-- audiences leave out users who turned campaigns off. An unknown category is an error (SQLSTATE 22023).
CREATE OR REPLACE FUNCTION hattrick_set_push_preference(
    p_user uuid, p_category text, p_enabled boolean, p_at timestamptz DEFAULT now()
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_user IS NULL OR p_enabled IS NULL THEN
        RAISE EXCEPTION 'hattrick_set_push_preference: a user and enabled are required'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_category IS NULL OR p_category NOT IN ('rewards', 'streaks', 'reminders', 'subscription', 'campaigns') THEN
        RAISE EXCEPTION 'hattrick_set_push_preference: unknown push category "%"', p_category
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'One of rewards, streaks, reminders, subscription, campaigns.';
    END IF;
    INSERT INTO hattrick_push_preferences (customer_user_id, category, enabled, updated_at)
    VALUES (p_user, p_category, p_enabled, p_at)
    ON CONFLICT (customer_user_id, category) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at;
END $$;

-- Ledger functions for the app ----------------------------------------------------------------------------------
--
-- Idempotency keys follow Stripe's rules (docs/ledger.md):
-- - a key is unique per user and ledger: user 2's `order-42` is not user 1's;
-- - repeating a call with the same key, amount and type does nothing and returns NULL;
-- - reusing a key with another amount or type is an error, SQLSTATE HT001 (nothing is written);
-- - keys in hattrick's own namespace (`badge:`, `level-up:`, `referral:`, `admin:`, ...) are refused, SQLSTATE
--   HT002: the app cannot take a key hattrick will use, nor block one.

-- Whether `key` belongs to hattrick's own namespace.
CREATE OR REPLACE FUNCTION hattrick_reserved_key(p_key text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_key ~ '^(admin|badge|level-up|referral|welcome-vip|opening|rollup|hattrick):'
$$;

-- Checks the arguments every app-facing ledger function shares.
CREATE OR REPLACE FUNCTION hattrick_check_app_call(p_function text, p_user uuid, p_key text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_user IS NULL THEN
        RAISE EXCEPTION '%: a user is required', p_function USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_key IS NULL OR p_key = '' THEN
        RAISE EXCEPTION '%: an idempotency key is required', p_function USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF hattrick_reserved_key(p_key) THEN
        RAISE EXCEPTION '%: idempotency key "%" is in hattrick''s own namespace', p_function, p_key
            USING ERRCODE = 'HT002',
                  HINT = 'Keys starting with admin:, badge:, level-up:, referral:, welcome-vip:, opening:, rollup: '
                         'or hattrick: are hattrick''s; use another prefix.';
    END IF;
END $$;

-- Whether `user` used `key` on `ledger` ('credits' or 'xp') before. With `strict` (the app's calls), a use with
-- another signed amount or type is an error (HT001); hattrick's own keys (a level-up bonus) are used whatever
-- they paid. A compacted key's amount is gone: it counts as used whatever the amount.
DROP FUNCTION IF EXISTS hattrick_key_used(text, text, uuid, text, int, text);
CREATE OR REPLACE FUNCTION hattrick_key_used(
    p_function text, p_ledger text, p_user uuid, p_key text, p_amount int, p_type text, p_strict boolean
) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_amount int;
    v_type text;
BEGIN
    IF p_ledger = 'credits' THEN
        SELECT amount, transaction_type INTO v_amount, v_type FROM customer_credit_transactions
        WHERE customer_user_id = p_user AND idempotency_key = p_key;
    ELSE
        SELECT xp_amount, transaction_type INTO v_amount, v_type FROM customer_xp_transactions
        WHERE customer_user_id = p_user AND idempotency_key = p_key;
    END IF;
    IF FOUND THEN
        IF p_strict AND (v_amount <> p_amount OR v_type IS DISTINCT FROM p_type) THEN
            RAISE EXCEPTION '%: idempotency key "%" was used for this user with amount % and type %, not % and %',
                p_function, p_key, v_amount, v_type, p_amount, p_type
                USING ERRCODE = 'HT001', HINT = 'A retry must repeat the original call; a new payment needs a new key.';
        END IF;
        RETURN true;
    END IF;
    RETURN EXISTS (SELECT 1 FROM hattrick_compacted_user_keys
                   WHERE customer_user_id = p_user AND idempotency_key = p_key AND ledger = p_ledger)
        OR EXISTS (SELECT 1 FROM hattrick_compacted_keys WHERE idempotency_key = p_key);
END $$;

-- Moves `delta` credits (positive: earned, negative: spent) for `user` under `key`, locking the balance row first.
-- Returns the new balance, or NULL when the key had been used. hattrick's own grants (level-up bonuses, not
-- `strict`) come through here without the namespace check. The namespace guards against mistakes, not against a
-- role that may write the ledger tables anyway.
DROP FUNCTION IF EXISTS hattrick_move_credits(text, uuid, int, text, text, text, jsonb, timestamptz);
CREATE OR REPLACE FUNCTION hattrick_move_credits(
    p_function text, p_user uuid, p_delta int, p_type text, p_key text, p_description text, p_metadata jsonb,
    p_at timestamptz, p_strict boolean
) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_balance int;
BEGIN
    INSERT INTO customer_credits (customer_user_id, created_at, updated_at) VALUES (p_user, p_at, p_at)
    ON CONFLICT (customer_user_id) DO NOTHING;
    SELECT balance INTO v_balance FROM customer_credits WHERE customer_user_id = p_user FOR UPDATE;
    IF hattrick_key_used(p_function, 'credits', p_user, p_key, p_delta, p_type, p_strict) THEN
        RETURN NULL;
    END IF;
    IF v_balance + p_delta < 0 THEN
        RAISE EXCEPTION '%: balance % is less than %', p_function, v_balance, -p_delta
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO customer_credit_transactions (id, customer_user_id, amount, transaction_type, description,
                                              balance_before, balance_after, metadata, idempotency_key, created_at)
    VALUES (hattrick_uuid7(), p_user, p_delta, p_type, p_description, v_balance, v_balance + p_delta,
            coalesce(p_metadata, '{}'), p_key, p_at);
    UPDATE customer_credits SET balance = balance + p_delta,
                                lifetime_earned = lifetime_earned + greatest(p_delta, 0),
                                lifetime_spent = lifetime_spent + greatest(-p_delta, 0),
                                updated_at = p_at
    WHERE customer_user_id = p_user;
    RETURN v_balance + p_delta;
END $$;

-- Grants `amount` (> 0) credits. Returns the new balance, or NULL when the key had been used for the same grant.
CREATE OR REPLACE FUNCTION hattrick_grant_credits(
    p_user uuid, p_amount int, p_type text, p_key text, p_description text DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}', p_at timestamptz DEFAULT now()
) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RAISE EXCEPTION 'hattrick_grant_credits: amount must be positive (got %)', p_amount
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM hattrick_check_app_call('hattrick_grant_credits', p_user, p_key);
    RETURN hattrick_move_credits('hattrick_grant_credits', p_user, p_amount, p_type, p_key, p_description, p_metadata,
                                 p_at, true);
END $$;

-- Spends `amount` (> 0) credits; fails when the balance is too low. Returns the new balance, or NULL when the key
-- had been used for the same spend.
CREATE OR REPLACE FUNCTION hattrick_spend_credits(
    p_user uuid, p_amount int, p_type text, p_key text, p_description text DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}', p_at timestamptz DEFAULT now()
) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RAISE EXCEPTION 'hattrick_spend_credits: amount must be positive (got %)', p_amount
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM hattrick_check_app_call('hattrick_spend_credits', p_user, p_key);
    RETURN hattrick_move_credits('hattrick_spend_credits', p_user, -p_amount, p_type, p_key, p_description, p_metadata,
                                 p_at, true);
END $$;

-- Grants `amount` XP (negative for a deduction), recomputes the level both ways and pays the level-up credits of
-- every level crossed upwards, each once per user ever (docs/ledger.md). Returns the new XP, or NULL when the key
-- had been used for the same grant.
CREATE OR REPLACE FUNCTION hattrick_grant_xp(
    p_user uuid, p_amount int, p_type text, p_key text, p_description text DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}', p_at timestamptz DEFAULT now()
) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_before int;
    v_after int;
    v_level record;
BEGIN
    IF p_amount IS NULL OR p_amount = 0 THEN
        RAISE EXCEPTION 'hattrick_grant_xp: amount must not be zero (got %)', p_amount
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM hattrick_check_app_call('hattrick_grant_xp', p_user, p_key);
    INSERT INTO customer_xp (customer_user_id, next_level_xp, created_at, updated_at) VALUES (p_user, 500, p_at, p_at)
    ON CONFLICT (customer_user_id) DO NOTHING;
    SELECT xp_points INTO v_before FROM customer_xp WHERE customer_user_id = p_user FOR UPDATE;
    IF hattrick_key_used('hattrick_grant_xp', 'xp', p_user, p_key, p_amount, p_type, true) THEN
        RETURN NULL;
    END IF;
    v_after := v_before + p_amount;
    IF v_after < 0 THEN
        RAISE EXCEPTION 'hattrick_grant_xp: XP % would fall below zero', v_after USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO customer_xp_transactions (id, customer_user_id, xp_amount, transaction_type, description, metadata,
                                          idempotency_key, created_at)
    VALUES (hattrick_uuid7(), p_user, p_amount, p_type, p_description, coalesce(p_metadata, '{}'), p_key, p_at);
    UPDATE customer_xp
    SET xp_points = v_after, total_earned = total_earned + greatest(p_amount, 0), level = hattrick_level_for(v_after),
        level_progress = hattrick_level_progress(v_after), next_level_xp = hattrick_next_level_xp(v_after),
        updated_at = p_at
    WHERE customer_user_id = p_user;
    FOR v_level IN SELECT * FROM hattrick_levels() l WHERE l.xp_from > v_before AND l.xp_from <= v_after LOOP
        PERFORM hattrick_move_credits('hattrick_grant_xp', p_user, v_level.credits, 'promotional',
                                      'level-up:' || p_user || ':' || v_level.level, 'Level up: ' || v_level.name_en,
                                      jsonb_build_object('level_up', v_level.level), p_at, false);
        PERFORM hattrick_enqueue_level_up(p_user, v_level.level, p_at);
    END LOOP;
    RETURN v_after;
END $$;
