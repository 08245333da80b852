/* user_service--1.2--1.3.sql: logical replication, recount_users, emails in NFC */

-- complain if script is sourced in psql, rather than through ALTER EXTENSION
\echo Use "ALTER EXTENSION user_service UPDATE TO '1.3'" to load this file. \quit

-- Logical replication.  A publication that includes a table without a
-- primary key or replica identity makes every UPDATE and DELETE of it fail
-- ("cannot update table ... because it does not have a replica identity"):
-- after CREATE PUBLICATION ... FOR ALL TABLES the workers could not record a
-- single item.  These two tables have no key on purpose (append-only
-- counters), so they get REPLICA IDENTITY FULL, which costs nothing below
-- wal_level = logical.  (The items, at the end of this script, get a key.)
ALTER TABLE user_service.batch_progress REPLICA IDENTITY FULL;
ALTER TABLE user_service.user_count_deltas REPLICA IDENTITY FULL;

-- The exact total from the rows themselves, for when the statement triggers
-- did not run: a data-only restore with --disable-triggers, rows copied in
-- with session_replication_role = replica, triggers disabled by hand.
-- SHARE on users waits for the transactions writing users and holds off new
-- ones (their deltas are then all visible), EXCLUSIVE on user_count_deltas
-- holds off the folds; readers go on.  Refused where user_count_deltas is
-- subscribed to: the publisher's count arrives with its rows.
CREATE FUNCTION user_service.recount_users()
RETURNS bigint
AS 'MODULE_PATHNAME', 'recount_users'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.recount_users() IS
    'recompute the exact user count from the users rows (after a restore with --disable-triggers); returns it';
REVOKE ALL ON FUNCTION user_service.recount_users() FROM PUBLIC;

-- Emails are stored and compared in Unicode Normalization Form C (in UTF-8
-- databases): "josé" typed with a composed or a decomposed é is one
-- address.  Existing rows are normalized here, unless two of them would
-- become the same address: then the update stops and names them, and
-- nothing changes until the DBA has merged or renamed one of each pair.
-- updated_at is kept: the address a user sees is the same.
DO $$
DECLARE
    clashes text;
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RETURN;
    END IF;
    SELECT pg_catalog.string_agg(g.ids, '; ')
      INTO clashes
      FROM (SELECT 'users ' OPERATOR(pg_catalog.||)
                   pg_catalog.array_to_string(pg_catalog.array_agg(u.id ORDER BY u.id), ', ') AS ids
              FROM user_service.users u
             GROUP BY pg_catalog.lower(pg_catalog.normalize(u.email, 'NFC'))
            HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1
             ORDER BY pg_catalog.min(u.id)
             LIMIT 20) g;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            MESSAGE = 'cannot update user_service to 1.3: some email addresses are equal under Unicode normalization',
            DETAIL = 'Emails are compared in NFC from 1.3 on; these have the same address: '
                     OPERATOR(pg_catalog.||) clashes OPERATOR(pg_catalog.||) '.',
            HINT = 'Keep one user of each group (user_service.update_user to change the others'' email, or delete_user), then run ALTER EXTENSION user_service UPDATE again.';
    END IF;
    UPDATE user_service.users
       SET email = pg_catalog.normalize(email, 'NFC')
     WHERE email IS NOT NFC NORMALIZED;
END
$$;
COMMENT ON INDEX user_service.users_email_key IS
    'email addresses are unique case-insensitively (and stored in Unicode NFC in UTF-8 databases)';

