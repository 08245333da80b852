# Housekeeping's notes of finished batches.  A session that keeps a
# process_batches transaction open holds up nobody:
# its housekeeping (noting finished batches) skips batch rows that others
# hold and leaves rows it marked to nobody's wait.  The scenario: batch B is
# complete but not yet noted finished; a session's process_batches notes it
# and stays open; the workers then start, and their own housekeeping must
# not wait for that session before they process a new batch.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $node = preloaded_node('open_process', "user_service.workers = 0\n");

# B: processed by process_batches(1) with exactly its one item, so that the
# call ends without housekeeping and B stays unmarked.
my $b = $node->safe_psql('postgres',
	q{SELECT user_service.submit_batch('delete_user', '[{"id": 424242}]')});
is($node->safe_psql('postgres', 'SELECT user_service.process_batches(1)'), '1', 'B processed');
is($node->safe_psql('postgres', "SELECT finished_at IS NULL FROM user_service.batch_jobs WHERE id = $b"),
	't', 'B is complete but not yet noted finished');

# A session notes B finished in a transaction it keeps open.
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
$open->query_safe('SELECT user_service.process_batches()');

# The workers start; their first housekeeping meets B.
$node->append_conf('postgresql.conf', "user_service.workers = 2\n");
$node->reload;
$node->poll_query_until('postgres', 'SELECT count(*) = 2 FROM user_service.workers')
  or die 'the workers did not start';
my $c = submit_create_batch($node, 'open', 3);
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($c, '20 s')"), 't',
	'a new batch is processed while the process_batches transaction stays open');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_stat_activity
		 WHERE backend_type = 'user_service worker' AND wait_event_type = 'Lock'}),
	'0', 'no worker waits for a lock');

$open->query_safe('COMMIT');
$open->quit;
is($node->safe_psql('postgres', "SELECT finished_at IS NOT NULL FROM user_service.batch_jobs WHERE id = $b"),
	't', 'B is noted finished once the session commits');

$node->stop;

# A waiter wakes when the batch's last group commits, also when that group
# filled its claim (it then leaves the completion check to the worker's next
# transaction) and the housekeeping in that next transaction is the one to
# note the batch finished: the note wakes the waiters at its commit (the
# worker's own note after it finds the batch noted already and wakes
# nobody).  Without a wake-up the waiter would sleep on to its next look, a
# second after it began to sleep.  The worker is made to reach that point
# on purpose: its one group (250 delete_user items, a full claim: the group
# size of cheap kinds) waits for
# a user row this test holds, and a reload meanwhile makes housekeeping due
# in the worker's next transaction.
my $wnode = preloaded_node('wake', "user_service.workers = 1\n");
$wnode->safe_psql('postgres', q{
	INSERT INTO user_service.users (id, name, email, password_hash) OVERRIDING SYSTEM VALUE
	SELECT i, 'w' || i, 'w' || i || '@example.com', '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA'
	  FROM generate_series(1, 250) i});
my $holder = $wnode->background_psql('postgres');
$holder->query_safe('BEGIN');
$holder->query_safe('SELECT 1 FROM user_service.users WHERE id = 50 FOR UPDATE');
my $w_batch = $wnode->safe_psql('postgres', q{
	SELECT user_service.submit_batch('delete_user',
		(SELECT jsonb_agg(jsonb_build_object('id', i) ORDER BY i) FROM generate_series(1, 250) i))});
$wnode->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'user_service worker' AND wait_event_type = 'Lock'})
  or die 'the worker did not reach the held row';
my $waiter = $wnode->background_psql('postgres');
$waiter->query_until(qr/waiting/,
	"\\echo waiting\nSELECT user_service.wait_batch($w_batch, '30 s'), clock_timestamp();\n");
$wnode->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'client backend' AND wait_event_type = 'Extension'
		   AND query LIKE '%wait_batch($w_batch,%'})
  or die 'the waiter did not begin to sleep';
$wnode->safe_psql('postgres', 'SELECT pg_reload_conf()');
$holder->query_safe('COMMIT');
my $released = $holder->query_safe('SELECT clock_timestamp()');
my ($waited, $returned) = split /\|/, (split /\n/, $waiter->query_safe('SELECT 1'))[0];
is($waited, 't', 'the waiter saw the batch finished');
is($wnode->safe_psql('postgres', "SELECT count(*) FROM user_service.batch_items WHERE batch_id = $w_batch AND status = 'succeeded'"),
	'250', 'the group of 250 items succeeded');
cmp_ok($wnode->safe_psql('postgres', qq{
		SELECT extract(epoch FROM '$returned'::timestamptz - '$released'::timestamptz)}),
	'<', 0.5, 'the waiter woke with the batch finished, not at its next look a second later');
$waiter->quit;
$holder->quit;
$wnode->stop;
done_testing();
