# Moving a partition online (tools/move-partition.sh): server A holds the
# partition databases part0 and part1 (shards 0 and 1 of 2) behind a
# PL/Proxy router; part0 moves to a new server B while the router serves
# both partitions, each from its own client session (reads, updates and
# creates, every answer checked), and a create_user batch submitted through
# the router before the move is still running.  Each step runs twice; the
# first cutover fails on a lock held on A (A then serves as before) and runs
# again.  Afterwards: part0's users are on B with the same ids and hashes
# and verify through the router; totals are exact through the router and on
# B without recount_users; the batch's items are each applied once; new
# users of part0 get ids of shard 0 above A's; A's copy is fenced and has
# nothing written after the switch; part1's session never saw an error,
# part0's only connection-class or read-only ones, neither a wrong answer,
# and no acknowledged write was lost.  US_MOVE_USERS (default 3000) sets the
# number of users, US_MOVE_BEFORE (default 1) the seconds of traffic
# before the move, US_MOVE_BATCH (600) the batch's items (0: no batch),
# US_MOVE_ISOLATE=1 puts the move's processes on the second CPU,
# US_MOVE_STANDBY=1 gives A a streaming standby before the traffic; each
# step's time, the write pause and the router's rate for part1 before and
# during the move are printed (docs/scaling.md).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use List::Util qw(min max);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use UserServiceNode;

my $users = $ENV{US_MOVE_USERS} // 3000;
# US_MOVE_BATCH=0: no batch (what the move alone costs the other partition)
my $batch_n = $ENV{US_MOVE_BATCH} // 600;
# US_MOVE_ISOLATE=1: the move's work (server B, A's walsenders, the script
# and A's backends serving it, this test's checks from the move on) on the
# second CPU, the application (A's processes serving before the move, the
# router, the traffic) on the first, standing in for servers of their own:
# on this machine every server shares the same two cores, and the copy
# would take the router's.
my $isolate = $ENV{US_MOVE_ISOLATE} // 0;
# US_MOVE_STANDBY=1: A has a streaming standby from before the traffic, as a
# shard of the HA setup has (docs/scaling.md); with US_MOVE_ISOLATE, on the
# second CPU with A's walsender for it.
my $with_standby = $ENV{US_MOVE_STANDBY} // 0;
my $script = "$FindBin::RealBin/../../tools/move-partition.sh";
my $conf = q{
shared_preload_libraries = 'user_service'
user_service.workers = 1
user_service.argon2_memory_kib = 8192
user_service.argon2_iterations = 1
wal_level = logical
max_replication_slots = 4
max_wal_senders = 8
};

my $a = PostgreSQL::Test::Cluster->new('server_a');
$a->init;
$a->append_conf('postgresql.conf', $conf . "user_service.database = 'part0, part1'\n");
$a->start;
for my $k (0, 1)
{
	$a->safe_psql('postgres', "CREATE DATABASE part$k");
	$a->safe_psql("part$k", "CREATE EXTENSION user_service; SELECT user_service.configure_shard($k, 2)");
}
my $b = PostgreSQL::Test::Cluster->new('server_b');
$b->init;
# B's database has another name, with a space (quoted in every connection
# string the script makes)
my $bdb = 'part0 on b';
$b->append_conf('postgresql.conf', $conf . "user_service.database = '\"$bdb\"'\n");
$b->start;
$b->safe_psql('postgres', qq{CREATE DATABASE "$bdb"});
my ($mover, $apid);
if ($isolate)
{
	# (children inherit their parent's CPUs: the servers' later processes too)
	($apid) = split /\n/, slurp_file($a->data_dir . '/postmaster.pid');
	my ($bpid) = split /\n/, slurp_file($b->data_dir . '/postmaster.pid');
	system("for p in $$ $apid \$(pgrep -P $apid); do taskset -p -c 0 \$p; done >/dev/null");
	system("for p in $bpid \$(pgrep -P $bpid); do taskset -p -c 1 \$p; done >/dev/null");
}

my %conn = map { $_ => 'host=' . $_->host . ' port=' . $_->port } ($a, $b);
my $router = router_node('router', postgres => [ map { "$conn{$a} dbname=part$_" } 0, 1 ]);
my $target = "$conn{$b} dbname='$bdb'";

