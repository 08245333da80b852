# pg_stat_statements and passwords.  It replaces the constants of plannable
# statements by $1, $2 ..., so a SELECT of a password function keeps no
# password; but utility statements (DO blocks, EXPLAIN) are kept as typed,
# passwords included, for any pg_read_all_stats role to read.  With
# pg_stat_statements.track_utility = off (what the README advises on
# servers that take passwords) no text of them is kept at all.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('pgss');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'pg_stat_statements, user_service'
user_service.database = 'postgres'
user_service.workers = 0
user_service.argon2_memory_kib = 256
user_service.argon2_iterations = 1
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_stat_statements;
	CREATE EXTENSION user_service;
	SELECT user_service.create_user('Ada', 'ada@example.com', 'initial password');
	CREATE ROLE monitor LOGIN IN ROLE pg_read_all_stats});

sub calls
{
	my ($tag) = @_;
	$node->safe_psql('postgres', 'SELECT pg_stat_statements_reset()');
	$node->safe_psql('postgres', qq{
		SELECT user_service.verify_password('ada\@example.com', 'SeCrEt-$tag-select');
		DO \$\$BEGIN PERFORM user_service.verify_password('ada\@example.com', 'SeCrEt-$tag-do'); END\$\$;
		EXPLAIN SELECT user_service.verify_password('ada\@example.com', 'SeCrEt-$tag-explain');});
	return $node->safe_psql('postgres',
		'SELECT query FROM pg_stat_statements ORDER BY query',
		extra_params => [ '-U', 'monitor' ]);
}

my $seen = calls('default');
like($seen, qr/verify_password\(\$1, \$2\)/, 'a SELECT of verify_password is kept with $1, $2');
unlike($seen, qr/SeCrEt-default-select/, '... and without its password');
like($seen, qr/SeCrEt-default-do/,
	'by default a DO block is kept as typed, password included (the documented limit)');
like($seen, qr/SeCrEt-default-explain/, '... and so is an EXPLAIN');

$node->append_conf('postgresql.conf', 'pg_stat_statements.track_utility = off');
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('pg_stat_statements.track_utility') = 'off'})
  or die 'track_utility was not reloaded';
$seen = calls('off');
like($seen, qr/verify_password\(\$1, \$2\)/, 'with track_utility off the SELECT is still counted');
unlike($seen, qr/SeCrEt/, '... and no text holds a password');

$node->stop;
done_testing();
