# Batches through a PL/Proxy router over four shards: a submission is
# checked whole before any shard stores anything, split to the shards under
# one handle, run by each shard's workers as the role that submitted it, and
# followed (batch_status, batch_results numbered as submitted, wait_batch,
# cancel_batch) on that handle; a shard stopped with -m immediate in the
# middle of its part and started again applies each item exactly once; a
# submission that cannot reach a shard stores nothing; what an interrupted
# submission leaves is released or discarded by reconcile_batches; batch
# email changes to another shard's home claim the email there.
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
my ($router, @shards) = proxy_cluster($N, "user_service.workers = 2\nuser_service.argon2_iterations = 3\n");

# An application role, the same on the router and the shards (PL/Proxy
# connects to the shards as the calling role).
for my $node ($router, @shards)
{
	$node->safe_psql('postgres', q{
		CREATE ROLE app LOGIN;
		GRANT USAGE ON SCHEMA user_service TO app;
		GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service TO app;});
}
$router->safe_psql('postgres', q{
	GRANT USAGE ON SCHEMA user_service_proxy TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service_proxy TO app;
	GRANT USAGE ON FOREIGN SERVER user_service_cluster TO app;});

sub on_shards
{
	my ($sql) = @_;
	my $sum = 0;
	$sum += $_->safe_psql('postgres', $sql) for @shards;
	return $sum;
}

sub items_json
{
	my ($tag, $n) = @_;
	return qq{(SELECT jsonb_agg(jsonb_build_object('name', 'User ' || i, 'email', '$tag' || i || '\@example.com',
	                                        'password', 'secret-$tag-' || i) ORDER BY i)
	             FROM generate_series(1, $n) i)};
}

