#!/usr/bin/env bash
# The router's benchmark: user_service on 4 shards behind a PL/Proxy router
# (user_service_proxy) against one shard called directly and against one
# node holding all the users, in the same run on the same machine.  Prints a
# table (operation | router | baseline | ratio) and writes it to
# test/bench/proxy-results.md.  Reports; never fails on a figure.
#
#   bash test/bench/proxy.sh
#
# On a small machine the router, the shards and pgbench share the cores, so
# besides throughput it reports the machine's CPU time per call (all
# processes, from /proc/stat), which is what a router costs wherever it runs.
#
# PROXY_USERS (200000, over all shards), BENCH_SECONDS per pgbench run (5),
# BENCH_RUNS per figure (3, the median is reported), PROXY_BATCH (800 items)
# change the size of the run.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$here/test/common.sh"

USERS=${PROXY_USERS:-200000}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
RUNS=${BENCH_RUNS:-3}
BATCH=${PROXY_BATCH:-800}
N=4
base_port=${BENCH_PORT:-54350}
out="$here/test/bench/proxy-results.md"

ensure_packages
work=$(copy_tree "$here")
build_and_install "$work"

# instances: shard0..3, the router, one single node
names=(shard0 shard1 shard2 shard3 router single)
declare -A port
i=0
for n in "${names[@]}"; do port[$n]=$((base_port + i)); i=$((i + 1)); done

