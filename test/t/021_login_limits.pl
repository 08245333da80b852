# The cost of logins under attack.  Login throttling: after
# login_max_failures failed verify_password calls for an email within the
# window, the email answers false even to the right password until the
# lockout has passed, for known and unknown emails alike; a success resets
# the count; login_throttle shows an email's state and reset_login_throttle
# clears it; failed attempts write nothing (no transaction id is taken); a
# standby throttles on its own.  The hashing cap: with
# max_concurrent_hashes = 1, concurrent logins queue (waiting on
# "Extension") instead of hashing at once, and a queued login honours
# statement_timeout.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use UserServiceNode;

my $node = preloaded_node('limits', q{
user_service.workers = 0
user_service.login_max_failures = 3
user_service.login_failure_window = '1min'
user_service.login_lockout = '3s'
wal_level = replica
max_wal_senders = 4
});
$node->safe_psql('postgres', q{
	SELECT * FROM user_service.create_user('Ada', 'ada@example.com', 'right password');
	SELECT * FROM user_service.create_user('Bob', 'bob@example.com', 'bob password');});

sub verify
{
	my ($email, $password, $n) = @_;
	return $node->safe_psql('postgres', join(";\n",
		("SELECT user_service.verify_password('$email', '$password')") x ($n // 1)));
}

sub state
{
	my ($email) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT failures, window_start IS NOT NULL, locked_until IS NOT NULL
		  FROM user_service.login_throttle('$email')});
}

is(state('ada@example.com'), '0|f|f', 'no state before any failure');
is(verify('ada@example.com', 'wrong password', 2), "f\nf", 'two failures');
is(state('ada@example.com'), '2|t|f', 'are counted');
is(verify(' ADA@example.COM ', 'wrong password'), 'f', 'a third, in another case and with spaces');
is(state('ada@example.com'), '0|f|t', 'locks the email out (the same email as compared)');
is(verify('ada@example.com', 'right password'), 'f', 'then even the right password is refused');
is(verify('bob@example.com', 'bob password'), 't', 'other accounts are not affected');

# Unknown emails behave exactly the same.
is(verify('nobody@example.com', 'wrong password', 3), "f\nf\nf", 'an unknown email fails three times');
is(state('nobody@example.com'), state('ada@example.com'), 'and is locked out the same way');

# After the lockout the right password works and clears the state.
sleep 4;
is(verify('ada@example.com', 'right password'), 't', 'after the lockout the right password works');
is(state('ada@example.com'), '0|f|f', 'and clears the state');

# A success resets the count.
verify('bob@example.com', 'wrong password', 2);
verify('bob@example.com', 'bob password');
verify('bob@example.com', 'wrong password', 2);
is(state('bob@example.com'), '2|t|f', 'a success in between resets the count');
is(verify('bob@example.com', 'bob password'), 't', 'so two and two failures do not lock');

# A DBA's reset.
verify('bob@example.com', 'wrong password', 3);
is(verify('bob@example.com', 'bob password'), 'f', 'bob is locked out');
is($node->safe_psql('postgres', "SELECT user_service.reset_login_throttle('Bob\@example.com')"),
	't', 'reset_login_throttle clears it');
is($node->safe_psql('postgres', "SELECT user_service.reset_login_throttle('bob\@example.com')"),
	'f', '(false when there is nothing to clear)');
is(verify('bob@example.com', 'bob password'), 't', 'and bob logs in');

# Failed attempts write nothing: the transaction takes no transaction id.
is( $node->safe_psql('postgres', q{
		BEGIN;
		SELECT count(*) FROM (SELECT user_service.verify_password('x' || i || '@example.com', 'wrong password')
		                        FROM generate_series(1, 10) i) s;
		SELECT pg_current_xact_id_if_assigned() IS NULL;
		COMMIT;}),
	"10\nt", 'ten failed logins write nothing');

# The state functions are the DBA's: PUBLIC has no EXECUTE.
$node->safe_psql('postgres', q{CREATE ROLE app LOGIN; GRANT USAGE ON SCHEMA user_service TO app;
	GRANT EXECUTE ON FUNCTION user_service.verify_password(text, text) TO app;});
my ($rc, $out, $err) = $node->psql('postgres', "SELECT * FROM user_service.login_throttle('ada\@example.com')",
	extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for function login_throttle/, 'login_throttle is not for PUBLIC');
($rc, $out, $err) = $node->psql('postgres', "SELECT user_service.reset_login_throttle('ada\@example.com')",
	extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for function reset_login_throttle/, 'nor is reset_login_throttle');

# 0 turns it off.
$node->append_conf('postgresql.conf', 'user_service.login_max_failures = 0');
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('user_service.login_max_failures') = '0'");
verify('bob@example.com', 'wrong password', 4);
is(verify('bob@example.com', 'bob password'), 't', 'login_max_failures = 0: no lockout');
$node->append_conf('postgresql.conf', 'user_service.login_max_failures = 3');
$node->reload;

# A standby throttles on its own (read-only: nothing to write anyway).
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('limits_standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
is( $standby->safe_psql('postgres', join(";\n",
		("SELECT user_service.verify_password('ada\@example.com', 'wrong password')") x 3,
		"SELECT user_service.verify_password('ada\@example.com', 'right password')",
		"SELECT locked_until IS NOT NULL FROM user_service.login_throttle('ada\@example.com')")),
	"f\nf\nf\nf\nt", 'a standby locks an email out');
is(verify('ada@example.com', 'right password'), 't', 'the primary counts apart');
$standby->stop;

# The cap on concurrent hashing: one at a time, slow hashes, three logins
# in loops; the others queue on the "Extension" wait event.
$node->append_conf('postgresql.conf', q{
user_service.max_concurrent_hashes = 1
user_service.argon2_memory_kib = 32768
user_service.argon2_iterations = 2
user_service.login_max_failures = 0
});
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('user_service.max_concurrent_hashes') = '1'");

# start_logins(TAG, SESSIONS, CALLS): sessions that each make CALLS failed
# logins in a row, already running when this returns.
sub start_logins
{
	my ($tag, $sessions, $calls) = @_;
	my @h;
	for my $i (1 .. $sessions)
	{
		push @h, $node->background_psql('postgres', on_error_stop => 0);
		$h[-1]->query_until(qr/started/, qq{
			\\echo started
			SELECT user_service.verify_password('$tag$i\@example.com', 'wrong password')
			  FROM generate_series(1, $calls);
		});
	}
	return @h;
}

sub storm
{
	my @h = start_logins('storm', 3, 15);
	my ($max_waiting, $samples) = (0, 0);
	for (1 .. 40)
	{
		my $w = $node->safe_psql('postgres', q{
			SELECT count(*) FILTER (WHERE wait_event_type = 'Extension' AND wait_event = 'Extension')
			  FROM pg_stat_activity WHERE query LIKE '%verify_password(%' AND state = 'active'
			   AND pid <> pg_backend_pid()});
		$max_waiting = $w if $w > $max_waiting;
		usleep(50_000);
	}
	$_->quit for @h;
	return $max_waiting;
}

my $waiting = storm();
ok($waiting >= 1 && $waiting <= 2, "with the cap at 1, logins queue (at most $waiting of 3 waited at once)");

# A queued login honours statement_timeout.
my @busy = start_logins('busy', 2, 40);
$node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_stat_activity
	 WHERE query LIKE '%verify_password(%' AND wait_event = 'Extension' AND pid <> pg_backend_pid()});
