# Plaintext passwords do not stay in process memory after use.  A batch
# worker zeroes the rows it claimed, the payloads it took out of them and
# the passwords it took out of those, on success and on failure, and
# records a finished item's payload without ever reading the old one again:
# after a batch, nothing of its passwords is left in the workers' private
# memory.  pg_stat_activity's shared buffer is zeroed before it gets the
# redacted text, so the unredacted statement's tail (a password near its
# end) is not left behind it.  Memory is read through /proc/PID/mem, as
# the server's own user.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

# count_in_memory(PID, SHARED, NEEDLES...): how many times the needles occur
# in the process's readable private (SHARED false) or shared (true) mappings.
sub count_in_memory
{
	my ($pid, $shared, @needles) = @_;
	my $count = 0;
	open(my $maps, '<', "/proc/$pid/maps") or die "maps of $pid: $!";
	open(my $mem, '<:raw', "/proc/$pid/mem") or die "mem of $pid: $!";
	while (my $line = <$maps>)
	{
		my ($range, $perms) = split ' ', $line;
		next unless substr($perms, 0, 1) eq 'r';
		next if (substr($perms, 3, 1) eq 's') != $shared;
		my ($from, $to) = map { hex } split /-/, $range;
		next unless sysseek($mem, $from, 0);
		my $data = '';
		next unless defined sysread($mem, $data, $to - $from);
		for my $n (@needles)
		{
			my $at = 0;
			while (($at = index($data, $n, $at)) >= 0) { $count++; $at++; }
		}
	}
	close $mem;
	close $maps;
	return $count;
}

my $node = preloaded_node('wipe');

my @passwords = map { sprintf('WipeTest-%02d-%s', $_, 'x' x 12) } 1 .. 6;
my $items = join(', ',
	(map { qq{{"name": "User $_", "email": "user$_\@example.com", "password": "$passwords[$_ - 1]"}} } 1 .. 4),
	# fails (a bad email): its password must go too
	qq{{"name": "Bad", "email": "not an email", "password": "$passwords[4]"}});
my $batch = $node->safe_psql('postgres', "SELECT user_service.submit_batch('create_user', '[$items]')");
is( $node->safe_psql('postgres', qq{
		SELECT user_service.wait_batch($batch);
		SELECT string_agg(status, ',' ORDER BY item) FROM user_service.batch_results($batch)}),
	"t\nsucceeded,succeeded,succeeded,succeeded,failed", 'the batch ran (one item failed)');
my $set = $node->safe_psql('postgres',
	qq{SELECT user_service.submit_batch('set_password', jsonb_build_array(jsonb_build_object(
		'id', (SELECT id FROM user_service.users WHERE email = 'user1\@example.com'),
		'password', '$passwords[5]')))});
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($set)"), 't', 'a set_password batch ran');
is($node->safe_psql('postgres', "SELECT user_service.verify_password('user1\@example.com', '$passwords[5]')"),
	't', 'with their effect');

my @workers = split /\n/, $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'user_service worker'");
is(scalar(@workers), 2, 'two workers to look into');
my $worker_hits = 0;
$worker_hits += count_in_memory($_, 0, @passwords) for @workers;
is($worker_hits, 0, "no password of the batches is left in the workers' memory");

# The scan finds what is there: the table's pages in shared memory still
# hold the pending rows' versions (the dead ones, until vacuum).
cmp_ok(count_in_memory($workers[0], 1, @passwords), '>', 0,
	'(the scan sees the old row versions in shared buffers)');

# pg_stat_activity: a statement with its password at the end, then a
# shorter one; the shared buffer must not keep the first one's tail.
my $tail = 'TailSecret-' . ('y' x 24);
my $session = $node->background_psql('postgres');
$session->query_safe(
	"SELECT user_service.verify_password('someone.with.a.long.address\@example.com', '$tail')");
$session->query_safe('SELECT 1');
my $postmaster = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
is(count_in_memory($postmaster, 1, $tail), 0,
	'the activity buffer keeps no tail of a redacted statement');
$session->quit;

$node->stop;
done_testing();
