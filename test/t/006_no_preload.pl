# Without shared_preload_libraries: the user API works, submit_batch queues
# and says that no worker will run the batch, process_batches does the work
# in the session, and wait_batch still waits (on its latch).  The workers'
# housekeeping is not forgotten without them: list_users folds a long
# user_count_deltas, process_batches purges batches past the retention.
# batch_results streams: reading 500,000 results costs a backend little
# memory.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes;
use UserServiceNode;

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
insert_users_singly($node, 'postgres', 1500);
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

# batch_results of a 500,000-item batch (pending: no worker runs it), read
# by a session whose anonymous memory is sampled meanwhile.  Holding every
# row at once costs some 90 MB; streaming, work_mem (the tuplestore spills
# to disk) and a page of rows.
my $big = $node->safe_psql('postgres', q{
	SELECT user_service.submit_batch('delete_user',
		(SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series(1, 500000) i))});
# The reader waits on an advisory lock that this test holds until it has
# found the reader's backend and sampled it once.
my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(4242)');
my ($stdout, $stderr) = ('', '');
my $reader = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres') . ' application_name=results_reader',
	  '-c', 'SELECT 1 FROM pg_advisory_lock(4242)',
	  '-c', "SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM user_service.batch_results($big)" ],
	'>', \$stdout, '2>', \$stderr);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'results_reader' AND wait_event_type = 'Lock'")
  or die 'the reader did not come to wait';
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE application_name = 'results_reader'");
# (undef once the backend has exited)
sub rss_anon_kib
{
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	my ($kib) = map { /^RssAnon:\s+(\d+)/ ? $1 : () } <$fh>;
	return $kib;
}
my $start = rss_anon_kib();
die "cannot read the memory of backend $pid" unless defined $start;
my $peak = $start;
$gate->query_safe('SELECT pg_advisory_unlock(4242)');
while ($reader->pumpable)
{
	my $now = rss_anon_kib();
	$peak = $now if defined $now && $now > $peak;
	Time::HiRes::usleep(5_000);
	$reader->pump_nb;
}
$reader->finish;
note "reader: $stderr" if $stderr ne '';
$gate->quit;
is($stdout, "1\n500000|500000\n", 'batch_results returns every item');
cmp_ok(($peak - $start) / 1024, '<', 40,
	'... while the reading backend grows by less than 40 MB');
note sprintf('anonymous memory: %.1f MB at the start, %.1f MB at the peak', $start / 1024, $peak / 1024);

$node->stop;
done_testing();
