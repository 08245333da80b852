# pg_dump keeps the users (their rows and the identity sequence are
# registered with pg_extension_config_dump); after pg_restore into a new
# database passwords verify, the total is exact and new ids continue.
# Batches are kept too: a finished one with its results, a half-processed
# one and a pending one; once the workers serve the new database they
# process what was left, and only that.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
# the workers serve neither database to begin with
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.workers = 2
user_service.argon2_memory_kib = 1024
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE DATABASE src;
	CREATE DATABASE dst;});
$node->safe_psql('src', q{
	CREATE EXTENSION user_service;
	SELECT user_service.create_user('User ' || i, 'user' || i || '@example.com', 'password ' || i)
	  FROM generate_series(1, 5) i;
	SELECT user_service.delete_user(2);});

# Batches: 1 done (processed in the session), 2 half done, 3 pending.
$node->safe_psql('src', q{
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Done", "email": "done@example.com", "password": "done password"}]');
	SELECT user_service.process_batches(10);
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Half 1", "email": "half1@example.com", "password": "half password 1"},
		  {"name": "Half 2", "email": "half2@example.com", "password": "half password 2"},
		  {"name": "Half 3", "email": "half3@example.com", "password": "half password 3"}]');
	SELECT user_service.process_batches(1);
	SELECT user_service.submit_batch('set_password', '[{"id": 1, "password": "changed password"}]');});
my $batches = q{SELECT batch_id, kind, state, total, pending, succeeded, failed FROM user_service.batches ORDER BY 1};
is($node->safe_psql('src', $batches),
	"1|create_user|done|1|0|1|0\n2|create_user|running|3|2|1|0\n3|set_password|pending|1|1|0|0",
	'before the dump: one batch done, one half done, one pending');
my $results = q{SELECT batch_id, r.* FROM user_service.batches, user_service.batch_results(batch_id) r ORDER BY 1, 2};
my $results_before = $node->safe_psql('src', $results);

my $rows = q{SELECT id, name, email, password_hash, created_at, updated_at
	FROM user_service.users ORDER BY id};
my $before = $node->safe_psql('src', $rows);

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ], 'pg_dump');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('dst'), $dump ], 'pg_restore');

is($node->safe_psql('dst', $rows), $before, 'rows identical after restore');
is($node->safe_psql('dst', 'SELECT total FROM user_service.list_users()'), '6',
	'exact total after restore');
is($node->safe_psql('dst', $batches), $node->safe_psql('src', $batches), 'batches identical after restore');
is($node->safe_psql('dst', $results), $results_before, 'batch results identical after restore');
is($node->safe_psql('dst', q{SELECT user_service.verify_password('user3@example.com', 'password 3')}),
	't', 'password verifies after restore');
is($node->safe_psql('dst', q{SELECT user_service.verify_password('user3@example.com', 'password 4')}),
	'f', 'wrong password still rejected after restore');
is( $node->safe_psql('dst', q{
		SELECT id FROM user_service.create_user('New', 'new@example.com', 'new password')}),
	'8', 'identity sequence continues after restore');
is($node->safe_psql('dst', 'SELECT total FROM user_service.list_users()'), '7',
	'total after a new user');

# The workers move to the restored database and finish what was left.
$node->safe_psql('postgres', q{ALTER SYSTEM SET user_service.database = 'dst'; SELECT pg_reload_conf()});
ok( $node->poll_query_until('dst',
		q{SELECT bool_and(state = 'done') FROM user_service.batches}),
	'the workers process the restored batches');
is( $node->safe_psql('dst', $batches),
	"1|create_user|done|1|0|1|0\n2|create_user|done|3|0|3|0\n3|set_password|done|1|0|1|0",
	'every item processed once, none failed');
is( $node->safe_psql('dst', q{
		SELECT string_agg(email, ',' ORDER BY email) FROM user_service.users WHERE email LIKE 'half%'}),
	'half1@example.com,half2@example.com,half3@example.com', 'each user of the half-done batch exists once');
is( $node->safe_psql('dst', q{
		SELECT user_service.verify_password('half3@example.com', 'half password 3'),
		       user_service.verify_password('user1@example.com', 'changed password'),
		       user_service.verify_password('done@example.com', 'done password')}),
	't|t|t', 'the restored batches took effect');
is( $node->safe_psql('src', $batches),
	"1|create_user|done|1|0|1|0\n2|create_user|running|3|2|1|0\n3|set_password|pending|1|1|0|0",
	'the source database was left alone');

$node->stop;
done_testing();
