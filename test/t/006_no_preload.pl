# Without shared_preload_libraries: the user API works, submit_batch queues
# and says that no worker will run the batch, process_batches does the work
# in the session, and wait_batch still waits (on its latch).  The workers'
# housekeeping is not forgotten without them: list_users folds a long
# user_count_deltas, process_batches purges batches past the retention.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('plain');
$node->init;
$node->append_conf('postgresql.conf', "user_service.argon2_memory_kib = 1024");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION user_service');

is( $node->safe_psql('postgres', q{
		SELECT name FROM user_service.create_user('Ada', 'ada@example.com', 'analytical engine');
		SELECT user_service.verify_password('ada@example.com', 'analytical engine')}),
	"Ada\nt", 'the user API works without preloading');

my ($rc, $batch, $err) = $node->psql('postgres', q{
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Alan", "email": "alan@example.com", "password": "universal machine"}]')});
is($rc, 0, 'submit_batch works without preloading');
like($err, qr/NOTICE:  user_service is not loaded through shared_preload_libraries: no background worker will process batch $batch/,
	'... and says that no worker will run it');
is($node->safe_psql('postgres', "SELECT state FROM user_service.batch_status($batch)"),
	'pending', 'the batch waits');
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($batch, '300 ms')"),
	'f', 'wait_batch times out');
is($node->safe_psql('postgres', 'SELECT user_service.process_batches()'), '1',
	'process_batches processes it');
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($batch, '1 s')"),
	't', 'wait_batch sees it done');
is($node->safe_psql('postgres', 'SELECT count(*) FROM user_service.workers'), '0',
	'the workers view is empty');

# 1,500 statements that each insert a user leave 1,500 delta rows (no worker
# folds them here); the first list_users that sums them folds them, with the
# same total before and after.
$node->safe_psql('postgres', q{
	DO $$BEGIN
		FOR i IN 1..1500 LOOP
			INSERT INTO user_service.users (name, email, password_hash)
			VALUES ('Bulk ' || i, 'bulk' || i || '@example.com', 'not a hash');
		END LOOP;
	END$$});
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM user_service.user_count_deltas'),
	'>', 1500, 'one delta row per statement');
is($node->safe_psql('postgres', 'SELECT total FROM user_service.list_users(1, 1)'),
	'1502', 'list_users counts every user');
is($node->safe_psql('postgres', 'SELECT count(*) FROM user_service.user_count_deltas'),
	'1', '... and folds the deltas into one row');
is($node->safe_psql('postgres', 'SELECT total FROM user_service.list_users(1, 1)'),
	'1502', 'the total is the same after the fold');

# Not under a transaction snapshot: REPEATABLE READ reads, never folds.
$node->safe_psql('postgres', q{
	DO $$BEGIN
		FOR i IN 1..1100 LOOP
			DELETE FROM user_service.users WHERE email = 'bulk' || i || '@example.com';
		END LOOP;
	END$$});
is( $node->safe_psql('postgres', q{
		BEGIN ISOLATION LEVEL REPEATABLE READ;
		SELECT total FROM user_service.list_users(1, 1);
		COMMIT;
		SELECT count(*) > 1000 FROM user_service.user_count_deltas}),
	"402\nt", 'under REPEATABLE READ list_users counts and leaves the deltas alone');
is($node->safe_psql('postgres', 'SELECT total FROM user_service.list_users(1, 1)'),
	'402', 'the next READ COMMITTED list_users counts the same');
is($node->safe_psql('postgres', 'SELECT count(*) FROM user_service.user_count_deltas'),
	'1', '... and folds');

# Retention without workers: process_batches, out of work, deletes the
# batches finished longer ago than user_service.batch_retention.
$node->append_conf('postgresql.conf', "user_service.batch_retention = '0'");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('user_service.batch_retention') = '0'")
  or die 'the retention was not reloaded';
is($node->safe_psql('postgres', 'SELECT count(*) FROM user_service.batch_jobs'),
	'1', 'the finished batch is still there');
is($node->safe_psql('postgres', q{
		SELECT user_service.process_batches();
		SELECT count(*) FROM user_service.batch_jobs;
		SELECT count(*) FROM user_service.batch_items}),
	"0\n0\n0", 'process_batches purges the expired batch and its items');

$node->stop;
done_testing();
