# The README's recipe for giving an application role and a monitoring role
# access ("Giving an application role access"), read from the README and
# run as written: the application role uses the API, batches and the three
# views, and cannot read the tables; the monitoring role reads the views and
# can do nothing else.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $readme = slurp_file("$FindBin::RealBin/../../README.md");
my ($section) = $readme =~ /^### Giving an application role access\n(.*?)^#/ms;
ok(defined $section, 'the README has the recipe');
my @blocks = $section =~ /```sql\n(.*?)```/gs;
is(scalar(@blocks), 2, 'two SQL blocks: the application role, the monitoring role');
like($blocks[0], qr/\bTO app;/, 'the first grants to app');
like($blocks[1], qr/\bTO monitor;/, 'the second grants to monitor');

my $node = preloaded_node('grants');
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE ROLE monitor LOGIN');
$node->safe_psql('postgres', $_) for @blocks;

sub as_role
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-U', $role, '-v', 'VERBOSITY=verbose' ]);
	return $rc == 0 ? "ok:$out" : ($err =~ /ERROR:  (\w+):/)[0];
}

my $id = as_role('app', q{SELECT id FROM user_service.create_user('App', 'app@example.com', 'app password')});
like($id, qr/^ok:\d+$/, 'app: create_user');
$id =~ s/^ok://;
is(as_role('app', "SELECT name FROM user_service.get_user($id)"), 'ok:App', 'app: get_user');
is(as_role('app', 'SELECT total FROM user_service.list_users()'), 'ok:1', 'app: list_users');
is(as_role('app', q{SELECT user_service.verify_password('app@example.com', 'app password')}), 'ok:t', 'app: verify_password');
my $batch = as_role('app', q{SELECT user_service.submit_batch('set_password', '[{"id": 1, "password": "new password"}]')});
like($batch, qr/^ok:\d+$/, 'app: submit_batch');
for my $view ('batches', 'workers', 'stats')
{
	like(as_role('app', "SELECT count(*) FROM user_service.$view"), qr/^ok:\d+$/, "app: the $view view");
	like(as_role('monitor', "SELECT count(*) FROM user_service.$view"), qr/^ok:\d+$/, "monitor: the $view view");
}
is(as_role('app', 'SELECT password_hash FROM user_service.users'), '42501', 'app: no access to the tables');
is(as_role('app', 'SELECT * FROM user_service.batch_items'), '42501', 'app: nor to the job table');
is(as_role('monitor', q{SELECT user_service.create_user('M', 'm@example.com', 'monitor password')}), '42501',
	'monitor: no API');
is(as_role('monitor', 'SELECT count(*) FROM user_service.users'), '42501', 'monitor: no tables');

$node->stop;
done_testing();
