#!/usr/bin/env bash
# Build, install and run every test of user_service (the Debian package,
# pg_regress, pg_isolation_regress, prove), each suite on temporary
# instances it starts and stops itself.  Ends with one line "N passed, M
# failed"; exits non-zero when anything failed.  Run it as root or as a user
# with sudo.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/test/common.sh"

ensure_test_packages
work=$(copy_tree "$here")
install_node_driver "$work"

passed=0
failed=0

# pg_regress and pg_isolation_regress print one line per test:
# "test name ... ok" or "... FAILED".
count_regress() {
    local log=$1 rc=$2 ok bad
    ok=$(grep -cE '^(test |     )?[[:alnum:]_]+ +\.\.\. ok' "$log" || true)
    bad=$(grep -cE '\.\.\. FAILED' "$log" || true)
    # A driver that failed without reporting a test failure (say initdb did
    # not start) still counts as one failure.
    [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
    passed=$((passed + ok)); failed=$((failed + bad))
}

# prove: count test points. "Files=F, Tests=T" gives how many ran; the
# summary report lists each failing file with "Failed: N", and a file that
# died or had a bad plan counts as one more failure.
count_tap() {
    local log=$1 rc=$2 total bad
    total=$(sed -nE 's/^Files=[0-9]+, Tests=([0-9]+),.*/\1/p' "$log" | tail -n 1)
    total=${total:-0}
    bad=$(awk '/^test\/t\/.*\(Wstat: .*Tests: [0-9]+ Failed: [0-9]+\)/ {
                  match($0, /Failed: [0-9]+/); n = substr($0, RSTART + 8, RLENGTH - 8) + 0;
                  bad += (n > 0 ? n : 1) }
               END { print bad + 0 }' "$log")
    [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
    passed=$((passed + total - (bad < total ? bad : total))); failed=$((failed + bad))
}

run_suite() {
    local name=$1 counter=$2 rc=0
    echo "== $name"
    as_pg make -C "$work" PG_CONFIG="$PG_CONFIG" "check-$name" >"$work/$name.log" 2>&1 || rc=$?
    grep -E '\.\.\. |^test/t/|^(All|Files=|Result:|Failed)' "$work/$name.log" || true
    "$counter" "$work/$name.log" "$rc"
    return 0
}

# The Debian package first: test/package-test.sh builds it, installs it,
# runs pg_regress against it and removes it.  The other suites then test the
# development build.
echo "== package"
rc=0
bash "$here/test/package-test.sh" 2>&1 | tee "$work/package.log" || rc=$?
count_regress "$work/package.log" "$rc"
build_and_install "$work"

run_suite regress count_regress
run_suite isolation count_regress
run_suite tap count_tap

if [ "$failed" -ne 0 ]; then
    echo "== failures: logs, diffs and server logs are kept in $work"
    for f in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
        [ -s "$f" ] && { echo "--- $f"; head -n 300 "$f"; }
    done
    for f in "$work"/tmp_check/log/regress_log_*; do
        [ -f "$f" ] && grep -qE '(^|\] )not ok|BAIL|Looks like your test' "$f" 2>/dev/null &&
            { echo "--- $f"; grep -E -A12 '(^|\] )not ok|BAIL|Looks like your test' "$f" | head -n 120; }
    done
else
    rm -rf "$work"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
