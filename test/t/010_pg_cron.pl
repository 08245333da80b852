# The pg_cron recipe of docs/pg_cron.md, run as written there (the blocks
# marked "<!-- recipe: NAME -->" are read from the page): a pg_cron job
# running as a role of its own turns the waiting rows of a staging table into
# one create_user batch per run, clearing their plaintext passwords in the
# same transaction; the workers create the users; a bad row fails alone with
# its SQLSTATE; the next run queues the rows added since and copies the first
# batch's outcomes back into the staging table; cron.job_run_details records
# the runs; two calls at once never take the same rows, and the second one
# does not wait.  pg_cron 1.4 schedules in whole minutes: the test waits for
# two minute boundaries.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The recipe's blocks, by name.
my $page = File::Spec->catfile(dirname(__FILE__), '..', '..', 'docs', 'pg_cron.md');
my %recipe;
{
	open(my $fh, '<', $page) or die "cannot read $page: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	while ($text =~ /^<!-- recipe: (\S+) -->\n```\w*\n(.*?)^```$/msg)
	{
		$recipe{$1} = $2;
	}
}
for my $name (qw(postgresql.conf roles staging function schedule unschedule))
{
	die "docs/pg_cron.md has no block <!-- recipe: $name -->" unless defined $recipe{$name};
}

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', $recipe{'postgresql.conf'});
$node->append_conf(
	'postgresql.conf', qq{
user_service.argon2_memory_kib = 1024
user_service.argon2_iterations = 1
});
$node->start;

# The application's role exists before the recipe grants it anything.
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
$node->safe_psql('postgres', $recipe{roles});
$node->safe_psql('postgres', $recipe{staging});
$node->safe_psql('postgres', $recipe{function});

# A call with nothing waiting queues nothing.
is( $node->safe_psql('postgres', q{
		SET ROLE signup_queuer;
		SELECT app.queue_signups() IS NULL;
		RESET ROLE;
		SELECT count(*) FROM user_service.batch_jobs}),
	"t\n0", 'a run with no signup waiting submits no batch');

# The application writes signups and cannot read the staged passwords back.
sub signup
{
	my ($name, $email, $password) = @_;
	$node->safe_psql('postgres', qq{
		SET ROLE app;
		INSERT INTO app.signups (name, email, password) VALUES ('$name', '$email', '$password')});
}
signup('Ada', 'ada@example.com', 'analytical engine');
signup('Bad', 'not-an-email', 'some password');
signup('Alan', 'alan@example.com', 'universal machine');
my ($rc, $out, $err) =
  $node->psql('postgres', 'SET ROLE app; SELECT password FROM app.signups');
like($err, qr/permission denied/, 'the application cannot read the staged passwords');

$node->safe_psql('postgres', $recipe{schedule});
is( $node->safe_psql('postgres',
		"SELECT schedule, username, command FROM cron.job WHERE jobname = 'queue-signups'"),
	'* * * * *|signup_queuer|SELECT app.queue_signups()',
	'the job is scheduled to run as signup_queuer');
my $jobid = $node->safe_psql('postgres',
	"SELECT jobid FROM cron.job WHERE jobname = 'queue-signups'");

# 1. The first run (at the next minute boundary) queues the three rows.
ok( $node->poll_query_until('postgres',
		'SELECT count(*) = 3 FROM app.signups WHERE batch_id IS NOT NULL'),
	'the first run queued the waiting signups')
  or die 'pg_cron did not run the job';
my $batch1 = $node->safe_psql('postgres', 'SELECT min(batch_id) FROM app.signups');
is( $node->safe_psql('postgres', q{
		SELECT count(DISTINCT batch_id), string_agg(batch_item::text, ',' ORDER BY id),
		       count(*) FILTER (WHERE password IS NULL), count(*) FILTER (WHERE queued_at IS NULL)
		  FROM app.signups}),
	'1|1,2,3|3|0',
	'one batch, items in row order, every staged password cleared');
is( $node->safe_psql('postgres',
		"SELECT kind, total, submitted_by::regrole FROM user_service.batch_jobs WHERE id = $batch1"),
	'create_user|3|signup_queuer',
	'a create_user batch of three items, submitted by the job\'s role');

# The workers process it: two users, one failed item.
ok( $node->poll_query_until('postgres',
		"SELECT state = 'done' FROM user_service.batch_status($batch1)"),
	'the workers processed the batch');
is( $node->safe_psql('postgres', qq{
		SET ROLE signup_queuer;
		SELECT string_agg(concat_ws(':', item, status, sqlstate), ',' ORDER BY item)
		  FROM user_service.batch_results($batch1)}),
	'1:succeeded,2:failed:22023,3:succeeded',
	'the invalid email failed with 22023, the others succeeded (read as the submitting role)');
