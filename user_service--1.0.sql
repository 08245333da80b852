/* user_service--1.0.sql: install script of version 1.0 */

\echo Use "CREATE EXTENSION user_service" to load this file. \quit

-- CREATE EXTENSION adopts a schema user_service that exists already.  Its
-- owner, or anyone it lets create there, could drop or replace the
-- extension's objects (the email index) or shadow its functions with
-- overloads behind the installer's back: refuse one owned by a role that is
-- neither the installing role nor a superuser, one where another role may
-- create objects, and one that holds objects already.
DO $$
DECLARE
    nsp pg_catalog.oid;
    owner pg_catalog.name;
    owner_ok boolean;
BEGIN
    SELECT n.oid, r.rolname, r.rolname = CURRENT_USER OR r.rolsuper INTO nsp, owner, owner_ok
      FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname = 'user_service';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF NOT owner_ok THEN
        RAISE EXCEPTION 'schema "user_service" is owned by role "%", not by the installing role', owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop the schema, then create the extension again.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
                WHERE n.oid = nsp AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner)
       OR EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_proc WHERE pronamespace = nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_type WHERE typnamespace = nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_operator WHERE oprnamespace = nsp)
    THEN
        RAISE EXCEPTION 'schema "user_service" already holds objects, or lets other roles create them'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop the schema, then create the extension again.';
    END IF;
END
$$;

-- The accounts.  Nobody but the owner may touch the table: the API functions
-- are written in C and reach it without per-call permission checks or name
-- lookups, and run their writes as the table's owner (see src/catalog.c).
CREATE TABLE user_service.users (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE UNIQUE INDEX users_email_key ON user_service.users (pg_catalog.lower(email));

COMMENT ON TABLE user_service.users IS
    'user accounts; password_hash holds argon2 PHC strings and is never returned by the API';
COMMENT ON INDEX user_service.users_email_key IS
    'email addresses are unique case-insensitively';

-- Exact row count of user_service.users without counting: every statement
-- that inserts or deletes users adds one row here holding its net change (a
-- C statement trigger fed by transition tables), and list_users sums this
-- table in the caller's snapshot.  Concurrent inserts never wait on each
-- other, because nothing is updated in place.  Not dumped: restoring the
-- users rows fires the triggers again.
CREATE TABLE user_service.user_count_deltas (
    delta bigint NOT NULL
);
COMMENT ON TABLE user_service.user_count_deltas IS
    'net changes of the number of users, one row per statement; their sum is the exact total';

CREATE FUNCTION user_service.count_users_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'count_users_trigger'
LANGUAGE C;
COMMENT ON FUNCTION user_service.count_users_trigger() IS
    'statement trigger that records the net change of the number of users';

CREATE TRIGGER count_inserts AFTER INSERT ON user_service.users
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION user_service.count_users_trigger();
CREATE TRIGGER count_deletes AFTER DELETE ON user_service.users
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION user_service.count_users_trigger();
CREATE TRIGGER count_truncates AFTER TRUNCATE ON user_service.users
    FOR EACH STATEMENT EXECUTE FUNCTION user_service.count_users_trigger();

-- What the API returns: a user without the password hash.
CREATE TYPE user_service.user_info AS (
    id         bigint,
    name       text,
    email      text,
    created_at timestamptz,
    updated_at timestamptz
);
COMMENT ON TYPE user_service.user_info IS 'a user as the API returns it (never the password hash)';

CREATE FUNCTION user_service.create_user(name text, email text, password text)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'create_user'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.create_user(text, text, text) IS
    'create a user, hashing the password with argon2id; 23505 when the email is taken (any case)';

CREATE FUNCTION user_service.get_user(id bigint)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'get_user'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION user_service.get_user(bigint) IS
    'the user with this id; P0002 when there is none';

CREATE FUNCTION user_service.update_user(id bigint, name text DEFAULT NULL, email text DEFAULT NULL)
RETURNS user_service.user_info
AS 'MODULE_PATHNAME', 'update_user'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.update_user(bigint, text, text) IS
    'change name and/or email (NULL keeps the value) and bump updated_at';

CREATE FUNCTION user_service.delete_user(id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'delete_user'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.delete_user(bigint) IS
    'delete the user with this id; P0002 when there is none';

CREATE FUNCTION user_service.list_users(page int DEFAULT 1, per_page int DEFAULT 20,
                                        OUT total bigint, OUT users user_service.user_info[])
RETURNS record
AS 'MODULE_PATHNAME', 'list_users'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION user_service.list_users(int, int) IS
    'one page of users ordered by id and the exact total, from one snapshot';

CREATE FUNCTION user_service.verify_password(email text, password text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'verify_password'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.verify_password(text, text) IS
    'true when the password matches the user with this email (any case); rehashes outdated hashes';

CREATE FUNCTION user_service.set_password(id bigint, password text)
RETURNS void
AS 'MODULE_PATHNAME', 'set_password'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.set_password(bigint, text) IS
    'hash and store a new password for the user with this id';

-- Privileges: nothing for PUBLIC.  An administrator grants USAGE on the
-- schema and EXECUTE on the API to application roles (see README).
REVOKE ALL ON ALL TABLES IN SCHEMA user_service FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA user_service FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service FROM PUBLIC;

-- pg_dump keeps the accounts and the identity sequence's position.
SELECT pg_catalog.pg_extension_config_dump('user_service.users', '');
SELECT pg_catalog.pg_extension_config_dump('user_service.users_id_seq', '');
