#!/usr/bin/env bash
# Install what is missing, build and install user_service, start a throwaway
# PostgreSQL 15 instance in a local folder (preloaded with user_service), and
# run a short demonstration.  The instance keeps running afterwards so you can
# explore it with psql; the last lines say how to connect and how to stop it.
# Running the script again replaces the instance.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/test/common.sh"

port=${USER_SERVICE_DEMO_PORT:-54329}

ensure_packages
work=$(copy_tree "$here")
build_and_install "$work"
rm -rf "$work"

# The instance lives in .demo/ of this checkout when the server's account can
# write there, otherwise in a folder of its own under /tmp.
dir="$here/.demo"
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown "$(pg_owner):" "$dir"
if ! as_pg test -w "$dir" 2>/dev/null; then
    rmdir "$dir" 2>/dev/null || true
    dir=${TMPDIR:-/tmp}/user_service-demo
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown "$(pg_owner):" "$dir"
fi

if [ -f "$dir/data/postmaster.pid" ]; then
    echo "== stopping the previous demo instance"
    as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
fi
rm -rf "$dir/data" "$dir/server.log"

echo "== creating a throwaway instance in $dir"
start_instance "$dir" "$port" </dev/null

psql_cmd="$PG_BINDIR/psql -h $dir -p $port -U postgres -d postgres"
cp "$here/test/demo.sql" "$dir/demo.sql"
echo "== running the demonstration (test/demo.sql)"
as_pg $psql_cmd -X -q -v ON_ERROR_STOP=0 -f "$dir/demo.sql" 2>&1

as_pg_prefix=""
[ "$(id -u)" = 0 ] && as_pg_prefix="runuser -u postgres -- "
cat <<DONE

== the demo instance is still running
connect:  ${as_pg_prefix}$psql_cmd
stop:     ${as_pg_prefix}$PG_BINDIR/pg_ctl -D $dir/data stop
DONE
