# user_service on four shards behind a PL/Proxy router (the extension
# user_service_proxy), against a single node holding the same users: the
# same API, the same pages and totals, the same SQLSTATEs and messages;
# ids and emails routed to their shards; emails unique across shards under
# races, also when a user's new email has its home on another shard; a
# shard that is down named in an 08001 error, and fine again once back; a
# shard restored from a dump keeps its id space and its claims; no
# plaintext password in the router's log.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use UserServiceNode;

my $N = 4;
my ($router, @shards) = proxy_cluster($N, "user_service.workers = 0\n", 'postgres', 'router2');
my $reference = preloaded_node('reference', "user_service.workers = 0\n");

is($router->safe_psql('postgres', q{
		SELECT string_agg(format('%s:%s/%s:%s', partition, shard, shard_count, ok), ' ' ORDER BY partition)
		  FROM user_service.check_cluster()}),
	'0:0/4:t 1:1/4:t 2:2/4:t 3:3/4:t', 'check_cluster: each partition is the shard it says');

# The router's API is the single node's: names, arguments, defaults,
# results.
my $signatures = q{
	SELECT string_agg(format('%s(%s) -> %s', p.proname, pg_get_function_arguments(p.oid),
	                         pg_get_function_result(p.oid)), E'\n' ORDER BY p.proname)
	  FROM pg_proc p
	 WHERE p.pronamespace = 'user_service'::regnamespace
	   AND p.proname IN ('create_user', 'get_user', 'update_user', 'delete_user', 'set_password',
	                     'verify_password', 'list_users', 'list_users_after', 'email_hash',
	                     'submit_batch', 'batch_status', 'batch_results', 'wait_batch', 'cancel_batch',
	                     'login_throttle', 'reset_login_throttle', 'list_users_rows',
	                     'list_users_after_rows', 'list_users_json', 'list_users_after_json',
	                     'import_user')};
is($router->safe_psql('postgres', $signatures), $reference->safe_psql('postgres', $signatures),
	'the router has the single node\'s signatures and defaults');

# 60 users through the router.
$router->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT user_service.create_user('User ' || i, 'User' || i || '@Example.com',
	                                                      'password ' || i)
	                        FROM generate_series(1, 60) i) c});

sub on_shards
{
	my ($sql) = @_;
	return join("\n", map { $_->safe_psql('postgres', $sql) } @shards);
}

# Every user is on the shard its id names and its email's home shard.
my $misplaced = 0;
my $hashes_agree = 1;
for my $k (0 .. $N - 1)
{
	$misplaced += $shards[$k]->safe_psql('postgres', qq{
		SELECT count(*) FROM user_service.users
		 WHERE id % $N <> $k OR user_service.email_hash(email) & ($N - 1) <> $k});
}
is($misplaced, 0, 'each user lives on the shard its id names, its email\'s home');
my $per_shard = join ' ', map { $_->safe_psql('postgres', 'SELECT count(*) FROM user_service.users') } @shards;
unlike($per_shard, qr/\b0\b/, "users on every shard ($per_shard)");
is($router->safe_psql('postgres', q{SELECT string_agg(user_service.email_hash(e)::text, ',')
		FROM unnest(ARRAY['a@example.com', ' A@Example.COM ', 'é@example.com']) e}),
	$shards[1]->safe_psql('postgres', q{SELECT string_agg(user_service.email_hash(e)::text, ',')
		FROM unnest(ARRAY['a@example.com', ' A@Example.COM ', 'é@example.com']) e}),
	'the router hashes emails as the shards do');

# The reference holds the same users (same ids, same rows).
sub copy_to_reference
{
	$reference->safe_psql('postgres', 'TRUNCATE user_service.users');
	for my $s (@shards)
	{
		my $rows = $s->safe_psql('postgres', q{
			SELECT string_agg(format('(%s, %L, %L, %L, %L, %L)', id, name, email, password_hash,
			                         created_at, updated_at), ', ')
			  FROM user_service.users});
		next if $rows eq '';
		$reference->safe_psql('postgres', qq{
			INSERT INTO user_service.users (id, name, email, password_hash, created_at, updated_at)
			OVERRIDING SYSTEM VALUE VALUES $rows});
	}
}

