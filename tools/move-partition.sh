#!/usr/bin/env bash
# move-partition.sh: move one partition database of a user_service cluster
# from server A to server B while the PL/Proxy router keeps serving
# (docs/scaling.md, "Moving a partition to another server").
#
#   move-partition.sh prepare    publication on A, extension and subscription on B
#   move-partition.sh wait       until B has copied every table and caught up
#   move-partition.sh cutover    the write pause: lock on A, catch-up, sequences,
#                                fence A, switch the router, detach B
#   move-partition.sh cleanup    drop the replication slot on A (and A's database
#                                with MOVE_DROP_SOURCE=yes)
#   move-partition.sh status     where the move stands
#   move-partition.sh abort      before cutover: undo prepare (B's copy stays)
#
# Each step finds out what is done already and does only the rest, so that it
# can run again after a failure.  Configuration (environment):
#   MOVE_PARTITION   the partition number K (pK of user_service_cluster)
#   MOVE_A           connection options of server A, without dbname, as a superuser
#   MOVE_B           connection options of server B, without dbname, as a superuser
#   MOVE_DB          the partition's database on A
#   MOVE_B_DB        its database on B (default MOVE_DB); it must exist
#   MOVE_ROUTER      connection string of the router database (owner of the server)
#   MOVE_PUBLISHER   how B reaches A's database (default "MOVE_A dbname=MOVE_DB")
#   MOVE_TARGET      the router's new connection string for pK
#                    (default "MOVE_B dbname=MOVE_B_DB")
#   MOVE_A_ADMIN_DB  another database of A for the steps that cannot connect to
#                    MOVE_DB (default postgres)
#   MOVE_LOCK_TIMEOUT  how long cutover waits for A's writers (default 5s)
#   MOVE_MAX_PAUSE     seconds the write lock may be held before cutover gives up
#                      and A serves again (default 30)
#   MOVE_MAX_LAG       bytes of lag under which wait is done (default 1048576)
#   MOVE_TIMEOUT       seconds wait waits at most (default 3600)
#   PSQL             the psql to run (default psql)
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit 2
}

