# The workers' life: they wait quietly until the extension exists and then
# pick up the first batch; a reload changes how many run; transient errors
# are retried with backoff up to user_service.max_attempts; running out of
# max_worker_processes is logged with a hint, not a crash loop.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $workers_query =
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'user_service worker'";

# Wait until exactly $n workers run.
sub workers_become
{
	my ($node, $n) = @_;
	return $node->poll_query_until('postgres', "SELECT ($workers_query) = $n");
}

my $node = PostgreSQL::Test::Cluster->new('workers');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.workers = 2
user_service.argon2_memory_kib = 1024
});
$node->start;

# 1. Started before CREATE EXTENSION: they wait, then serve the first batch.
workers_become($node, 2) or die 'workers did not start';
is($node->safe_psql('postgres', $workers_query), '2', 'two workers run before CREATE EXTENSION');
$node->safe_psql('postgres', 'CREATE EXTENSION user_service');
my $batch = $node->safe_psql('postgres', q{
	SELECT user_service.submit_batch('create_user',
		'[{"name": "First", "email": "first@example.com", "password": "first password"}]')});
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($batch, '30 s')"),
	't', 'the first batch after CREATE EXTENSION is processed');
is($node->safe_psql('postgres', "SELECT count(*) FROM user_service.users"), '1', 'its user exists');

# wait_batch sees the end of a batch from inside a repeatable-read transaction.
my $rr = $node->background_psql('postgres');
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM user_service.users;');
$batch = $node->safe_psql('postgres', q{
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Third", "email": "third@example.com", "password": "third password"}]')});
is($rr->query_safe("SELECT user_service.wait_batch($batch, '30 s')"),
	't', 'wait_batch works in a repeatable-read transaction');
$rr->query_safe('COMMIT');
$rr->quit;

# A submission wakes the workers at once (no polling): time to start.
my $latency = $node->safe_psql('postgres', q{
	SELECT user_service.submit_batch('delete_user', '[{"id": 424242}]') AS b \gset
	SELECT user_service.wait_batch(:b, '30 s');
	SELECT extract(epoch FROM started_at - submitted_at) < 2 FROM user_service.batches WHERE batch_id = :b});
like($latency, qr/t$/, 'a submitted batch starts without waiting for a poll');

# 2. A reload changes the number of workers.
$node->append_conf('postgresql.conf', 'user_service.workers = 3');
$node->reload;
ok(workers_become($node, 3), 'three workers after a reload');
is($node->safe_psql('postgres', 'SELECT count(*) FROM user_service.workers'), '3', 'the workers view shows them');
my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', 'user_service.workers = 1');
$node->reload;
ok(workers_become($node, 1), 'one worker after another reload');
$node->append_conf('postgresql.conf', 'user_service.workers = 2');
$node->reload;
ok(workers_become($node, 2), 'two workers after a third reload');
ok(!$node->log_contains('starting it again in', $log_offset),
	'a worker stopped by the launcher is started again without a backoff');
$node->append_conf('postgresql.conf', 'user_service.workers = 1');
$node->reload;
ok(workers_become($node, 1), 'one worker again');

# A restarted launcher stops the workers of its predecessor before starting
# its own: never two workers for one slot.
# (the launcher has no database connection, so it is not in pg_stat_activity:
# find it by its process title)
sub launcher_pid
{
	for my $dir (glob '/proc/[0-9]*')
	{
		open(my $fh, '<', "$dir/cmdline") or next;
		my $cmd = <$fh>;
		close $fh;
		return (split m{/}, $dir)[-1]
		  if defined $cmd && $cmd =~ /workers: user_service launcher/;
	}
	return undef;
}
my $old_worker = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'user_service worker'");
my $launcher = launcher_pid();
ok(defined $launcher && kill('TERM', $launcher), 'terminate the launcher');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 AND bool_and(pid <> $old_worker) FROM pg_stat_activity WHERE backend_type = 'user_service worker'"),
	'after a launcher restart, one new worker replaces the old one');
ok($node->wait_for_log(qr/stopping worker 1 \(PID $old_worker\) left by a previous launcher/),
	'the new launcher stopped the old worker');

# The workers claim in READ COMMITTED whatever the server's default.
$node->append_conf('postgresql.conf', "default_transaction_isolation = 'serializable'");
$node->reload;
$batch = $node->safe_psql('postgres', q{
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Iso", "email": "iso@example.com", "password": "iso password"}]')});
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($batch, '30 s')"),
	't', 'batches run under default_transaction_isolation = serializable');
$node->append_conf('postgresql.conf', "default_transaction_isolation = 'read committed'");
$node->reload;

# 3. Transient errors are retried with backoff, then recorded as failed.
$node->append_conf('postgresql.conf', "lock_timeout = '100ms'\nuser_service.max_attempts = 3");
$node->reload;
my $id = $node->safe_psql('postgres', q{SELECT min(id) FROM user_service.users});
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT id FROM user_service.users WHERE id = $id FOR UPDATE;");
$batch = $node->safe_psql('postgres', qq{
	SELECT user_service.submit_batch('update_user', '[{"id": $id, "name": "Renamed"}]')});
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($batch, '30 s')"),
	't', 'a batch that keeps meeting a lock timeout still finishes');
is( $node->safe_psql('postgres',
		"SELECT status, attempts, sqlstate FROM user_service.batch_items WHERE batch_id = $batch"),
	'failed|3|55P03',
	'the item was tried user_service.max_attempts times, then failed with its SQLSTATE');
$locker->query_safe('COMMIT');

# ... and an item that succeeds on a later attempt is applied once.
$locker->query_safe("BEGIN; SELECT id FROM user_service.users WHERE id = $id FOR UPDATE;");
$batch = $node->safe_psql('postgres', qq{
	SELECT user_service.submit_batch('update_user', '[{"id": $id, "name": "Renamed"}]')});
$node->poll_query_until('postgres',
	"SELECT attempts >= 1 FROM user_service.batch_items WHERE batch_id = $batch")
  or die 'no attempt';
$locker->query_safe('COMMIT');
$locker->quit;
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($batch, '30 s')"), 't', 'retried batch finishes');
is( $node->safe_psql('postgres',
		"SELECT i.status, i.attempts > 1, u.name FROM user_service.batch_items i JOIN user_service.users u ON u.id = i.user_id WHERE batch_id = $batch"),
	'succeeded|t|Renamed',
	'a later attempt succeeded');
$node->append_conf('postgresql.conf', "lock_timeout = 0");
$node->reload;

# 4. More workers than max_worker_processes allows: a warning with a hint,
#    the workers that fit keep working, no restart loop.
$node->append_conf('postgresql.conf', "max_worker_processes = 3\nuser_service.workers = 4");
$node->restart;
ok( $node->wait_for_log(qr/could not start user_service worker \d of 4 \(database "postgres"\): no background worker slot is free/),
	'running out of background worker slots is logged');
ok($node->log_contains('HINT:  Raise max_worker_processes'), '... with a hint');
$batch = $node->safe_psql('postgres', q{
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Second", "email": "second@example.com", "password": "second password"}]')});
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($batch, '30 s')"),
	't', 'the workers that could start process batches');
my $log = slurp_file($node->logfile);
my $warnings = () = $log =~ /no background worker slot is free/g;
cmp_ok($warnings, '<=', 2, 'the warning is not repeated in a loop');

$node->stop;
done_testing();