cleanup() {
    for n in "${names[@]}"; do
        as_pg "$PG_BINDIR/pg_ctl" -D "$work/$n/data" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

for n in "${names[@]}"; do
    as_pg mkdir -p "$work/$n"
    workers=2
    [ "$n" = router ] && workers=0
    start_instance "$work/$n" "${port[$n]}" <<CONF
user_service.workers = $workers
shared_buffers = '128MB'
max_connections = 40
CONF
done

psql_on() {
    local n=$1
    shift
    as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$work/$n" -p "${port[$n]}" -d postgres "$@"
}

echo "== loading $USERS users over $N shards (and the same users on one node)"
psql_on single -c 'CREATE EXTENSION user_service'
psql_on single -c "SELECT user_service.create_user('Seed', 'seed@example.com', 'password seed')" >/dev/null
hash=$(psql_on single -c "SELECT password_hash FROM user_service.users")
psql_on single -c "DELETE FROM user_service.users"
for k in $(seq 0 $((N - 1))); do
    psql_on "shard$k" <<SQL
CREATE EXTENSION user_service;
SELECT user_service.configure_shard($k, $N);
-- user i lives on the home of its email; its id names that shard, and the
-- shard's ids are dense: m * N + k for m = 1 .. its count
INSERT INTO user_service.users (id, name, email, password_hash) OVERRIDING SYSTEM VALUE
SELECT (row_number() OVER (ORDER BY i)) * $N + $k, 'User ' || i, 'user' || i || '@example.com', '$hash'
  FROM generate_series(1, $USERS) i
 WHERE user_service.email_hash('user' || i || '@example.com') & ($N - 1) = $k;
SELECT setval('user_service.users_id_seq', $USERS + 1) \\g /dev/null
VACUUM (ANALYZE) user_service.users;
SQL
    psql_on "shard$k" -c "COPY (SELECT id, name, email, password_hash FROM user_service.users) TO STDOUT" |
        psql_on single -c "COPY user_service.users (id, name, email, password_hash) FROM STDIN"
done
psql_on single -c "VACUUM (ANALYZE) user_service.users"
options=$(for k in $(seq 0 $((N - 1))); do printf "p%d 'host=%s port=%s dbname=postgres', " "$k" "$work/shard$k" "${port[shard$k]}"; done)
psql_on router <<SQL
CREATE EXTENSION user_service_proxy CASCADE;
CREATE SERVER user_service_cluster FOREIGN DATA WRAPPER plproxy OPTIONS (${options%, });
CREATE USER MAPPING FOR PUBLIC SERVER user_service_cluster;
SQL
[ "$(psql_on router -c 'SELECT bool_and(ok) FROM user_service.check_cluster()')" = t ] || { echo "cluster misconfigured"; exit 1; }
[ "$(psql_on router -c 'SELECT total FROM user_service.list_users_after(0, 1)')" = \
  "$(psql_on single -c 'SELECT total FROM user_service.list_users_after(0, 1)')" ] || { echo "load failed"; exit 1; }

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# run_once INSTANCE FILE: "tps cpu_ms_per_call" of one pgbench run (2
# clients, simple protocol: PL/Proxy functions are called like any other)
run_once() {
    local n=$1 file=$2 j0 j1 res txns
    j0=$(busy_jiffies)
    res=$(as_pg "$PG_BINDIR/pgbench" -h "$work/$n" -p "${port[$n]}" -n -c 2 -j 2 -T "$SECONDS_PER_RUN" \
        -f "$file" postgres 2>/dev/null)
    j1=$(busy_jiffies)
    txns=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$res")
    awk -v t="$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<<"$res")" -v n="${txns:-0}" \
        -v j=$((j1 - j0)) -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%s %.3f\n", t, (n > 0) ? 1000 * j / hz / n : 0 }'
}

rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s |' "$@")"); echo "  $1: router $2, baseline $3, ratio $4"; }

# pair NAME BASELINE_INSTANCE SCRIPT: RUNS pairs of runs (router, then the
# baseline) of the same script; medians of tps and CPU per call, and of the
# per-pair tps ratios
pair() {
    local name=$1 base=$2 file="$work/$1.pgbench"
    printf '%s\n' "$3" >"$file"
    chown "$(pg_owner):" "$file" 2>/dev/null || true
    for _ in $(seq "$RUNS"); do
        echo "$(run_once router "$file") $(run_once "$base" "$file")"
    done >"$work/$name.pairs"
    local rt bt rc bc r
    rt=$(cut -d' ' -f1 "$work/$name.pairs" | median)
    rc=$(cut -d' ' -f2 "$work/$name.pairs" | median)
    bt=$(cut -d' ' -f3 "$work/$name.pairs" | median)
    bc=$(cut -d' ' -f4 "$work/$name.pairs" | median)
    r=$(awk '{ printf "%.3f\n", ($3 > 0) ? $1 / $3 : 0 }' "$work/$name.pairs" | median)
    row "$name (calls/s)" "$(printf '%.0f' "$rt")" "$(printf '%.0f' "$bt")" "$r"
    row "$name (CPU ms per call, machine)" "$rc" "$bc" "$(awk -v a="$rc" -v b="$bc" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
}

echo "== reads: router (4 shards) vs one shard directly"
max_n=$(psql_on shard1 -c 'SELECT count(*) FROM user_service.users')
pair "get_user, router vs shard 1" shard1 "\\set n random(1, $max_n)
SELECT * FROM user_service.get_user(:n * $N + 1);"
pair "list_users_after page of 20, router vs shard 1" shard1 "\\set a random(1, $((USERS - 100)))
SELECT total FROM user_service.list_users_after(:a, 20);"

echo "== numbered pages: router vs one node with all the users"
for page in 1 50 500; do
    pair "list_users($page, 20), router vs one node" single "SELECT total FROM user_service.list_users($page, 20);"
done

echo "== a create_user batch of $BATCH items: 4 shards vs 1 node"
items="(SELECT jsonb_agg(jsonb_build_object('name', 'B' || i, 'email', 'batch-' || i || '-' || \$1 || '@example.com', 'password', 'password ' || i)) FROM generate_series(1, $BATCH) i)"
batch_rate() {
    local n=$1 tag=$2 t0 t1 h
    t0=$(date +%s.%N)
    h=$(psql_on "$n" -c "PREPARE s(text) AS SELECT user_service.submit_batch('create_user', $items, 8); EXECUTE s('$tag')")
    psql_on "$n" -c "SELECT user_service.wait_batch($h, '30 minutes')" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v n="$BATCH" 'BEGIN { printf "%.1f\n", n / (b - a) }'
}
for r in $(seq "$RUNS"); do
    echo "$(batch_rate router "r$r") $(batch_rate single "s$r")"
done >"$work/batch.pairs"
rt=$(cut -d' ' -f1 "$work/batch.pairs" | median)
bt=$(cut -d' ' -f2 "$work/batch.pairs" | median)
row "create_user batch (items/s end to end), 4 shards vs 1 node" "$rt" "$bt" \
    "$(awk '{ printf "%.3f\n", ($2 > 0) ? $1 / $2 : 0 }' "$work/batch.pairs" | median)"

{
    echo "# Router benchmark ($(date -u +%Y-%m-%d), $(nproc) cores; router, 4 shards and pgbench share them)"
    echo
    echo "\`bash test/bench/proxy.sh\`: $USERS users, $RUNS runs of ${SECONDS_PER_RUN}s per figure (medians), 2 clients."
    echo
    echo "| operation | router | baseline | ratio |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} >"$out"
cat "$out"
