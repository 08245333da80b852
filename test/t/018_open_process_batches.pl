# A session that keeps a process_batches transaction open holds up nobody:
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
done_testing();
