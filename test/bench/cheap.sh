#!/usr/bin/env bash
# Cheap batches against the floor: a delete_user batch end to end (submit,
# the workers' claims, the deletes, a result per item, the batch noted
# finished, seen by wait_batch) against one bulk DELETE of the same number
# of users, in the same run on the same throwaway instance, at the default
# settings (concurrency 4, 2 workers) and at concurrency 100; an
# update_user batch (new names) against one bulk UPDATE; and an
# import_user batch of other systems' hashes (bcrypt, PBKDF2) against a
# plain INSERT ... SELECT of the same rows.  Prints medians and ratios;
# never fails on a missed goal.
#
#   bash test/bench/cheap.sh
#
# Registered kinds (issue 17): a kind whose handler does one DELETE per item,
# and its grouped form (one DELETE per group), against the built-in
# delete_user kind and against a plain job queue (a table, two sessions
# claiming one job per transaction with FOR UPDATE SKIP LOCKED, the way
# queue libraries do, committing as the workers do), at the default settings.
#
# Head-of-line wait: a one-item delete_user batch submitted right behind a
# big one (BENCH_HOL items), from its submission to wait_batch's true,
# against the same batch on idle workers.
#
# BENCH_RUNS (5) runs per figure, BENCH_SIZES ("50000 500000") batch sizes,
# BENCH_IMPORT (1000000) users imported (0: none), BENCH_KIND_SIZE (50000)
# items of the registered-kind rows (0: none), BENCH_HOL (200000, 0: none),
# BENCH_UPDATE_SIZE (50000) items of the update_user row (0: none).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$here/test/common.sh"

RUNS=${BENCH_RUNS:-5}
SIZES=${BENCH_SIZES:-"50000 500000"}
IMPORT=${BENCH_IMPORT:-1000000}
KIND_SIZE=${BENCH_KIND_SIZE:-50000}
UPDATE_SIZE=${BENCH_UPDATE_SIZE:-50000}
HOL=${BENCH_HOL:-200000}
port=${BENCH_PORT:-54341}