-- Login throttling (src/login_throttle.c): after
-- user_service.login_max_failures failed verify_password calls for an email
-- within user_service.login_failure_window, it answers false for that email
-- until user_service.login_lockout has passed.  These two show and clear an
-- email's state; they take any email, with or without a user.
CREATE FUNCTION user_service.login_throttle(email text,
    OUT failures int, OUT window_start timestamptz, OUT locked_until timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'login_throttle'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.login_throttle(text) IS
    'failed logins counted for an email in the current window, since when, and until when it is locked out';
REVOKE ALL ON FUNCTION user_service.login_throttle(text) FROM PUBLIC;

CREATE FUNCTION user_service.reset_login_throttle(email text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'reset_login_throttle'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.reset_login_throttle(text) IS
    'forget an email''s failed logins and lockout; true when there were any';
REVOKE ALL ON FUNCTION user_service.reset_login_throttle(text) FROM PUBLIC;

-- Shards (src/shard.c): this database's place in a cluster of N shards
-- (user_service.configure_shard).  Its users get the ids n * N + k, n from
-- the identity sequence, so that id % N = k names the shard of every id.
-- No row: shard 0 of 1, the ids the sequence hands out.  Dumped with the
-- data, like the sequence's position, so that a restored shard goes on
-- with its own ids.
CREATE TABLE user_service.shard_config (
    shard         int         NOT NULL,
    shard_count   int         NOT NULL
                  CHECK (shard_count BETWEEN 1 AND 65536
                         AND (shard_count OPERATOR(pg_catalog.&) (shard_count OPERATOR(pg_catalog.-) 1)) OPERATOR(pg_catalog.=) 0),
    configured_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (shard >= 0 AND shard < shard_count)
);
CREATE UNIQUE INDEX shard_config_one_row ON user_service.shard_config ((true));
ALTER TABLE user_service.shard_config REPLICA IDENTITY FULL;   -- keyless, like the three above
COMMENT ON TABLE user_service.shard_config IS
    'this database''s place in a cluster: shard of shard_count (one row at most; none: shard 0 of 1)';
COMMENT ON INDEX user_service.shard_config_one_row IS 'shard_config holds one row at most';
SELECT pg_catalog.pg_extension_config_dump('user_service.shard_config', '');

CREATE FUNCTION user_service.configure_shard(shard int, shard_count int)
RETURNS void
AS 'MODULE_PATHNAME', 'configure_shard'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.configure_shard(int, int) IS
    'make this database shard `shard` of `shard_count` (a power of two): its new users get ids with id % shard_count = shard';
REVOKE ALL ON FUNCTION user_service.configure_shard(int, int) FROM PUBLIC;

-- The routing hash of an email (src/shard.c: SHA-256 of the email as the
-- extension compares it, its first four bytes as an int): its low bits
-- pick the email's home shard.  A documented contract, computable in SQL,
-- unlike hashtext.
CREATE FUNCTION user_service.email_hash(email text)
RETURNS int
AS 'MODULE_PATHNAME', 'email_hash'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION user_service.email_hash(text) IS
    'routing hash of an email: first 4 bytes of sha256(lower(normalize(btrim(email), NFC))) as int; home shard = email_hash & (shard_count - 1)';
REVOKE ALL ON FUNCTION user_service.email_hash(text) FROM PUBLIC;

-- Emails whose home is this shard (email_hash & (shard_count - 1)) held by
-- users of other shards, who changed their email to one of this shard's
-- (src/email_claims.c).  Creates, updates and imports here refuse a claimed
-- email as if a user here had it.  Written by a router
-- (user_service_proxy) through the functions below; dumped with the data.
CREATE TABLE user_service.email_claims (
    email_key  text        PRIMARY KEY,
    user_id    bigint      NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE user_service.email_claims IS
    'emails whose home is this shard held by users of other shards (written by a router)';
COMMENT ON INDEX user_service.email_claims_pkey IS 'one claim per email';
SELECT pg_catalog.pg_extension_config_dump('user_service.email_claims', '');

CREATE FUNCTION user_service.claim_email(email text, user_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'claim_email'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.claim_email(text, bigint) IS
    'hold an email whose home is this shard for user_id of another shard (true: newly); 23505 when taken';
REVOKE ALL ON FUNCTION user_service.claim_email(text, bigint) FROM PUBLIC;

CREATE FUNCTION user_service.release_email_claim(email text, user_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'release_email_claim'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.release_email_claim(text, bigint) IS
    'drop user_id''s claim on an email; false when it held none';
REVOKE ALL ON FUNCTION user_service.release_email_claim(text, bigint) FROM PUBLIC;

CREATE FUNCTION user_service.email_claim(email text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'email_claim'
LANGUAGE C STABLE;
COMMENT ON FUNCTION user_service.email_claim(text) IS
    'the user of another shard holding this email, or NULL';
REVOKE ALL ON FUNCTION user_service.email_claim(text) FROM PUBLIC;

CREATE FUNCTION user_service.email_key(email text)
RETURNS text
AS 'MODULE_PATHNAME', 'email_key'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION user_service.email_key(text) IS
    'an email as the extension compares emails: trimmed, NFC, lower-cased';
REVOKE ALL ON FUNCTION user_service.email_key(text) FROM PUBLIC;

-- Claims older than a time, for a router's reconciler (claims left behind
-- by an interrupted email change).
CREATE FUNCTION user_service.email_claims_before(before timestamptz)
RETURNS TABLE (email_key text, user_id bigint, claimed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.email_key, c.user_id, c.claimed_at
      FROM user_service.email_claims c
     WHERE c.claimed_at < $1
     ORDER BY c.email_key
$$;
COMMENT ON FUNCTION user_service.email_claims_before(timestamptz) IS
    'the email claims made before a time (for a router''s reconcile_email_claims)';
REVOKE ALL ON FUNCTION user_service.email_claims_before(timestamptz) FROM PUBLIC;

-- What a router merges to find a numbered page over its shards: this
-- shard's exact total and its first page * per_page ids, from one
-- snapshot.  page and per_page are checked as list_users checks them (with
-- its errors).
CREATE FUNCTION user_service.user_ids(page int, per_page int,
                                      OUT total bigint, OUT ids bigint[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT l.total
              FROM user_service.list_users(CASE WHEN $1 >= 1 THEN 1 ELSE $1 END, $2) l),
           ARRAY(SELECT u.id FROM user_service.users u
                  ORDER BY u.id LIMIT COALESCE(GREATEST($1::bigint * $2, 0), 0))
$$;
COMMENT ON FUNCTION user_service.user_ids(int, int) IS
    'this shard''s exact total and its first page * per_page ids (a router''s numbered pages)';
REVOKE ALL ON FUNCTION user_service.user_ids(int, int) FROM PUBLIC;

-- The users with these ids, in id order (a router's second step of a
-- numbered page).
CREATE FUNCTION user_service.get_users(ids bigint[])
RETURNS SETOF user_service.user_info
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.id, u.name, u.email, u.created_at, u.updated_at
      FROM user_service.users u
     WHERE u.id OPERATOR(pg_catalog.=) ANY ($1)
     ORDER BY u.id
$$;
COMMENT ON FUNCTION user_service.get_users(bigint[]) IS
    'the users with these ids, in id order (a router''s numbered pages)';
REVOKE ALL ON FUNCTION user_service.get_users(bigint[]) FROM PUBLIC;

-- A batch submitted through a router: one part per shard under one handle
-- (ids of the form n * shard_count + shard, from the shard that made it).
-- A part is staged first (its items kept here, nothing runs), then
-- released: submitted as an ordinary batch of this shard, as the role that
-- submitted it through the router.  The first release is the point of no
-- return: a router that finds any part of a handle released releases the
-- rest, one that finds none discards them (reconcile_batches).  Items a
-- router refused before staging (an email taken on another shard) are
-- kept with their error in refused.  A released part is gone with its
-- batch (batch_retention): reconcile_batches deletes its row.
CREATE SEQUENCE user_service.cluster_batch_handles;
COMMENT ON SEQUENCE user_service.cluster_batch_handles IS 'n of the handles n * shard_count + shard made here';
SELECT pg_catalog.pg_extension_config_dump('user_service.cluster_batch_handles', '');

CREATE TABLE user_service.cluster_batches (
    handle       bigint      PRIMARY KEY,
    batch_id     bigint,
    kind         text        NOT NULL,
    concurrency  int,
    items        jsonb,
    item_numbers int[]       NOT NULL,
    refused      jsonb       NOT NULL DEFAULT '[]',
    staged_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    released_at  timestamptz
);
CREATE INDEX cluster_batches_batch_id ON user_service.cluster_batches (batch_id);
COMMENT ON TABLE user_service.cluster_batches IS
    'this shard''s parts of batches submitted through a router (staged, then released as batch_id)';
COMMENT ON INDEX user_service.cluster_batches_batch_id IS 'the part that is this batch';
COMMENT ON INDEX user_service.cluster_batches_pkey IS 'one part per handle on a shard';
SELECT pg_catalog.pg_extension_config_dump('user_service.cluster_batches', '');

CREATE FUNCTION user_service.new_batch_handle()
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nextval('user_service.cluster_batch_handles') * COALESCE(c.shard_count, 1)
           + COALESCE(c.shard, 0)
      FROM (SELECT) d LEFT JOIN user_service.shard_config c ON true
$$;
COMMENT ON FUNCTION user_service.new_batch_handle() IS
    'a handle for a batch submitted through a router, unique in the cluster';

-- The arrays are this shard's share of a submission: the items, their
-- numbers in it, and for the ones the router refused "SQLSTATE message"
-- (NULL for the others).
CREATE FUNCTION user_service.stage_batch_part(handle bigint, kind text, items jsonb[],
                                              item_numbers int[], refused text[],
                                              concurrency int)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO user_service.cluster_batches (handle, kind, concurrency, items, item_numbers, refused)
    SELECT $1, $2, $6,
           (SELECT jsonb_agg(t.i ORDER BY t.o) FROM unnest($3, $5) WITH ORDINALITY t(i, r, o)
             WHERE t.r IS NULL),
           ARRAY(SELECT t.n FROM unnest($4, $5) WITH ORDINALITY t(n, r, o)
                  WHERE t.r IS NULL ORDER BY t.o),
           COALESCE((SELECT jsonb_agg(jsonb_build_object('item', t.n, 'sqlstate', left(t.r, 5),
                                                         'error', substr(t.r, 7)) ORDER BY t.o)
                       FROM unnest($4, $5) WITH ORDINALITY t(n, r, o) WHERE t.r IS NOT NULL), '[]')
    RETURNING true
$$;
COMMENT ON FUNCTION user_service.stage_batch_part(bigint, text, jsonb[], int[], text[], int) IS
    'keep this shard''s part of a router''s submission, not running yet';

CREATE FUNCTION user_service.batch_part(handle bigint, for_update boolean DEFAULT false)
RETURNS SETOF user_service.cluster_batches
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- a part whose batch retention deleted is gone
    IF for_update THEN
        RETURN QUERY SELECT * FROM user_service.cluster_batches c
                      WHERE c.handle = $1
                        AND (c.batch_id IS NULL
                             OR EXISTS (SELECT FROM user_service.batch_jobs b WHERE b.id = c.batch_id))
                        FOR UPDATE OF c;
    ELSE
        RETURN QUERY SELECT * FROM user_service.cluster_batches c
                      WHERE c.handle = $1
                        AND (c.batch_id IS NULL
                             OR EXISTS (SELECT FROM user_service.batch_jobs b WHERE b.id = c.batch_id));
    END IF;
END
$$;
COMMENT ON FUNCTION user_service.batch_part(bigint, boolean) IS
    'this shard''s part of a router''s batch (locked with for_update)';

CREATE FUNCTION user_service.batch_part_released(handle bigint, batch_id bigint)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE user_service.cluster_batches c
       SET batch_id = $2, items = NULL, released_at = pg_catalog.now()
     WHERE c.handle = $1 AND c.released_at IS NULL
$$;
COMMENT ON FUNCTION user_service.batch_part_released(bigint, bigint) IS
    'note a part released as batch batch_id';

-- As the caller: the part becomes the caller's batch.  False when there
-- is no staged part.
CREATE FUNCTION user_service.release_batch_part(handle bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    p user_service.cluster_batches;
    id bigint;
BEGIN
    SELECT * INTO p FROM user_service.batch_part(handle, true);
    IF NOT FOUND OR p.released_at IS NOT NULL THEN
        RETURN false;
    END IF;
    IF p.items IS NOT NULL THEN
        id := user_service.submit_batch(p.kind, p.items, p.concurrency);
    END IF;
    PERFORM user_service.batch_part_released(handle, id);
    RETURN true;
END
$$;
COMMENT ON FUNCTION user_service.release_batch_part(bigint) IS
    'submit this shard''s staged part of a router''s batch as the caller''s batch';

CREATE FUNCTION user_service.discard_batch_part(handle bigint)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (DELETE FROM user_service.cluster_batches c
                WHERE c.handle = $1 AND c.released_at IS NULL RETURNING 1)
    SELECT count(*) > 0 FROM d
$$;
COMMENT ON FUNCTION user_service.discard_batch_part(bigint) IS
    'drop this shard''s staged (never released) part of a router''s batch';

CREATE FUNCTION user_service.staged_batch_parts(before timestamptz)
RETURNS SETOF bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.handle FROM user_service.cluster_batches c
     WHERE c.released_at IS NULL AND c.staged_at < $1
$$;
COMMENT ON FUNCTION user_service.staged_batch_parts(timestamptz) IS
    'handles of the parts staged before a time and never released';

-- The rows of parts whose batch retention deleted, and of parts with
-- nothing to run (all refused) released longer ago than batch_retention.
CREATE FUNCTION user_service.purge_batch_parts()
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (
        DELETE FROM user_service.cluster_batches c
         WHERE (c.batch_id IS NOT NULL
                AND NOT EXISTS (SELECT FROM user_service.batch_jobs b WHERE b.id = c.batch_id))
            OR (c.batch_id IS NULL AND c.released_at
                < pg_catalog.now() - COALESCE(pg_catalog.current_setting('user_service.batch_retention', true), '7 days')::interval)
        RETURNING 1)
    SELECT count(*) FROM d
$$;
COMMENT ON FUNCTION user_service.purge_batch_parts() IS
    'delete the rows of router batch parts whose batches are gone; returns how many';

CREATE FUNCTION user_service.batch_part_is_released(handle bigint)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.released_at IS NOT NULL FROM user_service.cluster_batches c WHERE c.handle = $1
$$;
COMMENT ON FUNCTION user_service.batch_part_is_released(bigint) IS
    'whether this shard''s part of a router''s batch is released (NULL: no part)';

-- A part's state and counts, as batch_status gives them (its refused items
-- count as failed; a staged part as pending).  No row without a part.
CREATE FUNCTION user_service.batch_part_status(handle bigint)
RETURNS SETOF user_service.batch_info
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    p user_service.cluster_batches;
    s user_service.batch_info;
    nref int;
BEGIN
    SELECT * INTO p FROM user_service.batch_part(handle);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    nref := jsonb_array_length(p.refused);
    IF p.batch_id IS NOT NULL THEN
        s := user_service.batch_status(p.batch_id);
        s.total := s.total + nref;
        s.failed := s.failed + nref;
    ELSE
        s.kind := p.kind;
        s.concurrency := COALESCE(p.concurrency, COALESCE(current_setting('user_service.default_concurrency', true), '4')::int);
        s.total := cardinality(p.item_numbers) + nref;
        s.pending := CASE WHEN p.released_at IS NULL THEN cardinality(p.item_numbers) ELSE 0 END;
        s.running := 0;
        s.succeeded := 0;
        s.failed := nref;
        s.cancelled := 0;
        s.submitted_at := p.staged_at;
        s.state := CASE WHEN p.released_at IS NULL THEN 'pending' ELSE 'done' END;
        s.finished_at := p.released_at;
    END IF;
    s.batch_id := handle;
    RETURN NEXT s;
END
$$;
COMMENT ON FUNCTION user_service.batch_part_status(bigint) IS
    'state and counts of this shard''s part of a router''s batch';

CREATE FUNCTION user_service.batch_part_results(handle bigint)
RETURNS TABLE (item int, status text, user_id bigint, sqlstate text, error text, result jsonb)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    p user_service.cluster_batches;
BEGIN
    SELECT * INTO p FROM user_service.batch_part(handle);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT (r->>'item')::int, 'failed'::text, NULL::bigint, r->>'sqlstate', r->>'error',
               NULL::jsonb
          FROM jsonb_array_elements(p.refused) r;
    IF p.batch_id IS NOT NULL THEN
        RETURN QUERY
            SELECT p.item_numbers[b.item], b.status, b.user_id, b.sqlstate, b.error, b.result
              FROM user_service.batch_results(p.batch_id) b;
    ELSIF p.released_at IS NULL THEN
        RETURN QUERY
            SELECT n, 'pending'::text, NULL::bigint, NULL::text, NULL::text, NULL::jsonb
              FROM unnest(p.item_numbers) n;
    END IF;
END
$$;
COMMENT ON FUNCTION user_service.batch_part_results(bigint) IS
    'the results of this shard''s part of a router''s batch, numbered as submitted';

-- True when the part is done (or has nothing to run), false when the
-- timeout passed first; NULL without a part.
CREATE FUNCTION user_service.wait_batch_part(handle bigint, timeout interval)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    p user_service.cluster_batches;
BEGIN
    SELECT * INTO p FROM user_service.batch_part(handle);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p.batch_id IS NULL THEN
        RETURN p.released_at IS NOT NULL;
    END IF;
    RETURN user_service.wait_batch(p.batch_id, timeout);
END
$$;
COMMENT ON FUNCTION user_service.wait_batch_part(bigint, interval) IS
    'wait for this shard''s part of a router''s batch';

CREATE FUNCTION user_service.cancel_batch_part(handle bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    p user_service.cluster_batches;
BEGIN
    SELECT * INTO p FROM user_service.batch_part(handle, true);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p.batch_id IS NULL THEN
        RETURN 0;
    END IF;
    RETURN user_service.cancel_batch(p.batch_id);
END
$$;
COMMENT ON FUNCTION user_service.cancel_batch_part(bigint) IS
    'cancel the items of this shard''s part of a router''s batch that have not started';

REVOKE ALL ON FUNCTION user_service.new_batch_handle(), user_service.stage_batch_part(bigint, text, jsonb[], int[], text[], int),
    user_service.batch_part(bigint, boolean), user_service.batch_part_released(bigint, bigint),
    user_service.release_batch_part(bigint), user_service.discard_batch_part(bigint),
    user_service.staged_batch_parts(timestamptz), user_service.batch_part_is_released(bigint),
    user_service.purge_batch_parts(),
    user_service.batch_part_status(bigint),
    user_service.batch_part_results(bigint), user_service.wait_batch_part(bigint, interval),
    user_service.cancel_batch_part(bigint) FROM PUBLIC;

-- update_user that changes nothing writes nothing (src/user_ops.c).
COMMENT ON FUNCTION user_service.update_user(bigint, text, text) IS
    'change name and/or email (NULL keeps the value) and bump updated_at; the same values write nothing';

-- Two functions whose result type changes: delete_user returns the user it
-- deleted (what DELETE ... RETURNING gives), batch_results gives each item's
-- result (the jsonb a registered kind's handler returned, below).  A
-- function's result type cannot be changed in place: it is dropped and made
-- again, and the roles it was granted to get their grants again (with
-- GRANT, so that the roles' dependencies are recorded); pg_init_privs is
-- then set back to the extension's own privileges, so that pg_dump keeps
-- those grants as the administrator's.
DO $$
DECLARE
    f record;
    old_acl pg_catalog.aclitem[];
    own_acl pg_catalog.aclitem[];
    g record;
    fn pg_catalog.oid;
BEGIN
    FOR f IN
        SELECT * FROM (VALUES
            ('user_service.delete_user(bigint)',
             $f$CREATE FUNCTION user_service.delete_user(id bigint)
                RETURNS user_service.user_info
                AS 'MODULE_PATHNAME', 'delete_user'
                LANGUAGE C VOLATILE$f$),
            ('user_service.batch_results(bigint)',
             $f$CREATE FUNCTION user_service.batch_results(batch_id bigint)
                RETURNS TABLE (item int, status text, user_id bigint, sqlstate text, error text,
                               result jsonb)
                AS 'MODULE_PATHNAME', 'batch_results'
                LANGUAGE C VOLATILE$f$)) v(sig, def)
    LOOP
        SELECT p.proacl INTO old_acl FROM pg_catalog.pg_proc p
         WHERE p.oid = f.sig::pg_catalog.regprocedure;
        EXECUTE 'DROP FUNCTION ' || f.sig;
        EXECUTE f.def;
        EXECUTE 'REVOKE EXECUTE ON FUNCTION ' || f.sig || ' FROM PUBLIC';
        fn := f.sig::pg_catalog.regprocedure;
        SELECT p.proacl INTO own_acl FROM pg_catalog.pg_proc p WHERE p.oid = fn;
        FOR g IN
            SELECT a.grantee, a.is_grantable
              FROM pg_catalog.aclexplode(old_acl) a
              JOIN pg_catalog.pg_proc p ON p.oid = fn
             WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
        LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', f.sig,
                CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                     ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
                CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        UPDATE pg_catalog.pg_init_privs SET initprivs = own_acl
         WHERE objoid = fn AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND objsubid = 0;
    END LOOP;
END
$$;
COMMENT ON FUNCTION user_service.batch_results(bigint) IS
    'one row per item of a batch, in input order, with its result or error';
COMMENT ON FUNCTION user_service.delete_user(bigint) IS
    'delete the user with this id and return it; P0002 when there is none';

-- Pages as rows: every driver reads scalar columns natively, where an array
-- of user_info arrives as text.  One row per user, in id order, each with
-- the exact total; the page and the total come from one call of list_users
-- (one snapshot).  Past the end there are no rows (a loop that stops at an
-- empty page stops); the jsonb forms below carry the total on every page,
-- an empty one too.  SECURITY DEFINER so that EXECUTE on this function is
-- all a role needs, as for the C functions.
CREATE FUNCTION user_service.list_users_rows(page int DEFAULT 1, per_page int DEFAULT 20)
RETURNS TABLE (id bigint, name text, email text, created_at timestamptz,
               updated_at timestamptz, total bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
ROWS 20
AS $$
    SELECT u.id, u.name, u.email, u.created_at, u.updated_at, l.total
      FROM user_service.list_users($1, $2) l,
           unnest(l.users) WITH ORDINALITY AS u(id, name, email, created_at, updated_at, n)
     ORDER BY u.n
$$;
COMMENT ON FUNCTION user_service.list_users_rows(int, int) IS
    'one page of users as rows in id order, each with the exact total; no rows past the end';

CREATE FUNCTION user_service.list_users_after_rows(after_id bigint DEFAULT 0, per_page int DEFAULT 20)
RETURNS TABLE (id bigint, name text, email text, created_at timestamptz,
               updated_at timestamptz, total bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
ROWS 20
AS $$
    SELECT u.id, u.name, u.email, u.created_at, u.updated_at, l.total
      FROM user_service.list_users_after($1, $2) l,
           unnest(l.users) WITH ORDINALITY AS u(id, name, email, created_at, updated_at, n)
     ORDER BY u.n
$$;
COMMENT ON FUNCTION user_service.list_users_after_rows(bigint, int) IS
    'the per_page users with id > after_id as rows, each with the exact total; no rows past the end';

-- Pages as one jsonb value: {"total": n, "users": [{"id", "name", "email",
-- "created_at", "updated_at"}, ...]}, the total present on an empty page too.
-- Ids are JSON numbers (exact in JSON; JavaScript's JSON.parse is exact up to
-- 2^53 - 1), times as ISO 8601 strings with their offset.
CREATE FUNCTION user_service.list_users_json(page int DEFAULT 1, per_page int DEFAULT 20)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
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
    'one page of users and the exact total as {"total": n, "users": [...]}';

CREATE FUNCTION user_service.list_users_after_json(after_id bigint DEFAULT 0, per_page int DEFAULT 20)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
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
    'the per_page users with id > after_id and the exact total as {"total": n, "users": [...]}';

REVOKE ALL ON FUNCTION user_service.list_users_rows(int, int),
    user_service.list_users_after_rows(bigint, int),
    user_service.list_users_json(int, int),
    user_service.list_users_after_json(bigint, int) FROM PUBLIC;

-- Moving in: users with the hashes other systems made (src/foreign_hash.c).
CREATE FUNCTION user_service.import_user(name text, email text, password_hash text)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'import_user'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.import_user(text, text, text) IS
    'create a user with a password hash another system made (argon2, bcrypt, PBKDF2, Django, sha-crypt, yescrypt, a Keycloak credential); upgraded to argon2id at its first login';

CREATE FUNCTION user_service.hash_format(password_hash text)
RETURNS text
AS 'MODULE_PATHNAME', 'hash_format'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION user_service.hash_format(text) IS
    'the format of a stored password hash: argon2id, bcrypt, pbkdf2-sha256, sha512-crypt, ... or unknown';

CREATE VIEW user_service.password_formats AS
SELECT user_service.hash_format(u.password_hash) AS format, count(*) AS users
  FROM user_service.users u
 GROUP BY 1;
COMMENT ON VIEW user_service.password_formats IS
    'how many users carry each password hash format (those of other systems are replaced by argon2id at their next login)';

REVOKE ALL ON FUNCTION user_service.import_user(text, text, text),
    user_service.hash_format(text) FROM PUBLIC;
REVOKE ALL ON user_service.password_formats FROM PUBLIC;

-- The workers of every database of user_service.database, with the one each
-- serves (a column at the end: the grants on the view stay).
CREATE OR REPLACE VIEW user_service.workers AS
SELECT w.pid, w.state, w.batch_id, w.item, w.items, a.datname AS database
  FROM user_service.worker_info() w
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) w.pid;
COMMENT ON VIEW user_service.workers IS
    'the running background workers: pid, idle or busy, current batch and item, the database each serves';

-- The stats of a database count its own workers (the server's workers may
-- serve several databases).
CREATE OR REPLACE VIEW user_service.stats AS
SELECT (SELECT coalesce(sum(d.delta), 0) FROM user_service.user_count_deltas d)::bigint AS users,
       b.batches_pending,
       b.batches_running,
       b.batches_done,
       b.batches_cancelled,
       b.items_pending,
       b.items_running,
       (SELECT coalesce(sum(g.succeeded + g.failed), 0)
          FROM user_service.batch_progress g
         WHERE g.at > now() - interval '1 minute')::bigint AS items_processed_last_minute,
       w.workers_busy,
       w.workers_idle
  FROM (SELECT count(*) FILTER (WHERE state = 'pending') AS batches_pending,
               count(*) FILTER (WHERE state = 'running') AS batches_running,
               count(*) FILTER (WHERE state = 'done') AS batches_done,
               count(*) FILTER (WHERE state = 'cancelled') AS batches_cancelled,
               coalesce(sum(pending), 0)::bigint AS items_pending,
               coalesce(sum(running), 0)::bigint AS items_running
          FROM user_service.batches) b,
       (SELECT count(*) FILTER (WHERE state = 'busy')::int AS workers_busy,
               count(*) FILTER (WHERE state = 'idle')::int AS workers_idle
          FROM user_service.workers
         WHERE database OPERATOR(pg_catalog.=) pg_catalog.current_database()) w;
COMMENT ON COLUMN user_service.stats.workers_busy IS 'background workers of this database processing items';
COMMENT ON COLUMN user_service.stats.workers_idle IS 'background workers of this database waiting for work';

-- ---------------------------------------------------------------------
-- Registered batch kinds: any SQL function as a batch kind
-- (src/kind_registry.c).  A kind's handler takes one item (jsonb) and
-- returns its result (jsonb), or takes a group of items (jsonb[]) and
-- returns their results in order (jsonb[]).  Items run as the role that
-- submitted the batch.
-- ---------------------------------------------------------------------

-- The kinds are no longer a fixed list: submit_batch checks them.
ALTER TABLE user_service.batch_jobs DROP CONSTRAINT batch_jobs_kind_check;

CREATE TABLE user_service.registered_kinds (
    kind                text        PRIMARY KEY CHECK (kind ~ '^[a-z][a-z0-9_]{0,47}$'),
    grouped             boolean     NOT NULL,
    default_concurrency int         CHECK (default_concurrency >= 1),
    secrets             boolean     NOT NULL DEFAULT false,
    registered_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE user_service.registered_kinds IS
    'batch kinds registered with register_batch_kind; each has a function user_service_kinds.<kind> that calls its handler';
SELECT pg_catalog.pg_extension_config_dump('user_service.registered_kinds', '');
REVOKE ALL ON user_service.registered_kinds FROM PUBLIC;

-- One function per registered kind, user_service_kinds.<kind>(jsonb) (or
-- (jsonb[])), whose body calls the handler: it makes DROP FUNCTION of the
-- handler fail while the kind is registered (a dependency), and pg_dump
-- dumps it after the handler.  The workers call the handler itself.
CREATE SCHEMA user_service_kinds;
COMMENT ON SCHEMA user_service_kinds IS
    'a function per registered batch kind, calling its handler (what keeps the handler from being dropped)';
REVOKE ALL ON SCHEMA user_service_kinds FROM PUBLIC;

CREATE FUNCTION user_service.register_batch_kind(kind text, handler regprocedure,
                                                 default_concurrency int DEFAULT NULL,
                                                 secrets boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'register_batch_kind'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.register_batch_kind(text, regprocedure, int, boolean) IS
    'make a function (jsonb -> jsonb, or jsonb[] -> jsonb[]) a batch kind; its owner or a superuser only';

CREATE FUNCTION user_service.unregister_batch_kind(kind text)
RETURNS void
AS 'MODULE_PATHNAME', 'unregister_batch_kind'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.unregister_batch_kind(text) IS
    'remove a registered batch kind (its handler''s owner or a superuser; not while it has unfinished batches)';

CREATE VIEW user_service.batch_kinds AS
SELECT b.kind,
       true AS builtin,
       b.handler::pg_catalog.regprocedure AS handler,
       pg_catalog.pg_get_userbyid(e.extowner) AS owner,
       b.grouped,
       NULL::int AS default_concurrency,
       b.secrets
  FROM (VALUES ('create_user', 'user_service.create_user(text,text,text)', false, true),
               ('update_user', 'user_service.update_user(bigint,text,text)', false, false),
               ('delete_user', 'user_service.delete_user(bigint)', true, false),
               ('set_password', 'user_service.set_password(bigint,text)', false, true),
               ('import_user', 'user_service.import_user(text,text,text)', true, true))
       AS b(kind, handler, grouped, secrets),
       pg_catalog.pg_extension e
 WHERE e.extname OPERATOR(pg_catalog.=) 'user_service'
UNION ALL
SELECT k.kind,
       false,
       d.refobjid::pg_catalog.regprocedure,
       pg_catalog.pg_get_userbyid(h.proowner),
       k.grouped,
       k.default_concurrency,
       k.secrets
  FROM user_service.registered_kinds k
  LEFT JOIN pg_catalog.pg_proc w
         ON w.proname OPERATOR(pg_catalog.=) k.kind
        AND w.pronamespace OPERATOR(pg_catalog.=) 'user_service_kinds'::pg_catalog.regnamespace
  LEFT JOIN pg_catalog.pg_depend d
         ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND d.objid OPERATOR(pg_catalog.=) w.oid
        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND d.deptype OPERATOR(pg_catalog.=) 'n'
  LEFT JOIN pg_catalog.pg_proc h ON h.oid OPERATOR(pg_catalog.=) d.refobjid;
COMMENT ON VIEW user_service.batch_kinds IS
    'every batch kind: the built-in ones and those registered, with handler (NULL: dropped) and its owner';

REVOKE ALL ON FUNCTION user_service.register_batch_kind(text, regprocedure, int, boolean),
    user_service.unregister_batch_kind(text) FROM PUBLIC;
REVOKE ALL ON user_service.batch_kinds FROM PUBLIC;
COMMENT ON INDEX user_service.registered_kinds_pkey IS 'registered kinds by name';

-- ---------------------------------------------------------------------
-- Items in chunks (src/batch_submit.c, src/batch_run.c).  A batch's items
-- are stored a chunk to a row: up to 250 consecutive items of a kind that
-- hashes nothing, one item of a kind that hashes (each is a claim of its
-- own, so that concurrency bounds the hashes in flight).  A worker claims
-- a chunk with one row lock and records its items' outcomes with one
-- update, where one row per item cost a row lock and a new row version
-- per item: three times the work of applying a cheap item.  Item i of the
-- chunk is element i of each array (status, payload, ...); pending counts
-- its pending items and due is when the first of those may be tried (NULL:
-- now).  The view user_service.batch_items shows the items one per row,
-- as the table of that name did up to 1.2.
-- ---------------------------------------------------------------------
CREATE TABLE user_service.batch_chunks (
    batch_id    bigint        NOT NULL,
    first_item  int           NOT NULL CHECK (first_item >= 1),
    pending     int           NOT NULL CHECK (pending >= 0),
    due         timestamptz,
    status      text[]        NOT NULL,
    payload     jsonb[]       NOT NULL,
    attempts    int[]         NOT NULL,
    not_before  timestamptz[],
    user_id     bigint[],
    sqlstate    text[],
    error       text[],
    finished_at timestamptz[],
    result      jsonb[],
    PRIMARY KEY (batch_id, first_item)
);
-- A chunk of 250 cheap items is a row of 5-12 kB.  Past the default toast
-- target (about 2 kB) every write of it, the submission and each group's
-- results, compressed its arrays one after the other until the row fit,
-- and every claim decompressed them: a tenth of the workers' time on a
-- batch of deletes (measured with chunks of 100).  With the target at a
-- page (8160 with 8 kB blocks: the most PostgreSQL accepts), only the
-- arrays that do not fit are compressed (of 250 deletes, the payloads).
DO $$
BEGIN
    EXECUTE pg_catalog.format('ALTER TABLE user_service.batch_chunks SET (toast_tuple_target = %s)',
                              pg_catalog.current_setting('block_size')::int OPERATOR(pg_catalog.-) 32);
END $$;
-- What claiming and the completion check use: the chunks with pending items.
CREATE INDEX batch_chunks_pending ON user_service.batch_chunks (batch_id, first_item)
    WHERE pending > 0;
COMMENT ON TABLE user_service.batch_chunks IS
    'items of the batches, a chunk of consecutive items per row (see the view user_service.batch_items)';
COMMENT ON INDEX user_service.batch_chunks_pkey IS 'chunks by batch and first item';
COMMENT ON INDEX user_service.batch_chunks_pending IS 'chunks with pending items';
SELECT pg_catalog.pg_extension_config_dump('user_service.batch_chunks', '');
REVOKE ALL ON user_service.batch_chunks FROM PUBLIC;

-- The items of 1.2, in chunks as 1.3 submits them: an item to a chunk for
-- the kinds that hash (a claim is one hash), up to 250 consecutive items
-- for the others (a chunk each, the workers would take a pending batch of
-- deletes an item per transaction).  Items are numbered from 1 without
-- gaps; a run of numbers (item - its rank in the batch) keeps any gap an
-- edited table may have out of a chunk.  The lock waits for the workers'
-- groups in flight (the 1.3 library runs a 1.2 schema's batches) and holds
-- off new claims, so that no item is copied as pending and then recorded
-- by a group that commits after the copy.
LOCK TABLE user_service.batch_items IN EXCLUSIVE MODE;
INSERT INTO user_service.batch_chunks
       (batch_id, first_item, pending, due, status, payload, attempts, not_before,
        user_id, sqlstate, error, finished_at)
SELECT r.batch_id, pg_catalog.min(r.item),
       pg_catalog.count(*) FILTER (WHERE r.status OPERATOR(pg_catalog.=) 'pending'),
       CASE WHEN pg_catalog.bool_or(r.status OPERATOR(pg_catalog.=) 'pending' AND r.not_before IS NULL)
            THEN NULL
            ELSE pg_catalog.min(r.not_before) FILTER (WHERE r.status OPERATOR(pg_catalog.=) 'pending') END,
       pg_catalog.array_agg(r.status ORDER BY r.item), pg_catalog.array_agg(r.payload ORDER BY r.item),
       pg_catalog.array_agg(r.attempts ORDER BY r.item), pg_catalog.array_agg(r.not_before ORDER BY r.item),
       pg_catalog.array_agg(r.user_id ORDER BY r.item), pg_catalog.array_agg(r.sqlstate ORDER BY r.item),
       pg_catalog.array_agg(r.error ORDER BY r.item), pg_catalog.array_agg(r.finished_at ORDER BY r.item)
  FROM (SELECT i.*, b.kind OPERATOR(pg_catalog.=) ANY ('{create_user,set_password}'::text[]) AS hashes,
               pg_catalog.row_number() OVER (PARTITION BY i.batch_id, i.run ORDER BY i.item) AS k
          FROM (SELECT i.*, i.item OPERATOR(pg_catalog.-)
                            pg_catalog.row_number() OVER (PARTITION BY i.batch_id ORDER BY i.item) AS run
                  FROM user_service.batch_items i) i
          LEFT JOIN user_service.batch_jobs b ON b.id OPERATOR(pg_catalog.=) i.batch_id) r
 GROUP BY r.batch_id, r.run,
          CASE WHEN r.hashes IS NOT FALSE THEN r.k
               ELSE (r.k OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog./) 250 END;
ALTER EXTENSION user_service DROP TABLE user_service.batch_items;
DROP TABLE user_service.batch_items;

CREATE VIEW user_service.batch_items AS
SELECT c.batch_id,
       c.first_item OPERATOR(pg_catalog.+) (i.n OPERATOR(pg_catalog.-) 1)::int AS item,
       i.status, i.payload, i.attempts, i.not_before, i.user_id, i.sqlstate, i.error,
       i.finished_at, i.result
  FROM user_service.batch_chunks c,
       ROWS FROM (pg_catalog.unnest(c.status), pg_catalog.unnest(c.payload),
                  pg_catalog.unnest(c.attempts), pg_catalog.unnest(c.not_before),
                  pg_catalog.unnest(c.user_id), pg_catalog.unnest(c.sqlstate),
                  pg_catalog.unnest(c.error), pg_catalog.unnest(c.finished_at),
                  pg_catalog.unnest(c.result))
            WITH ORDINALITY AS i(status, payload, attempts, not_before, user_id, sqlstate,
                                 error, finished_at, result, n);
COMMENT ON VIEW user_service.batch_items IS
    'items of the batches, one per row: results and errors per item, never a password once finished';
REVOKE ALL ON user_service.batch_items FROM PUBLIC;
