# Nothing lost, nothing applied twice: a batch of create_user items survives
# kill -9 of a worker (a crash-restart of the server), pg_terminate_backend
# of a worker, and an immediate shutdown, each in the middle of the batch.
# Afterwards every item succeeded exactly once, with its own user, and the
# users table holds exactly the batch's users.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $items = 300;

# (about 10 ms a hash: a batch lasts long enough to be interrupted)
my $node = preloaded_node('crash', "restart_after_crash = on\n");

# Submit a batch of $items create_user items whose emails carry $tag.
sub submit
{
	my ($tag) = @_;
	return submit_create_batch($node, $tag, $items);
}

sub wait_progress
{
	my ($batch, $at_least) = @_;
	$node->poll_query_until('postgres',
		"SELECT succeeded >= $at_least FROM user_service.batch_status($batch)")
	  or die "batch $batch made no progress";
}

# Everything a finished batch must satisfy.
sub check_batch
{
	my ($batch, $tag, $what) = @_;
	$node->poll_query_until('postgres',
		"SELECT state = 'done' FROM user_service.batch_status($batch)")
	  or die "batch $batch did not finish";
	is( $node->safe_psql(
			'postgres',
			"SELECT total, pending, succeeded, failed FROM user_service.batch_status($batch)"),
		"$items|0|$items|0",
		"$what: every item succeeded");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT count(*), count(DISTINCT r.user_id), count(u.id),
			       count(*) FILTER (WHERE u.email = '$tag' || r.item || '\@example.com')
			  FROM user_service.batch_results($batch) r
			  LEFT JOIN user_service.users u ON u.id = r.user_id}),
		"$items|$items|$items|$items",
		"$what: one user per item, the right one");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM user_service.users WHERE email LIKE '$tag%'"),
		$items,
		"$what: no user created twice");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM user_service.batch_items WHERE batch_id = $batch AND (payload ? 'password' OR status <> 'succeeded')"),
		'0',
		"$what: no password left, no item left behind");
	is( $node->safe_psql(
			'postgres',
			# (the password is built in SQL, so that the statement log does not show it)
			"SELECT user_service.verify_password('${tag}7\@example.com', 'secret-$tag-' || 7)"),
		't',
		"$what: passwords verify");
}

sub worker_pid
{
	my $pid;
	$node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'user_service worker' AND query LIKE 'batch %'"
	) or die "no busy worker";
	$pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'user_service worker' ORDER BY query LIKE 'batch %' DESC, pid LIMIT 1"
	);
	return $pid;
}

# 1. kill -9 of a worker: the postmaster crash-restarts everything.
my $b1 = submit('kill');
wait_progress($b1, 30);
my $pid = worker_pid();
ok(kill('KILL', $pid), "kill -9 worker $pid");
check_batch($b1, 'kill', 'after kill -9');
ok( $node->log_contains(qr/background worker "user_service worker" \(PID $pid\) was terminated by signal 9/),
	'the server saw the crash, and the log names the worker');
ok($node->log_contains(qr/Failed process was running: batch $b1: item/),
	'the log says what the worker was doing');

# 2. pg_terminate_backend of a worker: the launcher restarts it.
my $b2 = submit('term');
wait_progress($b2, 30);
$pid = worker_pid();
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"),
	't', "pg_terminate_backend($pid)");
check_batch($b2, 'term', 'after pg_terminate_backend');

# 3. immediate shutdown, then start.
my $b3 = submit('stop');
wait_progress($b3, 30);
$node->stop('immediate');
$node->start;
check_batch($b3, 'stop', 'after an immediate shutdown');

is( $node->safe_psql('postgres',
		'SELECT (SELECT total FROM user_service.list_users()) = (SELECT count(*) FROM user_service.users)'),
	't', 'the exact total survived the crashes');

# No plaintext password reached the server log.
my $log = slurp_file($node->logfile);
unlike($log, qr/secret-(kill|term|stop)-\d/, 'no password in the server log');

$node->stop;
done_testing();