like( $node->safe_psql('postgres',
		"SELECT error FROM user_service.batch_results($batch1) WHERE item = 2"),
	qr/invalid email address/,
	'the failed item carries its error');
is( $node->safe_psql('postgres', q{
		SELECT user_service.verify_password('ada@example.com', 'analytical engine'),
		       user_service.verify_password('ALAN@example.com', 'universal machine'),
		       user_service.verify_password('ada@example.com', 'wrong password'),
		       (SELECT count(*) FROM user_service.users)}),
	't|t|f|2',
	'the users exist and their passwords verify');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM user_service.batch_items WHERE payload ? 'password'"),
	'0', 'no plaintext password is left in the batch either');
is( $node->safe_psql('postgres',
		'SELECT count(*) FROM app.signups WHERE outcome IS NOT NULL'),
	'0', 'outcomes are not known before the next run');

# 2. Rows added later go into the next run's batch, which also settles the
# first batch's outcomes.
signup('Grace', 'grace@example.com', 'first compiler');
signup('Ada again', 'ADA@example.com', 'another password');
ok( $node->poll_query_until('postgres',
		'SELECT count(*) = 5 FROM app.signups WHERE batch_id IS NOT NULL'),
	'a later run queued the new signups');
my $batch2 = $node->safe_psql('postgres', 'SELECT max(batch_id) FROM app.signups');
isnt($batch2, $batch1, 'into a second batch');
is( $node->safe_psql('postgres', qq{
		SELECT string_agg(email || '=' || batch_item, ',' ORDER BY id), count(*) FILTER (WHERE password IS NULL)
		  FROM app.signups WHERE batch_id = $batch2}),
	'grace@example.com=1,ADA@example.com=2|2',
	'the second batch holds only the new rows, their passwords cleared');
ok( $node->poll_query_until('postgres',
		"SELECT state = 'done' FROM user_service.batch_status($batch2)"),
	'the workers processed the second batch');
is( $node->safe_psql('postgres', qq{
		SELECT string_agg(concat_ws(':', item, status, sqlstate), ',' ORDER BY item)
		  FROM user_service.batch_results($batch2)}),
	'1:succeeded,2:failed:23505',
	'the email taken in another case failed with 23505');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM app.signups WHERE batch_id = $batch1 AND outcome IS NOT NULL"),
	'a later run settled the first batch');
is( $node->safe_psql('postgres', qq{
		SELECT string_agg(concat_ws(':', s.email, s.outcome, s.sqlstate,
		                            (s.user_id IS NOT DISTINCT FROM u.id)::text), ',' ORDER BY s.id)
		  FROM app.signups s
		  LEFT JOIN user_service.users u ON lower(u.email) = lower(s.email)
		 WHERE s.batch_id = $batch1}),
	'ada@example.com:succeeded:true,not-an-email:failed:22023:true,alan@example.com:succeeded:true',
	'the job copied the first batch\'s outcomes and user ids into the staging table');
is( $node->safe_psql('postgres', qq{
		SET ROLE app;
		SELECT error FROM app.signups WHERE batch_id = $batch1 AND outcome = 'failed'}),
	'invalid email address',
	'the application reads the error of its failed signup');

# pg_cron's history: every run succeeded, at least two of them.
is( $node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE status = 'succeeded') >= 2, count(*) FILTER (WHERE status = 'failed')
		  FROM cron.job_run_details WHERE jobid = $jobid}),
	't|0',
	'cron.job_run_details shows the runs, all succeeded');

$node->safe_psql('postgres', $recipe{unschedule});
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '0', 'the job is unscheduled');

# 3. Two calls at once take different rows, and the second does not wait:
# the first holds its rows (uncommitted), the second finds nothing else.
signup('Edsger', 'edsger@example.com', 'shortest path');
my $first = $node->background_psql('postgres');
$first->query_safe('BEGIN; SET ROLE signup_queuer;');
my $held = $first->query_safe('SELECT app.queue_signups()');
like($held, qr/^\d+$/, 'a call by hand queued the new row (not committed yet)');
is( $node->safe_psql('postgres', q{
		SET statement_timeout = '10s';
		SET ROLE signup_queuer;
		SELECT coalesce(app.queue_signups()::text, 'none')}),
	'none', 'a concurrent call skips the locked row instead of waiting for it');
$first->query_safe('COMMIT');
$first->quit;
is( $node->safe_psql('postgres',
		"SELECT batch_id FROM app.signups WHERE email = 'edsger\@example.com'"),
	$held, 'the row belongs to the first call\'s batch');

$node->stop;
done_testing();
