# The workers die with the postmaster: kill -9 of the postmaster in the
# middle of a batch.  Every worker is gone within seconds (while the batch
# still has many seconds of hashing left), the server starts again on the
# same data directory, and the workers finish the batch there: every item
# succeeded exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;
use Time::HiRes qw(usleep);

my $items = 1500;

# (about 10 ms a hash: the batch takes several seconds on two workers)
my $node = preloaded_node('pmdeath');
my $batch = submit_create_batch($node, 'pm', $items, 2);

$node->poll_query_until('postgres',
	"SELECT succeeded >= 20 FROM user_service.batch_status($batch)")
  or die "batch $batch made no progress";

my @workers = split /\n/, $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'user_service worker'");
is(scalar @workers, 2, 'two workers are running');
my $done_before = $node->safe_psql('postgres',
	"SELECT succeeded FROM user_service.batch_status($batch)");
cmp_ok($done_before, '<', $items / 2, 'most of the batch is still to do');

$node->kill9;

# Poll (at most 5 s) until no worker is left.  Hashing the rest of the batch
# would take them far longer than that.
my $alive = scalar @workers;
for (my $i = 0; $i < 50 && $alive > 0; $i++)
{
	usleep(100_000);
	$alive = grep { kill(0, $_) } @workers;
}
is($alive, 0, 'every worker exited after the postmaster died');

# A restart needs the old shared memory to be free: no worker may hold it.
ok($node->start(fail_ok => 1), 'the server starts again on the same data directory');

$node->poll_query_until('postgres',
	"SELECT state = 'done' FROM user_service.batch_status($batch)")
  or die "batch $batch did not finish after the restart";
is( $node->safe_psql(
		'postgres',
		"SELECT total, pending, succeeded, failed FROM user_service.batch_status($batch)"),
	"$items|0|$items|0",
	'after the restart every item succeeded');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), count(DISTINCT user_id) FROM user_service.batch_items"
		  . " WHERE batch_id = $batch AND status = 'succeeded'"),
	"$items|$items",
	'each item has its own user');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM user_service.users WHERE email LIKE 'pm%\@example.com'"),
	$items, 'the users table holds exactly the batch\'s users');
is( $node->safe_psql(
		'postgres',
		"SELECT sum(succeeded) FROM user_service.batch_progress WHERE batch_id = $batch"),
	$items, 'progress counts each item once');

$node->stop;
done_testing();
