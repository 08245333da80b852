# A shard that survives the loss of its primary: shard 0 of 2 is a primary
# with a synchronous streaming standby, and the router's connection string
# for it names both (host=a,b port=x,y target_session_attrs=read-write).
# A batch runs through the router; the primary is stopped with -m immediate
# in the middle of shard 0's part; calls in the gap fail with a
# connection-class error, never a wrong answer; the standby is promoted and
# the router carries on without reconfiguration; the part finishes on the
# promoted server with every item exactly once, and every item that was seen
# finished before the failure keeps the user it made (synchronous commit:
# nothing acknowledged is lost; the workers' commits wait for the standby,
# shown first with the standby stopped).  Before that, a second, read-only router
# database whose shard 0 is the standby serves get_user, list_users_after
# and verify_password (no rehash there) with the standby's replay lag.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $N = 2;
my $conf = qq{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.workers = 2
user_service.argon2_memory_kib = 8192
user_service.argon2_iterations = 4
};

my $primary = PostgreSQL::Test::Cluster->new('shard0_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $conf);
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION user_service');
$primary->safe_psql('postgres', "SELECT user_service.configure_shard(0, $N)");
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('shard0_standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->append_conf('postgresql.conf', "synchronous_standby_names = '*'");
$primary->reload;
ok($primary->poll_query_until('postgres', q{SELECT sync_state = 'sync' FROM pg_stat_replication}),
	'the standby of shard 0 is synchronous');

# The workers of a primary with a synchronous standby commit as the server
# does: with the standby stopped, an item's commit waits for it, and the
# batch is not seen finished; once the standby is back it is.
$standby->stop;
my $waiting = $primary->safe_psql('postgres', q{
	SET synchronous_commit = local;
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Sync", "email": "sync@example.com", "password": "synchronous"}]')});
is($primary->safe_psql('postgres', "SELECT user_service.wait_batch($waiting, '3 seconds')"), 'f',
	'with the synchronous standby down, a worker\'s item waits for it');
$standby->start;
ok($primary->poll_query_until('postgres', "SELECT user_service.wait_batch($waiting, '1 second')"),
	'and finishes once the standby is back');
ok($primary->poll_query_until('postgres', q{SELECT sync_state = 'sync' FROM pg_stat_replication}),
	'the standby is synchronous again');
$primary->safe_psql('postgres', q{SELECT user_service.delete_user(id) FROM user_service.users});

my $shard1 = preloaded_node('shard1');
$shard1->safe_psql('postgres', "SELECT user_service.configure_shard(1, $N)");

# The router: shard 0 is "the primary, or else the standby", whichever
# accepts writes; a second database "reads" sends shard 0's calls to the
# standby.
my $p0 = 'host=' . $primary->host . ',' . $standby->host . ' port=' . $primary->port . ',' . $standby->port
  . ' dbname=postgres target_session_attrs=read-write';
my $p0_ro = 'host=' . $standby->host . ' port=' . $standby->port . ' dbname=postgres target_session_attrs=read-only';
my $p1 = 'host=' . $shard1->host . ' port=' . $shard1->port . ' dbname=postgres';
my $router = router_node('router', postgres => [ $p0, $p1 ], reads => [ $p0_ro, $p1 ]);

# 20 users through the router; one of shard 0 to follow.
$router->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT user_service.create_user('User ' || i, 'user' || i || '@example.com',
	                                                      'password ' || i)
	                        FROM generate_series(1, 20) i) c});
my ($id0, $email0) = split /\|/, $router->safe_psql('postgres',
	q{SELECT (u).id, (u).email FROM user_service.list_users_after(0, 20) l, unnest(l.users) u
	   WHERE (u).id % 2 = 0 ORDER BY (u).id LIMIT 1});
ok($id0, "user $id0 lives on shard 0");

# Reads from the standby through the read-only router database.
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is($router->safe_psql('reads', "SELECT email FROM user_service.get_user($id0)"), $email0,
	'get_user through the read-only router reads shard 0 from its standby');
is($router->safe_psql('reads', 'SELECT total FROM user_service.list_users_after(0, 5)'), '20',
	'list_users_after through it: the exact total over the standby and shard 1');
my $hash_before = $standby->safe_psql('postgres', "SELECT password_hash FROM user_service.users WHERE id = $id0");
(my $n0 = $email0) =~ s/^user(\d+)\@.*/$1/;
is($router->safe_psql('reads', "SELECT user_service.verify_password('$email0', 'password $n0')"), 't',
	'verify_password through it');
is($standby->safe_psql('postgres', "SELECT password_hash FROM user_service.users WHERE id = $id0"), $hash_before,
	'which changes nothing on the standby');
$router->safe_psql('postgres', "SELECT user_service.update_user($id0, name => 'Renamed')");
ok($router->poll_query_until('reads', "SELECT name = 'Renamed' FROM user_service.get_user($id0)"),
	'a write through the router is read from the standby once replayed');

# A batch through the router, slow enough on shard 0 to be stopped midway.
my $n = 120;
my $handle = $router->safe_psql('postgres', qq{
	SELECT user_service.submit_batch('create_user',
		(SELECT jsonb_agg(jsonb_build_object('name', 'Batch ' || i, 'email', 'batch' || i || '\@example.com',
		                                     'password', 'password ' || i) ORDER BY i)
		   FROM generate_series(1, $n) i), 1)});
my $part0 = $primary->safe_psql('postgres', "SELECT batch_id FROM user_service.cluster_batches WHERE handle = $handle");
ok($primary->poll_query_until('postgres',
		"SELECT count(*) >= 5 FROM user_service.batch_items WHERE batch_id = $part0 AND status = 'succeeded'"),
	'shard 0 has started its part');
# what a client could see as finished, just before the failure
my $seen = $primary->safe_psql('postgres', qq{
	SELECT string_agg(item || ':' || user_id, ',' ORDER BY item) FROM user_service.batch_items
	 WHERE batch_id = $part0 AND status = 'succeeded'});
$primary->stop('immediate');

# The gap: calls to shard 0 fail with a connection-class error.
my ($rc, $out, $err) = $router->psql('postgres', "SELECT email FROM user_service.get_user($id0)",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  08\d{3}: /, 'during the gap a call to shard 0 fails with a connection-class SQLSTATE')
  or diag($err);
is($out, '', '... and no answer');

$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the standby is promoted');

# The router carries on: after at most a few failed (connection-class)
# attempts, shard 0's calls reach the promoted server.
my ($answer, $other) = ('', 0);
for (1 .. 30)
{
	($rc, $out, $err) = $router->psql('postgres', "SELECT email FROM user_service.get_user($id0)",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	if ($rc == 0) { $answer = $out; last; }
	$other++ unless $err =~ /ERROR:  08\d{3}: /;
	sleep 1;
}
is($answer, $email0, 'the router reaches shard 0 on the promoted server, unchanged configuration');
is($other, 0, 'every failed attempt on the way had a connection-class SQLSTATE');

# The part finishes on the promoted server: each item once, and the items
# seen finished before the failure kept their users.
ok($router->poll_query_until('postgres', "SELECT user_service.wait_batch($handle, '10 seconds')"),
	'the batch finishes');
is($router->safe_psql('postgres', "SELECT total, succeeded, failed FROM user_service.batch_status($handle)"),
	"$n|$n|0", "all $n items succeeded");
is( $standby->safe_psql('postgres', qq{
		SELECT count(*) FROM user_service.batch_items i JOIN user_service.users u ON u.id = i.user_id
		 WHERE i.batch_id = $part0 AND u.email = (i.payload->>'email')}),
	$standby->safe_psql('postgres', "SELECT total FROM user_service.batch_jobs WHERE id = $part0"),
	'on the promoted shard 0 every item has its own user');
is( $standby->safe_psql('postgres', q{SELECT count(*) FROM user_service.users WHERE email LIKE 'batch%'})
	  + $shard1->safe_psql('postgres', q{SELECT count(*) FROM user_service.users WHERE email LIKE 'batch%'}),
	$n, "$n users over the shards: none lost, none created twice");
my @seen = split /,/, $seen;
my $kept = $standby->safe_psql('postgres', qq{
	SELECT count(*) FROM user_service.batch_items
	 WHERE batch_id = $part0 AND status = 'succeeded'
	   AND item || ':' || user_id = ANY ('{@{[ join(',', @seen) ]}}'::text[])});
is($kept, scalar @seen, scalar(@seen) . ' items seen finished before the failure kept their users (synchronous commit)');

$router->stop;
$shard1->stop;
$standby->stop;
done_testing();
