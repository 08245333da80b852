# user_service behind PgBouncer in transaction pooling mode (Debian's
# pgbouncer, 1.18): server connections are shared between clients, one
# transaction at a time.
# a) pgbench with 8 clients on a pool of 2 server connections: every call
#    works, every user is created once, and PgBouncer never opens more than
#    2 server connections.
# b) the four driver scenarios (test/drivers) at once through the pooler,
#    with US_POOLED=1: each script's TAP lines are assertions here.
# c) session state: SET LOCAL and submit_batch's concurrency argument do not
#    leak to the next client of the same server connection; a plain SET
#    does (PgBouncer's documented behaviour, shown here as the hazard).
# d) user_service.max_batch_wait caps one wait_batch call, so a pooled
#    client polls instead of holding a server connection for an hour.
# e) no advisory lock is left behind on the pooled server connections.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Copy qw(copy);
use File::Spec;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use UserServiceNode;

# The tree's top: the driver scripts run from there.
my $top = abs_path("$FindBin::RealBin/../..");

my $pgbouncer_bin = (grep { -x } map { "$_/pgbouncer" } File::Spec->path(), '/usr/sbin')[0];
plan skip_all => 'pgbouncer is not installed (Debian package pgbouncer)' unless $pgbouncer_bin;

# The node: TCP on 127.0.0.1 for PgBouncer (the test itself uses the Unix
# socket), trusted like the Unix socket.
my $node = preloaded_node('us_node', qq{
listen_addresses = '127.0.0.1'
});
$node->append_conf('pg_hba.conf', "host all all 127.0.0.1/32 trust\n");
$node->reload;
my $bindir = $node->config_data('--bindir');
my $psql = "$bindir/psql";

# The application role, with exactly the README's grants.
app_role($node, 'us_app');

# PgBouncer, configured and started here, as the account that runs the test.
my $tmp = PostgreSQL::Test::Utils::tempdir('pgbouncer');
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $nport = $node->port;
# trust still wants every user name in auth_file (the password is not used).
PostgreSQL::Test::Utils::append_to_file("$tmp/userlist.txt", qq{"us_app" ""\n"postgres" ""\n});
PostgreSQL::Test::Utils::append_to_file("$tmp/pgbouncer.ini", qq{
[databases]
postgres = host=127.0.0.1 port=$nport dbname=postgres
; the same database through a pool of one server connection: part c
us_one = host=127.0.0.1 port=$nport dbname=postgres pool_size=1

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir = $tmp
auth_type = trust
auth_file = $tmp/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
; pgjdbc sends extra_float_digits at startup; 1.18 refuses unknown ones
ignore_startup_parameters = extra_float_digits
logfile = $tmp/pgbouncer.log
pidfile = $tmp/pgbouncer.pid
});

my $bouncer = IPC::Run::start([ $pgbouncer_bin, "$tmp/pgbouncer.ini" ],
	'<', \undef, '>', "$tmp/pgbouncer.out", '2>&1');

# Stopped even when the test dies: SIGTERM is an immediate shutdown in 1.18.
# Its log goes next to the test's.
END
{
	local $?;
	if ($bouncer)
	{
		eval { $bouncer->kill_kill(grace => 10) };
		copy("$tmp/pgbouncer.log", "$PostgreSQL::Test::Utils::log_path/030_pgbouncer_pgbouncer.log")
		  if -f "$tmp/pgbouncer.log";
	}
}

# bouncer_psql(DB, USER, SQL, OPTIONS...): psql through PgBouncer, SQL on
# its standard input; (exit code, stdout, stderr).
sub bouncer_psql
{
	my ($db, $user, $sql, @opts) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ $psql, '-X', '-h', '127.0.0.1', '-p', $bport, '-U', $user, '-d', $db, @opts ],
		'<', \$sql, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	chomp $out;
	return ($ok ? 0 : $? >> 8, $out, $err);
}