step=${1:-}
[ -n "$step" ] || usage
K=${MOVE_PARTITION:?MOVE_PARTITION: the partition number}
[[ $K =~ ^[0-9]+$ ]] || { echo "MOVE_PARTITION must be a number" >&2; exit 2; }
DB=${MOVE_DB:?MOVE_DB: the partition database on A}
B_DB=${MOVE_B_DB:-$DB}
# conninfo_value VALUE: VALUE as a value of a libpq keyword/value connection
# string: as it is when it needs no quotes (the strings of earlier versions
# of this script, which a re-run compares with the router's), else quoted,
# its backslashes and quotes escaped (a database name may hold spaces or
# quotes)
conninfo_value() {
	if [[ $1 =~ ^[A-Za-z0-9_.-]+$ ]]; then
		printf '%s' "$1"
		return
	fi
	local v=${1//\\/\\\\}
	printf "'%s'" "${v//\'/\\\'}"
}
A_DB="${MOVE_A:?MOVE_A: server A} dbname=$(conninfo_value "$DB")"
A_ADMIN="$MOVE_A dbname=$(conninfo_value "${MOVE_A_ADMIN_DB:-postgres}")"
B_CONN="${MOVE_B:?MOVE_B: server B} dbname=$(conninfo_value "$B_DB")"
ROUTER=${MOVE_ROUTER:?MOVE_ROUTER: the router database}
PUBLISHER=${MOVE_PUBLISHER:-$A_DB}
TARGET=${MOVE_TARGET:-$B_CONN}
LOCK_TIMEOUT=${MOVE_LOCK_TIMEOUT:-5s}
MAX_PAUSE=${MOVE_MAX_PAUSE:-30}
MAX_LAG=${MOVE_MAX_LAG:-1048576}
TIMEOUT=${MOVE_TIMEOUT:-3600}
PSQL=${PSQL:-psql}
[[ $MAX_PAUSE =~ ^[0-9]+$ && $MAX_LAG =~ ^[0-9]+$ && $TIMEOUT =~ ^[0-9]+$ ]] ||
	{ echo "MOVE_MAX_PAUSE, MOVE_MAX_LAG and MOVE_TIMEOUT must be numbers" >&2; exit 2; }
# (it goes into the holder's SQL; 0 would wait for the lock for ever)
[[ $LOCK_TIMEOUT =~ ^[1-9][0-9]*(ms|s|min)?$ ]] ||
	{ echo "MOVE_LOCK_TIMEOUT must be a positive duration (5s, 500ms)" >&2; exit 2; }
# publication, subscription and slot: one name per partition, so that several
# partitions can move from or to one server at once
NAME=user_service_move_p$K

# q CONN [psql args]: run SQL (from -c or standard input) and print the
# rows unaligned; psql variables name, db, k, target and publisher are set
# (standard input interpolates them, -c does not).
q() {
	local conn=$1
	shift
	"$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v name="$NAME" -v db="$DB" -v k="$K" \
		-v target="$TARGET" -v publisher="$PUBLISHER" -d "$conn" "$@"
}

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
say() { printf '%s: %s\n' "$step" "$*"; }
die() { printf '%s: ERROR: %s\n' "$step" "$*" >&2; exit 1; }
took() { say "$1: $(($(now_ms) - $2)) ms"; }

# Sessions for the cutover: a psql that reads its statements from a FIFO,
# so that a statement in the pause costs a round trip, not a new process
# and connection.  open_session NAME CONN; in_session NAME SQL runs SQL
# (statements; the last one's rows are printed, without its semicolon) and
# waits for it: psql writes a row into a FIFO that this script reads.
declare -A SESSION_FD SESSION_PID
SESSION_N=0
open_session() {
	local fd
	mkfifo "$tmp/$1.in"
	"$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v name="$NAME" -v db="$DB" -v k="$K" \
		-v target="$TARGET" -d "$2" -f "$tmp/$1.in" >"$tmp/$1.log" 2>&1 &
	SESSION_PID[$1]=$!
	# (read-write: opening a FIFO for writing alone waits for a reader, for
	# ever when psql could not connect; in_session then finds psql gone)
	exec {fd}<>"$tmp/$1.in"
	SESSION_FD[$1]=$fd
}
in_session() {
	local n=$((SESSION_N += 1))
	[ -p "$tmp/$n.done" ] || mkfifo "$tmp/$n.done"
	printf '%s \\g %s\nSELECT 1 \\g %s\n' "$2" "$tmp/$n.rows" "$tmp/$n.done" >&"${SESSION_FD[$1]}"
	signalled "$tmp/$n.done" "${SESSION_PID[$1]}" >/dev/null || die "$(<"$tmp/$1.log")"
	[ ! -e "$tmp/$n.rows" ] || echo "$(<"$tmp/$n.rows")"
}
# signalled FIFO PID: print the line psql process PID writes into FIFO;
# false when PID ends without writing one.
signalled() {
	local fd line
	exec {fd}<>"$1"
	until read -r -t 1 -u "$fd" line; do
		if ! kill -0 "$2" 2>/dev/null; then
			read -r -t 0.1 -u "$fd" line || { exec {fd}<&-; return 1; }
			break
		fi
	done
	exec {fd}<&-
	echo "$line"
}

# Is A's database fenced (connections refused), and what does the router's
# pK say?
# (a check that cannot reach its server stops the script: taken for "no",
# a re-run could unfence A, or the detach be skipped in silence)
a_fenced() {
	local out
	out=$(q "$A_ADMIN" <<'SQL'
SELECT NOT datallowconn FROM pg_database WHERE datname = :'db';
SQL
) || die "cannot ask A whether $DB is fenced"
	[ "$out" = t ]
}
ROUTER_PARTITION="SELECT substr(o, length('p' || :'k') + 2)
  FROM pg_foreign_server s, unnest(s.srvoptions) o
 WHERE s.srvname = 'user_service_cluster' AND o LIKE 'p' || :'k' || '=%'"
router_partition() { q "$ROUTER" <<<"$ROUTER_PARTITION"; }
b_subscribed() {
	local out
	out=$(q "$B_CONN" <<'SQL'
SELECT count(*) FROM pg_subscription WHERE subname = :'name' AND subdbid =
       (SELECT oid FROM pg_database WHERE datname = current_database());
SQL
) || die "cannot ask B whether it subscribes to $NAME"
	[ "$out" = 1 ]
}

do_prepare() {
	local t0 t version
	t0=$(now_ms)
	if a_fenced; then
		say "A's database $DB is fenced: the partition was cut over already"
		return 0
	fi
	[ -n "$(router_partition)" ] || die "the router has no partition p$K in user_service_cluster"

	# A: wal_level, no prepared transaction, the publication
	t=$(now_ms)
	[ "$(q "$A_DB" -c 'SHOW wal_level')" = logical ] ||
		die "A has wal_level = $(q "$A_DB" -c 'SHOW wal_level'): set wal_level = logical (and max_replication_slots, max_wal_senders) and restart A"
	version=$(q "$A_DB" -c "SELECT extversion FROM pg_extension WHERE extname = 'user_service'")
	[ -n "$version" ] || die "A's database $DB has no extension user_service"
	[ "$(q "$A_DB" -c 'SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()')" = 0 ] ||
		die "A's database $DB has prepared transactions: commit or roll them back first"
	q "$A_DB" <<'SQL'
SELECT format('CREATE PUBLICATION %I FOR TABLES IN SCHEMA user_service', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_publication WHERE pubname = :'name') \gexec
SQL
	say "publication $NAME on A: every table of schema user_service ($(q "$A_DB" <<'SQL'
SELECT string_agg(tablename, ', ' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = :'name';
SQL
))"
	took "A" "$t"

	# B: the extension at A's version, its workers, the subscription
	t=$(now_ms)
	if b_subscribed; then
		say "B already subscribes to $NAME"
	else
		q "$B_CONN" -v version="$version" <<'SQL'
SELECT format('CREATE EXTENSION IF NOT EXISTS user_service VERSION %L', :'version') \gexec
SQL
		[ "$(q "$B_CONN" -c "SELECT extversion FROM pg_extension WHERE extname = 'user_service'")" = "$version" ] ||
			die "B's extension user_service is not at A's version $version"
		# shard_config comes from A: a configure_shard on B would make its
		# row collide with A's (one row at most) and stop the apply
		[ "$(q "$B_CONN" <<'SQL'
SELECT (SELECT count(*) FROM user_service.users) + (SELECT count(*) FROM user_service.shard_config)
     + (SELECT count(*) FROM user_service.batch_jobs) + (SELECT count(*) FROM user_service.email_claims)
     + (SELECT count(*) FROM user_service.cluster_batches);
SQL
)" = 0 ] || die "B's database $B_DB has data: a move needs a fresh one (CREATE EXTENSION only, no configure_shard)"
		# a slot left by a subscription that was dropped without it
		q "$A_ADMIN" <<'SQL' >/dev/null
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
 WHERE slot_name = :'name' AND NOT active;
SQL
		# synchronous_commit = on: B flushes what it applies at once, so that
		# its confirmations (what cutover waits for) follow its applies
		# instead of its WAL writer
		q "$B_CONN" <<'SQL'
SELECT format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (copy_data = true, synchronous_commit = on)',
              :'name', :'publisher', :'name') \gexec
