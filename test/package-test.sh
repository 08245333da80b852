#!/usr/bin/env bash
# The Debian package, end to end: build postgresql-15-user-service from a
# fresh copy of the tree with `dpkg-buildpackage -us -uc` (Debian's
# pg_buildext), install it with dpkg, check what it installed, run the
# regression suite (pg_regress) against the installed package, and remove it.
# The extension files that were installed before (by `make install`) are
# put back afterwards, whatever happened.
#
# Prints one line per check in pg_regress's format ("test name ... ok" or
# "... FAILED"), then pg_regress's own lines; exits non-zero when anything
# failed.  Run it as root or as a user with sudo; test/run-tests.sh runs it
# first and counts its lines.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/test/common.sh"

pkg=postgresql-15-user-service
libdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension

# dpkg-buildpackage writes the .deb next to the source directory: the copy
# goes into a subdirectory of our own temporary directory.
tmp=$(mktemp -d -t user_service-deb.XXXXXX)
chmod 755 "$tmp"
[ "$(id -u)" = 0 ] && chown "$(pg_owner)": "$tmp"

failed=0
installed=
restored=

ok() { printf 'test %-20s ... ok%s\n' "$1" "${2:+    $2}"; }
fail() {
    printf 'test %-20s ... FAILED\n' "$1"
    shift
    [ $# -gt 0 ] && printf '    %s\n' "$@"
    failed=1
}

# Save the extension files installed now (say by `make install`), to put
# them back once the package is removed.
files=$(cd / && ls -d "${libdir#/}/user_service.so" "${libdir#/}"/bitcode/user_service* \
    "${extdir#/}"/user_service.control "${extdir#/}"/user_service--*.sql \
    "${extdir#/}"/user_service_proxy.control "${extdir#/}"/user_service_proxy--*.sql 2>/dev/null || true)
if [ -n "$files" ]; then
    # shellcheck disable=SC2086 # one path per word, none with blanks
    as_root tar -C / -cf "$tmp/before.tar" $files
fi

remove_package() {
    installed=
    as_root dpkg -r "$pkg" >"$tmp/remove.log" 2>&1
}
restore_files() {
    restored=1
    [ -f "$tmp/before.tar" ] && as_root tar -C / -xpf "$tmp/before.tar"
    return 0
}
cleanup() {
    [ -n "$installed" ] && { remove_package || cat "$tmp/remove.log"; }
    [ -z "$restored" ] && restore_files
    as_root rm -rf "$tmp"
}
trap cleanup EXIT

echo "== package: dpkg-buildpackage -us -uc in a copy of the tree"
src=$(TMPDIR=$tmp copy_tree "$here")
start=$SECONDS
if (cd "$src" && as_pg dpkg-buildpackage -us -uc) >"$tmp/build.log" 2>&1 &&
    debs=$(ls "$tmp"/"$pkg"_*.deb 2>/dev/null) && [ "$(echo "$debs" | wc -l)" -eq 1 ]; then
    deb=$debs
    ok deb_build "$(basename "$deb"), $((SECONDS - start)) s"
else
    fail deb_build "dpkg-buildpackage failed or made no single $pkg .deb; end of its log:"
    tail -n 40 "$tmp/build.log"
    exit 1
fi

# The versions agree: META.json's distribution version, its provides entry
# and the Debian package's; the extension's default_version is their X.Y.
deb_version=$(dpkg-deb -f "$deb" Version)
ext_version=$(sed -nE "s/^default_version *= *'([^']*)'.*/\1/p" "$src/user_service.control")
meta=$(python3 -c 'import json, sys; m = json.load(open(sys.argv[1]))
print(m["version"], m["provides"]["user_service"]["version"])' "$src/META.json") || meta="unreadable"
if [ "$meta" = "$deb_version $deb_version" ] && [[ $deb_version == "$ext_version".* ]]; then
    ok versions "$deb_version, extension $ext_version"
else
    fail versions "META.json version and provides version: $meta" \
        "Debian package version: $deb_version" "default_version: $ext_version"
fi

# The package depends on the server it was built for and on the libraries
# the module links (found by dpkg-shlibdeps, not listed by hand).
depends=$(dpkg-deb -f "$deb" Depends)
if grep -qE '(^|, )postgresql-15( |,|$)' <<<"$depends" && grep -q 'libargon2' <<<"$depends" &&
    grep -q 'libsodium' <<<"$depends"; then
    ok deb_depends
else
    fail deb_depends "Depends: $depends"
fi

echo "== package: dpkg -i"
installed=1
if as_root dpkg -i "$deb" >"$tmp/install.log" 2>&1; then
    ok deb_install
else
    fail deb_install "end of dpkg -i's output:"
    tail -n 20 "$tmp/install.log"
    exit 1
fi

# dpkg -L lists the module, the control files (the extension and its
# router's, user_service_proxy) and every SQL script of the tree (a script missing from the Makefile's DATA would be missing here),
# and dpkg -V finds the installed files as the package has them.
listed=$(dpkg -L "$pkg")
missing=()
expect=("$libdir/user_service.so" "$extdir/user_service.control" "$extdir/user_service_proxy.control")
for f in "$src"/user_service--*.sql "$src"/user_service_proxy--*.sql; do expect+=("$extdir/${f##*/}"); done
for f in "${expect[@]}"; do
    grep -qxF "$f" <<<"$listed" || missing+=("$f")
done
changed=$(dpkg -V "$pkg" 2>&1 || true)
if [ ${#missing[@]} -eq 0 ] && [ -z "$changed" ]; then
    ok deb_files "$(grep -c "^$extdir/user_service" <<<"$listed") files in $extdir"
else
    fail deb_files "not listed by dpkg -L: ${missing[*]:-none}" "dpkg -V: ${changed:-no change}"
fi

echo "== package: pg_regress against the installed package"
rc=0
as_pg make -C "$src" PG_CONFIG="$PG_CONFIG" check-regress >"$tmp/regress.log" 2>&1 || rc=$?
grep -E '\.\.\. |^ *(All [0-9]+ tests|[0-9]+ of [0-9]+ tests)' "$tmp/regress.log" || true
if [ "$rc" -ne 0 ]; then
    failed=1
    if [ -s "$src/regression.diffs" ]; then
        echo "--- regression.diffs"
        head -n 200 "$src/regression.diffs"
    else
        echo "--- end of make check-regress's output"
        tail -n 30 "$tmp/regress.log"
    fi
    # the tree goes with the package's clean-up: what the server said of its
    # workers, and its warnings, are all that is left of it
    if [ -s "$src/log/postmaster.log" ]; then
        echo "--- the server's log: workers, launcher, warnings and errors"
        grep -E 'user_service (launcher|worker)|WARNING|ERROR|FATAL|PANIC' "$src/log/postmaster.log" | tail -n 60
    fi
fi

echo "== package: dpkg -r"
if remove_package && ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$' &&
    [ ! -e "$libdir/user_service.so" ]; then
    ok deb_remove
else
    fail deb_remove "$(cat "$tmp/remove.log")"
fi
restore_files

exit "$failed"
