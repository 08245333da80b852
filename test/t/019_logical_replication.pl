# Logical replication and restores.  A publisher with
# CREATE PUBLICATION ... FOR ALL TABLES still processes batches (the tables
# without a key have REPLICA IDENTITY FULL, the items' chunks a primary key;
# before 1.3 every update of batch_items failed with "cannot update table").  A subscriber with the
# extension and its own workers gets the users and the exact total: it
# neither runs the batches it receives (they are the publisher's: it would
# apply them twice) nor folds the user count it receives (the publisher's
# folds arrive; a local one made the total count twice).  recount_users()
# repairs the total after a data-only restore with --disable-triggers, and
# is refused where the count is replicated, under REPEATABLE READ, and to
# roles without EXECUTE.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use UserServiceNode;

# The publisher runs its batches with process_batches (no workers), so that
# the subscriber holds pending items for as long as the test wants.
my $pub = preloaded_node("publisher",
	"wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\nuser_service.workers = 0\n");
my $sub = preloaded_node('subscriber');

$pub->safe_psql('postgres', q{
	SELECT user_service.create_user('User ' || i, 'user' || i || '@example.com', 'password ' || i)
	  FROM generate_series(1, 5) i;
	CREATE PUBLICATION everything FOR ALL TABLES;});
is( $pub->safe_psql('postgres', q{
		SELECT string_agg(relname || ':' || relreplident::text, ' ' ORDER BY relname)
		  FROM pg_class WHERE relnamespace = 'user_service'::regnamespace AND relkind = 'r'}),
	'batch_chunks:d batch_jobs:d batch_progress:f cluster_batches:d email_claims:d registered_kinds:d shard_config:f user_count_deltas:f users:d',
	'every table of the extension has a replica identity (a key or FULL)');

my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION everything CONNECTION '$connstr' PUBLICATION everything");
$sub->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')})
  or die 'the initial copy did not finish';

# A batch on the publisher: pending there, and pending on the subscriber,
# whose workers leave it alone.
my $batch = submit_create_batch($pub, 'batch', 20);
$pub->wait_for_catchup('everything');
is($sub->safe_psql('postgres', "SELECT count(*) FROM user_service.batch_items WHERE batch_id = $batch"),
	'20', 'the batch reached the subscriber');
sleep 2;    # the subscriber's workers would have taken items by now
is( $sub->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE status = 'pending'),
		       (SELECT count(*) FROM user_service.users)
		  FROM user_service.batch_items WHERE batch_id = $batch}),
	'20|5', "the subscriber's workers leave the replicated batch alone");
my ($rc, $out, $err) = $sub->psql('postgres', 'SELECT user_service.process_batches()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: the batches of this database are replicated from another server/,
	'process_batches on the subscriber is refused (55000)');

# The publisher processes it: every update of its chunks is published.
is($pub->safe_psql('postgres', 'SELECT user_service.process_batches(100)'), '20',
	'the publisher processes the batch under FOR ALL TABLES');
is($pub->safe_psql('postgres', "SELECT state, succeeded FROM user_service.batch_status($batch)"),
	'done|20', '... to the end');
$pub->safe_psql('postgres', q{
	SELECT user_service.delete_user(2);
	SELECT user_service.update_user(3, name => 'Renamed');
	SELECT user_service.set_password(4, 'a new password');});

# Many deltas, then a fold on the publisher: the subscriber's list_users
# must not fold what it receives.
insert_users_singly($pub, 'postgres', 1001);
$pub->wait_for_catchup('everything');
is($sub->safe_psql('postgres', 'SELECT total FROM user_service.list_users(1, 1)'),
	'1025', 'the subscriber has the exact total (1001 deltas summed)');
# (a fold skips its turn when another session holds the table, e.g. an
# autovacuum analyze after the 1001 inserts: give it a few turns)
for (1 .. 5)
{
	$sub->safe_psql('postgres', 'SELECT total FROM user_service.list_users(1, 1)');
	usleep(200_000);
}
is($sub->safe_psql('postgres', 'SELECT count(*) > 1000 FROM user_service.user_count_deltas'),
	't', '... and did not fold them itself');