SQL
		say "subscription $NAME on B created: the initial copy runs"
	fi
	check_grants
	if [ "$(q "$B_CONN" -c 'SELECT count(*) FROM user_service.workers WHERE database = current_database()')" = 0 ]; then
		say "WARNING: no user_service worker serves $B_DB on B: list it in B's user_service.database and reload, or its batches wait after the move"
	fi
	took "B" "$t"
	took "prepare" "$t0"
}

# The copy's and the catch-up's state: "<tables not ready> <lag bytes>".
sync_state() {
	local notready lag
	notready=$(q "$B_CONN" <<'SQL'
SELECT count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')) + (count(*) = 0)::int
  FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid
 WHERE s.subname = :'name';
SQL
)
	lag=$(q "$A_ADMIN" <<'SQL'
SELECT COALESCE(pg_current_wal_lsn() - confirmed_flush_lsn, -1) FROM pg_replication_slots WHERE slot_name = :'name';
SQL
)
	echo "$notready ${lag:--1}"
}

do_wait() {
	local t0 notready lag
	t0=$(now_ms)
	if a_fenced; then
		say "A's database $DB is fenced: nothing to wait for"
		return 0
	fi
	b_subscribed || die "B does not subscribe to $NAME: run prepare"
	while :; do
		read -r notready lag < <(sync_state)
		if [ "$notready" = 0 ] && [ "$lag" -ge 0 ] && [ "$lag" -le "$MAX_LAG" ]; then
			break
		fi
		[ $(($(now_ms) - t0)) -lt $((TIMEOUT * 1000)) ] ||
			die "not caught up after $TIMEOUT s ($notready tables copying, lag $lag bytes)"
		sleep 0.2
	done
	say "every table copied, lag $lag bytes"
	took "wait" "$t0"
}