# Users: one created, the others imported with its hash (no hashing).
$router->safe_psql('postgres', q{SELECT user_service.create_user('Seed', 'seed@example.com', 'the password')});
my $hash = $a->safe_psql('part0', q{SELECT password_hash FROM user_service.users WHERE email = 'seed@example.com'})
  || $a->safe_psql('part1', q{SELECT password_hash FROM user_service.users WHERE email = 'seed@example.com'});
my $import = $router->safe_psql('postgres', qq{
	SELECT user_service.submit_batch('import_user',
		(SELECT jsonb_agg(jsonb_build_object('name', 'User ' || i, 'email', 'user' || i || '\@example.com',
		                                     'password_hash', '$hash') ORDER BY i)
		   FROM generate_series(1, $users - 1) i))});
ok($router->poll_query_until('postgres', "SELECT user_service.wait_batch($import, '10 seconds')"),
	"$users users imported");
# A finished batch of that size is purged before the move (docs/scaling.md,
# Limits: copying it costs little, but its deletes during the move would
# reach B; before 1.3 B applied each by scanning the items' table).
$a->append_conf('postgresql.conf', "user_service.batch_retention = '1s'\n");
$a->reload;
for my $k (0, 1)
{
	ok($a->poll_query_until("part$k", q{SELECT NOT EXISTS (SELECT FROM user_service.batch_items)}),
		"the import's items are purged from part$k");
}
$a->append_conf('postgresql.conf', "user_service.batch_retention = '1 day'\n");
$a->reload;
my @count = map { $a->safe_psql("part$_", 'SELECT count(*) FROM user_service.users') } 0, 1;
is($count[0] + $count[1], $users, "over both partitions (@count)");

# An application role with the API's grants on A, not yet on B (set up before
# the traffic starts: not part of the move).
$a->safe_psql('part0', 'CREATE ROLE app LOGIN; GRANT USAGE ON SCHEMA user_service TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service TO app');
$b->safe_psql('postgres', 'CREATE ROLE app LOGIN');

if ($with_standby)
{
	$a->backup('before_traffic');
	my $standby = PostgreSQL::Test::Cluster->new('server_a_standby');
	$standby->init_from_backup($a, 'before_traffic', has_streaming => 1);
	$standby->start;
	$a->wait_for_catchup($standby);
	if ($isolate)
	{
		my ($spid) = split /\n/, slurp_file($standby->data_dir . '/postmaster.pid');
		my $wpid = $a->safe_psql('postgres', 'SELECT pid FROM pg_stat_replication');
		system("for p in $wpid $spid \$(pgrep -P $spid); do taskset -p -c 1 \$p; done >/dev/null");
	}
}

# Traffic through the router, one session per partition: get_user (the
# answer checked), update_user with a new name each time, and every fifth
# round a create_user of an email whose home is the partition.  Each call
# is followed by its SQLSTATE.
my (%ids, %email_of, %session);
my $untouched = $a->safe_psql('part0', q{SELECT max(id) FROM user_service.users});
for my $k (0, 1)
{
	my @rows = split /\n/, $a->safe_psql("part$k",
		q{SELECT id || ' ' || email FROM user_service.users ORDER BY id LIMIT 20});
	for (@rows) { my ($id, $e) = split / /; push @{ $ids{$k} }, $id; $email_of{$id} = $e; }
}
my $rounds = 40000;
for my $k (0, 1)
{
	my @emails = split /\n/, $a->safe_psql("part$k", qq{
		SELECT e FROM (SELECT 'traffic' || i || '\@example.com' AS e FROM generate_series(1, 40000) i) s
		 WHERE user_service.email_hash(e) & 1 = $k LIMIT @{[ $rounds / 5 ]}});
	my $sql = "SET application_name = 'traffic_p$k';\n";
	for my $i (0 .. $rounds - 1)
	{
		my $id = $ids{$k}[ $i % 20 ];
		$sql .= "SELECT 'R', email = '$email_of{$id}', extract(epoch FROM clock_timestamp()) FROM user_service.get_user($id);\n"
		  . "\\echo E R :SQLSTATE\n"
		  . "SELECT 'U', id, name FROM user_service.update_user($id, name => 'n$k-$i');\n"
		  . "\\echo E U :SQLSTATE\n";
		$sql .= "SELECT 'C', id, email FROM user_service.create_user('T', '$emails[$i / 5]', 'traffic password');\n\\echo E C :SQLSTATE\n"
		  if $i % 5 == 0;
	}
	my $file = $router->basedir . "/traffic_p$k.sql";
	open my $fh, '>', $file or die $!;
	print $fh $sql;
	close $fh;
	# (into a file: a pipe nobody reads would stop psql once full)
	$session{$k} = { out => "$file.out", h => IPC::Run::start(
		[ 'psql', '-X', '-q', '-At', '-d', $router->connstr('postgres'), '-f', $file ],
		'>', "$file.out", '2>', "$file.err") };
}
my $traffic_start = time;

