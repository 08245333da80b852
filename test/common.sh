# Shared by test/run-tests.sh, test/demo.sh: packages, users, paths.
# Sourced, not run.

PG_BINDIR=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BINDIR/pg_config

# Debian 12 packages the build, the tests and the demo need.
US_PACKAGES="postgresql-15 postgresql-server-dev-15 libargon2-dev libsodium-dev libcrypt-dev libssl-dev libipc-run-perl
             build-essential make gcc python3 python3-argon2 postgresql-15-cron postgresql-15-plproxy
             debhelper dpkg-dev fakeroot postgresql-server-dev-all"

# What only the test command needs: the real drivers of the application
# tests (psycopg 3, pgjdbc and a JDK to run it, PHP's pgsql), PgBouncer, and
# the producers of other systems' password hashes (Python's bcrypt and
# passlib, Django, PHP, mkpasswd from whois).
# node-postgres comes from npm (test/drivers/node/package-lock.json) and
# needs node and npm, installed from Debian when the machine has no npm.
US_TEST_PACKAGES="python3-psycopg libpostgresql-jdbc-java default-jdk-headless php-cli php-pgsql
                  pgbouncer ca-certificates python3-bcrypt python3-passlib python3-django whois"

# Commands that must run as root: directly when we are root, else via sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# PostgreSQL refuses to run as root: as root, servers and tests run as
# Debian's postgres account; otherwise as the calling user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
pg_owner() {
    if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

# Install whatever of US_PACKAGES (and the packages named as arguments) is
# missing (one apt-get update first).
ensure_packages() {
    local missing=() p
    for p in $US_PACKAGES "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing: ${missing[*]}"
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# Copy the source tree (without .git and build products) into a fresh
# directory owned by the account that runs the servers, print its path.
copy_tree() {
    local src=$1 dst
    dst=$(mktemp -d "${TMPDIR:-/tmp}/user_service.XXXXXX")
    tar -C "$src" --exclude=./.git --exclude=./.demo --exclude='./tmp_check*' \
        --exclude=./results --exclude=./output_iso --exclude='*.o' --exclude='*.so' \
        --exclude='*.bc' --exclude=node_modules -cf - . | tar -C "$dst" -xf -
    chmod 755 "$dst"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$dst"
    echo "$dst"
}

# Build as the unprivileged account, install as root.
build_and_install() {
    local dir=$1
    echo "== building"
    as_pg make -s -C "$dir" PG_CONFIG="$PG_CONFIG" >/dev/null
    echo "== installing into $($PG_CONFIG --pkglibdir)"
    as_root make -s -C "$dir" PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# start_instance DIR PORT: initdb DIR/data and start a server there, listening
# only on a Unix socket in DIR on PORT, preloaded with user_service and its
# workers serving database postgres.  Extra configuration lines come on
# standard input.  The log is DIR/server.log.
start_instance() {
    local dir=$1 port=$2
    as_pg "$PG_BINDIR/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    {
        echo "# throwaway user_service instance: Unix socket only, in its own directory"
        echo "listen_addresses = ''"
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = 'user_service'"
        echo "user_service.database = 'postgres'"
        echo "user_service.workers = 2"
        cat
    } >>"$dir/data/postgresql.conf"
    as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

# The test command's extra packages, node and npm when there is no npm (a
# machine may have them from elsewhere: Debian's npm would conflict).
ensure_test_packages() {
    local node_pkgs=""
    command -v npm >/dev/null 2>&1 || node_pkgs="nodejs npm"
    # shellcheck disable=SC2086
    ensure_packages $US_TEST_PACKAGES $node_pkgs
}

# Install node-postgres for the driver tests into DIR/test/drivers/node,
# exactly the versions of its package-lock.json, owned by the account that
# runs the tests.
install_node_driver() {
    local dir=$1/test/drivers/node
    echo "== npm ci in test/drivers/node"
    # a failure here fails the driver test that needs the module
    (cd "$dir" && npm ci --no-audit --no-fund --cache "$1/.npm-cache" >/dev/null) ||
        echo "npm ci failed: the node driver test will fail"
    rm -rf "$1/.npm-cache"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
    return 0
}
