#!/usr/bin/env bash
# Cheap batches against the floor: a delete_user batch end to end (submit,
# the workers' claims, the deletes, a result per item, the batch noted
# finished, seen by wait_batch) against one bulk DELETE of the same number
# of users, in the same run on the same throwaway instance, at the default
# settings (concurrency 4, 2 workers) and at concurrency 100; and an
# import_user batch of other systems' hashes (bcrypt, PBKDF2) against a
# plain INSERT ... SELECT of the same rows.  Prints medians and ratios;
# never fails on a missed goal.
#
#   bash test/bench/cheap.sh
#
# BENCH_RUNS (5) runs per figure, BENCH_SIZES ("50000 500000") batch sizes,
# BENCH_IMPORT (1000000) users imported.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$here/test/common.sh"

RUNS=${BENCH_RUNS:-5}
SIZES=${BENCH_SIZES:-"50000 500000"}
IMPORT=${BENCH_IMPORT:-1000000}
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
# batch_seconds N CONCURRENCY: seconds from submit_batch to wait_batch's true
# for a delete_user batch of N fresh users (the items built beforehand)
batch_seconds() {
    local n=$1 conc=$2 first=$next_id b t0 t1
    next_id=$((next_id + n))
    psql -c "CALL bench_users($first, $n)" -c "VACUUM ANALYZE user_service.users" \
        -c "DROP TABLE IF EXISTS bench_items" \
        -c "CREATE TABLE bench_items AS SELECT jsonb_agg(jsonb_build_object('id', i)) AS items
              FROM generate_series($first, $first + $n - 1) i"
    t0=$(date +%s.%N)
    b=$(psql -c "SELECT user_service.submit_batch('delete_user', items, $conc) FROM bench_items")
    psql -c "SELECT user_service.wait_batch($b, '30 minutes')" >/dev/null
    t1=$(date +%s.%N)
    [ "$(psql -c "SELECT succeeded FROM user_service.batch_status($b)")" = "$n" ] || { echo "batch $b incomplete" >&2; exit 1; }
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
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
            ours+=("$(batch_seconds "$n" "$conc")")
            base+=("$(bulk_seconds "$n")")
        done
        o=$(printf '%s\n' "${ours[@]}" | median)
        b=$(printf '%s\n' "${base[@]}" | median)
        printf '| delete_user batch of %s, concurrency %s, end to end | %.0f | %.0f | %.2f |\n' \
            "$n" "$conc" "$(awk -v n="$n" -v s="$o" 'BEGIN { print n / s }')" \
            "$(awk -v n="$n" -v s="$b" 'BEGIN { print n / s }')" "$(awk -v o="$o" -v b="$b" 'BEGIN { print b / o }')"
    done
done

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
    t0=$(date +%s.%N)
    b=$(psql -c "SELECT user_service.submit_batch('import_user', items) FROM import_items")
    psql -c "SELECT user_service.wait_batch($b, '30 minutes')" >/dev/null
    t1=$(date +%s.%N)
    [ "$(psql -c "SELECT succeeded FROM user_service.batch_status($b)")" = "$IMPORT" ] || { echo "import batch $b incomplete" >&2; exit 1; }
    ours+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }')")
    psql -c "DELETE FROM user_service.users WHERE email LIKE 'imported%'" -c "VACUUM ANALYZE user_service.users"
    base+=("$(psql -c "SELECT bench_seconds('INSERT INTO user_service.users (name, email, password_hash) SELECT name, email, password_hash FROM import_rows')")")
done
o=$(printf '%s\n' "${ours[@]}" | median)
b=$(printf '%s\n' "${base[@]}" | median)
printf '| import_user batch of %s bcrypt and PBKDF2 hashes, end to end | %.0f | %.0f (INSERT ... SELECT) | %.2f |\n' \
    "$IMPORT" "$(awk -v n="$IMPORT" -v s="$o" 'BEGIN { print n / s }')" \
    "$(awk -v n="$IMPORT" -v s="$b" 'BEGIN { print n / s }')" "$(awk -v o="$o" -v b="$b" 'BEGIN { print b / o }')"