sleep($ENV{US_MOVE_BEFORE} // 1);    # traffic before the move, to compare with

# A create_user batch through the router: still running when part0 moves
# (one item at a time per partition).
my $handle = $batch_n == 0 ? undef : $router->safe_psql('postgres', qq{
	SELECT user_service.submit_batch('create_user',
		(SELECT jsonb_agg(jsonb_build_object('name', 'Batch ' || i, 'email', 'batch' || i || '\@example.com',
		                                     'password', 'batch secret ' || i) ORDER BY i)
		   FROM generate_series(1, $batch_n) i), 1)});

my %env = (
	MOVE_PARTITION => 0, MOVE_DB => 'part0', MOVE_A => $conn{$a}, MOVE_B => $conn{$b}, MOVE_B_DB => $bdb,
	MOVE_ROUTER => $router->connstr('postgres'), MOVE_TARGET => $target);
my %took;

# run_step(STEP, EXPECT_OK, %ENV): the script's step; its output noted.
sub run_step
{
	my ($step, $expect_ok, %extra) = @_;
	local %ENV = (%ENV, %env, %extra);
	my ($out, $err) = ('', '');
	my $t0 = time;
	my $ok = IPC::Run::run([ 'bash', $script, $step ],
		'>', \$out, '2>', \$err);
	my $ms = int((time - $t0) * 1000);
	note("$step ($ms ms):\n$out$err");
	$took{$step} //= $ms if $ok;
	is($ok ? 1 : 0, $expect_ok, "move-partition.sh $step " . ($expect_ok ? 'succeeds' : 'fails'))
	  or diag("$out$err");
	return "$out$err";
}

if ($isolate)
{
	# From here A's new processes (its walsenders for the copy and the
	# replication, its backends serving the script and this test's checks)
	# start on the second CPU, A's postmaster's from now on, and so do this
	# test and what it starts (the script, its checks' psql, the watcher); on
	# the first CPU stay A's processes that served before the move (the
	# router's connections, the background processes), the router and the
	# traffic.  The watcher sends A's new backends of part1 back to the first
	# CPU: the router's sessions reconnect to every partition when its
	# cluster changes (PL/Proxy drops a cluster's connections when it reloads
	# it), and part1's are the application's, not the move's.
	system("taskset -p -c 1 $$ >/dev/null; taskset -p -c 1 $apid >/dev/null");
	$mover = IPC::Run::start([ 'bash', '-c',
		"moved=' '; while :; do for p in \$(ps -o pid=,args= --ppid $apid | awk '/ part1 /{print \$1}'); do"
		  . " case \"\$moved\" in *\" \$p \"*) ;; *) taskset -p -c 0 \$p >/dev/null 2>&1; moved=\"\$moved\$p \";; esac; done;"
		  . " sleep 0.01; done" ]);
}
my $move_start = time;
like(run_step('prepare', 1), qr/WARNING: on B these roles cannot run the API they run on A .*: app\n/,
	'prepare warns that role app has no grants on B');
$b->safe_psql($bdb, 'GRANT USAGE ON SCHEMA user_service TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service TO app');
like(run_step('prepare', 1), qr/B already subscribes/, 'prepare again: nothing more to do');
my $tables = $a->safe_psql('part0', q{SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables
	WHERE schemaname = 'user_service'});
like($tables, qr/^batch_chunks batch_jobs batch_progress cluster_batches email_claims .*shard_config user_count_deltas users$/,
	"the extension's tables: $tables");
is($a->safe_psql('part0', q{SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_publication_tables}),
	$tables, 'the publication has every table of the extension');
run_step('wait', 1);
run_step('wait', 1);
like(run_step('status', 1), qr/0 tables copying/, 'status: every table copied');
if ($batch_n)
{
	my $pending_then = $a->safe_psql('part0', q{
		SELECT count(*) FROM user_service.batch_items i JOIN user_service.cluster_batches c ON c.batch_id = i.batch_id
		 WHERE c.handle = } . $handle . q{ AND i.status = 'pending'});
	note("items of the batch pending on part0 before the cutover: $pending_then");
}

# An injected failure: a transaction on A holds a lock the cutover needs.
my $blocker = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $a->connstr('part0'), '-c',
	  "SET application_name = 'blocker'; BEGIN; LOCK TABLE user_service.shard_config IN ROW EXCLUSIVE MODE; SELECT pg_sleep(300)" ],
	'>', \my $bout, '2>', \my $berr);