# The holder: a session of A's database that locks every table of the
# extension against writes (readers go on), writes A's WAL position and
# sequences for the script, waits until the script has fenced the database
# (no new connection), ends every other session of the database but the
# walsenders, and only then lets go of the locks: a write that waited for
# them never runs on A.  If the fence does not come within MOVE_MAX_PAUSE,
# or this session's client goes away, it rolls back and A serves as before.
holder_sql() {
	cat <<SQL
SET lock_timeout = '$LOCK_TIMEOUT';
SET client_connection_check_interval = '100ms';
SET application_name = 'user_service move p$K';
SELECT pg_cancel_backend(pid) FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'autovacuum worker' \g /dev/null
BEGIN;
SELECT format('LOCK TABLE %s IN EXCLUSIVE MODE',
              string_agg(format('%I.%I', schemaname, tablename), ', ' ORDER BY tablename))
  FROM pg_tables WHERE schemaname = 'user_service' \gexec
SELECT format('SELECT setval(%L, %s, %s);', format('%I.%I', schemaname, sequencename),
              COALESCE(last_value, start_value), (last_value IS NOT NULL)::text)
  FROM pg_sequences WHERE schemaname = 'user_service' \g $1/setval.sql
SELECT pg_current_wal_insert_lsn(), pg_backend_pid() \g $1/locked
DO \$\$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '$MAX_PAUSE s';
    others int;
    quiet int := 0;
BEGIN
    WHILE (SELECT datallowconn FROM pg_database WHERE datname = current_database()) LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'A was not fenced within $MAX_PAUSE s: the writes go on there';
        END IF;
        PERFORM pg_sleep(0.002);
    END LOOP;
    -- fenced: end the sessions that are left, until none shows up twice
    WHILE quiet < 2 LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT count(pg_terminate_backend(pid)) INTO others FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND backend_type <> 'walsender';
        quiet := CASE WHEN others = 0 THEN quiet + 1 ELSE 0 END;
        PERFORM pg_sleep(0.005);
    END LOOP;
END
\$\$;
COMMIT;
SELECT 'fenced' \g $1/fenced
SQL
}

