# Workers take turns between open batches: a one-item batch submitted behind
# a big one is done after a few of the big one's items, not after all of
# them; and hundreds of open one-item batches (more than one page of open
# batches) all finish, each item once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

# (about 10 ms a hash)
my $node = preloaded_node('fair');

sub create_batch
{
	my ($tag, $n) = @_;
	return submit_create_batch($node, $tag, $n, 2);
}

my $big = create_batch('big', 400);
$node->poll_query_until('postgres',
	"SELECT succeeded >= 10 FROM user_service.batch_status($big)")
  or die "batch $big made no progress";

my $small = create_batch('small', 1);
my $before = $node->safe_psql('postgres',
	"SELECT succeeded FROM user_service.batch_status($big)");
$node->safe_psql('postgres', "SELECT user_service.wait_batch($small, '1 minute')");
is($node->safe_psql('postgres', "SELECT state FROM user_service.batch_status($small)"),
	'done', 'the small batch is done');

# How many of the big batch's items finished between the small batch's
# submission and its end (the small one had to wait for those).
my $between = $node->safe_psql(
	'postgres', qq{
	SELECT count(*) FROM user_service.batch_items
	 WHERE batch_id = $big AND status = 'succeeded'
	   AND finished_at <= (SELECT finished_at FROM user_service.batch_items
	                        WHERE batch_id = $small)}) - $before;
cmp_ok($between, '<=', 20,
	"the small batch waited for $between items of the big one, not for the rest of it");
cmp_ok($node->safe_psql('postgres', "SELECT pending FROM user_service.batch_status($big)"),
	'>', 0, 'the big batch was still running when the small one finished');

# Many open batches at once: 300 one-item delete_user batches of users that
# do not exist (each item fails with P0002), submitted in one transaction.
my $first = $node->safe_psql(
	'postgres', qq{
	SELECT min(b) FROM (
	  SELECT user_service.submit_batch('delete_user',
	           jsonb_build_array(jsonb_build_object('id', -i))) AS b
	    FROM generate_series(1, 300) i) s});
$node->poll_query_until('postgres',
	"SELECT count(*) = 300 FROM user_service.batches"
	  . " WHERE batch_id >= $first AND kind = 'delete_user' AND state = 'done'")
  or die 'the one-item batches did not all finish';
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*), count(DISTINCT batch_id), min(sqlstate), max(sqlstate)
		  FROM user_service.batch_items
		 WHERE batch_id >= $first AND status = 'failed'}),
	'300|300|P0002|P0002',
	'each one-item batch was processed once');
is( $node->safe_psql(
		'postgres',
		"SELECT sum(failed) FROM user_service.batch_progress WHERE batch_id >= $first"),
	'300', 'progress counts each item once');

$node->safe_psql('postgres', "SELECT user_service.wait_batch($big, '2 minutes')");
is($node->safe_psql('postgres',
		"SELECT total, succeeded FROM user_service.batch_status($big)"),
	'400|400', 'the big batch finished too');

$node->stop;
done_testing();