($rc, $out, $err) = $node->psql('postgres', q{
	SET statement_timeout = '50ms';
	SELECT user_service.verify_password('late@example.com', 'wrong password') FROM generate_series(1, 100);
	}, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  57014: canceling statement due to statement timeout/, 'a queued login times out');
$_->quit for @busy;

# Off: nobody waits.
$node->append_conf('postgresql.conf', 'user_service.max_concurrent_hashes = 0');
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('user_service.max_concurrent_hashes') = '0'");
is(storm(), 0, 'with the cap off, nobody queues');

# A burst of concurrent attempts gets login_max_failures guesses, not one
# per connection: attempts in flight count against the limit.  Three wrong
# attempts queue for the only hashing place (two sessions keep it busy
# with slow hashes);
# a fourth, with the right password, is refused at once (it used to queue,
# then reset the lockout the three had set and answer true).  The lockout
# is long here: the slow hashes may take seconds on a loaded machine.
$node->append_conf('postgresql.conf', q{
user_service.max_concurrent_hashes = 1
user_service.login_max_failures = 3
user_service.login_lockout = '1h'
user_service.argon2_memory_kib = 131072
});
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('user_service.login_max_failures') = '3'");
$node->safe_psql('postgres', q{SELECT * FROM user_service.create_user('Burst', 'burst@example.com', 'burst password')});
# (the holders set passwords: hashing that the throttle does not count)
my @hold;
for (1 .. 2)
{
	push @hold, $node->background_psql('postgres', on_error_stop => 0);
	$hold[-1]->query_until(qr/started/, q{
		\echo started
		SELECT count(*) FROM (SELECT user_service.set_password(1, 'holding password ' || i)
		                        FROM generate_series(1, 8) i) s;
	});
}
my @burst;
for my $i (1 .. 3)
{
	push @burst, $node->background_psql('postgres', on_error_stop => 0);
	$burst[-1]->query_until(qr/started/, q{
		\echo started
		SELECT user_service.verify_password('burst@example.com', 'wrong password');
	});
}
$node->poll_query_until('postgres', q{
	SELECT count(*) = 3 FROM pg_stat_activity
	 WHERE query LIKE '%verify_password(%' AND wait_event = 'Extension' AND pid <> pg_backend_pid()
	   AND query NOT LIKE '%generate_series%'})
  or die 'the burst did not queue';
is($node->safe_psql('postgres', "SELECT user_service.verify_password('burst\@example.com', 'burst password')"),
	'f', 'with three attempts in flight, a fourth is refused, even with the right password');
$_->quit for @burst;
$_->quit for @hold;
is($node->safe_psql('postgres', "SELECT locked_until IS NOT NULL FROM user_service.login_throttle('burst\@example.com')"),
	't', 'the three wrong ones locked the email out');
is($node->safe_psql('postgres', "SELECT user_service.verify_password('burst\@example.com', 'burst password')"),
	'f', 'and the right password is refused until the lockout passes');

# Without shared_preload_libraries nothing is throttled, and the state
# functions say why.
my $plain = PostgreSQL::Test::Cluster->new('limits_plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION user_service');
($rc, $out, $err) = $plain->psql('postgres', "SELECT * FROM user_service.login_throttle('a\@example.com')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: login throttling needs user_service in shared_preload_libraries/,
	'without preloading, login_throttle says throttling is off');
$plain->stop;

$node->stop;
done_testing();
