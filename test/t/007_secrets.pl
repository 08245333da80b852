# Plaintext passwords never reach the server log or pg_stat_activity.
#
# The server logs everything it can (every statement, every duration, bound
# parameters in full, the statement of every error); the password functions
# are called with literals, with bound parameters (pgbench, extended and
# prepared protocol), through PREPARE/EXECUTE, and in calls that fail.  No
# password may appear in the log, while the log still shows the calls (with
# '***' in place of literals) and the extension's own error messages whole.
# With user_service.redact_log off the same check finds the password, which
# shows the check can fail.  While a call hashes, a pg_read_all_stats role
# sees the statement in pg_stat_activity with its literals redacted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('secrets');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.workers = 1
user_service.argon2_memory_kib = 256
user_service.argon2_iterations = 1
log_statement = 'all'
log_min_duration_statement = 0
log_parameter_max_length = -1
log_parameter_max_length_on_error = -1
log_min_error_statement = error
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION user_service');

# Every password used below contains "SeCrEt" and a label, so a leak says
# where it came from.
my @secrets;
sub secret
{
	my $s = 'SeCrEt-' . shift;
	push @secrets, $s;
	return $s;
}

my $log_start = -s $node->logfile;

# Literals, calls that succeed.
my ($p1, $p2, $p3, $p4) = map { secret($_) } qw(create-literal set-literal verify-literal batch-literal);
$node->safe_psql('postgres', qq{
	SELECT user_service.create_user('Ada', 'ada\@example.com', '$p1');
	SELECT user_service.set_password(1, '$p2');
	SELECT user_service.verify_password('ada\@example.com', '$p2'), user_service.verify_password('ada\@example.com', '$p3');
	SELECT user_service.submit_batch('create_user',
		'[{"name": "Grace", "email": "grace\@example.com", "password": "$p4"}]');
	SELECT user_service.create_user(E'Esc\\'aped', \$q\$esc\@example.com\$q\$, \$pw\$$p1-dollar\$pw\$);
});

# Literals, calls that fail: the extension's errors, PostgreSQL's input
# errors that quote the input, a syntax error next to the password.
my @failing = (
	[ qq{SELECT user_service.create_user('Ada 2', 'ADA\@example.com', '} . secret('dup-literal') . q{')},
		qr/a user with email "ADA\@example.com" already exists/ ],
	[ q{SELECT user_service.create_user('Short', 'short@example.com', '} . secret('') . q{')},
		qr/password must be between 8 and 1024 bytes long/ ],
	[ q{SELECT user_service.create_user(NULL, 'null@example.com', '} . secret('null-name') . q{')},
		qr/name must not be null/ ],
	[ q~SELECT user_service.submit_batch('create_user', '[{"password": "~ . secret('bad-json') . q~" x}]')~,
		qr/invalid input syntax for type json/ ],
	[ q~SELECT user_service.submit_batch('create_user', '[{"name": "A", "email": "a@example.com", "password": "~ . secret('unicode') . q~\u0000"}]')~,
		qr/unsupported Unicode escape sequence/ ],
	[ q{SELECT user_service.set_password(999, '} . secret('missing-user') . q{')},
		qr/user 999 not found/ ],
	[ q{SELECT user_service.verify_password('ada@example.com', '} . secret('syntax') . q{' '')},
		qr/syntax error/ ],
	[ q{SELECT user_service.verify_password('ada@example.com', '} . secret('cast') . q{'::int)},
		qr/invalid input syntax for type integer/ ],
);
foreach my $case (@failing)
{
	my ($sql, $expect) = @$case;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	like($err, $expect, "the client still gets its error: $expect");
}

# PREPARE / EXECUTE: the EXECUTE line names no function, its detail does.
my $p5 = secret('prepared');
$node->safe_psql('postgres', qq{
	PREPARE signup(text, text, text) AS SELECT user_service.create_user(\$1, \$2, \$3);
	EXECUTE signup('Alan', 'alan\@example.com', '$p5');
});

# Bound parameters: pgbench sends -D variables as parameters.
my $script = $node->basedir . '/bound.sql';
open(my $fh, '>', $script) or die;
print $fh q{SELECT user_service.create_user(:name, :email, :pw);
SELECT user_service.verify_password(:email, :pw);
SELECT user_service.set_password((SELECT id FROM user_service.users WHERE email = :email), :pw2);
SELECT user_service.submit_batch('create_user', :items);
};
close $fh;
foreach my $mode (qw(extended prepared))
{
	my ($pw, $pw2, $pw3) = map { secret("bound-$mode-$_") } 1 .. 3;
	$node->command_ok(
		[ 'pgbench', '-n', '-t', '1', '-M', $mode, '-f', $script,
		  '-D', "name=Bound $mode", '-D', "email=$mode\@example.com",
		  '-D', "pw=$pw", '-D', "pw2=$pw2",
		  '-D', qq{items=[{"name": "B", "email": "b-$mode\@example.com", "password": "$pw3"}]},
		  $node->connstr('postgres') ],
		"pgbench -M $mode with bound passwords");
	# a failing call with bound parameters: the error's context lists them
	my $dup = secret("bound-$mode-dup");
	my ($stdout, $stderr);
	IPC::Run::run(
		[ 'pgbench', '-n', '-t', '1', '-M', $mode, '-f', $script,
		  '-D', "name=Dup", '-D', "email=$mode\@example.com",
		  '-D', "pw=$dup", '-D', "pw2=$dup", '-D', 'items=[]',
		  $node->connstr('postgres') ],
		'>', \$stdout, '2>', \$stderr);
	like($stderr, qr/already exists/, "pgbench -M $mode: a failing call with bound passwords");
}

# Values that span lines: a literal or a bound parameter with a newline
# starts on one line of an error's context and ends on another.
my $one = $node->basedir . '/one.sql';
open($fh, '>', $one) or die;
print $fh "SELECT user_service.create_user(:name, :email, :pw);\n";
close $fh;
my $items = $node->basedir . '/items.sql';
open($fh, '>', $items) or die;
print $fh "SELECT user_service.submit_batch('create_user', :items);\n";
close $fh;
my $sco = $node->basedir . '/sco.sql';
open($fh, '>', $sco) or die;
print $fh "SET standard_conforming_strings = off;\nSELECT user_service.create_user(:name, :email, :pw);\n";
close $fh;
sub pgbench_fails
{
	my ($file, @defs) = @_;
	my ($stdout, $stderr);
	IPC::Run::run(
		[ 'pgbench', '-n', '-t', '1', '-M', 'extended', '-f', $file,
		  (map { ('-D', $_) } @defs), $node->connstr('postgres') ],
		'>', \$stdout, '2>', \$stderr);
	return $stderr;
}
like(pgbench_fails($one, "name=Line1\nLine2", 'email=ada@example.com', 'pw=' . secret('multiline-bound')),
	qr/already exists/, 'a failing call with a bound value that spans lines');
like(pgbench_fails($items, "items=[\n {\"name\": \"A\", \"email\": \"ml\@example.com\", \"password\": \""
			. secret('multiline-items') . "\"},\n {\"name\": 5}\n]"),
	qr/item 2/, 'a failing batch of pretty-printed items');
like(pgbench_fails($items, "items=[\n {\"name\": \"A\", \"email\": \"ml\@example.com\", \"password\": \""
			. secret('multiline-json') . "\"},\n {\"name\" x}\n]"),
	qr/invalid input syntax for type json/, 'pretty-printed malformed items');
like(pgbench_fails($sco, 'name=Back\\', 'email=ada@example.com', 'pw=' . secret('backslash')),
	qr/already exists/, 'a bound value ending in a backslash, standard_conforming_strings off');
# (a wrapper's name carries "password", as the README advises, so that its
# statement line is redacted too)
$node->safe_psql('postgres', q{
	CREATE FUNCTION signup_with_password(n text, e text, p text) RETURNS void LANGUAGE plpgsql AS $f$
	BEGIN
		EXECUTE format('SELECT user_service.create_user(%L, %L, %L)', n, e, p);
	END $f$;});
my ($src, $sout, $serr) = $node->psql('postgres',
	qq{SELECT signup_with_password(E'Line1\\nLine2', 'ada\@example.com', '} . secret('dynamic-sql') . q{')});
like($serr, qr/already exists/, 'a failing call through dynamic SQL with a literal that spans lines');

# While a call hashes, pg_stat_activity shows no password to a monitoring role.
# (Looked at a second after the statement started: until the function is
# called, the text is as sent, a window the README describes; a loaded
# machine showed it.)
$node->safe_psql('postgres', 'CREATE ROLE monitor LOGIN IN ROLE pg_read_all_stats');
my $slow = secret('activity');
my ($in, $out, $err) = ('', '', '');
my $h = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
	  qq{SET user_service.argon2_memory_kib = 131072; SET user_service.argon2_iterations = 30;
	     SELECT user_service.create_user('Slow', 'slow\@example.com', '$slow')} ],
	'<', \$in, '>', \$out, '2>', \$err);
