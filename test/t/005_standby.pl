# A hot standby serves reads (get_user, list_users, list_users_after,
# verify_password without rehashing) and runs no worker; once promoted, its
# workers process the batches submitted on the primary before the failover.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.workers = 2
user_service.argon2_memory_kib = 1024
});
$primary->start;
$primary->safe_psql('postgres', q{
	CREATE EXTENSION user_service;
	SELECT user_service.create_user('Ada', 'ada@example.com', 'analytical engine');
	-- a hash with other parameters than the current ones: verify would rehash it
	SET user_service.argon2_memory_kib = 2048;
	SELECT user_service.create_user('Alan', 'alan@example.com', 'universal machine');});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# Keep a batch pending on the primary: no workers there for now.
$primary->append_conf('postgresql.conf', 'user_service.workers = 0');
$primary->reload;
$primary->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'user_service worker'")
  or die 'primary workers did not stop';
my $batch = $primary->safe_psql('postgres', q{
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Grace", "email": "grace@example.com", "password": "first compiler"},
		  {"name": "Edsger", "email": "edsger@example.com", "password": "shortest path"}]')});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

# The standby reads.
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is($standby->safe_psql('postgres', 'SELECT name FROM user_service.get_user(1)'), 'Ada', 'get_user on the standby');
is($standby->safe_psql('postgres', 'SELECT total, cardinality(users) FROM user_service.list_users()'),
	'2|2', 'list_users on the standby');
is( $standby->safe_psql('postgres',
		'SELECT total, (users[1]).name FROM user_service.list_users_after(after_id => 1)'),
	'2|Alan', 'list_users_after on the standby');
my $alan_hash = $standby->safe_psql('postgres',
	"SELECT password_hash FROM user_service.users WHERE email = 'alan\@example.com'");
is( $standby->safe_psql('postgres', q{
		SELECT user_service.verify_password('alan@example.com', 'universal machine'),
		       user_service.verify_password('ada@example.com', 'wrong password')}),
	't|f', 'verify_password on the standby');
is( $standby->safe_psql('postgres',
		"SELECT password_hash FROM user_service.users WHERE email = 'alan\@example.com'"),
	$alan_hash, 'no rehash on the standby');
my ($rc, $out, $err) = $standby->psql('postgres',
	q{SELECT user_service.submit_batch('delete_user', '[{"id": 1}]')});
like($err, qr/read-only transaction/, 'submit_batch is refused on the standby');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'user_service%'"),
	'0', 'no launcher or worker runs on the standby');
is($standby->safe_psql('postgres', "SELECT state FROM user_service.batch_status($batch)"),
	'pending', 'the batch is pending on the standby');

# Failover: the promoted standby's workers process the batch.
$primary->stop;
$standby->promote;
ok( $standby->poll_query_until('postgres',
		"SELECT state = 'done' FROM user_service.batch_status($batch)"),
	'the promoted standby processed the batch submitted before the failover');
is( $standby->safe_psql('postgres',
		"SELECT string_agg(status, ',' ORDER BY item) FROM user_service.batch_results($batch)"),
	'succeeded,succeeded', 'every item succeeded');
is( $standby->safe_psql('postgres',
		"SELECT user_service.verify_password('grace\@example.com', 'first compiler')"),
	't', 'the batch users can log in');

$standby->stop;
done_testing();