sub same_pages
{
	my ($what) = @_;
	my @calls;
	for my $pp (1, 7, 20, 100)
	{
		push @calls, "list_users($_, $pp)" for (1, 2, 3, 9, 61, 1000);
		push @calls, "list_users_after($_, $pp)" for (0, 1, 17, 40, 1000000);
	}
	push @calls, 'list_users()', 'list_users_after()';
	# the rows and jsonb forms of a few of them
	my @forms = map { ("SELECT * FROM user_service.$_", "SELECT user_service.$_") }
	  ('list_users_rows(1, 7)', 'list_users_rows(3, 20)', 'list_users_rows(1000, 7)',
		'list_users_after_rows(17, 7)', 'list_users_after_rows(1000000, 7)');
	push @forms, map { "SELECT user_service.$_" }
	  ('list_users_json(2, 7)', 'list_users_json(1000, 7)', 'list_users_after_json(17, 20)',
		'list_users_after_json(1000000, 7)');
	my $bad = 0;
	for my $call (@calls, @forms)
	{
		my $sql = $call =~ /^SELECT/ ? $call : "SELECT total, users FROM user_service.$call";
		my $got = $router->safe_psql('postgres', $sql);
		my $want = $reference->safe_psql('postgres', $sql);
		if ($got ne $want)
		{
			diag("$call: router $got\nreference $want");
			$bad++;
		}
	}
	is($bad, 0, "$what: " . scalar(@calls) . ' numbered and keyset pages and totals as on one node, '
		  . scalar(@forms) . ' in their rows and jsonb forms');
}
copy_to_reference();
same_pages('60 users');

# import_user through the router: to the email's home shard, where the
# first login replaces the bcrypt hash (PHP's password_hash of 'correct
# horse') by argon2id.
my $bcrypt = '$2y$10$9ZutdN2p887wneeOYWGrt.WEem1FiRdwsta7oK5mtf.kYkUpXHeHS';
my $imported = $router->safe_psql('postgres',
	"SELECT id FROM user_service.import_user('Imported', 'imported\@example.com', '$bcrypt')");
my $home = $router->safe_psql('postgres', "SELECT user_service.email_hash('imported\@example.com') & 3");
is($imported % $N, $home, 'import_user through the router puts the user on its email\'s home shard');
is( $router->safe_psql(
		'postgres', q{
		SELECT user_service.verify_password('imported@example.com', 'correct horses'),
		       user_service.verify_password('imported@example.com', 'correct horse')}),
	'f|t', 'and the imported user logs in through the router');
is($shards[$home]->safe_psql('postgres', "SELECT user_service.hash_format(password_hash) FROM user_service.users WHERE id = $imported"),
	'argon2id', 'its bcrypt hash replaced on its shard');
$router->safe_psql('postgres', "SELECT user_service.delete_user($imported)");