# Fence A's database: no new connection, and read-only for any that slipped
# in before (workers included: the launcher starts none for a database that
# refuses connections).
fence_a() {
	q "$A_ADMIN" <<'SQL'
BEGIN;
SELECT format('ALTER DATABASE %I SET default_transaction_read_only = on', :'db') \gexec
SELECT format('ALTER DATABASE %I WITH ALLOW_CONNECTIONS false', :'db') \gexec
COMMIT;
SQL
}
unfence_a() {
	q "$A_ADMIN" <<'SQL'
SELECT format('ALTER DATABASE %I WITH ALLOW_CONNECTIONS true', :'db') \gexec
SELECT format('ALTER DATABASE %I RESET default_transaction_read_only', :'db') \gexec
SQL
}

switch_router() {
	local old
	old=$(router_partition)
	if [ "$old" = "$TARGET" ]; then
		say "the router's p$K is B already"
		return 0
	fi
	q "$ROUTER" <<'SQL'
SELECT format('ALTER SERVER user_service_cluster OPTIONS (SET %I %L)', 'p' || :'k', :'target') \gexec
SQL
	say "the router's p$K was: $old"
}

# B's own from now on: the subscription goes (its slot is A's, dropped by
# cleanup), and a reload wakes B's workers for the pending batch items.
detach_b() {
	if b_subscribed; then
		q "$B_CONN" <<'SQL'
SELECT format('ALTER SUBSCRIPTION %I DISABLE', :'name') \gexec
SELECT format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', :'name') \gexec
SELECT format('DROP SUBSCRIPTION %I', :'name') \gexec
SELECT pg_reload_conf() \g /dev/null
SQL
		say "B's subscription dropped: B's workers run the partition's batches"
	fi
}