# app(DB, SQL): SQL as us_app through PgBouncer, one client connection,
# statement by statement; tuples only; dies on an error.
sub app
{
	my ($db, $sql) = @_;
	my ($rc, $out, $err) = bouncer_psql($db, 'us_app', $sql, '-Atq', '-v', 'ON_ERROR_STOP=1');
	die "psql as us_app on $db failed ($rc): $err" if $rc;    # (the SQL may hold a password)
	return $out;
}

# admin(COMMANDS...): the rows of each command on the admin console (one
# client), as a list of arrays of hashes (one array per command).
sub admin
{
	my @commands = @_;
	my ($rc, $out, $err) = bouncer_psql('pgbouncer', 'postgres', '', '-qA', '-F', '|', '-P', 'footer=off',
		map { ('-c', $_, '-c', '\\echo @@') } @commands);
	die "admin console: @commands failed: $err" if $rc;
	my @results;
	for my $result (split /^@@\n?/m, $out)
	{
		# (a command without rows, like RECONNECT, prints nothing)
		my ($head, @lines) = split /\n/, $result;
		my @cols = split /\|/, $head // '', -1;
		push @results, [ map { my %r; @r{@cols} = split /\|/, $_, -1; \%r } @lines ];
	}
	return @results;
}

# Ready when the admin console answers.
my $up = 0;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	last unless $bouncer->pumpable;
	my ($rc) = bouncer_psql('pgbouncer', 'postgres', 'SHOW VERSION', '-Atq');
	if ($rc == 0) { $up = 1; last; }
	usleep(100_000);
}
BAIL_OUT("pgbouncer did not start:\n" . slurp_file("$tmp/pgbouncer.out")) unless $up;
note 'PgBouncer: ', join ' ', map { values %$_ } @{ (admin('SHOW VERSION'))[0] };

# sample_pool(DB): what the pool of us_app on DB holds now: its clients,
# those waiting for a server, its server connections (PgBouncer's view:
# SHOW CLIENTS, SHOW POOLS, SHOW SERVERS), and the backends of us_app on
# the node (the server's view).
sub sample_pool
{
	my ($db) = @_;
	my ($clients, $pools, $servers) =
	  map { [ grep { $_->{database} eq $db && $_->{user} eq 'us_app' } @$_ ] }
	  admin('SHOW CLIENTS', 'SHOW POOLS', 'SHOW SERVERS');
	my $p = $pools->[0];
	my $backends = $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE usename = 'us_app' AND backend_type = 'client backend'");
	return {
		clients => scalar @$clients,
		waiting => $p ? $p->{cl_waiting} : 0,
		pool_servers => $p ? $p->{sv_active} + $p->{sv_idle} + $p->{sv_used} + $p->{sv_tested} + $p->{sv_login} : 0,
		servers => scalar @$servers,
		backends => $backends,
	};
}

# watch_pool(DB, HARNESSES): sample_pool every 200 ms until every harness
# has ended (their output read meanwhile); the maximum of each count.
sub watch_pool
{
	my ($db, @h) = @_;
	my %max = map { $_ => 0 } qw(clients waiting pool_servers servers backends);
	my $samples = 0;
	while (my @running = grep { $_->pumpable } @h)
	{
		$_->pump_nb for @running;
		my $s = sample_pool($db);
		$samples++;
		$max{$_} = $s->{$_} > $max{$_} ? $s->{$_} : $max{$_} for keys %max;
		usleep(200_000);
	}
	$_->finish for @h;
	note "pool $db over $samples samples, maxima: ", join ', ', map { "$_ $max{$_}" } sort keys %max;
	return \%max;
}

