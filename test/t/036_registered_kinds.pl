# A registered batch kind is applied exactly once across crashes: its
# handler inserts a row per item into a table of the submitter's, and a
# 100,000-item batch is interrupted by kill -9 of a worker (a crash-restart
# of the server) and by kill -9 of the postmaster.  Afterwards the table holds
# exactly one row per item and every item has its result.  The kinds survive
# pg_dump and restore, and a batch of one runs on the restored server.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use UserServiceNode;

my $items = $ENV{US_KIND_ITEMS} // 100_000;

my $node = preloaded_node('kinds', "restart_after_crash = on\n");
$node->safe_psql(
	'postgres', q{
	CREATE ROLE app LOGIN;
	GRANT USAGE ON SCHEMA user_service TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service TO app;
	CREATE SCHEMA app AUTHORIZATION app;});
$node->safe_psql(
	'postgres', q{
	SET ROLE app;
	CREATE TABLE app.applied (item int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION app.apply(item jsonb) RETURNS jsonb
	LANGUAGE sql AS $$
		INSERT INTO app.applied (item) VALUES ((item->>'n')::int)
		RETURNING jsonb_build_object('n', applied.item, 'by', current_user);
	$$;
	SELECT user_service.register_batch_kind('apply_once', 'app.apply(jsonb)');});

my $batch = $node->safe_psql(
	'postgres', qq{
	SET ROLE app;
	SELECT user_service.submit_batch('apply_once',
		(SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, $items) i), 1)});

sub wait_progress
{
	my ($at_least) = @_;
	$node->poll_query_until('postgres',
		"SELECT succeeded >= $at_least FROM user_service.batch_status($batch)")
	  or die "batch $batch made no progress";
}

# (concurrency 1, one group in flight at a time: the batch lasts some
# seconds, long enough for both kills to come in the middle of it)
# 1. kill -9 of a busy worker
wait_progress($items / 20);
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'user_service worker' ORDER BY query LIKE 'batch %' DESC, pid LIMIT 1"
);
ok(kill('KILL', $pid), "kill -9 worker $pid in the middle of the batch");

# 2. kill -9 of the postmaster, later in the batch; the workers die with it
$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
my $before = $node->safe_psql('postgres', "SELECT succeeded FROM user_service.batch_status($batch)");
wait_progress($before + $items / 50);
my $state = $node->safe_psql('postgres', "SELECT state FROM user_service.batch_status($batch)");
my ($postmaster) = split /\n/, slurp_file($node->data_dir . '/postmaster.pid');
$node->kill9;
is($state, 'running', 'the postmaster was killed in the middle of the batch');
# (the new postmaster refuses to start while the old one's pid is alive)
for (my $i = 0; $i < 100 && kill(0, $postmaster); $i++)
{
	usleep(100_000);
}
ok($node->start(fail_ok => 1), 'the server starts again after kill -9 of the postmaster');

$node->poll_query_until('postgres',
	"SELECT state = 'done' FROM user_service.batch_status($batch)", 't')
  or die "batch $batch did not finish";
my $done = $node->safe_psql('postgres', "SELECT succeeded, failed FROM user_service.batch_status($batch)");
is($done, "$items|0", 'every item succeeded');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), count(DISTINCT item), min(item), max(item) FROM app.applied"),
	"$items|$items|1|$items",
	'exactly one row per item in the submitter\'s table');
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*), count(*) FILTER (WHERE r.result->>'by' = 'app'
		                                    AND (r.result->>'n')::int = r.item)
		  FROM user_service.batch_results($batch) r}),
	"$items|$items",
	'every item has its result, made by the submitter');
is( $node->safe_psql(
		'postgres',
		"SELECT max(attempts) <= 3 AND min(attempts) >= 1 FROM user_service.batch_items WHERE batch_id = $batch"),
	't', 'attempts are recorded');
ok($node->log_contains(qr/background worker "user_service worker" \(PID $pid\) was terminated by signal 9/),
	'the worker was killed mid-run');

# What an update of the extension leaves alone: the kinds' table is the
# extension's configuration (its rows are the administrator's), and the
# kinds' functions are not members of the extension.
is( $node->safe_psql(
		'postgres', q{
		SELECT (SELECT 'user_service.registered_kinds'::regclass = ANY (extconfig)
		          FROM pg_extension WHERE extname = 'user_service'),
		       (SELECT count(*) FROM pg_depend
		         WHERE classid = 'pg_proc'::regclass AND deptype = 'e'
		           AND objid = 'user_service_kinds.apply_once(jsonb)'::regprocedure)}),
	't|0', 'registered kinds are configuration, not members of the extension');

# pg_dump and restore: the kind comes back with its handler, and runs
my $dump = $node->basedir . '/kinds.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is( $node->safe_psql(
		'restored',
		"SELECT kind, builtin, handler, owner, grouped FROM user_service.batch_kinds WHERE NOT builtin"),
	'apply_once|f|app.apply(jsonb)|app|f',
	'the registered kind survives dump and restore, with its handler');
isnt($node->psql('restored', 'DROP FUNCTION app.apply(jsonb)'),
	0, 'and its handler still cannot be dropped');
is( $node->safe_psql(
		'restored', q{
		SET ROLE app;
		SELECT user_service.submit_batch('apply_once', '[{"n": -1}]') AS b \gset
		SELECT user_service.process_batches();
		SELECT status, result->>'by' FROM user_service.batch_results(:b);}),
	"1\nsucceeded|app",
	'a batch of it runs on the restored database');

# The README's example of a registered kind, as written, in a fresh database
# that has users and app.logins: the batch (number 1 there) gives each user
# its summary row and its result.
my $top = "$FindBin::RealBin/../..";
my ($example) = ("\n" . slurp_file("$top/README.md")) =~
  /\n### Any SQL function as a batch kind\n.*?```sql\n(.*?)```/s;
ok(defined $example, 'the README has the example of a registered kind');
$node->safe_psql('postgres', 'CREATE DATABASE readme');
$node->safe_psql(
	'readme', q{
	CREATE EXTENSION user_service;
	INSERT INTO user_service.users (name, email, password_hash)
	SELECT 'U' || i, 'u' || i || '@example.com', 'not a hash' FROM generate_series(1, 3) i;
	CREATE SCHEMA app;
	CREATE TABLE app.logins (user_id bigint, at timestamptz);
	INSERT INTO app.logins SELECT u.id, now() FROM user_service.users u, generate_series(1, u.id::int)});
my ($rc, $out, $err) = $node->psql('readme', $example . "\nSELECT user_service.process_batches();\n",
	extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is($rc, 0, 'it runs in psql without an error') or diag($err);
is( $node->safe_psql(
		'readme', q{
		SELECT string_agg(r.status || ' ' || r.result::text, ', ' ORDER BY r.item)
		  FROM user_service.batch_results(1) r}),
	'succeeded {"logins": 1}, succeeded {"logins": 2}, succeeded {"logins": 3}',
	'its batch rebuilt each user\'s summary');
is($node->safe_psql('readme', 'SELECT count(*), sum(logins) FROM app.login_summary'),
	'3|6', 'one summary row per user');

$node->stop;
done_testing();