my $seen = '';
foreach my $try (1 .. 600)
{
	$seen = $node->safe_psql('postgres', q{
		SELECT query FROM pg_stat_activity
		WHERE query LIKE '%create_user%' AND state = 'active' AND pid <> pg_backend_pid()
		  AND query_start < now() - interval '1 second'},
		extra_params => [ '-U', 'monitor' ]);
	last if $seen ne '';
	select(undef, undef, undef, 0.05);
}
$h->finish;
isnt($seen, '', 'the hashing call was seen in pg_stat_activity');
unlike($seen, qr/SeCrEt/, 'pg_stat_activity shows no password while hashing');
like($seen, qr/create_user\('\*\*\*', '\*\*\*', '\*\*\*'\)/, 'pg_stat_activity shows the call with redacted literals');
is($node->safe_psql('postgres', q{SELECT count(*) FROM user_service.users WHERE email = 'slow@example.com'}),
	'1', 'the slow call completed');

# Every batch item was processed, so the workers' log is in too.
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM user_service.batches WHERE state NOT IN ('done', 'cancelled')})
  or die 'batches did not finish';

my $log = slurp_file($node->logfile, $log_start);
my @leaks = grep { index($log, $_) >= 0 } @secrets;
is_deeply(\@leaks, [], 'no password in the server log');
like($log, qr/statement:\s*SELECT user_service\.create_user\('\*\*\*', '\*\*\*', '\*\*\*'\)/,
	'the statement is logged with its literals redacted');