########################################################################
# a) pgbench: 8 clients, 2 server connections.
#
# -M extended: each statement is Parse/Bind/Execute of the unnamed
# statement, which 1.18 passes through in any pooling mode.  Not
# -M prepared: named (protocol-level) prepared statements live in one
# server connection, and in transaction mode the next transaction of a
# client may run on another one ("prepared statement ... does not exist");
# PgBouncer tracks them only from 1.21 on (max_prepared_statements).
# Every statement commits on its own, so a client's next statement may
# well run on the other server connection: get_user reads what another
# backend committed.  A wrong answer divides by zero, which aborts the
# client and fails the run.
my $clients = 8;
my $per_client = 20;
PostgreSQL::Test::Utils::append_to_file("$tmp/bench.sql", q{
\set r random(1, 1000000000)
\set n :n + 1
-- unique: the client, its transaction count (n, set by -D), and a random salt
SELECT id AS uid, email AS em FROM user_service.create_user('Bench ' || :client_id::text, 'pgb-' || :client_id::text || '-' || :n::text || '-' || :r::text || '@example.com', 'bench password') \gset
SELECT 1 / (id = :uid AND email = :em)::int AS same_user FROM user_service.get_user(:uid);
SELECT 1 / (count(*) BETWEEN 1 AND 5 AND min(total) >= count(*))::int AS a_page FROM user_service.list_users_rows(1, 5);
SELECT 1 / (user_service.verify_password(:em, 'bench password') AND NOT user_service.verify_password(:em, 'wrong password'))::int AS verified;
});
my ($bench_out, $bench_err) = ('', '');
my $bench = IPC::Run::start(
	[ "$bindir/pgbench", '-n', '-h', '127.0.0.1', '-p', $bport, '-U', 'us_app',
	  '-c', $clients, '-j', 2, '-t', $per_client, '-M', 'extended', '-D', 'n=0',
	  '-f', "$tmp/bench.sql", 'postgres' ],
	'<', \undef, '>', \$bench_out, '2>', \$bench_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
my $max = watch_pool('postgres', $bench);
my $bench_rc = ($bench->full_results)[0];
note "pgbench:\n$bench_out\n$bench_err";
is($bench_rc, 0, "pgbench with $clients clients through PgBouncer exits 0");
unlike("$bench_out\n$bench_err", qr/error|abort/i, 'and reports no error');
like($bench_out, qr{^number of transactions actually processed: (\d+)/\1$}m, 'every transaction was processed');
is($node->safe_psql('postgres', q{SELECT count(*) FROM user_service.users WHERE email LIKE 'pgb-%'}),
	$clients * $per_client, 'every client created its users, each exactly once');
note 'transactions numbered per client: ', $node->safe_psql('postgres', q{
	SELECT count(DISTINCT split_part(email, '-', 2) || '-' || split_part(email, '-', 3)) || ' distinct, n up to '
	       || max(split_part(email, '-', 3)::int) FROM user_service.users WHERE email LIKE 'pgb-%'});
is($max->{clients}, $clients, "PgBouncer served $clients clients at once");
ok($max->{pool_servers} >= 1 && $max->{pool_servers} <= 2 && $max->{servers} <= 2,
	"over at most 2 server connections (SHOW POOLS: $max->{pool_servers}, SHOW SERVERS: $max->{servers})");
ok($max->{backends} >= 1 && $max->{backends} <= 2,
	"and the node saw at most 2 backends of us_app (pg_stat_activity: $max->{backends})");

########################################################################
# b) The driver scenarios, all four at once through the pool of 2.  Each
# runs for well under a second once its interpreter is up (the JVM takes
# a few), so the pool is held (PAUSE: clients connect, their queries wait)
# until every driver still running has connected; after RESUME the four
# clients really share the 2 server connections.
my @drivers = (
	[ node => 'test/drivers/node/scenario.js', 'node' ],
	[ python => 'test/drivers/python/scenario.py', '/usr/bin/python3' ],
	[ java => 'test/drivers/java/Scenario.java', 'java', '-cp', '/usr/share/java/postgresql.jar' ],
	[ php => 'test/drivers/php/scenario.php', 'php' ]);
my (@runs, %out, %err);
admin('PAUSE postgres');
for my $d (@drivers)
{
	my ($name, $script, @cmd) = @$d;
	if (!-f "$top/$script")
	{
		ok(0, "pooled $name: $script exists");
		next;
	}
	($out{$name}, $err{$name}) = ('', '');
	local %ENV = (%ENV,
		PGHOST => '127.0.0.1', PGPORT => $bport, PGDATABASE => 'postgres', PGUSER => 'us_app',
		US_TAG => "pooled-$name", US_POOLED => 1);
	push @runs, [ $name, IPC::Run::start([ @cmd, $script ],
		init => sub { chdir $top or die "chdir $top: $!" },
		'<', \undef, '>', \$out{$name}, '2>', \$err{$name},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default)) ];
}
if (@runs)
{
	my $connected = 0;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		my @live = grep { $_->pumpable } map { $_->[1] } @runs;
		$_->pump_nb for @live;
		$connected = sample_pool('postgres')->{clients};
		last if $connected >= @live;
		usleep(100_000);
	}
	admin('RESUME postgres');
	is($connected, scalar @runs, "all @{[ scalar @runs ]} drivers connected at once, then ran");
	$max = watch_pool('postgres', map { $_->[1] } @runs);
	ok($max->{pool_servers} <= 2 && $max->{servers} <= 2 && $max->{backends} <= 2,
		'the drivers ran on at most 2 server connections '
		  . "(SHOW POOLS: $max->{pool_servers}, SHOW SERVERS: $max->{servers}, backends: $max->{backends})");
}
for my $run (@runs)
{
	my ($name, $h) = @$run;
	my ($n, $plan) = (0, undef);
	for my $line (split /\n/, $out{$name})
	{
		if ($line =~ /^(not )?ok (\d+)(?: - (.*))?$/)
		{
			$n++;
			ok(!defined $1, "pooled $name: " . ($3 // "assertion $2"));
		}
		elsif ($line =~ /^1\.\.(\d+)$/)
		{
			$plan = $1;
		}
		elsif ($line =~ /^#/)
		{
			note "pooled $name: $line";
		}
	}
	my $rc = ($h->full_results)[0];
	is($rc, 0, "pooled $name: exits 0 (wait status $rc)") or diag "pooled $name stderr:\n$err{$name}";
	ok(defined $plan && $plan == $n && $n >= 25,
		"pooled $name: its plan (1.." . ($plan // '?') . ") matches the $n assertions it printed");
}

########################################################################
# c) Session state and the pool of one server connection (us_one).
# submit(CONCURRENCY): SQL submitting a one-item create_user batch.
my $item = 0;
sub submit
{
	my ($concurrency) = @_;
	$item++;
	return qq{SELECT user_service.submit_batch('create_user',
		'[{"name": "Pooled", "email": "pooled-c$item\@example.com", "password": "pooled password"}]'}
	  . (defined $concurrency ? ", $concurrency" : '') . ');';
}
sub concurrency
{
	my ($batch) = @_;
	return app('us_one', "SELECT concurrency FROM user_service.batch_status($batch)");
}

# A: SET LOCAL in a transaction; then B, another client, on the same server.
my ($pid_a, $batch_a) = split /\n/, app('us_one', qq{
	BEGIN;
	SET LOCAL user_service.default_concurrency = 50;
	SELECT pg_backend_pid();
	@{[ submit() ]}
	COMMIT;});
my ($pid_b, $setting_b, $batch_b) = split /\n/, app('us_one', qq{
	SELECT pg_backend_pid();
	SELECT current_setting('user_service.default_concurrency');
	@{[ submit() ]}});
is($pid_b, $pid_a, 'us_one: clients A and B ran on the same server connection');
is(concurrency($batch_a), 50, "A's batch, submitted under SET LOCAL, has concurrency 50");
is($setting_b, 4, 'B sees default_concurrency 4: SET LOCAL ended with the transaction');
is(concurrency($batch_b), 4, "B's batch, on the same server connection, has the default 4");
my $batch_7 = app('us_one', submit(7));
is(concurrency($batch_7), 7, 'submit_batch(kind, items, 7) has concurrency 7');

# The hazard: a session SET outlives the client in transaction mode (no
# server_reset_query there), so the next client inherits it.
($pid_a) = split /\n/, app('us_one', q{
	SET user_service.default_concurrency = 50;
	SELECT pg_backend_pid();});
($pid_b, $batch_b) = split /\n/, app('us_one', qq{
	SELECT pg_backend_pid();
	@{[ submit() ]}});
is($pid_b, $pid_a, 'us_one: A and B again on one server connection');
is(concurrency($batch_b), 50, "a plain SET by A DOES leak: B's batch has A's concurrency 50 (use SET LOCAL)");
app('us_one', 'RESET user_service.default_concurrency;');
is(concurrency(app('us_one', submit())), 4, 'after RESET the default is 4 again');

########################################################################
# d) max_batch_wait: wait_batch gives up after 1 s, whatever it asked for.
# A role's settings apply when a backend starts: PgBouncer's existing
# server connections are closed (RECONNECT) so that new ones get it.
$node->safe_psql('postgres', q{ALTER ROLE us_app SET user_service.max_batch_wait = '1s'});
admin('RECONNECT postgres');
my $cap;
for (1 .. 30)
{
	$cap = app('postgres', 'SHOW user_service.max_batch_wait;');
	last if $cap eq '1s';
	usleep(200_000);
}
is($cap, '1s', 'pooled sessions of us_app have max_batch_wait 1s after RECONNECT');

# 2000 hashing items one at a time: several seconds of work.
my $big = app('postgres', q{
	SELECT user_service.submit_batch('create_user',
		(SELECT jsonb_agg(jsonb_build_object(
			'name', 'Wait ' || i, 'email', 'pooled-wait' || i || '@example.com',
			'password', 'pooled password ' || i) ORDER BY i)
		   FROM generate_series(1, 2000) i), 1);});
my ($rc, $waited, $err) =
  bouncer_psql('postgres', 'us_app', "SELECT user_service.wait_batch($big, '1 hour');", '-Atq');
is("$rc $waited", '0 f', "wait_batch(id, '1 hour') returns false after the cap, without an error")
  or diag $err;
is(app('postgres', "SELECT pending > 0 FROM user_service.batch_status($big);"),
	't', 'while items are still pending');
my $cancelled = app('postgres', "SELECT user_service.cancel_batch($big);");
ok($cancelled > 0, "cancel_batch cancels the pending items ($cancelled)");
# As a pooled client does: call again while it answers false (capped).
my ($done, $calls) = ('f', 0);
while ($done ne 't' && $calls < 30)
{
	$done = app('postgres', "SELECT user_service.wait_batch($big, '30 seconds');");
	$calls++;
}
is($done, 't', "then wait_batch(id, '30 seconds') returns true ($calls call(s))");
is(app('postgres', "SELECT state, pending, cancelled, succeeded + cancelled FROM user_service.batch_status($big);"),
	"cancelled|0|$cancelled|2000", 'the batch is cancelled: no item pending, the rest succeeded');

########################################################################
# e) Nothing holds an advisory lock (the batch slots are transaction-level
# locks) once every batch is finished, the pooled server connections
# included.
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM user_service.batches WHERE state IN ('pending', 'running')})
  or die 'batches left unfinished';
is($node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE usename = 'us_app') > 0 FROM pg_stat_activity;
		SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'}),
	"t\n0", 'with pooled server connections still open, no advisory lock is held');

$bouncer->kill_kill(grace => 10);
undef $bouncer;
copy("$tmp/pgbouncer.log", "$PostgreSQL::Test::Utils::log_path/030_pgbouncer_pgbouncer.log");
$node->stop;
done_testing();