sub router_psql
{
	my ($sql, $user) = @_;
	my ($rc, $out, $err) = $router->psql('postgres', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose', '-U', $user // 'app' ]);
	$err =~ s/^LOCATION:.*\n?//mg;
	$err =~ s/^psql:[^\n]*?ERROR/ERROR/mg;
	return ($out, $err);
}

# A bad item anywhere: the single node's error, and no shard stores a thing.
my ($out, $err) = router_psql(q{SELECT user_service.submit_batch('create_user',
	} . items_json('bad', 30) . q{ || '[{"name": "x", "email": "x@example.com"}]'::jsonb)});
like($err, qr/^ERROR:  22023: item 31 is missing the key "password"/, 'a bad item: the single node\'s error, numbered as submitted');
is(on_shards('SELECT count(*) FROM user_service.batch_jobs') + on_shards('SELECT count(*) FROM user_service.cluster_batches'),
	0, 'and nothing stored on any shard');
($out, $err) = router_psql(q{SELECT user_service.submit_batch('create_user', '[]')});
like($err, qr/^ERROR:  22023: items must be a non-empty JSON array/, 'an empty batch refused');
($out, $err) = router_psql(q{SELECT user_service.submit_batch('set_password', '[{"id": 1, "password": "p"}]')}, 'app');
is($err, '', 'set_password batches allowed with EXECUTE on set_password');

# 200 creates: one handle, a part on every shard, each item on its email's
# home, results numbered as submitted.
($out, $err) = router_psql('SELECT user_service.submit_batch(\'create_user\', ' . items_json('split', 200) . ', 3)');
my $handle = $out;
like($handle, qr/^\d+$/, "one handle ($handle)");
is($router->safe_psql('postgres', "SELECT user_service.wait_batch($handle, '3 minutes')"), 't', 'wait_batch on the handle');
is($router->safe_psql('postgres', "SELECT state, total, pending, running, succeeded, failed, cancelled, concurrency,
		finished_at >= started_at FROM user_service.batch_status($handle)"),
	'done|200|0|0|200|0|0|3|t', 'batch_status sums the parts');
my @parts = map { $_->safe_psql('postgres', "SELECT count(*) FROM user_service.cluster_batches WHERE handle = $handle AND batch_id IS NOT NULL") } @shards;
is("@parts", '1 1 1 1', 'a part on every shard');
is($shards[0]->safe_psql('postgres', "SELECT DISTINCT submitted_by::regrole FROM user_service.batch_jobs"), 'app',
	'each part runs as the role that submitted it');
my $results = $router->safe_psql('postgres', "SELECT string_agg(format('%s:%s:%s', item, status, user_id), ' ' ORDER BY item)
	FROM user_service.batch_results($handle)");
my @r = split / /, $results;
is(scalar(@r), 200, '200 results');
my $misrouted = 0;
for my $x (@r)
{
	my ($item, $status, $uid) = split /:/, $x;
	my $home = $router->safe_psql('postgres', "SELECT user_service.email_hash('split$item\@example.com') & 3");
	$misrouted++ unless $status eq 'succeeded' && $uid % $N == $home;
}
is($misrouted, 0, 'results numbered as submitted, each user created on its email\'s home');
is($r[0] =~ s/:.*//r, 1, 'starting at item 1');
is(on_shards("SELECT count(*) FROM user_service.users WHERE email LIKE 'split%'"), 200, 'and 200 users in all');

# import_user through the router: to the email's home, the hash kept
my $phc = $shards[0]->safe_psql('postgres', 'SELECT password_hash FROM user_service.users LIMIT 1');
my $imp_items = join(', ', map { qq({"name": "Imported $_", "email": "imported$_\@example.com", "password_hash": "$phc"}) } 1 .. 12);
$handle = $router->safe_psql('postgres', "SELECT user_service.submit_batch('import_user', '[$imp_items]')");
$router->safe_psql('postgres', "SELECT user_service.wait_batch($handle, '3 minutes')");
is($router->safe_psql('postgres', "SELECT succeeded FROM user_service.batch_status($handle)"), '12', 'an import_user batch through the router');
my $imp_home = 0;
for my $i (1 .. 12)
{
	my $home = $router->safe_psql('postgres', "SELECT user_service.email_hash('imported$i\@example.com') & 3");
	$imp_home += $shards[$home]->safe_psql('postgres', "SELECT count(*) FROM user_service.users WHERE email = 'imported$i\@example.com' AND password_hash = '$phc'");
}
is($imp_home, 12, 'each imported user on its email\'s home, with its hash');

# A shard stopped with -m immediate in the middle of its part and started
# again: each item applied exactly once.
$handle = $router->safe_psql('postgres', 'SELECT user_service.submit_batch(\'create_user\', ' . items_json('crash', 240) . ', 1)');
my $victim = $shards[1];
$victim->poll_query_until('postgres', q{SELECT count(*) >= 5 FROM user_service.users WHERE email LIKE 'crash%'})
  or die 'the part did not start';
my $before = $victim->safe_psql('postgres', q{SELECT count(*) FROM user_service.users WHERE email LIKE 'crash%'});
$victim->stop('immediate');
($out, $err) = router_psql("SELECT * FROM user_service.batch_status($handle)");
like($err, qr/^ERROR:  08001: could not connect to shard 1 of cluster "user_service_cluster"/,
	'batch_status while a shard is down: 08001 naming it');
$victim->start;
is($router->safe_psql('postgres', "SELECT user_service.wait_batch($handle, '3 minutes')"), 't', 'the batch finishes after the restart');
my $part = $victim->safe_psql('postgres', "SELECT cardinality(item_numbers) FROM user_service.cluster_batches WHERE handle = $handle");
ok($before < $part, "the shard was stopped in the middle of its part ($before of $part)");
is($router->safe_psql('postgres', "SELECT succeeded, failed FROM user_service.batch_status($handle)"), '240|0',
	'every item succeeded, none failed as a duplicate');
is(on_shards(q{SELECT count(*) FROM user_service.users WHERE email LIKE 'crash%'}), 240, 'exactly 240 users: each item once');

# cancel_batch on the handle
# (the shards' users tables locked meanwhile, so that only the items each
# shard started are not cancelled; cancel_batch waits for those, as on a
# single node, so it runs in the background until the locks go)
my @gates = map { $_->background_psql('postgres') } @shards;
$_->query_safe('BEGIN; LOCK user_service.users IN EXCLUSIVE MODE') for @gates;
$handle = $router->safe_psql('postgres', 'SELECT user_service.submit_batch(\'create_user\', ' . items_json('cancel', 400) . ', 1)');
my ($cancelled, $cerr) = ('', '');
my $canceller = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $router->connstr('postgres'), '-c', "SELECT user_service.cancel_batch($handle)" ],
	'>', \$cancelled, '2>', \$cerr);
$router->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%cancel_batch%' AND pid <> pg_backend_pid()})
  or die 'no cancel_batch';
sleep 1;
$_->query_safe('COMMIT') for @gates;
$_->quit for @gates;
$canceller->finish;
chomp $cancelled;
ok($cancelled > 0, "cancel_batch cancels the items not started on every shard ($cancelled)");
$router->safe_psql('postgres', "SELECT user_service.wait_batch($handle, '3 minutes')");
is($router->safe_psql('postgres', "SELECT state, succeeded + cancelled FROM user_service.batch_status($handle)"),
	'cancelled|400', 'and the batch ends cancelled');
is(on_shards(q{SELECT count(*) FROM user_service.users WHERE email LIKE 'cancel%'}), 400 - $cancelled,
	'no cancelled item ran');
($out, $err) = router_psql('SELECT * FROM user_service.batch_status(123456789)');
like($err, qr/^ERROR:  P0002: batch 123456789 not found/, 'an unknown handle: P0002');
($out, $err) = router_psql('SELECT user_service.cancel_batch(123456789)');
like($err, qr/^ERROR:  P0002: batch 123456789 not found/, 'cancel_batch of an unknown handle: P0002');

# update_user items: an email whose home is another shard is claimed there
# (a taken one is refused with the API's 23505, at its number).
my $users = $router->safe_psql('postgres', q{SELECT string_agg((u).id::text, ' ' ORDER BY (u).id)
	FROM user_service.list_users_after(0, 8) l, unnest(l.users) u});
my @uids = split / /, $users;
my @moves;
for my $uid (@uids)
{
	for my $i (1 .. 50)
	{
		my $e = "batchmove$uid-$i\@example.com";
		if ($router->safe_psql('postgres', "SELECT user_service.email_hash('$e') & 3") != $uid % $N)
		{
			push @moves, [ $uid, $e ];
			last;
		}
	}
}
# the last item asks for an email another user has
push @moves, [ $uids[0], 'split7@example.com' ];
my $json = '[' . join(', ', map { qq({"id": $_->[0], "email": "$_->[1]"}) } @moves) . ']';
$handle = $router->safe_psql('postgres', "SELECT user_service.submit_batch('update_user', '$json')");
$router->safe_psql('postgres', "SELECT user_service.wait_batch($handle, '3 minutes')");
my $n_moves = scalar(@moves);
is($router->safe_psql('postgres', "SELECT count(*) FILTER (WHERE status = 'succeeded'), string_agg(CASE WHEN status = 'failed' THEN item || ' ' || sqlstate || ' ' || error END, '')
	FROM user_service.batch_results($handle)"),
	($n_moves - 1) . "|$n_moves 23505 a user with email \"split7\@example.com\" already exists",
	'batch email changes: the free ones done, the taken one refused at its number');
is(on_shards(q{SELECT count(*) FROM user_service.email_claims WHERE email_key LIKE 'batchmove%'}), $n_moves - 1,
	'each moved email claimed on its home');
is(on_shards(q{SELECT count(*) FROM user_service.users WHERE email LIKE 'batchmove%'}), $n_moves - 1,
	'and held by its user');

# A submission that cannot reach a shard stores nothing.
$shards[3]->stop('immediate');
my $jobs_before = on_shards_up('SELECT count(*) FROM user_service.batch_jobs');
($out, $err) = router_psql('SELECT user_service.submit_batch(\'create_user\', ' . items_json('down', 40) . ')');
like($err, qr/^ERROR:  08001: could not connect to shard 3 of cluster "user_service_cluster"/, 'a shard down at submission: 08001');
is(on_shards_up('SELECT count(*) FROM user_service.cluster_batches WHERE released_at IS NULL')
	  . '/' . on_shards_up('SELECT count(*) FROM user_service.batch_jobs'),
	"0/$jobs_before", 'and nothing stored on the other shards');
$shards[3]->start;

sub on_shards_up
{
	my ($sql) = @_;
	my $sum = 0;
	$sum += $_->safe_psql('postgres', $sql) for @shards[ 0 .. 2 ];
	return $sum;
}

# What an interrupted submission leaves: staged parts never released are
# discarded; a handle with one part released gets the others released.
my $items = q{ARRAY(SELECT jsonb_build_object('name', 'R', 'email', 'recon' || i || '@example.com', 'password', 'password ' || i) FROM generate_series(1, 8) i)};
my $routes = q{ARRAY(SELECT user_service.email_hash('recon' || i || '@example.com')::bigint FROM generate_series(1, 8) i)};
my $h1 = $router->safe_psql('postgres', 'SELECT user_service_proxy.new_batch_handle(0)');
$router->safe_psql('postgres', "SELECT user_service_proxy.stage_batch_parts($h1, 'create_user', $items,
	ARRAY(SELECT generate_series(1, 8)), $routes, array_fill(NULL::text, ARRAY[8]), NULL)");
my $h2 = $router->safe_psql('postgres', 'SELECT user_service_proxy.new_batch_handle(1)');
$router->safe_psql('postgres', "SELECT user_service_proxy.stage_batch_parts($h2, 'create_user',
	ARRAY(SELECT jsonb_build_object('name', 'S', 'email', 'later' || i || '\@example.com', 'password', 'password ' || i) FROM generate_series(1, 8) i),
	ARRAY(SELECT generate_series(1, 8)),
	ARRAY(SELECT user_service.email_hash('later' || i || '\@example.com')::bigint FROM generate_series(1, 8) i),
	array_fill(NULL::text, ARRAY[8]), NULL)");
my $first = $router->safe_psql('postgres', "SELECT min(p) FROM generate_series(0, 3) p
	WHERE EXISTS (SELECT 1 FROM generate_series(1, 8) i WHERE user_service.email_hash('later' || i || '\@example.com') & 3 = p)");
$router->safe_psql('postgres', "SELECT user_service_proxy.release_batch_part($first, $h2)");
my $staged = on_shards("SELECT count(*) FROM user_service.cluster_batches WHERE handle IN ($h1, $h2) AND released_at IS NULL");
is($router->safe_psql('postgres', q{SELECT user_service.reconcile_batches('0 seconds')}), $staged,
	"reconcile_batches acts on every staged part ($staged)");
is(on_shards("SELECT count(*) FROM user_service.cluster_batches WHERE handle = $h1"), 0,
	'a handle with nothing released: its parts discarded');
is($router->safe_psql('postgres', "SELECT user_service.wait_batch($h2, '3 minutes'), total, succeeded FROM user_service.batch_status($h2)"),
	't|8|8', 'a handle with a part released: the others released and run');

# A part whose batch retention deleted: the handle is gone, and
# reconcile_batches deletes the parts' rows.
$_->safe_psql('postgres', "DELETE FROM user_service.batch_jobs
	WHERE id IN (SELECT batch_id FROM user_service.cluster_batches WHERE handle = $h2)") for @shards;
($out, $err) = router_psql("SELECT * FROM user_service.batch_status($h2)");
like($err, qr/^ERROR:  P0002: batch $h2 not found/, 'a handle whose batches retention deleted: P0002');
$router->safe_psql('postgres', q{SELECT user_service.reconcile_batches()});
is(on_shards("SELECT count(*) FROM user_service.cluster_batches WHERE handle = $h2"), 0,
	'and reconcile_batches deletes its parts\' rows');

# No password of a batch in the router's log.
unlike(slurp_file($router->logfile), qr/secret-split-|secret-crash-/, 'no batch password in the router\'s log');

done_testing();
