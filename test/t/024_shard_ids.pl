# A database's place in a cluster of shards: configure_shard(k, N) makes
# its new users' ids n * N + k, so that id % N = k names the shard.  The
# place survives pg_dump and pg_restore (a restore keeps a sequence's
# position but not its INCREMENT, which is why the ids do not rely on it):
# the restored shard goes on with ids of its own.  A shard whose users or
# sequence do not match its place refuses to create users, writing
# nothing; configure_shard refuses a database whose users' ids name another
# shard, bad arguments (22023) and non-superusers (42501).  email_hash, the
# routing hash of an email, is its documented SQL formula.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $node = preloaded_node('shards', "user_service.workers = 0\n");
$node->safe_psql('postgres', 'CREATE DATABASE s2');
$node->safe_psql('s2', 'CREATE EXTENSION user_service');

sub error_of
{
	my ($db, $sql, @extra) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, extra_params => [ '-v', 'VERBOSITY=verbose', @extra ]);
	return $err;
}

like(error_of('s2', 'SELECT user_service.configure_shard(1, 3)'),
	qr/ERROR:  22023: shard_count must be a power of two between 1 and 65536/, 'shard_count a power of two');
like(error_of('s2', 'SELECT user_service.configure_shard(4, 4)'),
	qr/ERROR:  22023: shard must be between 0 and shard_count - 1/, 'shard within the count');
like(error_of('s2', 'SELECT user_service.configure_shard(NULL, 4)'),
	qr/ERROR:  22004: shard must not be null/, 'NULL refused');
$node->safe_psql('s2', 'CREATE ROLE dba LOGIN; GRANT USAGE ON SCHEMA user_service TO dba;
	GRANT EXECUTE ON FUNCTION user_service.configure_shard(int, int) TO dba;');
like(error_of('s2', 'SELECT user_service.configure_shard(2, 4)', '-U', 'dba'),
	qr/ERROR:  42501: only a superuser may configure a shard/, 'superuser only, even with EXECUTE');

$node->safe_psql('s2', 'SELECT user_service.configure_shard(2, 4)');
$node->safe_psql('s2', q{
	SELECT user_service.create_user('User ' || i, 'user' || i || '@example.com', 'password ' || i)
	  FROM generate_series(1, 3) i;
	SELECT user_service.process_batches(10) FROM (SELECT user_service.submit_batch('create_user',
		'[{"name": "Batch", "email": "batch@example.com", "password": "batch password"}]')) b;});
is($node->safe_psql('s2', 'SELECT string_agg(id::text, \' \' ORDER BY id) FROM user_service.users'),
	'6 10 14 18', 'shard 2 of 4 hands out ids 4n + 2, in the API and in batches');

# Dump and restore into a new database: the place and the position go along.
my $dump = $node->basedir . '/s2.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('s2') ], 'pg_dump of shard 2');
$node->safe_psql('postgres', 'CREATE DATABASE r2');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('r2'), $dump ], 'pg_restore into a new database');
$node->safe_psql('r2', q{SELECT user_service.create_user('After', 'after@example.com', 'after restore')});
is($node->safe_psql('r2', q{
		SELECT shard || '/' || shard_count, (SELECT max(id) FROM user_service.users)
		  FROM user_service.shard_config}),
	'2/4|22', 'the restored shard is still shard 2 of 4 and goes on with its own ids');

# Users copied in from another shard: the greatest id names shard 2, in a
# database that is shard 3.
$node->safe_psql('postgres', 'CREATE DATABASE s3');
$node->safe_psql('s3', q{
	CREATE EXTENSION user_service;
	SELECT user_service.configure_shard(3, 4);
	SELECT user_service.create_user('Three', 'three@example.com', 'password three');});
is($node->safe_psql('s3', 'SELECT id FROM user_service.users'), '7', 'shard 3 of 4: id 7');
$node->safe_psql('s3', q{
	INSERT INTO user_service.users (id, name, email, password_hash) OVERRIDING SYSTEM VALUE
	VALUES (10, 'Stray', 'stray@example.com', 'x')});
like(error_of('s3', q{SELECT user_service.create_user('New', 'new@example.com', 'new password')}),
	qr/ERROR:  55000: this shard's configuration does not match its users\nDETAIL:  It is shard 3 of 4, but user 10 has an id of shard 2\./,
	'a shard whose users name another shard refuses to create users');
is($node->safe_psql('s3', "SELECT count(*) FROM user_service.users WHERE email = 'new\@example.com'"),
	'0', '... and writes nothing');
$node->safe_psql('s3', 'DELETE FROM user_service.users WHERE id = 10');

