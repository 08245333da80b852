# Without shared_preload_libraries: the user API works, submit_batch queues
# and says that no worker will run the batch, process_batches does the work
# in the session, and wait_batch still waits (on its latch).
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

$node->stop;
done_testing();
