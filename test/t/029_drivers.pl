# Real drivers against the API: node-postgres, psycopg 3, pgjdbc and PHP's
# pgsql each run the same scenario (test/drivers/*/, one script each, a TAP
# script of its own) over TCP as an application role that has exactly the
# README's grants; each line of a script's output is an assertion here, and
# the script must exit 0 with a plan matching its lines and make at least
# 25 assertions.  A missing script (or node_modules, which `npm ci` in
# test/drivers/node installs) fails that driver.  Then: the README holds
# each script's README region verbatim, and no advisory lock (a batch's
# concurrency slot) is left held.
use strict;
use warnings;
use Cwd qw(abs_path);
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

# The tree's top: the driver scripts run from there.
my $top = abs_path("$FindBin::RealBin/../..");

# name, script (from the top), the command before the script.
my @drivers = (
	[ node => 'test/drivers/node/scenario.js', 'node' ],
	[ python => 'test/drivers/python/scenario.py', '/usr/bin/python3' ],
	[ java => 'test/drivers/java/Scenario.java', 'java', '-cp', '/usr/share/java/postgresql.jar' ],
	[ php => 'test/drivers/php/scenario.php', 'php' ]);

# TCP on 127.0.0.1 for the drivers (initdb -A trust, as
# PostgreSQL::Test::Cluster runs it, trusts host connections from there).
my $node = preloaded_node('drivers', qq{
listen_addresses = '127.0.0.1'
});

# The application role, with exactly the README's grants.
app_role($node, 'us_app');

# The drivers' environment: libpq's variables, a tag for their emails.
my %driver_env = (
	PGHOST => '127.0.0.1',
	PGPORT => $node->port,
	PGDATABASE => 'postgres',
	PGUSER => 'us_app');