# Grants are catalog entries of each database, not replicated: warn about
# roles that may run the API on A and not on B.
check_grants() {
	local sql="SELECT COALESCE(string_agg(DISTINCT grantee::text, ' ' ORDER BY grantee::text), '')
	             FROM information_schema.role_routine_grants
	            WHERE routine_schema = 'user_service' AND privilege_type = 'EXECUTE'
	              AND grantee::text <> 'PUBLIC'
	              AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = grantee::text)"
	local ga gb missing=()
	ga=$(q "$A_DB" -c "$sql")
	gb=$(q "$B_CONN" -c "$sql")
	for r in $ga; do
		[[ " $gb " = *" $r "* ]] || missing+=("$r")
	done
	[ ${#missing[@]} = 0 ] ||
		say "WARNING: on B these roles cannot run the API they run on A (grants are not replicated): ${missing[*]}"
}

do_cutover() {
	local t0 t lsn pid locked_at fenced_at switched_at caught marker old notready lag
	t0=$(now_ms)
	if a_fenced; then
		# a cutover that fenced A and stopped before its end: the marker on
		# B's subscription says the holder saw the fence and let go only
		# after ending every other session (nothing written on A since B
		# caught up); without it, A may have written after the lock was
		# given up: A serves again and the cutover starts over
		marker=$(q "$B_CONN" <<'SQL'
SELECT obj_description(oid, 'pg_subscription') FROM pg_subscription WHERE subname = :'name';
SQL
)
		if [ "$(router_partition)" = "$TARGET" ] || [[ $marker = "fenced after"* ]]; then
			say "A's database $DB is fenced already${marker:+ (B: $marker)}: finishing"
			switch_router
			detach_b
			took "cutover" "$t0"
			return 0
		fi
		b_subscribed || die "A's database $DB is fenced, B does not subscribe, and the router's p$K is not B: see status"
		unfence_a
		say "A's database $DB was fenced by a cutover that did not finish: it serves again, starting over"
	fi
	b_subscribed || die "B does not subscribe to $NAME: run prepare and wait"
	read -r notready lag < <(sync_state)
	[ "$notready" = 0 ] || die "$notready tables are still being copied: run wait"
	[ "$(q "$B_CONN" -c "SELECT count(*) FROM pg_stat_subscription s JOIN pg_subscription p ON p.oid = s.subid
	                     WHERE p.subname = '$NAME' AND s.pid IS NOT NULL")" != 0 ] ||
		die "B's subscription $NAME has no running apply worker (see B's log)"
	check_grants

	tmp=$(mktemp -d)
	# whatever happens to this script, its sessions (the holder's first) do
	# not outlive it
	trap 'kill ${holder:-} ${SESSION_PID[*]} 2>/dev/null; rm -rf "$tmp"' EXIT
	open_session a "$A_ADMIN"
	open_session b "$B_CONN"
	open_session router "$ROUTER"
	mkfifo "$tmp/locked" "$tmp/fenced" "$tmp"/{1..16}.done
	old=$(in_session router "$ROUTER_PARTITION")
	in_session a "SET synchronous_commit = on;
SELECT 1" >/dev/null
	in_session b "SELECT 1" >/dev/null

	holder_sql "$tmp" >"$tmp/holder.sql"
	t=$(now_ms)
	"$PSQL" -X -q -At -v ON_ERROR_STOP=1 -d "$A_DB" -f "$tmp/holder.sql" >"$tmp/holder.out" 2>&1 &
	holder=$!
	IFS='|' read -r lsn pid < <(signalled "$tmp/locked" "$holder") && [ -n "$lsn" ] ||
		die "could not lock A's tables: $(<"$tmp/holder.out")"
	locked_at=$(now_ms)
	say "writes of $DB on A paused (waited $((locked_at - t)) ms for the lock), A at $lsn"

	# B applies everything A committed before the lock: a synchronous
	# commit of a transaction id flushes A's WAL past lsn (the workers
	# commit asynchronously), then B's confirmations pass it
	t=$(now_ms)
	local deadline=$(($(now_ms) + MAX_PAUSE * 1000))
	until [ "$(in_session a "SELECT pg_current_xact_id() \g /dev/null
SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = :'name' AND confirmed_flush_lsn >= '$lsn')")" = t ]; do
		# each synchronous commit above flushes A's WAL, and the walsender's
		# keepalive for it makes B confirm
		[ "$(now_ms)" -lt "$deadline" ] || {
			q "$A_ADMIN" -c "SELECT pg_cancel_backend($pid)" >/dev/null
			die "B did not catch up with $lsn within $MAX_PAUSE s: A serves as before"
		}
		in_session a "SELECT pg_sleep(0.002)" >/dev/null
	done
	caught=$(in_session a "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = :'name'")
	took "catch-up to $lsn (B confirmed $caught)" "$t"

	# sequence positions, so that B's next ids follow A's last ones
	t=$(now_ms)
	in_session b "\i $tmp/setval.sql
SELECT 1" >/dev/null
	took "sequences on B set" "$t"

	# the fence; the holder ends A's sessions of the database, then lets go
	t=$(now_ms)
	kill -0 "$holder" 2>/dev/null || die "the lock on A was given up: A serves as before ($(<"$tmp/holder.out"))"
	in_session a "SELECT format('ALTER DATABASE %I SET default_transaction_read_only = on', :'db') \gexec
SELECT format('ALTER DATABASE %I WITH ALLOW_CONNECTIONS false', :'db') \gexec
SELECT 1" >/dev/null
	if ! signalled "$tmp/fenced" "$holder" >/dev/null; then
		unfence_a
		die "the pause ran out before the fence: A serves as before, run cutover again ($(<"$tmp/holder.out"))"
	fi
	fenced_at=$(now_ms)
	in_session b "SELECT format('COMMENT ON SUBSCRIPTION %I IS %L', :'name', 'fenced after $lsn, caught up, sequences set') \gexec
SELECT 1" >/dev/null
	took "A fenced, its sessions of $DB ended" "$t"

	t=$(now_ms)
	in_session router "SELECT format('ALTER SERVER user_service_cluster OPTIONS (SET %I %L)', 'p' || :'k', :'target') \gexec
SELECT 1" >/dev/null
	switched_at=$(now_ms)
	took "router's p$K switched to B (was: $old)" "$t"
	say "write pause of p$K: $((switched_at - locked_at)) ms (connections refused for the last $((switched_at - fenced_at)) ms of it)"

	t=$(now_ms)
	detach_b
	took "B detached" "$t"
	q "$ROUTER" <<'SQL' | sed "s/^/$step: check_cluster: /"
SELECT format('partition %s is shard %s of %s: %s', partition, shard, shard_count, CASE WHEN ok THEN 'ok' ELSE 'NOT OK' END)
  FROM user_service.check_cluster() WHERE partition = :'k'::int;
SQL
	took "cutover" "$t0"
}

