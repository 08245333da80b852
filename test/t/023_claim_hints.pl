# Claiming stays cheap with many batches in rotation.  A claim starts where
# this process's last claim in the batch ended, skipping the dead index
# entries that finished items leave while a snapshot is open.  The place
# was kept in a ring of 8: with 9 or more batches taking turns every claim
# missed and read the batch's dead entries again (quadratic).  Here one
# transaction processes 12 batches of 150 items (so none of the dead
# entries can go), one item per claim, and the pending-items index must be
# read about once per item, not once per item and finished item.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $node = preloaded_node('hints', "user_service.workers = 0\n");

# set_password items for users that do not exist: one item per claim (the
# kind hashes), and each fails at once (P0002, nothing to hash).
$node->safe_psql('postgres', q{
	SELECT user_service.submit_batch('set_password',
		(SELECT jsonb_agg(jsonb_build_object('id', 1000000 + i, 'password', 'unused password'))
		   FROM generate_series(1, 150) i), 1)
	  FROM generate_series(1, 12)});

my ($processed, $read, $failed) = split /\|/, $node->safe_psql('postgres', q{
	BEGIN;
	SELECT user_service.process_batches(10000) AS n \gset
	SELECT :n, pg_stat_get_xact_tuples_returned('user_service.batch_chunks_pending'::regclass),
	       (SELECT count(*) FROM user_service.batch_items WHERE status = 'failed');
	COMMIT;});
is($processed, 1800, 'one transaction processed the 12 batches');
is($failed, 1800, 'every item has its outcome');
cmp_ok($read, '<', 4 * 1800,
	"the pending-items index was read about once per item ($read entries for 1800 items)");

$node->stop;
done_testing();
