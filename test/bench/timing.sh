#!/usr/bin/env bash
# Does verify_password tell by its timing whether an email exists?
# Measures, on a throwaway instance with the default argon2 parameters, the
# latency of verify_password for a known email with a wrong password and for
# an unknown email, both in each pgbench run, and prints the medians and the
# median of the runs' ratios (the goal: between 0.9 and 1.1).  The plain-SQL baseline is the
# lookup alone (the stored hash by lower(email)), which shows how much of a
# call is the lookup that differs between the two cases.
#
#   bash test/bench/timing.sh
#
# TIMING_RUNS (7) runs of TIMING_SECONDS (5) seconds.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$here/test/common.sh"

RUNS=${TIMING_RUNS:-7}
SECONDS_PER_RUN=${TIMING_SECONDS:-5}
port=${TIMING_PORT:-54349}

ensure_packages
work=$(copy_tree "$here")
cd "$work"
build_and_install "$work"
dir="$work/instance"
as_pg mkdir -p "$dir"
start_instance "$dir" "$port" </dev/null
cleanup() {
    as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

psql() { as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d postgres "$@"; }

# 200 users hashed with the current (default) parameters, as after logins
psql <<'SQL'
CREATE EXTENSION user_service;
SELECT count(user_service.create_user('User ' || i, 'user' || i || '@example.com', 'password ' || i))
FROM generate_series(1, 200) i \g /dev/null
SQL

# Both cases run in the same pgbench run (two scripts, equal weights), so
# that the machine's noise hits both alike; pgbench reports each script's
# average latency.  The lookup runs alone.
script() {
    printf '\\set i random(1, 200)\n%s\n' "$2" >"$work/$1.pgbench"
    chown "$(pg_owner):" "$work/$1.pgbench" 2>/dev/null || true
}
script wrong "SELECT user_service.verify_password('user' || :i || '@example.com', 'not the password');"
script unknown "SELECT user_service.verify_password('nobody' || :i || '@example.com', 'not the password');"
script lookup "SELECT password_hash FROM user_service.users WHERE lower(email) = lower('user' || :i || '@example.com');"

# pgbench_latencies SCRIPT...: the average latency (ms) of each script, one per line
pgbench_latencies() {
    local args=() f
    for f in "$@"; do args+=(-f "$work/$f.pgbench@1"); done
    as_pg "$PG_BINDIR/pgbench" -h "$dir" -p "$port" -n -M prepared -c 2 -j 2 \
        -T "$SECONDS_PER_RUN" "${args[@]}" postgres >"$work/pgbench.out" 2>&1 ||
        { echo "pgbench failed:" >&2; cat "$work/pgbench.out" >&2; exit 1; }
    if [ $# -eq 1 ]; then
        sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' "$work/pgbench.out"
    else
        sed -nE 's/^ - latency average = ([0-9.]+) ms/\1/p' "$work/pgbench.out"
    fi
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

wrongs=() unknowns=() ratios=() lookups=()
for r in $(seq "$RUNS"); do
    mapfile -t lat < <(pgbench_latencies wrong unknown)
    [ ${#lat[@]} -eq 2 ] || { echo "no per-script latencies in pgbench's output" >&2; cat "$work/pgbench.out" >&2; exit 1; }
    wrongs+=("${lat[0]}"); unknowns+=("${lat[1]}")
    ratios+=("$(awk -v a="${lat[1]}" -v b="${lat[0]}" 'BEGIN { printf "%.3f", a / b }')")
    lookups+=("$(pgbench_latencies lookup)")
    echo "round $r: wrong password ${lat[0]} ms, unknown email ${lat[1]} ms, ratio ${ratios[-1]}"
done

med() { printf '%s\n' "$@" | median; }
ratio=$(med "${ratios[@]}")
verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.9 && r <= 1.1) ? "within" : "OUTSIDE" }')
cat <<EOF

verify_password latency, median of $RUNS runs of ${SECONDS_PER_RUN}s, both cases in each run
(pgbench -c 2 -j 2 -M prepared, two scripts of equal weight):
  known email, wrong password:  $(med "${wrongs[@]}") ms
  unknown email:                $(med "${unknowns[@]}") ms
  plain-SQL lookup of the hash: $(med "${lookups[@]}") ms (alone)
  ratio unknown / wrong:        $ratio, median of the runs' ratios ($verdict the goal 0.9 .. 1.1)
EOF