# Errors: the single node's SQLSTATE, message, detail and hint.
sub error_of
{
	my ($node, $db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	$err =~ s/^LOCATION:.*\n?//mg;
	$err =~ s/^psql:[^\n]*?ERROR/ERROR/mg;
	return $err;
}
my $taken = $reference->safe_psql('postgres', 'SELECT email FROM user_service.users WHERE id = (SELECT max(id) FROM user_service.users)');
my ($id_of_taken, $taken_pw) = split /\|/,
  $reference->safe_psql('postgres', "SELECT id, replace(name, 'User', 'password') FROM user_service.users WHERE email = '$taken'");
my $other_id = $reference->safe_psql('postgres', 'SELECT min(id) FROM user_service.users');
my @error_calls = (
	[ "SELECT * FROM user_service.create_user('X', upper('$taken'), 'password x')", '23505' ],
	[ "SELECT * FROM user_service.create_user('X', 'no-at-sign', 'password x')",  '22023' ],
	[ "SELECT * FROM user_service.create_user('X', 'x\@example.com', 'short')",    '22023' ],
	[ "SELECT * FROM user_service.create_user('', 'x\@example.com', 'password x')", '22023' ],
	[ "SELECT * FROM user_service.create_user(NULL, 'x\@example.com', 'password x')", '22004' ],
	[ "SELECT * FROM user_service.create_user('X', NULL, 'password x')", '22004' ],
	[ 'SELECT * FROM user_service.get_user(4000001)',                     'P0002' ],
	[ 'SELECT * FROM user_service.get_user(NULL)',                        '22004' ],
	[ "SELECT * FROM user_service.update_user(4000002, 'Y')",             'P0002' ],
	[ "SELECT * FROM user_service.update_user($other_id, email => '$taken')", '23505' ],
	[ "SELECT * FROM user_service.update_user($other_id, email => 'bad')", '22023' ],
	[ "SELECT * FROM user_service.update_user(4000002, email => 'free\@example.com')", 'P0002' ],
	[ 'SELECT user_service.delete_user(4000003)',                         'P0002' ],
	[ "SELECT user_service.set_password(4000003, 'password z')",          'P0002' ],
	[ "SELECT user_service.set_password($other_id, 'short')",             '22023' ],
	[ "SELECT user_service.verify_password(NULL, 'password z')",          '22004' ],
	[ 'SELECT * FROM user_service.list_users(0, 10)',                     '22023' ],
	[ 'SELECT * FROM user_service.list_users(2, 101)',                    '22023' ],
	[ 'SELECT * FROM user_service.list_users(1, 0)',                      '22023' ],
	[ 'SELECT * FROM user_service.list_users_after(0, 101)',              '22023' ],
	[ 'SELECT * FROM user_service.list_users_after(NULL, 10)',            '22004' ],);
for my $c (@error_calls)
{
	my ($sql, $state) = @$c;
	my $want = error_of($reference, 'postgres', $sql);
	my $got = error_of($router, 'postgres', $sql);
	like($want, qr/^ERROR:  $state: /, "reference: $state for $sql");
	is($got, $want, "router: the same error for $sql");
}
unlike(error_of($router, 'postgres', "SELECT * FROM user_service.get_user(4000001); SELECT * FROM user_service.get_user($other_id)"),
	qr/NOTICE|stale/, 'no PL/Proxy notice after a remote error');
is($router->safe_psql('postgres', "SELECT user_service.verify_password(lower(' $taken '), '$taken_pw'),
		user_service.verify_password('$taken', 'password x'),
		user_service.verify_password('nobody\@example.com', '$taken_pw')"),
	't|f|f', 'verify_password through the router');

like(error_of($reference, 'postgres', q{SELECT user_service.claim_email('a@example.com', 1)}),
	qr/^ERROR:  55000: this database is not a shard of a cluster/, 'a database that is no shard has no claims');

# No transaction across the hop: a rolled-back router transaction keeps
# the user (documented).
$router->safe_psql('postgres', q{BEGIN; SELECT user_service.create_user('Kept', 'kept@example.com', 'password k'); ROLLBACK;});
is($router->safe_psql('postgres', q{SELECT count(*) FROM (SELECT 1 FROM user_service.list_users_after(0, 100) l,
		unnest(l.users) u WHERE u.email = 'kept@example.com') k}), '1',
	'ROLLBACK on the router does not undo a create on a shard');

# ---------------------------------------------------------------------
# Emails whose home is another shard than the user's
# ---------------------------------------------------------------------
sub home_of
{
	my ($email) = @_;
	return $router->safe_psql('postgres', "SELECT user_service.email_hash('$email') & ($N - 1)");
}

# a fresh email whose home is not shard $k
sub email_not_homed_on
{
	my ($k, $tag) = @_;
	for my $i (1 .. 100)
	{
		my $e = "$tag$i\@example.com";
		return $e if home_of($e) != $k;
	}
	die 'no email found';
}

my $mover = $other_id;
my $mover_shard = $mover % $N;
my $old_email = $router->safe_psql('postgres', "SELECT email FROM user_service.get_user($mover)");
my $new_email = email_not_homed_on($mover_shard, 'moved');
my $new_home = home_of($new_email);
is($router->safe_psql('postgres', "SELECT id, email FROM user_service.update_user($mover, email => '$new_email')"),
	"$mover|$new_email", 'an email change to another shard\'s home: the user keeps its id');
is($shards[$new_home]->safe_psql('postgres', 'SELECT email_key, user_id FROM user_service.email_claims'),
	"$new_email|$mover", 'the new email is claimed on its home shard');
like(error_of($router, 'postgres', "SELECT * FROM user_service.create_user('Thief', upper('$new_email'), 'password t')"),
	qr/^ERROR:  23505: a user with email "\U$new_email\E" already exists/, 'a claimed email cannot be created on its home');
like(error_of($router, 'router2', "SELECT * FROM user_service.update_user($id_of_taken, email => '$new_email')"),
	qr/^ERROR:  23505: a user with email "$new_email" already exists/, 'nor taken by another user');
is($router->safe_psql('postgres', "SELECT user_service.verify_password('$new_email', 'password 1'),
		user_service.verify_password('$new_email', 'wrong password')"),
	't|f', 'login with the moved email goes to the user\'s shard');
is($router->safe_psql('postgres', "SELECT failures FROM user_service.login_throttle('$new_email')"), '1',
	'login_throttle asks the shard that ran the login');
is($shards[$mover_shard]->safe_psql('postgres', "SELECT failures FROM user_service.login_throttle('$new_email')"), '1',
	'the user\'s shard, which counted the failure');
is($router->safe_psql('postgres', "SELECT user_service.reset_login_throttle('$new_email'),
		(user_service.login_throttle('$new_email')).failures"), 't|0', 'reset_login_throttle there too');
is($router->safe_psql('postgres', "SELECT id FROM user_service.create_user('Reuse', '$old_email', 'password r')") % $N,
	home_of($old_email), 'the old email is free again');

# back to an email of its own shard: the claim goes
my $home_email = 'back0@example.com';
$home_email = "back$_\@example.com" for grep { home_of("back$_\@example.com") == $mover_shard } (1 .. 40);
$router->safe_psql('postgres', "SELECT user_service.update_user($mover, email => '$home_email')");
is(on_shards('SELECT count(*) FROM user_service.email_claims'), join("\n", (0) x $N),
	'moving back home releases the claim');

# a claim made by an interrupted change (step 1 only) is reconciled away;
# a claim in use stays
my $second = email_not_homed_on($mover_shard, 'second');
$router->safe_psql('postgres', "SELECT user_service.update_user($mover, email => '$second')");
my $stray = email_not_homed_on($mover_shard, 'stray');
$router->safe_psql('postgres', "SELECT user_service_proxy.claim_email('$stray', $mover)");
is($router->safe_psql('postgres', "SELECT user_service.reconcile_email_claims('0 seconds')"), '1',
	'reconcile_email_claims removes the claim that does not match its user');
is(on_shards('SELECT string_agg(email_key, \',\') FROM user_service.email_claims') =~ s/\n//gr, $second,
	'and keeps the one in use');
is($router->safe_psql('postgres', "SELECT id, email FROM user_service.delete_user($mover)"),
	"$mover|$second", 'delete_user through the router returns the deleted user');
is(on_shards('SELECT count(*) FROM user_service.email_claims'), join("\n", (0) x $N),
	'deleting the user releases its claim');

# Race: two creates (one per router database) and two email changes of
# users of other shards, all for one email, held at its home shard until
# all four are waiting: exactly one wins, the others get 23505.
my $wins = 0;
my $rounds = 4;
for my $round (1 .. $rounds)
{
	my $email = "race$round\@example.com";
	my $home = home_of($email);
	my @movers = map { $_->[0] } grep { $_->[1] != $home } map { [ $_, $_ % $N ] }
	  split /\n/, $router->safe_psql('postgres', 'SELECT (unnest(users)).id FROM user_service.list_users_after(0, 100)');
	my $gate = $shards[$home]->background_psql('postgres');
	$gate->query_safe('BEGIN; LOCK user_service.users, user_service.email_claims IN EXCLUSIVE MODE');
	my @runs;
	my @sql = (
		[ 'postgres', "SELECT id FROM user_service.create_user('R1', '$email', 'password r')" ],
		[ 'router2',  "SELECT id FROM user_service.create_user('R2', upper('$email'), 'password r')" ],
		[ 'postgres', "SELECT id FROM user_service.update_user($movers[0], email => '$email')" ],
		[ 'router2',  "SELECT id FROM user_service.update_user($movers[1], email => ' $email')" ],);
	for my $s (@sql)
	{
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-d', $router->connstr($s->[0]), '-c', $s->[1] ],
			'>', \$out, '2>', \$err);
		push @runs, [ $h, \$out, \$err ];
	}
	# all four wait at the home shard: the first holds the email's claim
	# lock and waits for the table, the others for the claim lock
	$shards[$home]->poll_query_until('postgres', q{
		SELECT count(*) = 4 FROM pg_stat_activity WHERE wait_event_type = 'Lock'})
	  or die 'the four did not all wait';
	$gate->query_safe('COMMIT');
	$gate->quit;
	my ($ok, $dup) = (0, 0);
	for my $r (@runs)
	{
		$r->[0]->finish;
		$ok++ if ${ $r->[1] } =~ /^\d+$/m;
		$dup++ if ${ $r->[2] } =~ /ERROR:  23505: a user with email "\s*\Q$email\E" already exists/i;
	}
	$wins++ if $ok == 1 && $dup == 3;
	my $holders = 0;
	$holders += $_->safe_psql('postgres', "SELECT count(*) FROM user_service.users WHERE lower(email) = '$email'")
	  for @shards;
	is($holders, 1, "race $round: one user has $email");
}
is($wins, $rounds, 'every race: one winner, three 23505s with the API\'s message');

copy_to_reference();
same_pages('after moves, deletes and races');

# ---------------------------------------------------------------------
# A shard that is down
# ---------------------------------------------------------------------
my $down = 2;
my $on_down = $router->safe_psql('postgres', "SELECT min((u).id) FROM user_service.list_users_after(0, 100) l, unnest(l.users) u WHERE (u).id % $N = $down");
my $on_up = $router->safe_psql('postgres', "SELECT min((u).id) FROM user_service.list_users_after(0, 100) l, unnest(l.users) u WHERE (u).id % $N = 0");
$shards[$down]->stop('immediate');
like(error_of($router, 'postgres', "SELECT * FROM user_service.get_user($on_down)"),
	qr/^ERROR:  08001: could not connect to shard $down of cluster "user_service_cluster"\nDETAIL:  connection to server/,
	'a call for a user of a shard that is down: 08001 naming the shard');
like(error_of($router, 'postgres', 'SELECT * FROM user_service.list_users_after()'),
	qr/^ERROR:  08001: could not connect to shard $down of cluster "user_service_cluster"/,
	'a list needs every shard: 08001, never a partial total');
like(error_of($router, 'postgres', 'SELECT * FROM user_service.list_users(3, 5)'),
	qr/^ERROR:  08001: could not connect to shard $down /, 'a numbered page too');
is($router->safe_psql('postgres', "SELECT id FROM user_service.get_user($on_up)"), $on_up, 'the other shards still answer');
$shards[$down]->start;
is($router->safe_psql('postgres', "SELECT id FROM user_service.get_user($on_down)"), $on_down,
	'the shard back: answers again, nothing to do on the router');

# ---------------------------------------------------------------------
# A shard restored from a dump keeps its id space and its claims
# ---------------------------------------------------------------------
my $r = 1;
my $claimed = email_not_homed_on(0, 'keep');
$claimed = "keep$_\@example.com" for grep { home_of("keep$_\@example.com") == $r } (1 .. 40);
my $someone = $router->safe_psql('postgres', "SELECT min((u).id) FROM user_service.list_users_after(0, 100) l, unnest(l.users) u WHERE (u).id % $N <> $r");
$router->safe_psql('postgres', "SELECT user_service.update_user($someone, email => '$claimed')");
my $max_before = $shards[$r]->safe_psql('postgres', 'SELECT max(id) FROM user_service.users');
my $dump = $shards[$r]->basedir . '/shard.dump';
$shards[$r]->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $shards[$r]->connstr('postgres') ], 'pg_dump of a shard');
$shards[$r]->safe_psql('postgres', 'CREATE DATABASE restored');
$shards[$r]->command_ok([ 'pg_restore', '-d', $shards[$r]->connstr('restored'), $dump ], 'pg_restore into a new database');
$router->safe_psql('postgres', "ALTER SERVER user_service_cluster OPTIONS (SET p$r 'host=" . $shards[$r]->host
	  . ' port=' . $shards[$r]->port . " dbname=restored')");
my $new_ids = $router->safe_psql('postgres', q{
	SELECT string_agg(id::text, ' ') FROM (
		SELECT (user_service.create_user('After ' || i, 'after' || i || '@example.com', 'password a')).id
		  FROM generate_series(1, 12) i) c});
my @on_r = grep { $_ % $N == $r } split / /, $new_ids;
ok(@on_r > 0 && !grep({ $_ <= $max_before } @on_r), "the restored shard goes on with its own ids above $max_before (@on_r)");
like(error_of($router, 'postgres', "SELECT * FROM user_service.create_user('Late', '$claimed', 'password l')"),
	qr/^ERROR:  23505: /, 'and still refuses the email it had claimed');

# ---------------------------------------------------------------------
# Secrets on the router
# ---------------------------------------------------------------------
$router->safe_psql('postgres', q{SELECT user_service.create_user('Secret', 'secret@example.com', 'sekrit-router-pw')});
$router->psql('postgres', q{SELECT user_service.set_password(4000005, 'sekrit-router-pw2')});
$router->psql('postgres', q{SELECT * FROM user_service.create_user('Secret', 'secret@example.com', 'sekrit-router-pw3')});
# pg_stat_activity on the router while a create waits at its shard
my $pw_home = home_of('waiting@example.com');
my $gate = $shards[$pw_home]->background_psql('postgres');
$gate->query_safe('BEGIN; LOCK user_service.users IN EXCLUSIVE MODE');
my ($wout, $werr) = ('', '');
my $waiter = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $router->connstr('postgres'), '-c',
	  q{SELECT id FROM user_service.create_user('Waiting', 'waiting@example.com', 'sekrit-router-pw4')} ],
	'>', \$wout, '2>', \$werr);
$router->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%create_user%' AND pid <> pg_backend_pid()})
  or die 'no create_user in pg_stat_activity';
my $shown = $router->safe_psql('postgres', q{SELECT query FROM pg_stat_activity WHERE query LIKE '%create_user%' AND pid <> pg_backend_pid()});
unlike($shown, qr/sekrit/, "the router's pg_stat_activity shows no password ($shown)");
$gate->query_safe('COMMIT');
$gate->quit;
$waiter->finish;
like($wout, qr/^\d+$/, 'and the create goes on');

my $log = slurp_file($router->logfile);
unlike($log, qr/sekrit-router-pw/, 'no plaintext password in the router\'s log');
like($log, qr/ERROR:  a user with email "secret\@example.com" already exists/,
	'the shards\' messages are kept whole in the router\'s log');

done_testing();