do_cleanup() {
	local t0 drop
	t0=$(now_ms)
	[ "$(router_partition)" = "$TARGET" ] || die "the router's p$K is not B yet: run cutover"
	! b_subscribed || die "B still subscribes to $NAME: run cutover again"
	# the slot keeps A's WAL; its walsender ends once B's subscription is gone
	q "$A_ADMIN" <<SQL >/dev/null
DO \$\$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
    WHILE EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$NAME' AND active)
          AND clock_timestamp() < deadline LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
END\$\$;
SQL
	drop=$(q "$A_ADMIN" <<'SQL'
SELECT slot_name, pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = :'name';
SQL
)
	say "$( [ -n "$drop" ] && echo "slot $NAME dropped on A" || echo "no slot $NAME on A")"
	if [ "${MOVE_DROP_SOURCE:-no}" = yes ]; then
		q "$A_ADMIN" <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I', :'db') \gexec
SQL
		say "A's database $DB dropped"
	else
		say "A's database $DB stays, fenced and read-only (its publication with it); MOVE_DROP_SOURCE=yes drops it"
	fi
	say "take $DB out of A's user_service.database and reload A"
	took "cleanup" "$t0"
}

do_status() {
	local notready lag
	say "router p$K: $(router_partition)"
	if a_fenced; then say "A's database $DB: fenced (cut over)"; else say "A's database $DB: serving"; fi
	if b_subscribed; then
		read -r notready lag < <(sync_state)
		say "B subscribes to $NAME: $notready tables copying, lag $lag bytes"
	else
		say "B does not subscribe to $NAME"
	fi
	say "slot on A: $(q "$A_ADMIN" -c "SELECT COALESCE(string_agg(CASE WHEN active THEN 'active' ELSE 'inactive' END, ''), 'none')
	                                   FROM pg_replication_slots WHERE slot_name = '$NAME'")"
}

do_abort() {
	local marker
	[ "$(router_partition)" != "$TARGET" ] || die "the router's p$K is B already: the move is done, there is nothing to abort"
	if a_fenced; then
		# past the fence, B may have taken over (its workers run the
		# partition's batches): A must not serve again
		b_subscribed || die "A's database $DB is fenced and B no longer subscribes: the cutover is done (another router's p$K may still name A: switch it)"
		marker=$(q "$B_CONN" <<'SQL'
SELECT obj_description(oid, 'pg_subscription') FROM pg_subscription WHERE subname = :'name';
SQL
)
		[[ $marker != "fenced after"* ]] || die "the cutover fenced A and ended its sessions: finish it with cutover"
		unfence_a
		say "A's database $DB serves again"
	fi
	if b_subscribed; then
		q "$B_CONN" <<'SQL'
SELECT format('DROP SUBSCRIPTION %I', :'name') \gexec
SQL
		say "B's subscription dropped (with its slot on A)"
	fi
	q "$A_DB" <<'SQL'
SELECT format('DROP PUBLICATION %I', :'name') WHERE EXISTS (SELECT FROM pg_publication WHERE pubname = :'name') \gexec
SQL
	say "A's publication dropped; B's database $B_DB keeps what was copied: drop it before a new prepare"
}

case $step in
prepare) do_prepare ;;
wait) do_wait ;;
cutover) do_cutover ;;
cleanup) do_cleanup ;;
status) do_status ;;
abort) do_abort ;;
*) usage ;;
esac
