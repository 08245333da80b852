# Helpers shared by the TAP tests: a node with user_service preloaded and
# installed, and create_user batches whose emails carry a tag.
package UserServiceNode;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;

our @EXPORT = qw(preloaded_node submit_create_batch insert_users_singly proxy_cluster router_node app_role);

# preloaded_node(NAME, EXTRA_CONF): a started node whose two workers serve
# database postgres, hashing at about 10 ms a hash (argon2 8 MiB, one pass)
# unless EXTRA_CONF (postgresql.conf lines, appended last) says otherwise;
# the extension is created.
sub preloaded_node
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.workers = 2
user_service.argon2_memory_kib = 8192
user_service.argon2_iterations = 1
} . ($extra // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION user_service');
	return $node;
}

# submit_create_batch(NODE, TAG, N, CONCURRENCY): the id of a new batch of N
# create_user items, emails TAG1@example.com .. TAGN@example.com, passwords
# secret-TAG-1 ..; CONCURRENCY when given.
sub submit_create_batch
{
	my ($node, $tag, $n, $concurrency) = @_;
	my $conc = defined $concurrency ? ", $concurrency" : '';

	return $node->safe_psql(
		'postgres', qq{
		SELECT user_service.submit_batch('create_user',
			(SELECT jsonb_agg(jsonb_build_object(
				'name', 'User ' || i,
				'email', '$tag' || i || '\@example.com',
				'password', 'secret-$tag-' || i) ORDER BY i)
			   FROM generate_series(1, $n) i)$conc)});
}

# insert_users_singly(NODE, DBNAME, N): N users bulk1@example.com ..
# inserted straight into the table (no hashing), one statement each, so
# that each adds its own row to user_count_deltas.
sub insert_users_singly
{
	my ($node, $dbname, $n) = @_;

	$node->safe_psql(
		$dbname, qq{
		DO \$\$BEGIN
			FOR i IN 1..$n LOOP
				INSERT INTO user_service.users (name, email, password_hash)
				VALUES ('Bulk ' || i, 'bulk' || i || '\@example.com', 'not a hash');
			END LOOP;
		END\$\$});
}

# router_node(NAME, DB => [CONNSTR, ...], ...): a started router (the
# library preloaded without workers, statements logged) whose databases DB
# (created unless postgres) have user_service_proxy and the server
# user_service_cluster with partitions p0, p1, ... at those connection
# strings, and a user mapping for PUBLIC.
sub router_node
{
	my ($name, %clusters) = @_;
	my $router = PostgreSQL::Test::Cluster->new($name);

	$router->init;
	$router->append_conf(
		'postgresql.conf', q{
shared_preload_libraries = 'user_service'
user_service.workers = 0
log_statement = 'all'
log_min_error_statement = 'error'
});
	$router->start;
	for my $db (sort keys %clusters)
	{
		my @p = @{ $clusters{$db} };
		my $options = join(', ', map { "p$_ '$p[$_]'" } 0 .. $#p);
		$router->safe_psql('postgres', "CREATE DATABASE $db") if $db ne 'postgres';
		$router->safe_psql(
			$db, qq{
			CREATE EXTENSION user_service_proxy CASCADE;
			CREATE SERVER user_service_cluster FOREIGN DATA WRAPPER plproxy OPTIONS ($options);
			CREATE USER MAPPING FOR PUBLIC SERVER user_service_cluster;});
	}
	return $router;
}

# proxy_cluster(N, SHARD_CONF, DBS): N started shards (preloaded nodes,
# SHARD_CONF appended) configured as shards 0 .. N-1 of N, and a router
# (router_node) whose databases DBS (default: postgres) list the shards.
# Returns ($router, @shards).
sub proxy_cluster
{
	my ($n, $shard_conf, @dbs) = @_;
	my @shards;

	@dbs = ('postgres') unless @dbs;
	for my $k (0 .. $n - 1)
	{
		my $s = preloaded_node("shard$k", $shard_conf);
		$s->safe_psql('postgres', "SELECT user_service.configure_shard($k, $n)");
		push @shards, $s;
	}
	my @p = map { 'host=' . $_->host . ' port=' . $_->port . ' dbname=postgres' } @shards;
	my $router = router_node('router', map { ($_ => \@p) } @dbs);
	return ($router, @shards);
}

# app_role(NODE, ROLE): a login role with exactly the README's grants for an
# application role.
sub app_role
{
	my ($node, $role) = @_;

	$node->safe_psql(
		'postgres', qq{
		CREATE ROLE $role LOGIN;
		GRANT USAGE ON SCHEMA user_service TO $role;
		GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service TO $role;
		GRANT SELECT ON user_service.batches, user_service.workers, user_service.stats TO $role;});
	return;
}

1;