# in_top(COMMAND, TAG): run COMMAND from the tree's top with the drivers'
# environment and US_TAG = TAG; (exit code, or "signal N", or undef when it
# could not run or timed out; stdout; stderr; that error).
sub in_top
{
	my ($cmd, $tag) = @_;
	my ($out, $err) = ('', '');
	local %ENV = (%ENV, %driver_env, US_TAG => $tag);
	delete $ENV{US_POOLED};
	my $h;
	my $ok = eval {
		$h = IPC::Run::start($cmd, '<', \undef, '>', \$out, '2>', \$err,
			init => sub { chdir $top or die "chdir $top: $!" },
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		$h->finish;
		1;
	};
	my $error = $@;
	if (!$ok)
	{
		eval { $h->kill_kill } if $h;
		return (undef, $out, $err, $error);
	}
	my $status = $h->full_result(0);
	return (($status & 127) ? 'signal ' . ($status & 127) : $status >> 8, $out, $err, undef);
}

# us_app reaches the node the way the drivers do.
my ($rc, $out, $err) = in_top([ 'psql', '-X', '-w', '-At', '-c', 'SELECT current_user' ], 'psql');
ok(defined $rc && $rc eq '0' && $out eq "us_app\n", 'us_app connects over TCP to 127.0.0.1 without a password')
  or diag("psql: " . ($rc // 'did not run') . "\n$out$err");

# run_driver(NAME, SCRIPT, COMMAND...): the script's TAP lines as
# assertions, then its exit code, plan and number of assertions.
sub run_driver
{
	my ($name, $script, @cmd) = @_;

	if (!-f "$top/$script")
	{
		ok(0, "$name: $script exists");
		return;
	}
	if ($name eq 'node' && !-d "$top/test/drivers/node/node_modules/pg")
	{
		ok(0, "$name: test/drivers/node/node_modules/pg is installed (run `npm ci` in test/drivers/node)");
		return;
	}

	my ($rc, $out, $err, $error) = in_top([ @cmd, $script ], "$name$$");
	if (!defined $rc)
	{
		ok(0, "$name: $script ran to its end") or diag("$error\nstdout:\n$out\nstderr:\n$err");
		return;
	}

	my ($count, $plan, $failed, $in_order) = (0, undef, 0, 1);
	my @stray;
	for my $line (split /\n/, $out)
	{
		if ($line =~ /^(not )?ok (\d+)(?: - (.*))?$/)
		{
			$count++;
			$in_order = 0 if $2 != $count;
			$failed++ if $1;
			ok(!$1, "$name: " . ($3 // '(no description)'));
		}
		elsif ($line =~ /^1\.\.(\d+)$/)
		{
			push @stray, $line if defined $plan;
			$plan = $1;
		}
		elsif ($line =~ /^#/)
		{
			diag("$name $line");
		}
		else
		{
			push @stray, $line;
		}
	}
	is($rc, 0, "$name: exits 0");
	is($plan, $count, "$name: its plan 1..N counts its $count test lines");
	ok($in_order, "$name: tests numbered 1, 2, 3 ...");
	ok(!@stray, "$name: nothing but TAP on stdout") or diag(join("\n", "$name stray lines:", @stray));
	cmp_ok($count, '>=', 25, "$name: at least 25 assertions");
	if ($rc ne '0' || $failed || !defined $plan)
	{
		diag("$name stderr:\n$err");
	}
	elsif ($err ne '')
	{
		note("$name stderr:\n$err");
	}
	return;
}

run_driver(@$_) for @drivers;

# Every script cleaned up after itself, and no session holds an advisory
# lock: the scripts are gone, and the workers let go of a batch's slots
# when its items are done.
is($node->safe_psql('postgres', 'SELECT count(*) FROM user_service.users'), '0',
	'the scripts left no user behind');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_locks WHERE locktype = 'advisory'}),
	'no advisory lock is held')
  or diag($node->safe_psql('postgres', q{
		SELECT string_agg(format('pid %s (%s) %s', l.pid, a.state, l.mode), E'\n')
		  FROM pg_locks l LEFT JOIN pg_stat_activity a USING (pid)
		 WHERE l.locktype = 'advisory'}));

# The README shows each script's README region (the lines strictly between
# the comment lines holding README-BEGIN and README-END), verbatim.
my $readme = "\n" . slurp_file("$top/README.md");
for my $d (@drivers)
{
	my ($name, $script) = @$d;
	if (!-f "$top/$script")
	{
		ok(0, "$name: the README shows the README region of $script (no such file)");
		next;
	}
	my ($region) = slurp_file("$top/$script") =~ /^[^\n]*README-BEGIN[^\n]*\n(.*?)^[^\n]*README-END/ms;
	if (!defined $region)
	{
		ok(0, "$name: $script marks a README region");
		next;
	}
	$region =~ s/\A(?:[ \t]*\n)+//;
	$region =~ s/(?:\n[ \t]*)+\z//;
	$region =~ s/\n?\z/\n/;
	ok(index($readme, "\n$region") >= 0, "$name: the README shows the README region of $script")
	  or diag("$name: README.md lacks these lines:\n$region");
}

$node->stop;

# The README's first two SQL examples (Using it, Batches) as written, in
# psql, on a fresh preloaded server where the extension is not created yet:
# every statement runs, the login answers true, the batch of two finishes,
# and the deleted user comes back from delete_user.
my @examples = $readme =~ /\n## (?:Using it|Batches)\n.*?```sql\n(.*?)```/gs;
is(scalar @examples, 2, 'the README has the SQL examples of Using it and Batches');
my $fresh = PostgreSQL::Test::Cluster->new('readme');
$fresh->init;
$fresh->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.workers = 2
user_service.argon2_memory_kib = 8192
user_service.argon2_iterations = 1
});
$fresh->start;
my ($rc, $out, $err) = $fresh->psql('postgres', join('', @examples),
	extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is($rc, 0, 'they run in psql without an error') or diag($err);
my @lines = split /\n/, $out;
ok((grep { $_ eq 't' } @lines) >= 2, 'verify_password answers true and wait_batch sees the batch done')
  or diag($out);
like($out, qr/^1\|Ada Lovelace\|ada\@example\.com\|/m, 'delete_user returns the renamed user');
is($fresh->safe_psql('postgres', 'SELECT state, succeeded FROM user_service.batch_status(1)'),
	'done|2', 'the example batch created its two users');
$fresh->stop;

done_testing();