ensure_packages
work=$(copy_tree "$here")
build_and_install "$work"
dir="$work/instance"
as_pg mkdir -p "$dir"
start_instance "$dir" "$port" <<CONF
shared_buffers = '512MB'
max_wal_size = '8GB'
checkpoint_timeout = '30min'
CONF
cleanup() {
    as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
psql() { as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d postgres "$@"; }
# keep ARRAY CMD ARGS...: run CMD in this shell, not in $(...), so that the
# ids it takes from next_id stay taken (the next run deletes fresh users, not
# the same ids again) and its exit on a failed check ends the script; what
# it prints is appended to ARRAY.
keep() {
    local -n keep_into=$1
    shift
    "$@" >"$dir/keep.out"
    keep_into+=("$(<"$dir/keep.out")")
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

psql <<'SQL'
CREATE EXTENSION user_service;
CREATE FUNCTION bench_seconds(sql text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE sql;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;
-- N users with ids FIRST .. FIRST + N - 1 (no hashing: the rows are what is measured)
CREATE PROCEDURE bench_users(first bigint, n int) LANGUAGE sql AS $$
    INSERT INTO user_service.users (id, name, email, password_hash)
    OVERRIDING SYSTEM VALUE
    SELECT i, 'u' || i, 'u' || i || '@example.com', '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA'
      FROM generate_series(first, first + n - 1) i;
$$;
SQL

next_id=1
# e2e KIND ITEMS CONCURRENCY: "batch seconds" for a batch of KIND with the
# items ITEMS (an SQL expression), as an application sees it from one
# connection: from before submit_batch (committed) to wait_batch's true, by
# the server's clock, like the bulk statements below (no client start-up in
# either).
e2e() {
    psql <<SQL
SELECT clock_timestamp() AS t0 \\gset
SELECT user_service.submit_batch('$1', $2, $3) AS b \\gset
SELECT user_service.wait_batch(:b, '30 minutes') AS done \\gset
SELECT :b, extract(epoch FROM clock_timestamp() - :'t0');
SQL
}
# batch_seconds N CONCURRENCY [KIND]: seconds from submit_batch to
# wait_batch's true for a batch of KIND (delete_user) deleting N fresh users
# (the items built beforehand); CONCURRENCY "default" submits without one.
batch_seconds() {
    local n=$1 conc=$2 kind=${3:-delete_user} first=$next_id b s
    next_id=$((next_id + n))
    [ "$conc" = default ] && conc=NULL
    psql -c "CALL bench_users($first, $n)" -c "VACUUM ANALYZE user_service.users" \
        -c "DROP TABLE IF EXISTS bench_items" \
        -c "CREATE TABLE bench_items AS SELECT jsonb_agg(jsonb_build_object('id', i)) AS items
              FROM generate_series($first, $first + $n - 1) i"
    IFS='|' read -r b s < <(e2e "$kind" '(SELECT items FROM bench_items)' "$conc")
    [ "$(psql -c "SELECT succeeded FROM user_service.batch_status($b)")" = "$n" ] || { echo "batch $b incomplete" >&2; exit 1; }
    awk -v s="$s" 'BEGIN { printf "%.4f\n", s }'
}
# bulk_seconds N: one DELETE ... WHERE id = ANY (N ids) of N fresh users
bulk_seconds() {
    local n=$1 first=$next_id
    next_id=$((next_id + n))
    psql -c "CALL bench_users($first, $n)" -c "VACUUM ANALYZE user_service.users" \
        -c "SELECT bench_seconds(format('DELETE FROM user_service.users WHERE id = ANY (%L::bigint[])',
                  (SELECT array_agg(i) FROM generate_series($first, $first + $n - 1) i)))"
}

printf '| %s | %s | %s | %s |\n' 'figure' 'items/s' 'bulk DELETE rows/s (same run)' 'ratio'
printf '|---|---|---|---|\n'
for n in $SIZES; do
    for conc in 4 100; do
        ours=() base=()
        for _ in $(seq "$RUNS"); do
            keep ours batch_seconds "$n" "$conc"
            echo "# delete_user $n, concurrency $conc: ${ours[-1]} s" >&2
            keep base bulk_seconds "$n"
        done
        o=$(printf '%s\n' "${ours[@]}" | median)
        b=$(printf '%s\n' "${base[@]}" | median)
        printf '| delete_user batch of %s, concurrency %s, end to end | %.0f | %.0f | %.2f |\n' \
            "$n" "$conc" "$(awk -v n="$n" -v s="$o" 'BEGIN { print n / s }')" \
            "$(awk -v n="$n" -v s="$b" 'BEGIN { print n / s }')" "$(awk -v o="$o" -v b="$b" 'BEGIN { print b / o }')"
    done
done

# update_user (a new name for each user: a cheap kind applied an item at a
# time, each in a subtransaction), default settings, against one bulk
# UPDATE of as many fresh users' names.
if [ "$UPDATE_SIZE" -gt 0 ]; then
    ours=() base=()
    for _ in $(seq "$RUNS"); do
        first=$next_id
        next_id=$((next_id + UPDATE_SIZE))
        psql -c "CALL bench_users($first, $UPDATE_SIZE)" -c "VACUUM ANALYZE user_service.users" \
            -c "DROP TABLE IF EXISTS bench_items" \
            -c "CREATE TABLE bench_items AS SELECT jsonb_agg(jsonb_build_object('id', i, 'name', 'renamed ' || i)) AS items
                  FROM generate_series($first, $first + $UPDATE_SIZE - 1) i"
        IFS='|' read -r b s < <(e2e update_user '(SELECT items FROM bench_items)' NULL)
        [ "$(psql -c "SELECT succeeded FROM user_service.batch_status($b)")" = "$UPDATE_SIZE" ] ||
            { echo "update batch $b incomplete" >&2; exit 1; }
        ours+=("$s")
        echo "# update_user $UPDATE_SIZE: $s s" >&2
        next_id=$((next_id + UPDATE_SIZE))
        psql -c "CALL bench_users($((first + UPDATE_SIZE)), $UPDATE_SIZE)" -c "VACUUM ANALYZE user_service.users"
        base+=("$(psql -c "SELECT bench_seconds(format('UPDATE user_service.users SET name = ''bulk '' || id, updated_at = now() WHERE id = ANY (%L::bigint[])',
                  (SELECT array_agg(i) FROM generate_series($first + $UPDATE_SIZE, $first + 2 * $UPDATE_SIZE - 1) i)))")")
        # (none may be left: the import below takes its ids from the identity sequence)
        psql -c "DELETE FROM user_service.users WHERE id BETWEEN $first AND $first + 2 * $UPDATE_SIZE - 1"
    done
    o=$(printf '%s\n' "${ours[@]}" | median)
    b=$(printf '%s\n' "${base[@]}" | median)
    printf '| update_user batch of %s (new names), default concurrency, end to end | %.0f | %.0f (one UPDATE) | %.2f |\n' \
        "$UPDATE_SIZE" "$(awk -v n="$UPDATE_SIZE" -v s="$o" 'BEGIN { print n / s }')" \
        "$(awk -v n="$UPDATE_SIZE" -v s="$b" 'BEGIN { print n / s }')" "$(awk -v o="$o" -v b="$b" 'BEGIN { print b / o }')"
fi

# Registered kinds, at the default settings.
if [ "$KIND_SIZE" -gt 0 ]; then
    psql <<'SQL'
-- one DELETE per item; a group of items as one DELETE, results in order
CREATE FUNCTION bench_delete_one(item jsonb) RETURNS jsonb LANGUAGE sql AS $$
    DELETE FROM user_service.users WHERE id = (item->>'id')::bigint
    RETURNING jsonb_build_object('deleted', id)
$$;
CREATE FUNCTION bench_delete_many(items jsonb[]) RETURNS jsonb[] LANGUAGE sql AS $$
    WITH d AS (DELETE FROM user_service.users u
                USING unnest(items) WITH ORDINALITY AS i(item, n)
                WHERE u.id = (i.item->>'id')::bigint
            RETURNING i.n, u.id)
    SELECT array_agg(CASE WHEN d.id IS NOT NULL THEN jsonb_build_object('deleted', d.id) END
                     ORDER BY i.n)
      FROM unnest(items) WITH ORDINALITY AS i(item, n) LEFT JOIN d ON d.n = i.n
$$;
SELECT user_service.register_batch_kind('bench_delete_one', 'bench_delete_one(jsonb)');
SELECT user_service.register_batch_kind('bench_delete_many', 'bench_delete_many(jsonb[])');
-- the plain queue: a job per row, claimed one per transaction
CREATE TABLE bench_jobs (id bigserial PRIMARY KEY, user_id bigint NOT NULL,
                         done boolean NOT NULL DEFAULT false);
CREATE INDEX ON bench_jobs (id) WHERE NOT done;
CREATE PROCEDURE bench_queue_worker() LANGUAGE plpgsql AS $$
DECLARE
    j record;
BEGIN
    LOOP
        SELECT id, user_id INTO j FROM bench_jobs WHERE NOT done
         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED;
        EXIT WHEN NOT FOUND;
        DELETE FROM user_service.users WHERE id = j.user_id;
        UPDATE bench_jobs SET done = true WHERE id = j.id;
        COMMIT;
    END LOOP;
END $$;
SQL
    # queue_seconds N: enqueue N jobs, two sessions work them off
    queue_seconds() {
        local n=$1 first=$next_id t0 t1 p1 p2
        next_id=$((next_id + n))
        psql -c "CALL bench_users($first, $n)" -c "VACUUM ANALYZE user_service.users" \
            -c "TRUNCATE bench_jobs"
        t0=$(date +%s.%N)
        psql -c "INSERT INTO bench_jobs (user_id) SELECT i FROM generate_series($first, $first + $n - 1) i"
        # (the workers' commit setting: a job's effect and its completion
        # commit together here too, so an unflushed commit loses nothing)
        psql -c "SET synchronous_commit = off" -c "CALL bench_queue_worker()" & p1=$!
        psql -c "SET synchronous_commit = off" -c "CALL bench_queue_worker()" & p2=$!
        wait "$p1" "$p2"
        t1=$(date +%s.%N)
        [ "$(psql -c "SELECT count(*) FROM user_service.users WHERE id BETWEEN $first AND $first + $n - 1")" = 0 ] ||
            { echo "queue left users behind" >&2; exit 1; }
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
    }
    # handler_seconds N: the grouped handler called once with all N items
    # (the floor of that kind: its statement over every item at once)
    handler_seconds() {
        local n=$1 first=$next_id
        next_id=$((next_id + n))
        psql -c "CALL bench_users($first, $n)" -c "VACUUM ANALYZE user_service.users" \
            -c "SELECT bench_seconds('SELECT cardinality(bench_delete_many(ARRAY(SELECT jsonb_build_object(''id'', i)
                      FROM generate_series($first, $first + $n - 1) i)))')"
    }
    builtin=() one=() many=() queue=() bulk=() handler=()
    for _ in $(seq "$RUNS"); do
        keep builtin batch_seconds "$KIND_SIZE" default delete_user
        keep one batch_seconds "$KIND_SIZE" default bench_delete_one
        keep many batch_seconds "$KIND_SIZE" default bench_delete_many
        keep queue queue_seconds "$KIND_SIZE"
        keep bulk bulk_seconds "$KIND_SIZE"
        keep handler handler_seconds "$KIND_SIZE"
    done
    rate() { awk -v n="$KIND_SIZE" -v s="$(printf '%s\n' "$@" | median)" 'BEGIN { printf "%.0f", n / s }'; }
    b_rate=$(rate "${builtin[@]}") q_rate=$(rate "${queue[@]}") f_rate=$(rate "${bulk[@]}")
    echo
    printf '| %s | %s | %s | %s | %s |\n' "registered kinds, $KIND_SIZE items, default settings" 'items/s' \
        'vs built-in delete_user' 'vs SKIP LOCKED queue' 'vs bulk DELETE'
    printf '|---|---|---|---|---|\n'
    for row in "built-in delete_user:$b_rate" "registered, one DELETE per item:$(rate "${one[@]}")" \
               "registered, grouped (one DELETE per group):$(rate "${many[@]}")" \
               "plain queue, 2 sessions, FOR UPDATE SKIP LOCKED, a job per transaction:$q_rate"; do
        r=${row##*:}
        printf '| %s | %s | %.2f | %.2f | %.2f |\n' "${row%:*}" "$r" \
            "$(awk -v a="$r" -v b="$b_rate" 'BEGIN { print a / b }')" \
            "$(awk -v a="$r" -v b="$q_rate" 'BEGIN { print a / b }')" \
            "$(awk -v a="$r" -v b="$f_rate" 'BEGIN { print a / b }')"
    done
    printf '| bulk DELETE of the same number of users | %s | | | 1.00 |\n' "$f_rate"
    h_rate=$(rate "${handler[@]}")
    printf '| the grouped handler called once with all %s items (its floor) | %s | | | %.2f |\n' \
        "$KIND_SIZE" "$h_rate" "$(awk -v a="$h_rate" -v b="$f_rate" 'BEGIN { print a / b }')"
    printf '| the grouped kind'"'"'s batch against that floor | | | | %.2f |\n' \
        "$(awk -v a="$(rate "${many[@]}")" -v b="$h_rate" 'BEGIN { print a / b }')"
fi

# Head-of-line wait, at the default settings.
if [ "$HOL" -gt 0 ]; then
    # small_ms: milliseconds from submitting a one-item batch (a fresh user)
    # to its wait_batch returning true, in one psql session
    small_ms() {
        local id=$next_id
        next_id=$((next_id + 1))
        psql -c "CALL bench_users($id, 1)"
        IFS='|' read -r _ s < <(e2e delete_user "'[{\"id\": $id}]'" NULL)
        awk -v s="$s" 'BEGIN { printf "%.1f\n", s * 1000 }'
    }
    alone=() behind=()
    for _ in $(seq "$RUNS"); do
        keep alone small_ms
        first=$next_id
        next_id=$((next_id + HOL))
        psql -c "CALL bench_users($first, $HOL)" -c "VACUUM ANALYZE user_service.users"
        big=$(psql -c "SELECT user_service.submit_batch('delete_user',
                  (SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series($first, $first + $HOL - 1) i))")
        keep behind small_ms
        psql -c "SELECT user_service.wait_batch($big, '30 minutes')" >/dev/null
    done
    a=$(printf '%s\n' "${alone[@]}" | median)
    h=$(printf '%s\n' "${behind[@]}" | median)
    echo
    printf '| head-of-line wait, default settings | ms |\n|---|---|\n'
    printf '| a one-item delete_user batch, workers idle | %s |\n' "$a"
    printf '| the same, submitted right behind a %s-item delete_user batch | %s (%.1fx) |\n' \
        "$HOL" "$h" "$(awk -v h="$h" -v a="$a" 'BEGIN { print h / a }')"
fi

[ "$IMPORT" -gt 0 ] || exit 0

# Importing: IMPORT users with bcrypt and PBKDF2 hashes (no hashing happens:
# each hash is checked, then stored), one import_user batch at the default
# concurrency, end to end; against INSERT ... SELECT of the same rows into
# the same table (the count trigger and the indexes included, no checks).
psql <<SQL
CREATE TABLE import_rows AS
SELECT 'Imported ' || i AS name, 'imported' || i || '@example.com' AS email,
       CASE WHEN i % 2 = 0 THEN '\$2b\$10\$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G'
            ELSE 'pbkdf2_sha256\$870000\$jTjAv9KVNjC9QdOuyVFbuS\$P8ugDeeDbblcKYTgBtyMJRilqJOSi1xU6daF8ZWjL/g=' END AS password_hash
  FROM generate_series(1, $IMPORT) i;
CREATE TABLE import_items AS SELECT jsonb_agg(to_jsonb(r)) AS items FROM import_rows r;
SQL
ours=() base=()
for _ in $(seq "$RUNS"); do
    psql -c "DELETE FROM user_service.users WHERE email LIKE 'imported%'" -c "VACUUM ANALYZE user_service.users"
    IFS='|' read -r b s < <(e2e import_user '(SELECT items FROM import_items)' NULL)
    [ "$(psql -c "SELECT succeeded FROM user_service.batch_status($b)")" = "$IMPORT" ] || { echo "import batch $b incomplete" >&2; exit 1; }
    ours+=("$s")
    psql -c "DELETE FROM user_service.users WHERE email LIKE 'imported%'" -c "VACUUM ANALYZE user_service.users"
    base+=("$(psql -c "SELECT bench_seconds('INSERT INTO user_service.users (name, email, password_hash) SELECT name, email, password_hash FROM import_rows')")")
done
o=$(printf '%s\n' "${ours[@]}" | median)
b=$(printf '%s\n' "${base[@]}" | median)
echo
printf '| %s | %s | %s | %s |\n|---|---|---|---|\n' 'import' 'items/s' 'INSERT ... SELECT rows/s (same run)' 'ratio'
printf '| import_user batch of %s bcrypt and PBKDF2 hashes, end to end | %.0f | %.0f (INSERT ... SELECT) | %.2f |\n' \
    "$IMPORT" "$(awk -v n="$IMPORT" -v s="$o" 'BEGIN { print n / s }')" \
    "$(awk -v n="$IMPORT" -v s="$b" 'BEGIN { print n / s }')" "$(awk -v o="$o" -v b="$b" 'BEGIN { print b / o }')"