$a->poll_query_until('part0', q{SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE a.application_name = 'blocker' AND l.relation = 'user_service.shard_config'::regclass AND l.granted})
  or die 'the blocker did not lock';
like(run_step('cutover', 0, MOVE_LOCK_TIMEOUT => '1s'), qr/could not lock A's tables/,
	'cutover fails while a transaction on A holds a lock on a table');
is($router->safe_psql('postgres', "SELECT name FROM user_service.update_user($untouched, name => 'after failure')"),
	'after failure', 'after the failed cutover A serves part0\'s writes as before');
$a->safe_psql('part0', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'blocker'});
$blocker->finish;

my $cut_start = time;
my $cutover = run_step('cutover', 1);
my $cut_end = time;
unlike($cutover, qr/WARNING/, 'no warning once app has its grants on B');
my ($pause) = $cutover =~ /write pause of p0: (\d+) ms/;
ok(defined $pause, "the cutover reports the write pause ($pause ms)");
like(run_step('cutover', 1), qr/fenced already.*\n.*p0 is B already/, 'cutover again: nothing more to do');
like($cutover, qr/check_cluster: partition 0 is shard 0 of 2: ok/, 'check_cluster: partition 0 is B, shard 0 of 2');
run_step('cleanup', 1);
like(run_step('cleanup', 1), qr/no slot user_service_move_p0 on A/, 'cleanup again: nothing more to do');
my $move_end = time;
$mover->kill_kill if $mover;
# abort must not make A serve again once B has taken over, even when told
# another target than the one the router names
like(run_step('abort', 0, MOVE_TARGET => "$target application_name=other"),
	qr/fenced and B no longer subscribes/, 'abort refuses after the cutover');
is($a->safe_psql('postgres', q{SELECT datallowconn FROM pg_database WHERE datname = 'part0'}),
	'f', 'and A stays fenced');
sleep 1;

# Stop the traffic; read what each session saw.
$router->safe_psql('postgres', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'traffic_p%'});
my %seen;
for my $k (0, 1)
{
	$session{$k}{h}->finish;
	my (%errors, @wrong, %acked, %last, @created, @r_times);
	for my $line (split /\n/, slurp_file($session{$k}{out}))
	{
		if ($line =~ /^R\|(t|f)\|([\d.]+)$/) { push @wrong, $line if $1 ne 't'; push @r_times, $2; }
		elsif ($line =~ /^U\|(\d+)\|n$k-(\d+)$/) { $last{$1} = $2; }
		elsif ($line =~ /^C\|(\d+)\|(\S+)$/) { push @created, [ $1, $2 ]; }
		elsif ($line =~ /^E (\w) (\w+)$/) { $errors{"$1 $2"}++ if $2 ne '00000'; }
	}
	$seen{$k} = { errors => \%errors, wrong => \@wrong, last => \%last, created => \@created, r => \@r_times };
	note("part$k: " . scalar(@r_times) . ' reads, ' . scalar(keys %last) . ' users updated, '
		  . scalar(@created) . ' created; errors: ' . join(', ', map { "$_ x$errors{$_}" } sort keys %errors));
}
is_deeply($seen{1}{errors}, {}, 'the other partition\'s session saw no error during the move');
is(scalar @{ $seen{1}{r} } > 0 && scalar @{ $seen{0}{r} } > 0, 1, 'both sessions were served');
is_deeply([ grep { !/^. (08...|57P01|25006)$/ } keys %{ $seen{0}{errors} } ], [],
	'the moved partition\'s session saw only connection-class or read-only errors');
is_deeply([ @{ $seen{0}{wrong} }, @{ $seen{1}{wrong} } ], [], 'no wrong answer on either');

# The rate of part1's reads before and during the move.
sub rate
{
	my ($times, $from, $to) = @_;
	my $n = grep { $_ >= $from && $_ < $to } @$times;
	return $to > $from ? $n / ($to - $from) : 0;
}
my $before = rate($seen{1}{r}, $traffic_start, $move_start);
my $during = rate($seen{1}{r}, $move_start, $move_end);
my $during_cut = rate($seen{1}{r}, $cut_start, $cut_end);
my $until_cut = rate($seen{1}{r}, $move_start, $cut_start);
note(sprintf('part1 rounds/s through the router: before %.0f, during the move %.0f (%.2f), '
		  . 'from prepare to the cutover %.0f (%.2f), during the cutover %.0f (%.2f)',
		$before, $during, $during / ($before || 1), $until_cut, $until_cut / ($before || 1),
		$during_cut, $during_cut / ($before || 1)));
