# pg_dump keeps the users (their rows and the identity sequence are
# registered with pg_extension_config_dump); after pg_restore into a new
# database passwords verify, the total is exact and new ids continue.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'user_service'");
$node->start;

$node->safe_psql('postgres', q{
	CREATE DATABASE src;
	CREATE DATABASE dst;});
$node->safe_psql('src', q{
	CREATE EXTENSION user_service;
	SET user_service.argon2_memory_kib = 1024;
	SELECT user_service.create_user('User ' || i, 'user' || i || '@example.com', 'password ' || i)
	  FROM generate_series(1, 5) i;
	SELECT user_service.delete_user(2);});

my $rows = q{SELECT id, name, email, password_hash, created_at, updated_at
	FROM user_service.users ORDER BY id};
my $before = $node->safe_psql('src', $rows);

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ], 'pg_dump');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('dst'), $dump ], 'pg_restore');

is($node->safe_psql('dst', $rows), $before, 'rows identical after restore');
is($node->safe_psql('dst', 'SELECT total FROM user_service.list_users()'), '4',
	'exact total after restore');
is($node->safe_psql('dst', q{SELECT user_service.verify_password('user3@example.com', 'password 3')}),
	't', 'password verifies after restore');
is($node->safe_psql('dst', q{SELECT user_service.verify_password('user3@example.com', 'password 4')}),
	'f', 'wrong password still rejected after restore');
is( $node->safe_psql('dst', q{
		SET user_service.argon2_memory_kib = 1024;
		SELECT id FROM user_service.create_user('New', 'new@example.com', 'new password')}),
	'6', 'identity sequence continues after restore');
is($node->safe_psql('dst', 'SELECT total FROM user_service.list_users()'), '5',
	'total after a new user');

$node->stop;
done_testing();
