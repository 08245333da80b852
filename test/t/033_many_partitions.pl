# Many partitions on one server: four partition databases (shards 0 .. 3 of
# 4) on one PostgreSQL server, served by its workers through
# user_service.database = 'part0, part1, part2, part3', behind a PL/Proxy
# router whose four partitions point at them.  Batches submitted through the
# router run on every partition, each item exactly once; the workers view
# shows each database's workers; batch_results and the batches view of one
# database never show another's items as running; DROP DATABASE does not
# wait for the launcher; a reload that drops a database and lowers
# user_service.workers leaves one worker for each listed database; a
# database created later gets its workers; a list naming one twice is
# refused; one name with a space needs no quotes.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $N = 4;
my @parts = map { "part$_" } 0 .. $N - 1;

my $server = PostgreSQL::Test::Cluster->new('partitions');
$server->init;
$server->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'user_service'
user_service.database = '@{[ join(', ', @parts) ]}'
user_service.workers = 2
max_worker_processes = 16
user_service.argon2_memory_kib = 8192
user_service.argon2_iterations = 1
});
$server->start;
for my $k (0 .. $N - 1)
{
	$server->safe_psql('postgres', "CREATE DATABASE $parts[$k]");
	$server->safe_psql($parts[$k], 'CREATE EXTENSION user_service');
	$server->safe_psql($parts[$k], "SELECT user_service.configure_shard($k, $N)");
}

# two workers for each database, eight in all, visible in every database
ok( $server->poll_query_until(
		'part0', q{SELECT count(*) = 8 FROM user_service.workers WHERE database IS NOT NULL}),
	'eight workers run');
is( $server->safe_psql(
		'part2', q{SELECT string_agg(database || ':' || n, ' ' ORDER BY database)
		             FROM (SELECT database, count(*) AS n FROM user_service.workers GROUP BY 1) w}),
	'part0:2 part1:2 part2:2 part3:2', 'the workers view shows two workers for each partition database');
is($server->safe_psql('part1', 'SELECT workers_busy + workers_idle FROM user_service.stats'), '2',
	'the stats of a database count its own workers');

# The router: PL/Proxy's four partitions are the four databases of the one
# server.
my $router = router_node('router',
	postgres => [ map { 'host=' . $server->host . ' port=' . $server->port . " dbname=$_" } @parts ]);
is($router->safe_psql('postgres',
		q{SELECT string_agg(format('%s:%s/%s:%s', partition, shard, shard_count, ok), ' ' ORDER BY partition)
		    FROM user_service.check_cluster()}),
	'0:0/4:t 1:1/4:t 2:2/4:t 3:3/4:t', 'check_cluster: partition k is the database part<k>');

# Batches through the router: creates, then deletes of half of them.
my $n = 200;
my $handle = $router->safe_psql('postgres', qq{
	SELECT user_service.submit_batch('create_user',
		(SELECT jsonb_agg(jsonb_build_object('name', 'User ' || i, 'email', 'user' || i || '\@example.com',
		                                     'password', 'password ' || i) ORDER BY i)
		   FROM generate_series(1, $n) i))});
ok($router->poll_query_until('postgres', "SELECT user_service.wait_batch($handle, '10 seconds')"),
	'the create batch finishes');
is($router->safe_psql('postgres', "SELECT total, succeeded, failed FROM user_service.batch_status($handle)"),
	"$n|$n|0", "$n creates succeed");

my @counts = map { $server->safe_psql($_, 'SELECT count(*) FROM user_service.users') } @parts;
is(eval { my $s = 0; $s += $_ for @counts; $s }, $n, "the $n users are spread over the databases, once each (@counts)");
ok(!grep({ $_ == 0 } @counts), 'every partition database got users, and its workers created them');
is( join(' ', map { $server->safe_psql($parts[$_], "SELECT count(*) FROM user_service.users WHERE id % $N <> $_") } 0 .. $N - 1),
	'0 0 0 0', 'each user is on the partition its id names');

my $deletes = $router->safe_psql('postgres', q{
	SELECT user_service.submit_batch('delete_user',
		(SELECT jsonb_agg(jsonb_build_object('id', (u).id)) FROM user_service.list_users_after(0, 100) l, unnest(l.users) u))});
ok($router->poll_query_until('postgres', "SELECT user_service.wait_batch($deletes, '10 seconds')"),
	'the delete batch finishes');
is($router->safe_psql('postgres', "SELECT total, succeeded FROM user_service.batch_status($deletes)"),
	'100|100', 'its 100 items succeed');
is($router->safe_psql('postgres', 'SELECT total FROM user_service.list_users(1, 1)'),
	$n - 100, 'and the total over the partitions is exact');

