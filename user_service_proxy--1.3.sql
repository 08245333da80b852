/* user_service_proxy--1.3.sql: the user_service API on a router over PL/Proxy shards */

\echo Use "CREATE EXTENSION user_service_proxy" to load this file. \quit

-- The router holds no users.  Its shards are ordinary user_service
-- databases (1.3 or later), shard k of N configured with
-- user_service.configure_shard(k, N), listed in order as the options p0 ..
-- p<N-1> of the PL/Proxy server user_service_cluster, which the operator
-- creates with a user mapping (docs/scaling.md).
--
-- Schema user_service has the single node's API: the same names,
-- arguments, defaults and result types.  Each of its functions is the C
-- function proxy_call (src/proxy.c), which calls the function of the same
-- name and arguments in schema user_service_proxy and gives its errors the
-- single node's SQLSTATE and message.  The functions of user_service_proxy
-- route: by the email's home shard (email_hash & (N - 1)) for creates and
-- logins, by the shard an id names (id & (N - 1): shard k's ids are
-- n * N + k) for the rest; lists ask every shard at once and merge.

CREATE SCHEMA user_service_proxy;
COMMENT ON SCHEMA user_service_proxy IS
    'how the router reaches its shards (PL/Proxy functions behind the API of schema user_service)';

CREATE TYPE user_service.user_info AS (
    id         bigint,
    name       text,
    email      text,
    created_at timestamptz,
    updated_at timestamptz
);
COMMENT ON TYPE user_service.user_info IS 'a user as the API returns it (never the password hash)';

-- The shards' routing hash and email key: the same C code as theirs.
CREATE FUNCTION user_service.email_hash(email text)
RETURNS int
AS 'MODULE_PATHNAME', 'email_hash'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION user_service.email_hash(text) IS
    'routing hash of an email: first 4 bytes of sha256(lower(normalize(btrim(email), NFC))) as int; home shard = email_hash & (shard_count - 1)';

CREATE FUNCTION user_service.email_key(email text)
RETURNS text
AS 'MODULE_PATHNAME', 'email_key'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION user_service.email_key(text) IS
    'an email as the extension compares emails: trimmed, NFC, lower-cased';

-- ---------------------------------------------------------------------
-- The cluster
-- ---------------------------------------------------------------------

-- How many shards: the partitions p0 .. of server user_service_cluster.
CREATE FUNCTION user_service_proxy.shard_count()
RETURNS int
LANGUAGE sql STABLE
AS $$
    SELECT count(*)::int
      FROM pg_catalog.pg_foreign_server s,
           pg_catalog.pg_options_to_table(s.srvoptions) o
     WHERE s.srvname OPERATOR(pg_catalog.=) 'user_service_cluster'
       AND o.option_name OPERATOR(pg_catalog.~) '^p[0-9]+$'
$$;

-- Where a call goes.  A NULL goes to shard 0, whose function then reports
-- it with the single node's error.
CREATE FUNCTION user_service_proxy.email_home(email text)
RETURNS int
LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE WHEN $1 IS NULL THEN 0 ELSE user_service.email_hash($1) END $$;

