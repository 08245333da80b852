#!/usr/bin/env bash
# Build user_service with AddressSanitizer and UndefinedBehaviorSanitizer,
# run the regression suite and the fuzz test (test/t/008_fuzz.pl) against
# that build, and report every sanitizer finding as a failure.
#
#   bash test/sanitize.sh     # FUZZ_SEED / FUZZ_CALLS are passed to the fuzz test
#
# Exits 0 when both suites passed and no sanitizer report was written.
#
# How, and why so:
# - The instrumented library is installed into a private copy of the
#   PostgreSQL 15 installation (Debian's binaries find their lib and share
#   directories relative to themselves), never into the system one: other
#   servers and tests on this machine keep the normal build.
# - The sanitizer runtimes come in with the module, which every test server
#   loads through shared_preload_libraries: the postmaster loads it at start,
#   and every backend and background worker inherits it.  Preloading
#   libasan into the server binaries instead (LD_PRELOAD) hangs them at start
#   on Debian 12 (libgnutls' constructor calls bindtextdomain before the
#   runtime is initialised: libp11-kit's constructor calls newlocale, whose
#   malloc starts ASan, which calls dlerror under glibc's locale lock; even
#   "postgres -V" never returns), hence verify_asan_link_order=0.
# - Without its interceptors in front of libc, ASan cannot unpoison the stack
#   when PostgreSQL's error handling longjmps out of the module's frames, so
#   stack instrumentation would report stale redzones (false positives):
#   --param=asan-stack=0.  What remains: overflows of the module's global
#   objects, every UBSan check (integer overflow, shifts, array bounds,
#   alignment, null pointers, ...), and any crash (SEGV) with a stack trace.
#   Memory from palloc is never poisoned anyway (it comes in large blocks).
# - No leak detection: PostgreSQL deliberately leaves memory to process exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/test/common.sh"

ensure_packages

work=$(copy_tree "$here")
reports=$work/sanitizer    # asan.<pid> / ubsan.<pid> files land here
mkdir -p "$reports"
[ "$(id -u)" = 0 ] && chown "$(pg_owner):" "$reports"

# The private installation: the same files at the same paths under $work/pg.
bindir=$($PG_CONFIG --bindir)
libroot=$(dirname "$bindir")           # /usr/lib/postgresql/15
sharedir=$($PG_CONFIG --sharedir)      # /usr/share/postgresql/15
echo "== copying the PostgreSQL installation into $work/pg"
mkdir -p "$work/pg$(dirname "$libroot")" "$work/pg$(dirname "$sharedir")"
cp -a "$libroot" "$work/pg$libroot"
cp -a "$sharedir" "$work/pg$sharedir"
san_pg_config=$work/pg$bindir/pg_config
[ "$($san_pg_config --pkglibdir)" = "$work/pg$libroot/lib" ] || {
    echo "sanitize: the copied installation does not find its own lib directory" >&2
    exit 2
}

# COPT reaches both the compiler and the linker of the shared library
# (PGXS), so the module is linked against the sanitizer runtimes.  Built
# with the system's pg_config (headers), installed with the copy's.
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined --param=asan-stack=0"
echo "== building with $san"
as_pg make -s -C "$work" PG_CONFIG="$PG_CONFIG" COPT="$san -O1 -g" >/dev/null
as_root make -s -C "$work" PG_CONFIG="$san_pg_config" install >/dev/null

san_env=(
    "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0:abort_on_error=1:log_path=$reports/asan"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
)
[ -n "${FUZZ_SEED:-}" ] && san_env+=("FUZZ_SEED=$FUZZ_SEED")
[ -n "${FUZZ_CALLS:-}" ] && san_env+=("FUZZ_CALLS=$FUZZ_CALLS")

verdict=0

echo "== regression suite (pg_regress) under the sanitizers"
if as_pg env "${san_env[@]}" make -C "$work" PG_CONFIG="$san_pg_config" check-regress \
        >"$work/regress.out" 2>&1; then
    echo "regression suite: passed"
else
    echo "regression suite: FAILED (see $work/regress.out and $work/regression.diffs)"
    verdict=1
fi

echo "== fuzz test (test/t/008_fuzz.pl) under the sanitizers"
if as_pg env "${san_env[@]}" make -C "$work" PG_CONFIG="$san_pg_config" check-tap \
        PROVE_TESTS=test/t/008_fuzz.pl >"$work/fuzz.out" 2>&1; then
    echo "fuzz test: passed"
else
    echo "fuzz test: FAILED (see $work/fuzz.out and $work/tmp_check/log/)"
    grep -E '^(not ok|#)' "$work/fuzz.out" | head -n 40 || true
    verdict=1
fi

# Findings: every report file (ASan writes one per process that hit
# something), and sanitizer output that went to a server's stderr (UBSan
# writes there when it runs inside the ASan runtime).
found=$(find "$reports" -type f | sort)
in_logs=$(grep -rlE 'runtime error:|AddressSanitizer|UndefinedBehaviorSanitizer' \
    --include='*.log' "$work" 2>/dev/null || true)
if [ -n "$found$in_logs" ]; then
    echo "== sanitizer reports"
    for f in $found; do
        echo "--- $f"
        head -n 60 "$f"
    done
    for f in $in_logs; do
        echo "--- $f"
        grep -E -A30 'runtime error:|AddressSanitizer|UndefinedBehaviorSanitizer' "$f" | head -n 60
    done
    verdict=1
fi

n=$(printf '%s\n' $found $in_logs | grep -c . || true)
if [ "$verdict" -eq 0 ]; then
    echo "sanitize: PASSED: no ASan/UBSan report; regression suite and fuzz test passed"
    rm -rf "$work"
else
    echo "sanitize: FAILED: $n file(s) with sanitizer reports; everything is kept in $work"
fi
exit "$verdict"