$pub->safe_psql('postgres', 'SELECT user_service.process_batches()');
is($pub->safe_psql('postgres', 'SELECT count(*) FROM user_service.user_count_deltas'),
	'1', 'the publisher folded its count');
$pub->wait_for_catchup('everything');

my $users_sql = q{SELECT string_agg(concat_ws(',', id, name, email, password_hash, created_at, updated_at), ';' ORDER BY id)
	FROM user_service.users};
is($sub->safe_psql('postgres', $users_sql), $pub->safe_psql('postgres', $users_sql),
	'the subscriber has exactly the publisher\'s users');
is( $sub->safe_psql('postgres', q{
		SELECT l.total, (SELECT users FROM user_service.stats), (SELECT count(*) FROM user_service.users)
		  FROM user_service.list_users(1, 1) l}),
	'1025|1025|1025', 'the total on the subscriber is exact after the publisher\'s fold');
is($sub->safe_psql('postgres', "SELECT user_service.verify_password('user4\@example.com', 'a new password')"),
	't', 'a password set on the publisher verifies on the subscriber');
($rc, $out, $err) = $sub->psql('postgres', 'SELECT user_service.recount_users()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: the user count of this database is replicated from another server/,
	'recount_users is refused where the count is replicated');
like($sub->safe_psql('postgres', 'SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL'),
	qr/^[1-9]/, 'the subscription is still running (no apply error stopped it)');

# Once the subscription is gone, the batches there are the database's own.
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION everything');
$sub->safe_psql('postgres', 'SELECT user_service.process_batches()');

# A data-only restore with --disable-triggers: the count triggers did not
# run, recount_users repairs the total.
my $dump = $pub->basedir . '/data.dump';
$pub->command_ok([ 'pg_dump', '-d', $pub->connstr('postgres'), '--data-only', '-Fc', '-f', $dump ],
	'pg_dump --data-only');
$pub->safe_psql('postgres', 'CREATE DATABASE restored');
$pub->safe_psql('restored', 'CREATE EXTENSION user_service');
$pub->command_ok(
	[ 'pg_restore', '-d', $pub->connstr('restored'), '--data-only', '--disable-triggers', $dump ],
	'pg_restore --data-only --disable-triggers');
is($pub->safe_psql('restored', 'SELECT count(*), (SELECT total FROM user_service.list_users(1, 1)) FROM user_service.users'),
	'1025|0', 'without the triggers the total is wrong');
is($pub->safe_psql('restored', 'SELECT user_service.recount_users()'), '1025', 'recount_users counts');
is( $pub->safe_psql('restored', q{
		SELECT (SELECT total FROM user_service.list_users(1, 1)), count(*) FROM user_service.user_count_deltas}),
	'1025|1', 'the total is exact again, in one row');
$pub->safe_psql('restored', q{
	SELECT user_service.create_user('After', 'after@example.com', 'after restore');
	SELECT user_service.delete_user(1);});
is($pub->safe_psql('restored', 'SELECT total FROM user_service.list_users(1, 1)'), '1025',
	'and stays exact as users come and go');

($rc, $out, $err) = $pub->psql('restored',
	'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT user_service.recount_users(); COMMIT',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  25000: recount_users must run in a READ COMMITTED transaction/,
	'recount_users refuses REPEATABLE READ');
$pub->safe_psql('restored', q{
	CREATE ROLE app LOGIN;
	GRANT USAGE ON SCHEMA user_service TO app;});
($rc, $out, $err) = $pub->psql('restored', 'SELECT user_service.recount_users()',
	extra_params => [ '-U', 'app', '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  42501: permission denied for function recount_users/,
	'recount_users needs EXECUTE, which PUBLIC does not have');

$sub->stop;
$pub->stop;
done_testing();
