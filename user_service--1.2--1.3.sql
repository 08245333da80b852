/* user_service--1.2--1.3.sql: logical replication, recount_users, emails in NFC */

-- complain if script is sourced in psql, rather than through ALTER EXTENSION
\echo Use "ALTER EXTENSION user_service UPDATE TO '1.3'" to load this file. \quit

-- Logical replication.  A publication that includes a table without a
-- primary key or replica identity makes every UPDATE and DELETE of it fail
-- ("cannot update table ... because it does not have a replica identity"):
-- after CREATE PUBLICATION ... FOR ALL TABLES the workers could not record a
-- single item.  These three tables have no key on purpose (batch_items:
-- (batch_id, item) is unique by construction, and a unique index would be a
-- second b-tree per submitted item; the other two are append-only counters),
-- so they get REPLICA IDENTITY FULL, which costs nothing below
-- wal_level = logical.  Under logical, an update or delete logs the old row
-- in full, and a PostgreSQL 15 subscriber finds it by scanning the table:
-- fine for the two small counter tables, slow for a big batch_items.  See
-- the README ("Logical replication") for what to publish.
ALTER TABLE user_service.batch_items REPLICA IDENTITY FULL;
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