# A sequence behind its table (restored from an older dump, say).
$node->safe_psql('s3', q{
	INSERT INTO user_service.users (id, name, email, password_hash) OVERRIDING SYSTEM VALUE
	VALUES (403, 'Later', 'later@example.com', 'x')});
like(error_of('s3', q{SELECT user_service.create_user('New', 'new@example.com', 'new password')}),
	qr/ERROR:  55000: this shard's id sequence does not match its users\n.*HINT:  .*setval\(\) it to at least 101\./s,
	'a sequence behind the greatest id refuses, and says where to set it');
$node->safe_psql('s3', "SELECT setval('user_service.users_id_seq', 101)");
is($node->safe_psql('s3', q{SELECT id FROM user_service.create_user('New', 'new@example.com', 'new password')}),
	'411', 'after setval, ids go on above the greatest');

# configure_shard refuses a database whose users name another shard.
$node->safe_psql('postgres', q{
	SELECT user_service.create_user('One', 'one@example.com', 'password one');
	SELECT user_service.create_user('Two', 'two@example.com', 'password two');});
like(error_of('postgres', 'SELECT user_service.configure_shard(1, 2)'),
	qr/ERROR:  55000: the users of this database do not all have ids of shard 1 of 2\nDETAIL:  User 2 has an id of shard 0\./,
	'configure_shard refuses users of other shards');
is($node->safe_psql('postgres', 'SELECT count(*) FROM user_service.shard_config'), '0', '... and changes nothing');

# configure_shard waits for the writers of users and then sees what they
# committed: a user of shard 0 inserted by a transaction that commits while
# it waits makes it refuse (it used to check with the snapshot it started
# with, and succeed).
$node->safe_psql('postgres', 'CREATE DATABASE race');
$node->safe_psql('race', 'CREATE EXTENSION user_service');
my $writer = $node->background_psql('race');
$writer->query_safe(q{BEGIN; INSERT INTO user_service.users (id, name, email, password_hash)
	OVERRIDING SYSTEM VALUE VALUES (8, 'Late', 'late@example.com', 'x')});
my $configurer = $node->background_psql('race', on_error_stop => 0);
$configurer->query_until(qr/started/, q{
	\echo started
	SELECT user_service.configure_shard(1, 4);
	\echo done
});
$node->poll_query_until('race', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%configure_shard%' AND wait_event_type = 'Lock'})
  or die 'configure_shard did not wait for the writer';
$writer->query_safe('COMMIT');
$writer->quit;
$configurer->query_until(qr/done/, '');
like($configurer->{stderr}, qr/the users of this database do not all have ids of shard 1 of 4/,
	'configure_shard sees a user committed while it waited, and refuses');
$configurer->quit;
is($node->safe_psql('race', 'SELECT count(*) FROM user_service.shard_config'), '0', '... configuring nothing');

# The routing hash is the documented SQL formula, for every form of an
# email the extension takes as the same address.
$node->safe_psql('postgres',
	"CREATE DATABASE u8 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0");
$node->safe_psql('u8', 'CREATE EXTENSION user_service');
my $formula = q{('x' || left(encode(sha256(convert_to(lower(normalize(btrim(e, E' \t\n\r\f\v'), NFC)), 'UTF8')), 'hex'), 8))::bit(32)::int};
is( $node->safe_psql('u8', qq{
		SELECT count(*), count(*) FILTER (WHERE user_service.email_hash(e) = $formula)
		  FROM (VALUES ('ada\@example.com'), ('  ADA\@Example.COM\t'), (U&'jos\\00e9\@example.com'),
		               (U&'JOSE\\0301\@EXAMPLE.com'), ('zz\@example.org'), ('')) v(e)}),
	'6|6', 'email_hash is the documented formula');
is( $node->safe_psql('u8', q{
		SELECT count(DISTINCT user_service.email_hash(e))
		  FROM (VALUES ('ada@example.com'), ('  ADA@Example.COM'), ('Ada@EXAMPLE.com ')) v(e)}),
	'1', 'one address, one hash');
is( $node->safe_psql('u8', q{
		SELECT user_service.email_hash(U&'jos\00e9@example.com') = user_service.email_hash(U&'JOSE\0301@example.com')}),
	't', 'composed and decomposed forms hash alike');
is( $node->safe_psql('u8', q{
		SELECT count(DISTINCT user_service.email_hash('user' || i || '@example.com') & 3)
		  FROM generate_series(1, 200) i}),
	'4', 'its low bits spread emails over 4 shards');

$node->stop;
done_testing();
