# Soak: for SOAK_SECONDS (default 60) a mixed pgbench load (create, get,
# update, delete, list, verify; 8 clients) runs in rounds of a few seconds
# while the workers process batches of every kind, and in most rounds a
# worker, busy with an item whenever one is, is killed with kill -9 at a
# random moment (the postmaster then crash-restarts the cluster).  Proven
# afterwards:
# - pgbench met no error but the loss of its connection, and that only in
#   the rounds with a kill; its scripts check every answer (a wrong one is a
#   division by zero), including that list_users' total is the row count;
# - every batch is done and every item was applied exactly once: one item
#   row, succeeded, one user per created email, updates, new passwords and
#   deletes all in place, the progress counts equal to the items;
# - the invariants hold: the exact total, unique addresses whatever their
#   case, argon2id PHC strings only;
# - the server log shows no crash but the kills (no other signal, no PANIC,
#   no assertion failure) and no error at all.
# The test stops by itself: every pgbench round and every wait is bounded.
use strict;
use warnings;
use File::Basename qw(dirname);
use IPC::Run;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;
use Time::HiRes qw(time sleep);

my $soak_seconds = $ENV{SOAK_SECONDS} // 60;
my $round_seconds = 5;
my $seed = $ENV{SOAK_SEED} // int(time);
srand($seed);
note "SOAK_SECONDS=$soak_seconds SOAK_SEED=$seed";

my $scripts = dirname(__FILE__) . '/soak';
my @weights = (
	'create.sql@2', 'get.sql@3', 'update.sql@2', 'delete.sql@1',
	'list.sql@2', 'verify.sql@2');

my $node = preloaded_node(
	'soak', qq{
user_service.argon2_memory_kib = 256
user_service.argon2_iterations = 1
restart_after_crash = on
max_connections = 40
# (the framework logs every statement: at thousands a second, that is most
# of the log and of the time spent writing it)
log_statement = none
});

# Wait until the server accepts connections again after a crash-restart.
sub wait_ready
{
	$node->poll_query_until('postgres', 'SELECT true')
	  or die 'the server did not come back';
}

# Submit a create_user batch of $n items named after $tag and return its id.
sub submit_create
{
	my ($tag, $n) = @_;
	return $node->safe_psql(
		'postgres', qq{
		SELECT user_service.submit_batch('create_user',
			(SELECT jsonb_agg(jsonb_build_object(
				'name', 'Batch ' || i,
				'email', '$tag-' || i || '\@example.com',
				'password', '$tag-pw-' || i) ORDER BY i)
			   FROM generate_series(1, $n) i))});
}

# The seed: users that the batches of the other kinds work on (the pgbench
# clients only ever touch users they created themselves).
my $seed_batch = submit_create('seed', 500);
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($seed_batch, '2 min')"),
	't', 'the seed batch is processed');

# A batch of kind $kind over the seed items $from..$to, each item built
# from r.item and r.user_id by $object.
sub seed_batch_sql
{
	my ($kind, $from, $to, $object) = @_;
	return qq{
		SELECT user_service.submit_batch('$kind',
			(SELECT jsonb_agg($object ORDER BY r.item)
			   FROM user_service.batch_results($seed_batch) r
			  WHERE r.item BETWEEN $from AND $to))};
}
my @seed_batches = (
	seed_batch_sql('update_user', 1, 100,
		q{jsonb_build_object('id', r.user_id, 'name', 'Updated ' || r.item)}),
	seed_batch_sql('set_password', 101, 200,
		q{jsonb_build_object('id', r.user_id, 'password', 'new-pw-' || r.item)}),
	seed_batch_sql('delete_user', 201, 300,
		q{jsonb_build_object('id', r.user_id)}),
	seed_batch_sql('update_user', 301, 400,
		q{jsonb_build_object('id', r.user_id, 'email', 'moved-' || r.item || '@example.com')}));
# (seed items 401..500 are left alone)

my @create_batches;
my $batches_submitted = 0;

sub next_create_batch
{
	my $tag = 'batch' . (@create_batches + 1);
	my $n = 100 + int(rand(201));
	push @create_batches, submit_create($tag, $n);
	$batches_submitted++;
}

# Two batches queued before the load starts.
next_create_batch() for 1 .. 2;

# Find a worker to kill: one busy with an item if one becomes busy within a
# second, else any worker.  Returns (pid, busy) or () when none runs.
sub pick_worker
{
	my $deadline = time + 1;
	my $any;
	while (1)
	{
		my $row = $node->safe_psql('postgres', q{
			SELECT pid, query LIKE 'batch %'
			  FROM pg_stat_activity
			 WHERE backend_type = 'user_service worker'
			 ORDER BY query LIKE 'batch %' DESC, random()
			 LIMIT 1});
		if ($row ne '')
		{
			my ($pid, $busy) = split /\|/, $row;
			return ($pid, 1) if $busy eq 't';
			$any = $pid;
		}
		last if time > $deadline;
		sleep 0.05;
	}
	return defined $any ? ($any, 0) : ();
}