# Equal batch ids in two databases: while part0's workers run its batch B,
# batch B of part1 (not committed yet, so no worker of part1 can take it)
# is not shown as running, neither item by item nor in the batches view.
my $b0 = $server->safe_psql('part0', q{
	SELECT user_service.submit_batch('create_user',
		(SELECT jsonb_agg(jsonb_build_object('name', 'R ' || i, 'email', 'running' || i || '@example.com',
		                                     'password', 'password ' || i))
		   FROM generate_series(1, 300) i), 1)});
ok($server->poll_query_until('part0', "SELECT count(*) > 0 FROM user_service.batch_results($b0) WHERE status = 'running'"),
	'an item of part0 runs');
is( $server->safe_psql(
		'part1', qq{
		BEGIN;
		SELECT setval(pg_get_serial_sequence('user_service.batch_jobs', 'id'), $b0 - 1);
		SELECT user_service.submit_batch('create_user',
			(SELECT jsonb_agg(jsonb_build_object('name', 'S ' || i, 'email', 'same' || i || '\@example.com',
			                                     'password', 'password ' || i))
			   FROM generate_series(1, 3) i), 1) = $b0;
		SELECT count(*) FILTER (WHERE status = 'running') FROM user_service.batch_results($b0);
		SELECT state, running, pending FROM user_service.batches WHERE batch_id = $b0;
		ROLLBACK;}),
	"@{[ $b0 - 1 ]}\nt\n0\npending|0|3",
	'batch ' . $b0 . ' of part1 shows none of part0\'s running items as its own (batch_results, batches view)');
$server->safe_psql('part0', "SELECT user_service.cancel_batch($b0)");

# DROP DATABASE does not wait for the launcher (it answers the barriers a
# drop waits for), whether the database is listed or not.
$server->safe_psql('postgres', 'CREATE DATABASE scratch');
my ($drc, $dout, $derr) = $server->psql('postgres', 'DROP DATABASE scratch', timeout => 60);
is($drc, 0, 'DROP DATABASE of a database the workers do not serve completes') or diag($derr);

# A reload: one worker per database, and part3 dropped from the list.
my $at = -s $server->logfile;
$server->append_conf('postgresql.conf', qq{
user_service.database = 'part0, part1, part2'
user_service.workers = 1
});
$server->reload;
$server->wait_for_log(qr/parameter "user_service\.database" changed to "part0, part1, part2"/, $at);
ok( $server->poll_query_until(
		'part0', q{SELECT string_agg(database || ':' || n, ' ' ORDER BY database) = 'part0:1 part1:1 part2:1'
		             FROM (SELECT database, count(*) AS n FROM user_service.workers GROUP BY 1) w}),
	'after a reload: one worker for each listed database, none for part3');
my ($rc, $out, $err) = $server->psql('part3', q{
	SELECT user_service.submit_batch('delete_user', '[{"id": 3}]')}, extra_params => [ '-v', 'VERBOSITY=terse' ]);
like($err, qr/NOTICE:  the user_service workers serve "part0, part1, part2", not this database/,
	'a batch in a database no longer served gets the NOTICE');

# A database listed before it exists gets its workers once it is created.
$at = -s $server->logfile;
$server->append_conf('postgresql.conf', qq{
user_service.database = 'part0, part1, part2, later'
});
$server->reload;
$server->wait_for_log(qr/user_service\.database "later" does not exist: its user_service workers start once it is created/, $at);
ok( $server->poll_query_until(
		'part0', q{SELECT count(*) = 3 FROM user_service.workers WHERE database IS NOT NULL}),
	'while "later" does not exist, three workers');
$server->safe_psql('postgres', 'CREATE DATABASE later');
ok($server->poll_query_until('part0', q{SELECT count(*) = 1 FROM user_service.workers WHERE database = 'later'}),
	'"later" gets its worker once it is created');
pass('the missing database was logged once it was listed');

# A list that is not one is refused at reload (the old value stays).
$at = -s $server->logfile;
$server->append_conf('postgresql.conf', qq{
user_service.database = 'part0, part0'
});
$server->reload;
$server->wait_for_log(qr/invalid value for parameter "user_service\.database"/, $at);
is($server->safe_psql('part0', q{SELECT current_setting('user_service.database')}),
	'part0, part1, part2, later', 'a list naming a database twice is refused at reload');

# One database whose name is no identifier still works without quotes.
$server->safe_psql('postgres', 'CREATE DATABASE "my db"');
$at = -s $server->logfile;
$server->append_conf('postgresql.conf', qq{
user_service.database = 'my db'
});
$server->reload;
$server->wait_for_log(qr/parameter "user_service\.database" changed to "my db"/, $at);
ok($server->poll_query_until('part0', q{SELECT count(*) = 1 AND bool_and(database = 'my db') FROM user_service.workers}),
	'a single name with a space is one database, as before lists');


$router->stop;
$server->stop;
done_testing();