# The noise to compare with: part1's rate second by second before the move
# (the first second left out: sessions starting), against the whole.
my @seconds = map { rate($seen{1}{r}, $traffic_start + $_, $traffic_start + $_ + 1) }
  1 .. int($move_start - $traffic_start) - 1;
note(sprintf('part1 rounds/s before the move, second by second: %s (%.2f to %.2f of the whole)',
		join(' ', map { sprintf '%.0f', $_ } @seconds),
		min(@seconds) / ($before || 1), max(@seconds) / ($before || 1)))
  if @seconds;
# The longest wait between two of part1's answers, before and during the move.
sub longest_gap
{
	my ($times, $from, $to) = @_;
	my @t = grep { $_ >= $from && $_ < $to } @$times;
	return max(0, map { $t[$_] - $t[ $_ - 1 ] } 1 .. $#t) * 1000;
}
note(sprintf('part1 longest wait between answers: before the move %.0f ms, during it %.0f ms',
		longest_gap($seen{1}{r}, $traffic_start + 1, $move_start), longest_gap($seen{1}{r}, $move_start, $move_end)));
note("steps (ms): " . join(', ', map { "$_ $took{$_}" } qw(prepare wait cutover cleanup)) . "; write pause $pause ms");

# The batch finishes, each item once.
if ($batch_n)
{
	ok($router->poll_query_until('postgres', "SELECT user_service.wait_batch($handle, '10 seconds')"),
		'the batch submitted before the move finishes');
	is($router->safe_psql('postgres', "SELECT total, succeeded, failed FROM user_service.batch_status($handle)"),
		"$batch_n|$batch_n|0", "its $batch_n items succeeded");
	my $part0 = $b->safe_psql($bdb, "SELECT batch_id FROM user_service.cluster_batches WHERE handle = $handle");
	is( $b->safe_psql($bdb, qq{
			SELECT count(*) FROM user_service.batch_items i JOIN user_service.users u ON u.id = i.user_id
			 WHERE i.batch_id = $part0 AND i.status = 'succeeded' AND u.email = i.payload->>'email'}),
		$b->safe_psql($bdb, "SELECT total FROM user_service.batch_jobs WHERE id = $part0"),
		'on B every item of part0\'s part has its result and its own user');
	is( $b->safe_psql($bdb, q{SELECT count(*) FROM user_service.users WHERE email LIKE 'batch%'})
		  + $a->safe_psql('part1', q{SELECT count(*) FROM user_service.users WHERE email LIKE 'batch%'}),
		$batch_n, "$batch_n batch users over the partitions: none lost, none made twice");
}

# Acknowledged writes: every update's last acknowledged name (or a later
# attempt's) is the user's name, every acknowledged create is there once.
for my $k (0, 1)
{
	my %name = split /[|\n]/, $router->safe_psql('postgres', 'SELECT u.id, u.name FROM unnest(ARRAY['
		  . join(',', keys %{ $seen{$k}{last} }) . ']::bigint[]) i, user_service.get_user(i) u');
	my $bad = 0;
	for my $id (keys %{ $seen{$k}{last} })
	{
		my ($n) = $name{$id} =~ /^n$k-(\d+)$/;
		$bad++ unless defined $n && $n >= $seen{$k}{last}{$id} && ($n - $seen{$k}{last}{$id}) % 20 == 0;
	}
	is($bad, 0, "part$k: every user has its last acknowledged name, or a later attempt's");
	my $list = join(',', map { "($_->[0], '$_->[1]')" } @{ $seen{$k}{created} });
	is( $router->safe_psql('postgres', qq{
			SELECT count(*) FROM (VALUES $list) c(id, email), user_service.get_user(c.id) u
			 WHERE u.email = c.email AND c.id % 2 = $k}),
		scalar @{ $seen{$k}{created} }, "part$k: every acknowledged create is there, with an id of shard $k");
}

# A's copy: fenced, read-only, and only for the inspection below opened
# again (without its workers).
is($a->safe_psql('postgres', q{
		SELECT datallowconn, (SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0)
		  FROM pg_database d WHERE datname = 'part0'}),
	'f|{default_transaction_read_only=on}', 'A\'s part0 is fenced: no connections, read-only');
my $at = -s $a->logfile;
$a->append_conf('postgresql.conf', "user_service.database = 'part1'\n");
$a->reload;
$a->wait_for_log(qr/parameter "user_service\.database" changed to "part1"/, $at);
$a->safe_psql('postgres', 'ALTER DATABASE part0 WITH ALLOW_CONNECTIONS true');
my $cols = q{string_agg(concat_ws(',', id, email, password_hash, created_at), ';' ORDER BY id)};
my $a_max = $a->safe_psql('part0', 'SELECT max(id) FROM user_service.users');
is($b->safe_psql($bdb, "SELECT md5($cols) FROM user_service.users WHERE id <= $a_max"),
	$a->safe_psql('part0', "SELECT md5($cols) FROM user_service.users"),
	'every user of part0 is on B with the same id, email, hash and creation time');
# (with the check above: A holds nothing that B lacks, so nothing was
# written on A after B's copy ended)
my @created = map { $_->[0] } @{ $seen{0}{created} };
my @late = grep { $_ > $a_max } @created;
cmp_ok(scalar(@late), '>', 0, 'users of part0 were created through the router after the switch');
is($b->safe_psql($bdb, 'SELECT count(*) FROM user_service.users WHERE id = ANY (ARRAY[' . join(',', 0, @created) . ']::bigint[])'),
	scalar(@created), 'every user of part0 created through the router during the move is on B');
my ($moved) = $b->safe_psql($bdb, 'SELECT count(*) FROM user_service.users');
my $seq = $a->safe_psql('part0', 'SELECT last_value FROM user_service.users_id_seq');

# New users of part0 land on B with ids of shard 0 above A's.
my @fresh = split /\n/, $a->safe_psql('part1', q{
	SELECT e FROM (SELECT 'fresh' || i || '@example.com' AS e FROM generate_series(1, 100) i) s
	 WHERE user_service.email_hash(e) & 1 = 0 LIMIT 3});
my $new_ids = $router->safe_psql('postgres', 'SELECT string_agg(id::text, \',\') FROM ('
	  . join(' UNION ALL ', map { "SELECT (user_service.create_user('Fresh', '$_', 'fresh pw')).id" } @fresh) . ') c');
is($b->safe_psql($bdb, "SELECT count(*) FROM user_service.users WHERE id IN ($new_ids) AND id % 2 = 0 AND id > 2 * $seq"),
	3, "new users of part0 are created on B with ids of shard 0 beyond A's sequence ($new_ids)");

# Passwords verify through the router: a sample of imported users, of the
# batch's users, and the new ones.
is( $router->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE user_service.verify_password(email, 'the password'))
		  FROM (SELECT 'user' || i || '@example.com' AS email FROM generate_series(1, 40) i) s
		 WHERE user_service.email_hash(email) & 1 = 0}),
	$a->safe_psql('part1', q{SELECT count(*) FROM generate_series(1, 40) i
		 WHERE user_service.email_hash('user' || i || '@example.com') & 1 = 0}),
	'imported users of part0 verify their password through the router');
is( $router->safe_psql('postgres', qq{
		SELECT bool_and(user_service.verify_password(u.email, 'batch secret ' || substr(split_part(u.email, '\@', 1), 6)))
		  FROM user_service.batch_results($handle) r, user_service.get_user(r.user_id) u
		 WHERE r.user_id % 2 = 0 AND r.item % 30 = 0}),
	't', 'batch users of part0 (made on A or on B) verify theirs')
  if $batch_n;
is($router->safe_psql('postgres', "SELECT user_service.verify_password('$fresh[0]', 'fresh pw')"), 't',
	'and a new one');

# Totals: exact through the router and on B, without recount_users.
my $b_count = $b->safe_psql($bdb, 'SELECT count(*) FROM user_service.users');
my $a1_count = $a->safe_psql('part1', 'SELECT count(*) FROM user_service.users');
is($b->safe_psql($bdb, 'SELECT total FROM user_service.list_users(1, 1)'), $b_count,
	"B's total is exact ($b_count)");
is($router->safe_psql('postgres', 'SELECT total FROM user_service.list_users(1, 1)'), $b_count + $a1_count,
	'the total through the router is exact');
note("moved $moved users of part0; A's sequence at $seq");

$router->stop;
$b->stop;
$a->stop;
done_testing();