# What pgbench may report in a round with a kill: the loss of its
# connection through the crash-restart, and nothing else.
my $connection_lost = qr/
	terminating\ connection\ because\ of\ crash\ of\ another\ server\ process
	|server\ closed\ the\ connection\ unexpectedly
	|the\ database\ system\ is\ in\ recovery\ mode
	|the\ database\ system\ is\ (?:starting\ up|shutting\ down)
	|connection\ to\ server\ .*\ failed:\ .*(?:recovery\ mode|starting\ up
		|not\ yet\ accepting\ connections|Connection\ refused|No\ such\ file)
	|could\ not\ send\ data\ to\ server
	|could\ not\ receive\ data\ from\ server
	|perhaps\ the\ backend\ died\ while\ processing
	|Run\ was\ aborted;\ the\ above\ results\ are\ incomplete
	/x;

my ($rounds, $kills, $busy_kills, $transactions, $aborted_rounds) = (0, 0, 0, 0, 0);
my @problems;
my $start = time;

while (time - $start < $soak_seconds)
{
	$rounds++;
	wait_ready();
	next_create_batch();
	if (@seed_batches)
	{
		$node->safe_psql('postgres', shift @seed_batches);
		$batches_submitted++;
	}

	my $seconds = $round_seconds;
	my $left = $soak_seconds - (time - $start);
	$seconds = int($left + 0.5) if $left < $seconds;
	$seconds = 2 if $seconds < 2;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'pgbench', '-n', '-M', 'prepared', '-c', '8', '-j', '2',
			'-T', $seconds, '-h', $node->host, '-p', $node->port,
			'-D', 'mine=0', '-D', 'mk=0',
			(map { ('-f', "$scripts/$_") } @weights), 'postgres'
		],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($seconds + 60));

	# Kill in most rounds (and surely once past half time), at a random
	# moment of the round.
	my $killed = 0;
	if (rand() < 0.7 || ($kills == 0 && time - $start > $soak_seconds / 2))
	{
		sleep(0.3 + rand($seconds - 1));
		my ($pid, $busy) = pick_worker();
		if (defined $pid && kill('KILL', $pid))
		{
			$killed = 1;
			$kills++;
			$busy_kills++ if $busy;
			note sprintf('round %d: kill -9 of %s worker %d at %.1f s',
				$rounds, $busy ? 'a busy' : 'an idle', $pid, time - $start);
		}
	}

	my $finished = eval { $h->finish; 1 };
	if (!$finished)
	{
		$h->kill_kill;
		push @problems, "round $rounds: pgbench did not finish in time: $@";
		next;
	}
	my $rc = $h->result(0);
	$transactions += $1 if $out =~ /number of transactions actually processed: (\d+)/;
	my $failed = $out =~ /number of failed transactions: (\d+)/ ? $1 : 0;

	# Every line of pgbench's stderr that reports something (its context
	# lines, DETAIL, HINT, follow the one that does), each kind once.
	my %seen;
	my @reports = grep { !$seen{$_}++ }
	  map { s/\d+/N/gr } grep { /error|abort|fatal|failed/i } split /\n/, $err;
	if ($killed)
	{
		$aborted_rounds++ if $rc != 0;
		note "round $rounds: pgbench exit code $rc, it said: " . join('; ', @reports);
		my @bad = grep { !/$connection_lost/ || /\bERROR:/ } @reports;
		push @problems, "round $rounds (kill): pgbench said:\n" . join("\n", @bad)
		  if @bad;
	}
	elsif ($rc != 0 || $failed != 0 || @reports)
	{
		push @problems,
		  "round $rounds (no kill): pgbench exit code $rc, $failed failed transactions:\n"
		  . join("\n", @reports);
	}
}

# Whatever the rounds did not get to.
wait_ready();
while (@seed_batches)
{
	$node->safe_psql('postgres', shift @seed_batches);
	$batches_submitted++;
}

is(join("\n\n", @problems), '', 'pgbench met no error but the crash-restarts it was told of');
ok($kills >= 1, "workers were killed ($kills kills, $busy_kills of them busy with an item)");
ok($transactions > 0, "pgbench ran $transactions transactions");

# Every batch finishes.
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM user_service.batches WHERE state <> 'done'"),
	'every batch is done');
my $items = $node->safe_psql('postgres', 'SELECT count(*) FROM user_service.batch_items');
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*), sum(total), sum(succeeded), sum(failed), sum(cancelled)
		  FROM user_service.batches}),
	(1 + $batches_submitted) . "|$items|$items|0|0",
	'every item of every batch succeeded, once in the counts');

# Exactly once, item by item.
is( $node->safe_psql(
		'postgres', q{
		SELECT count(*) FROM (SELECT batch_id, item FROM user_service.batch_items
		                       GROUP BY 1, 2 HAVING count(*) > 1) d}),
	'0', 'one row per item');
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FROM user_service.batch_items
		 WHERE status <> 'succeeded' OR payload ? 'password' OR sqlstate IS NOT NULL
		    OR attempts NOT BETWEEN 1 AND current_setting('user_service.max_attempts')::int}),
	'0', 'every item succeeded, its password gone, without an error');
