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
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'user_service_cluster';
    RUN ON user_service_proxy.id_shard(id);
    SELECT user_service.delete_user(id);
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
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    n int := user_service_proxy.shard_count();
    old user_service.user_info;
BEGIN
    IF id IS NULL OR n <= 1 THEN
        PERFORM user_service_proxy.delete_on(id);
        RETURN;
    END IF;
    old := user_service_proxy.get_user(id);
    PERFORM user_service_proxy.delete_on(id);
    IF (user_service.email_hash(old.email) & (n - 1)) <> (id & (n - 1)) THEN
        BEGIN
            PERFORM user_service_proxy.release_email_claim(old.email, id);
        EXCEPTION WHEN OTHERS THEN
            NULL;   -- the delete stands; reconcile_email_claims removes the claim
        END;
    END IF;
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
RETURNS void
AS 'MODULE_PATHNAME', 'proxy_call'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.delete_user(bigint) IS
    'delete the user with this id; P0002 when there is none';

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

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA user_service FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA user_service_proxy FROM PUBLIC;