like($log, qr/parameters: \$1 = '\*\*\*', \$2 = '\*\*\*', \$3 = '\*\*\*'/, 'bound parameters are logged redacted');
like($log, qr/ERROR:  a user with email "ADA\@example.com" already exists/,
	'the extension\'s own error message is logged whole');
like($log, qr/ERROR:  invalid input syntax for type json/, 'PostgreSQL\'s error is logged');
unlike($log, qr/STATEMENT:.*create_user/, 'no STATEMENT line of a call that carries a password');

# Redaction covers what it must, and no more.  Without the extension in the
# database, errors are untouched (from the session's first analysed
# statement on: before that it cannot know); with it, a statement that only
# says "password" keeps its error message (its details and log lines are
# still redacted); one that names a password function has its message
# redacted too, since PostgreSQL's messages may quote the input.
$node->safe_psql('postgres', 'CREATE DATABASE plain');
my ($qrc, $qout, $qerr) = $node->psql('plain', "SELECT 1;\nSELECT * FROM password_resets");
like($qerr, qr/ERROR:  relation "password_resets" does not exist/,
	'in a database without the extension, an error about "password_resets" is untouched');
($qrc, $qout, $qerr) = $node->psql('postgres', "SELECT 1;\nSELECT * FROM password_resets");
like($qerr, qr/ERROR:  relation "password_resets" does not exist/,
	'with the extension, a statement that only says "password" keeps its message');
($qrc, $qout, $qerr) = $node->psql('postgres',
	"SELECT 1;\nSELECT user_service.verify_password(email, 'x') FROM password_resets");
like($qerr, qr/ERROR:  relation "\*\*\*" does not exist/,
	'a statement that calls a password function has PostgreSQL\'s message redacted');
($qrc, $qout, $qerr) = $node->psql('postgres',
	qq~SELECT 1;\nSELECT '[{"password": "~ . secret('word-only-json') . q~" x}]'::jsonb~);
# (psql echoes its own statement after LINE 1: that is the client's copy)
like($qerr, qr/ERROR:  invalid input syntax for type json\n.*DETAIL:  Token "\*\*\*" is invalid\./s,
	'a statement with the word password: message kept, detail (which quotes the input) redacted');

# The control: with redaction off, the same check finds the password.
$log_start = -s $node->logfile;
my $control = 'SeCrEt-control';
$node->safe_psql('postgres', qq{
	SET user_service.redact_log = off;
	SELECT user_service.verify_password('ada\@example.com', '$control')});
$log = slurp_file($node->logfile, $log_start);
ok(index($log, $control) >= 0, 'with redact_log off the password is in the log (the check can fail)');

# redact_log is superuser-only.
my ($rc, $o, $e) = $node->psql('postgres', 'SET user_service.redact_log = off', extra_params => [ '-U', 'monitor' ]);
like($e, qr/permission denied to set parameter "user_service.redact_log"/, 'redact_log is superuser-only');

# A stored hash that is not a PHC string: the caller gets what a wrong
# password gets (an error would tell that the email has an account), the
# server log names the user.
my $corrupt_id = $node->safe_psql('postgres', q{
	INSERT INTO user_service.users (name, email, password_hash)
	VALUES ('Corrupt', 'corrupt@example.com', 'not a phc string') RETURNING id});
my $log_at = -s $node->logfile;
my ($crc, $cout, $cerr) = $node->psql('postgres',
	q{SELECT user_service.verify_password('corrupt@example.com', 'any password')});
is($cout, 'f', 'verify_password against a corrupt hash answers false');
is($cerr, '', 'with no error or notice to the caller');
like(slurp_file($node->logfile, $log_at), qr/LOG:  the password hash of user $corrupt_id is in no format that can be verified/,
	'and the server log names the user');

$node->stop;
done_testing();