my $create_ids = join(',', @create_batches);
my $create_items = $node->safe_psql('postgres',
	"SELECT count(*) FROM user_service.batch_items WHERE batch_id IN ($create_ids)");
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*), count(DISTINCT i.user_id), count(u.id)
		  FROM user_service.batch_items i
		  LEFT JOIN user_service.users u
		    ON u.id = i.user_id AND u.email = i.payload ->> 'email'
		 WHERE i.batch_id IN ($create_ids)}),
	"$create_items|$create_items|$create_items",
	"each of the $create_items created users is its item's own");
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM user_service.users WHERE email LIKE 'batch%'}),
	$create_items, 'no batch user created twice');

# The batches on the seed users did their work, once.
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FILTER (WHERE r.item <= 100 AND u.name = 'Updated ' || r.item),
		       count(*) FILTER (WHERE r.item BETWEEN 101 AND 200
		                          AND user_service.verify_password(u.email, 'new-pw-' || r.item)
		                          AND NOT user_service.verify_password(u.email, 'seed-pw-' || r.item)),
		       count(*) FILTER (WHERE r.item BETWEEN 201 AND 300 AND u.id IS NULL),
		       count(*) FILTER (WHERE r.item BETWEEN 301 AND 400
		                          AND u.email = 'moved-' || r.item || '\@example.com'),
		       count(*) FILTER (WHERE r.item > 400
		                          AND user_service.verify_password(u.email, 'seed-pw-' || r.item))
		  FROM user_service.batch_results($seed_batch) r
		  LEFT JOIN user_service.users u ON u.id = r.user_id}),
	'100|100|100|100|100',
	'updates, new passwords, deletes and address changes by batch are in place');

# The items the killed workers were busy with (the postmaster logs what a
# process that died was running) were done again, once.
my @in_flight;
my $log = slurp_file($node->logfile);
while ($log =~ /Failed process was running: batch (\d+): items? (\d+)(?: to (\d+))?/g)
{
	push @in_flight, "($1, $2, " . ($3 // $2) . ")";
}
# (no group at all would mean that no kill hit an item: a failure too)
push @in_flight, '(0, 1, 1)' unless @in_flight;
is( $node->safe_psql(
		'postgres', q{
		WITH k(batch, first, last) AS (VALUES } . join(', ', @in_flight) . q{)
		SELECT count(i.item) = (SELECT sum(last - first + 1) FROM k),
		       bool_and(i.status = 'succeeded' AND i.user_id IS NOT NULL)
		  FROM k
		  LEFT JOIN user_service.batch_items i
		    ON i.batch_id = k.batch AND i.item BETWEEN k.first AND k.last}),
	't|t',
	scalar(@in_flight) . ' groups of items in flight at a kill were done once afterwards');

# Invariants.
is( $node->safe_psql(
		'postgres', q{
		SELECT (SELECT total FROM user_service.list_users(1, 1)) = count(*),
		       count(*) = count(DISTINCT lower(email)),
		       count(*) FILTER (WHERE password_hash !~
		           '^\$argon2id\$v=19\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$')
		  FROM user_service.users}),
	't|t|0', 'the exact total, unique addresses, argon2id hashes only');

# The server log: the kills, nothing else.
my $signal9 = () = $log =~ /terminated by signal 9/g;
my $resets = () = $log =~ /all server processes terminated; reinitializing/g;
ok($signal9 <= $kills && ($kills == 0 || $signal9 >= 1),
	"$signal9 processes died of signal 9, for $kills kills");
ok($resets <= $kills, "$resets crash-restarts, for $kills kills");
my @other = grep { !/signal 9/ } $log =~ /^.*(?:terminated by (?:signal|exception)|exited with exit code [^0]).*$/mg;
is(join("\n", @other), '', 'no process died otherwise');
my @worse = $log =~ /^.*(?:PANIC|TRAP:|\bERROR:).*$/mg;
is(join("\n", @worse), '', 'no PANIC, no failed assertion, no error in the server log');
my @fatal = grep {
	!/the database system is (?:in recovery mode|not yet accepting connections|starting up)/
} $log =~ /^.*\bFATAL:.*$/mg;
is(join("\n", @fatal), '', 'no FATAL but connection attempts during recovery');
unlike($log, qr/(?:password|pw)-\d/, 'no password of the load or the batches in the server log');

my $elapsed = time - $start;
diag sprintf(
	'soak: %d rounds in %.0f s, %d kills (%d of a busy worker, %d rounds aborted), %d batches, %d items, %d pgbench transactions',
	$rounds, $elapsed, $kills, $busy_kills, $aborted_rounds, 1 + $batches_submitted,
	$items, $transactions);

$node->stop;
done_testing();