CREATE FUNCTION user_service_proxy.id_shard(id bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT COALESCE($1, 0) $$;

-- Each shard's place, as it says itself (check_cluster compares).
CREATE FUNCTION user_service_proxy.shard_place(partition int,
                                               OUT shard int, OUT shard_count int)
RETURNS record
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON partition;
    SELECT COALESCE(c.shard, 0) AS shard, COALESCE(c.shard_count, 1) AS shard_count
      FROM (SELECT) d LEFT JOIN user_service.shard_config c ON true;
$$;

-- ---------------------------------------------------------------------
-- One shard per call
-- ---------------------------------------------------------------------

CREATE FUNCTION user_service_proxy.import_user(name text, email text, password_hash text)
RETURNS user_service.user_info
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.email_home(email);
    SELECT * FROM user_service.import_user(name, email, password_hash);
$$;

CREATE FUNCTION user_service_proxy.create_user(name text, email text, password text)
RETURNS user_service.user_info
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.email_home(email);
    SELECT * FROM user_service.create_user(name, email, password);
$$;

CREATE FUNCTION user_service_proxy.get_user(id bigint)
RETURNS user_service.user_info
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.id_shard(id);
    SELECT * FROM user_service.get_user(id);
$$;

CREATE FUNCTION user_service_proxy.set_password(id bigint, password text)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.id_shard(id);
    SELECT user_service.set_password(id, password);
$$;

CREATE FUNCTION user_service_proxy.update_on(id bigint, name text, email text)
RETURNS user_service.user_info
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.id_shard(id);
    SELECT * FROM user_service.update_user(id, name, email);
$$;

CREATE FUNCTION user_service_proxy.delete_on(id bigint)
RETURNS user_service.user_info
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.id_shard(id);
    SELECT * FROM user_service.delete_user(id);
$$;

CREATE FUNCTION user_service_proxy.verify_at_home(email text, password text)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.email_home(email);
    SELECT user_service.verify_password(email, password);
$$;

CREATE FUNCTION user_service_proxy.verify_on(owner bigint, email text, password text)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON owner;
    SELECT user_service.verify_password(email, password);
$$;

-- The login throttle of the shard that runs an email's logins.
CREATE FUNCTION user_service_proxy.login_throttle_on(route bigint, email text,
    OUT failures int, OUT window_start timestamptz, OUT locked_until timestamptz)
RETURNS record
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON route;
    SELECT t.failures, t.window_start, t.locked_until FROM user_service.login_throttle(email) t;
$$;

CREATE FUNCTION user_service_proxy.reset_login_throttle_on(route bigint, email text)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON route;
    SELECT user_service.reset_login_throttle(email);
$$;

-- Email claims on an email's home shard (src/email_claims.c).
CREATE FUNCTION user_service_proxy.email_claim(email text)
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.email_home(email);
    SELECT user_service.email_claim(email);
$$;

CREATE FUNCTION user_service_proxy.claim_email(email text, user_id bigint)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.email_home(email);
    SELECT user_service.claim_email(email, user_id);
$$;

CREATE FUNCTION user_service_proxy.release_email_claim(email text, user_id bigint)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.email_home(email);
    SELECT user_service.release_email_claim(email, user_id);
$$;

CREATE FUNCTION user_service_proxy.email_claims_before(before timestamptz,
    OUT email_key text, OUT user_id bigint, OUT claimed_at timestamptz)
RETURNS SETOF record
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT c.email_key, c.user_id, c.claimed_at FROM user_service.email_claims_before(before) c;
$$;

-- ---------------------------------------------------------------------
-- Every shard at once
-- ---------------------------------------------------------------------

CREATE FUNCTION user_service_proxy.pages_after(after_id bigint, per_page int,
    OUT total bigint, OUT users user_service.user_info[])
RETURNS SETOF record
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT l.total, l.users FROM user_service.list_users_after(after_id, per_page) l;
$$;

CREATE FUNCTION user_service_proxy.user_ids(page int, per_page int,
    OUT total bigint, OUT ids bigint[])
RETURNS SETOF record
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT l.total, l.ids FROM user_service.user_ids(page, per_page) l;
$$;

CREATE FUNCTION user_service_proxy.get_users(ids bigint[])
RETURNS SETOF user_service.user_info
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    SPLIT ids;
    RUN ON ids;
    SELECT * FROM user_service.get_users(ids);
$$;

-- ---------------------------------------------------------------------
-- Batches: one part per shard under one handle
-- ---------------------------------------------------------------------

CREATE TYPE user_service.batch_info AS (
    batch_id     bigint,
    kind         text,
    state        text,
    total        int,
    pending      int,
    running      int,
    succeeded    int,
    failed       int,
    cancelled    int,
    concurrency  int,
    submitted_at timestamptz,
    started_at   timestamptz,
    finished_at  timestamptz
);
COMMENT ON TYPE user_service.batch_info IS 'state and counts of a batch, as batch_status returns them';

-- The single node's checks of a whole submission, with its errors.
CREATE FUNCTION user_service_proxy.check_batch(kind text, items jsonb, concurrency int)
RETURNS int
AS 'MODULE_PATHNAME', 'proxy_check_batch'
LANGUAGE C STABLE;

CREATE FUNCTION user_service_proxy.new_batch_handle(route bigint)
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON route;
    SELECT user_service.new_batch_handle();
$$;

CREATE FUNCTION user_service_proxy.stage_batch_parts(handle bigint, kind text, items jsonb[],
    item_numbers int[], routes bigint[], refused text[], concurrency int)
RETURNS SETOF boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    SPLIT items, item_numbers, routes, refused;
    RUN ON routes;
    SELECT user_service.stage_batch_part(handle, kind, items, item_numbers, refused, concurrency);
$$;

CREATE FUNCTION user_service_proxy.release_batch_part(partition int, handle bigint)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON partition;
    SELECT user_service.release_batch_part(handle);
$$;

CREATE FUNCTION user_service_proxy.discard_batch_part(partition int, handle bigint)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON partition;
    SELECT user_service.discard_batch_part(handle);
$$;

-- Discard a handle's staged parts on every shard that answers; how many.
CREATE FUNCTION user_service_proxy.discard_batch_parts(handle bigint)
RETURNS int
LANGUAGE plpgsql
AS $$
DECLARE
    discarded int := 0;
BEGIN
    FOR p IN 0 .. user_service_proxy.shard_count() - 1 LOOP
        BEGIN
            IF user_service_proxy.discard_batch_part(p, handle) THEN
                discarded := discarded + 1;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            NULL;   -- a shard that is down: reconcile_batches discards its part
        END;
    END LOOP;
    RETURN discarded;
END
$$;

CREATE FUNCTION user_service_proxy.staged_batch_parts(before timestamptz)
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT h FROM user_service.staged_batch_parts(before) h;
$$;

CREATE FUNCTION user_service_proxy.purge_batch_parts()
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT user_service.purge_batch_parts();
$$;

CREATE FUNCTION user_service_proxy.batch_parts_released(handle bigint)
RETURNS SETOF boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT r FROM user_service.batch_part_is_released(handle) r WHERE r IS NOT NULL;
$$;

CREATE FUNCTION user_service_proxy.batch_part_status(handle bigint)
RETURNS SETOF user_service.batch_info
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT * FROM user_service.batch_part_status(handle);
$$;

CREATE FUNCTION user_service_proxy.batch_part_results(handle bigint,
    OUT item int, OUT status text, OUT user_id bigint, OUT sqlstate text, OUT error text,
    OUT result jsonb)
RETURNS SETOF record
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT r.item, r.status, r.user_id, r.sqlstate, r.error, r.result
      FROM user_service.batch_part_results(handle) r;
$$;

CREATE FUNCTION user_service_proxy.wait_batch_part(handle bigint, timeout interval)
RETURNS SETOF boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT user_service.wait_batch_part(handle, timeout);
$$;

CREATE FUNCTION user_service_proxy.cancel_batch_part(handle bigint)
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON ALL;
    SELECT user_service.cancel_batch_part(handle);
$$;

CREATE FUNCTION user_service_proxy.batch_not_found(handle bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'batch % not found', handle USING ERRCODE = 'no_data_found';
END
$$;

-- A submission over the shards, all or nothing until the first part is
-- released:
--   1. check every item here as a single node would (nothing stored on a
--      bad submission);
--   2. route each item: creates and imports to their email's home, the
--      rest to the shard of their id; an update_user item whose new email
--      has its home on another shard claims it there first (as
--      update_user does), and is refused with its 23505 if it is taken;
--   3. stage each shard's part under one handle (nothing runs yet); if any
--      shard fails, the staged parts are discarded and the claims of step
--      2 released;
--   4. release the parts: each becomes an ordinary batch of its shard,
--      submitted as the caller.  The first release decides: a part that
--      cannot be released then (its shard went down) is released by
--      reconcile_batches once the shard is back, and a warning says so.
CREATE FUNCTION user_service_proxy.submit_batch(kind text, items jsonb, concurrency int DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n int := user_service_proxy.shard_count();
    its jsonb[];
    numbers int[];
    routes bigint[];
    refused text[];
    claimed text[] := '{}';
    claimed_ids bigint[] := '{}';
    handle bigint;
    released int := 0;
    failed_at int[] := '{}';
BEGIN
    PERFORM user_service_proxy.check_batch(kind, items, concurrency);
    SELECT array_agg(x.v ORDER BY x.o), array_agg(x.o::int ORDER BY x.o),
           array_agg(CASE WHEN kind IN ('create_user', 'import_user')
                          THEN user_service.email_hash(x.v->>'email')::bigint
                          ELSE (x.v->'id')::text::numeric::bigint END ORDER BY x.o)
      INTO its, numbers, routes
      FROM jsonb_array_elements(items) WITH ORDINALITY x(v, o);
    refused := array_fill(NULL::text, ARRAY[cardinality(its)]);

    IF kind = 'update_user' AND n > 1 THEN
        FOR i IN 1 .. cardinality(its) LOOP
            CONTINUE WHEN jsonb_typeof(its[i]->'email') IS DISTINCT FROM 'string'
                OR (user_service.email_hash(its[i]->>'email') & (n - 1)) = (routes[i] & (n - 1));
            BEGIN
                IF user_service_proxy.claim_email(its[i]->>'email', routes[i]) THEN
                    claimed := claimed || (its[i]->>'email');
                    claimed_ids := claimed_ids || routes[i];
                END IF;
            EXCEPTION
                WHEN unique_violation THEN
                    refused[i] := '23505 ' || regexp_replace(SQLERRM, '^.*REMOTE ERROR: ', '');
                WHEN invalid_parameter_value THEN
                    NULL;   -- the item fails on its shard with the same error
            END;
        END LOOP;
    END IF;

    handle := user_service_proxy.new_batch_handle(routes[1]);
    BEGIN
        PERFORM user_service_proxy.stage_batch_parts(handle, kind, its, numbers, routes, refused,
                                                     concurrency);
    EXCEPTION WHEN OTHERS THEN
        PERFORM user_service_proxy.discard_batch_parts(handle);
        FOR i IN 1 .. cardinality(claimed) LOOP
            BEGIN
                PERFORM user_service_proxy.release_email_claim(claimed[i], claimed_ids[i]);
            EXCEPTION WHEN OTHERS THEN
                NULL;   -- reconcile_email_claims removes it
            END;
        END LOOP;
        RAISE;
    END;

    FOR p IN 0 .. n - 1 LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM unnest(routes) r WHERE (r & (n - 1)) = p);
        BEGIN
            PERFORM user_service_proxy.release_batch_part(p, handle);
            released := released + 1;
        EXCEPTION WHEN OTHERS THEN
            IF released = 0 THEN
                -- nothing released yet: the submission can still be undone
                PERFORM user_service_proxy.discard_batch_parts(handle);
                RAISE;
            END IF;
            failed_at := failed_at || p;
        END;
    END LOOP;
    IF cardinality(failed_at) > 0 THEN
        RAISE WARNING 'batch % is submitted, but its part on shard % has not started',
                      handle, array_to_string(failed_at, ', ')
              USING HINT = 'Run user_service.reconcile_batches() once the shard is back.';
    END IF;
    RETURN handle;
END
$$;

-- The handle's parts summed: the state is the single node's rule over the
-- whole (done once every part is, cancelled if any part was).
CREATE FUNCTION user_service_proxy.batch_status(batch_id bigint)
RETURNS user_service.batch_info
LANGUAGE plpgsql
AS $$
DECLARE
    r user_service.batch_info;
    parts int;
    done int;
    cancelled_parts int;
    busy int;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE s.state IN ('done', 'cancelled')),
           count(*) FILTER (WHERE s.state = 'cancelled'),
           count(*) FILTER (WHERE s.state = 'running'),
           min(s.kind), sum(s.total), sum(s.pending), sum(s.running), sum(s.succeeded),
           sum(s.failed), sum(s.cancelled), max(s.concurrency), min(s.submitted_at),
           min(s.started_at), max(s.finished_at)
      INTO parts, done, cancelled_parts, busy,
           r.kind, r.total, r.pending, r.running, r.succeeded, r.failed, r.cancelled,
           r.concurrency, r.submitted_at, r.started_at, r.finished_at
      FROM user_service_proxy.batch_part_status(batch_id) s;
    IF parts = 0 THEN
        PERFORM user_service_proxy.batch_not_found(batch_id);
    END IF;
    r.batch_id := batch_id;
    r.state := CASE WHEN done = parts AND cancelled_parts > 0 THEN 'cancelled'
                    WHEN done = parts THEN 'done'
                    WHEN busy > 0 OR r.started_at IS NOT NULL THEN 'running'
                    ELSE 'pending' END;
    IF done < parts THEN
        r.finished_at := NULL;
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION user_service_proxy.batch_results(batch_id bigint)
RETURNS TABLE (item int, status text, user_id bigint, sqlstate text, error text, result jsonb)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT r.item, r.status, r.user_id, r.sqlstate, r.error, r.result
                   FROM user_service_proxy.batch_part_results(batch_id) r ORDER BY r.item;
    IF NOT FOUND THEN
        PERFORM user_service_proxy.batch_status(batch_id);   -- P0002 when there is none
    END IF;
END
$$;

-- Every shard waits for its part at once.
CREATE FUNCTION user_service_proxy.wait_batch(batch_id bigint, timeout interval DEFAULT '1 minute')
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    result boolean;
BEGIN
    -- the router's own cap, as a single node's wait_batch applies it
    IF current_setting('user_service.max_batch_wait', true) NOT IN ('0', '') THEN
        timeout := least(timeout, current_setting('user_service.max_batch_wait')::interval);
    END IF;
    SELECT bool_and(w) INTO result FROM user_service_proxy.wait_batch_part(batch_id, timeout) w;
    IF result IS NULL THEN
        PERFORM user_service_proxy.batch_not_found(batch_id);
    END IF;
    RETURN result;
END
$$;

CREATE FUNCTION user_service_proxy.cancel_batch(batch_id bigint)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    result bigint;
BEGIN
    SELECT sum(c)::bigint INTO result FROM user_service_proxy.cancel_batch_part(batch_id) c;
    IF result IS NULL THEN
        PERFORM user_service_proxy.batch_not_found(batch_id);
    END IF;
    RETURN result;
END
$$;

-- Parts staged longer ago than older_than and never released: released
-- when another part of their handle was (the submission was decided),
-- discarded otherwise (its router died before deciding).  Returns how many
-- parts it released or discarded.  It also deletes the rows of parts whose
-- batches retention deleted.
CREATE FUNCTION user_service_proxy.reconcile_batches(older_than interval DEFAULT '10 minutes')
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n int := user_service_proxy.shard_count();
    h bigint;
    acted bigint := 0;
    decided boolean;
BEGIN
    FOR h IN SELECT DISTINCT s FROM user_service_proxy.staged_batch_parts(pg_catalog.now() - older_than) s LOOP
        decided := EXISTS (SELECT 1 FROM user_service_proxy.batch_parts_released(h) r WHERE r);
        IF decided THEN
            FOR p IN 0 .. n - 1 LOOP
                IF user_service_proxy.release_batch_part(p, h) THEN
                    acted := acted + 1;
                END IF;
            END LOOP;
        ELSE
            acted := acted + user_service_proxy.discard_batch_parts(h);
        END IF;
    END LOOP;
    PERFORM user_service_proxy.purge_batch_parts();
    RETURN acted;
END
$$;

-- ---------------------------------------------------------------------
-- The API's steps over several shards
-- ---------------------------------------------------------------------

-- A login: at the email's home shard, unless a user of another shard holds
-- the email there (a claim), then at that user's shard.
CREATE FUNCTION user_service_proxy.verify_password(email text, password text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    owner bigint;
BEGIN
    IF email IS NOT NULL THEN
        owner := user_service_proxy.email_claim(email);
    END IF;
    IF owner IS NULL THEN
        RETURN user_service_proxy.verify_at_home(email, password);
    END IF;
    RETURN user_service_proxy.verify_on(owner, email, password);
END
$$;

-- Where an email's logins run (and are throttled): the shard of the user of
-- another shard holding it, else its home.  A NULL goes to shard 0.
CREATE FUNCTION user_service_proxy.login_shard(email text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
    IF email IS NULL THEN
        RETURN 0;
    END IF;
    RETURN COALESCE(user_service_proxy.email_claim(email), user_service.email_hash(email));
END
$$;

CREATE FUNCTION user_service_proxy.login_throttle(email text,
    OUT failures int, OUT window_start timestamptz, OUT locked_until timestamptz)
RETURNS record
LANGUAGE plpgsql
AS $$
BEGIN
    SELECT t.failures, t.window_start, t.locked_until INTO failures, window_start, locked_until
      FROM user_service_proxy.login_throttle_on(user_service_proxy.login_shard(email), email) t;
END
$$;

CREATE FUNCTION user_service_proxy.reset_login_throttle(email text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN user_service_proxy.reset_login_throttle_on(user_service_proxy.login_shard(email), email);
END
$$;

-- An email change.  When the new email's home is the user's own shard,
-- that shard checks it against its users and claims, as a single node
-- would.  Otherwise, in this order:
--   1. claim the new email on its home shard (23505 when taken there);
--   2. update the user on its shard (on an error, release a claim made in
--      step 1 and re-raise);
--   3. release the claim on the old email's home shard, if it had one.
-- A router that dies between the steps leaves a claim whose email is not
-- its user's (after 1) or an old claim (after 2): both are claims that do
-- not match their user, which reconcile_email_claims removes.  Until then
-- the email stays taken: never two users with one email.
CREATE FUNCTION user_service_proxy.update_user(id bigint, name text DEFAULT NULL,
                                               email text DEFAULT NULL)
RETURNS user_service.user_info
LANGUAGE plpgsql
AS $$
DECLARE
    n int := user_service_proxy.shard_count();
    here int;
    old user_service.user_info;
    result user_service.user_info;
    claimed boolean := false;
BEGIN
    IF id IS NULL OR email IS NULL OR n <= 1 THEN
        RETURN user_service_proxy.update_on(id, name, email);
    END IF;
    here := (id & (n - 1))::int;
    old := user_service_proxy.get_user(id);
    IF (user_service.email_hash(email) & (n - 1)) <> here THEN
        claimed := user_service_proxy.claim_email(email, id);
    END IF;
    BEGIN
        result := user_service_proxy.update_on(id, name, email);
    EXCEPTION WHEN OTHERS THEN
        IF claimed THEN
            PERFORM user_service_proxy.release_email_claim(email, id);
        END IF;
        RAISE;
    END;
    IF (user_service.email_hash(old.email) & (n - 1)) <> here
       AND user_service.email_key(old.email) <> user_service.email_key(email) THEN
        BEGIN
            PERFORM user_service_proxy.release_email_claim(old.email, id);
        EXCEPTION WHEN OTHERS THEN
            NULL;   -- the update stands; reconcile_email_claims removes the claim
        END;
    END IF;
    RETURN result;
END
$$;

-- A delete, and the release of the claim its email had on another shard.
CREATE FUNCTION user_service_proxy.delete_user(id bigint)
RETURNS user_service.user_info
LANGUAGE plpgsql
AS $$
DECLARE
    n int := user_service_proxy.shard_count();
    old user_service.user_info;
BEGIN
    old := user_service_proxy.delete_on(id);
    IF n > 1 AND (user_service.email_hash(old.email) & (n - 1)) <> (id & (n - 1)) THEN
        BEGIN
            PERFORM user_service_proxy.release_email_claim(old.email, id);
        EXCEPTION WHEN OTHERS THEN
            NULL;   -- the delete stands; reconcile_email_claims removes the claim
        END;
    END IF;
    RETURN old;
END
$$;

-- A keyset page: every shard's page after after_id at once, merged; the
-- total is the sum of the shards' exact totals.  One round trip.
CREATE FUNCTION user_service_proxy.list_users_after(after_id bigint DEFAULT 0,
    per_page int DEFAULT 20, OUT total bigint, OUT users user_service.user_info[])
RETURNS record
LANGUAGE plpgsql
AS $$
BEGIN
    WITH p AS MATERIALIZED (
        SELECT * FROM user_service_proxy.pages_after(after_id, per_page))
    SELECT (SELECT sum(p.total)::bigint FROM p),
           ARRAY(SELECT u FROM p, unnest(p.users) u ORDER BY (u).id LIMIT per_page)
      INTO total, users;
END
$$;

-- A numbered page.  Page 1 is a keyset page.  Deeper ones take two round
-- trips: every shard sends its first page * per_page ids and its total,
-- the router picks the page's ids from their merge, and then asks the
-- shards holding them for those users.  The cost grows with the page
-- number (page * per_page ids from each shard), as a single node's OFFSET
-- does.  Not one snapshot: a user deleted between the two steps is missing
-- from the page.
CREATE FUNCTION user_service_proxy.list_users(page int DEFAULT 1, per_page int DEFAULT 20,
    OUT total bigint, OUT users user_service.user_info[])
RETURNS record
LANGUAGE plpgsql
AS $$
DECLARE
    page_ids bigint[];
BEGIN
    IF page = 1 THEN
        SELECT l.total, l.users INTO total, users
          FROM user_service_proxy.list_users_after(0, per_page) l;
        RETURN;
    END IF;
    WITH s AS MATERIALIZED (
        SELECT * FROM user_service_proxy.user_ids(page, per_page))
    SELECT (SELECT sum(s.total)::bigint FROM s),
           ARRAY(SELECT i FROM s, unnest(s.ids) i ORDER BY i
                 OFFSET (page - 1)::bigint * per_page LIMIT per_page)
      INTO total, page_ids;
    IF cardinality(page_ids) = 0 THEN
        users := '{}';
    ELSE
        users := ARRAY(SELECT u FROM user_service_proxy.get_users(page_ids) u ORDER BY u.id);
    END IF;
END
$$;

-- ---------------------------------------------------------------------
-- The API (schema user_service): proxy_call into the functions above
-- ---------------------------------------------------------------------

CREATE FUNCTION user_service.import_user(name text, email text, password_hash text)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.import_user(text, text, text) IS
    'create a user with another system''s password hash on its email''s home shard; 23505 when the email is taken';

CREATE FUNCTION user_service.create_user(name text, email text, password text)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.create_user(text, text, text) IS
    'create a user on its email''s home shard; 23505 when the email is taken (any case, any shard)';

CREATE FUNCTION user_service.get_user(id bigint)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C STABLE;
COMMENT ON FUNCTION user_service.get_user(bigint) IS
    'the user with this id (from the shard its id names); P0002 when there is none';

CREATE FUNCTION user_service.update_user(id bigint, name text DEFAULT NULL, email text DEFAULT NULL)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.update_user(bigint, text, text) IS
    'change name and/or email (NULL keeps the value); an email of another shard''s home is claimed there first';

CREATE FUNCTION user_service.delete_user(id bigint)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.delete_user(bigint) IS
    'delete the user with this id and return it; P0002 when there is none';

CREATE FUNCTION user_service.list_users(page int DEFAULT 1, per_page int DEFAULT 20,
                                        OUT total bigint, OUT users user_service.user_info[])
RETURNS record
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C STABLE;
COMMENT ON FUNCTION user_service.list_users(int, int) IS
    'one page of users ordered by id over all shards and the exact total (the sum of the shards'')';

CREATE FUNCTION user_service.list_users_after(after_id bigint DEFAULT 0, per_page int DEFAULT 20,
                                              OUT total bigint, OUT users user_service.user_info[])
RETURNS record
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C STABLE;
COMMENT ON FUNCTION user_service.list_users_after(bigint, int) IS
    'the per_page users with id > after_id over all shards (one round trip) and the exact total';

CREATE FUNCTION user_service.verify_password(email text, password text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.verify_password(text, text) IS
    'true when the password matches the user with this email (any case), wherever the user lives';

CREATE FUNCTION user_service.set_password(id bigint, password text)
RETURNS void
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.set_password(bigint, text) IS
    'hash and store a new password for the user with this id (on its shard)';

CREATE FUNCTION user_service.submit_batch(kind text, items jsonb, concurrency int DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.submit_batch(text, jsonb, int) IS
    'check a whole batch, split it over the shards (concurrency applies per shard); returns its one handle';

CREATE FUNCTION user_service.batch_status(batch_id bigint)
RETURNS user_service.batch_info
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.batch_status(bigint) IS
    'state and counts of a batch over all its shards; P0002 when there is none';

CREATE FUNCTION user_service.batch_results(batch_id bigint)
RETURNS TABLE (item int, status text, user_id bigint, sqlstate text, error text, result jsonb)
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.batch_results(bigint) IS
    'one row per item of a batch, numbered as submitted, with its result or error';

CREATE FUNCTION user_service.cancel_batch(batch_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.cancel_batch(bigint) IS
    'cancel the items of a batch that have not started, on every shard; returns how many';

CREATE FUNCTION user_service.wait_batch(batch_id bigint, timeout interval DEFAULT '1 minute')
RETURNS boolean
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.wait_batch(bigint, interval) IS
    'wait until every part of a batch is done or cancelled (true) or the timeout passes (false)';

CREATE FUNCTION user_service.reconcile_batches(older_than interval DEFAULT '10 minutes')
RETURNS bigint
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.reconcile_batches(interval) IS
    'release or discard the batch parts an interrupted submission left staged; returns how many';

CREATE FUNCTION user_service.login_throttle(email text,
    OUT failures int, OUT window_start timestamptz, OUT locked_until timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.login_throttle(text) IS
    'failed logins counted for an email by the shard that runs its logins, since when, and until when it is locked out';

CREATE FUNCTION user_service.reset_login_throttle(email text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.reset_login_throttle(text) IS
    'forget an email''s failed logins and lockout on the shard that runs its logins; true when there were any';

-- ---------------------------------------------------------------------
-- Operating the cluster
-- ---------------------------------------------------------------------

-- Each partition of user_service_cluster and the place its shard says it
-- has; ok when they agree.  Routing is right only when every row is ok.
CREATE FUNCTION user_service_proxy.check_cluster(OUT partition int, OUT shard int,
                                                 OUT shard_count int, OUT ok boolean)
RETURNS SETOF record
LANGUAGE plpgsql
AS $$
DECLARE
    n int := user_service_proxy.shard_count();
BEGIN
    FOR i IN 0 .. n - 1 LOOP
        partition := i;
        SELECT p.shard, p.shard_count INTO shard, shard_count
          FROM user_service_proxy.shard_place(i) p;
        ok := shard = i AND shard_count = n;
        RETURN NEXT;
    END LOOP;
END
$$;
CREATE FUNCTION user_service.check_cluster(OUT partition int, OUT shard int,
                                           OUT shard_count int, OUT ok boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.check_cluster() IS
    'each partition of user_service_cluster and the shard place its database has; ok when they agree';

-- Remove the claims that do not match their user (the user is gone, or
-- has another email): what an email change or a delete interrupted between
-- its steps leaves.  Only claims older than older_than, so that a change in
-- progress keeps its claim.  Returns how many went.
CREATE FUNCTION user_service_proxy.reconcile_email_claims(older_than interval DEFAULT '10 minutes')
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    c record;
    holder user_service.user_info;
    removed bigint := 0;
BEGIN
    FOR c IN SELECT * FROM user_service_proxy.email_claims_before(pg_catalog.now() - older_than) LOOP
        BEGIN
            holder := user_service_proxy.get_user(c.user_id);
        EXCEPTION WHEN no_data_found THEN
            holder := NULL;
        END;
        IF holder.id IS NULL OR user_service.email_key(holder.email) <> c.email_key THEN
            IF user_service_proxy.release_email_claim(c.email_key, c.user_id) THEN
                removed := removed + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN removed;
END
$$;
CREATE FUNCTION user_service.reconcile_email_claims(older_than interval DEFAULT '10 minutes')
RETURNS bigint
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.reconcile_email_claims(interval) IS
    'remove email claims (older than older_than) that do not match their user; returns how many';

-- Pages as rows and as jsonb, over the router's list_users and
-- list_users_after, as a single node defines them, but with the caller's
-- rights (PL/Proxy connects to the shards as the current role: a SECURITY
-- DEFINER function would reach them as its owner), so a role needs EXECUTE
-- on list_users or list_users_after too (the grant recipe gives all).
CREATE FUNCTION user_service.list_users_rows(page int DEFAULT 1, per_page int DEFAULT 20)
RETURNS TABLE (id bigint, name text, email text, created_at timestamptz,
               updated_at timestamptz, total bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp ROWS 20
AS $$
    SELECT u.id, u.name, u.email, u.created_at, u.updated_at, l.total
      FROM user_service.list_users($1, $2) l,
           unnest(l.users) WITH ORDINALITY AS u(id, name, email, created_at, updated_at, n)
     ORDER BY u.n
$$;
COMMENT ON FUNCTION user_service.list_users_rows(int, int) IS
    'one page of users over all shards as rows in id order, each with the exact total; no rows past the end';

CREATE FUNCTION user_service.list_users_after_rows(after_id bigint DEFAULT 0, per_page int DEFAULT 20)
RETURNS TABLE (id bigint, name text, email text, created_at timestamptz,
               updated_at timestamptz, total bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp ROWS 20
AS $$
    SELECT u.id, u.name, u.email, u.created_at, u.updated_at, l.total
      FROM user_service.list_users_after($1, $2) l,
           unnest(l.users) WITH ORDINALITY AS u(id, name, email, created_at, updated_at, n)
     ORDER BY u.n
$$;
COMMENT ON FUNCTION user_service.list_users_after_rows(bigint, int) IS
    'the per_page users with id > after_id over all shards as rows, each with the exact total';

CREATE FUNCTION user_service.list_users_json(page int DEFAULT 1, per_page int DEFAULT 20)
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('total', l.total, 'users',
               COALESCE((SELECT jsonb_agg(jsonb_build_object('id', u.id, 'name', u.name,
                                     'email', u.email, 'created_at', u.created_at,
                                     'updated_at', u.updated_at) ORDER BY u.n)
                           FROM unnest(l.users) WITH ORDINALITY
                                AS u(id, name, email, created_at, updated_at, n)), '[]'::jsonb))
      FROM user_service.list_users($1, $2) l
$$;
COMMENT ON FUNCTION user_service.list_users_json(int, int) IS
    'one page of users over all shards and the exact total as {"total": n, "users": [...]}';

CREATE FUNCTION user_service.list_users_after_json(after_id bigint DEFAULT 0, per_page int DEFAULT 20)
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('total', l.total, 'users',
               COALESCE((SELECT jsonb_agg(jsonb_build_object('id', u.id, 'name', u.name,
                                     'email', u.email, 'created_at', u.created_at,
                                     'updated_at', u.updated_at) ORDER BY u.n)
                           FROM unnest(l.users) WITH ORDINALITY
                                AS u(id, name, email, created_at, updated_at, n)), '[]'::jsonb))
      FROM user_service.list_users_after($1, $2) l
$$;
COMMENT ON FUNCTION user_service.list_users_after_json(bigint, int) IS
    'the per_page users with id > after_id over all shards and the exact total as {"total": n, "users": [...]}';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA user_service FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA user_service_proxy FROM PUBLIC;
