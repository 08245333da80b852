# CREATE EXTENSION refuses a schema user_service created beforehand by a
# role that is neither the installing role nor a superuser (that role could
# drop the email index afterwards), and leaves nothing behind; a schema the
# installer or a superuser owns is used as before.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('schema_owner');
$node->init;
$node->append_conf('postgresql.conf', "user_service.argon2_memory_kib = 1024");
$node->start;

$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	GRANT CREATE ON DATABASE postgres TO mallory});
$node->safe_psql('postgres', 'CREATE SCHEMA user_service', extra_params => [ '-U', 'mallory' ]);

my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nCREATE EXTENSION user_service");
isnt($rc, 0, 'CREATE EXTENSION fails on a schema another role owns');
like($err, qr/ERROR:  42501: schema "user_service" is owned by role "mallory", not by the installing role/,
	'... with 42501 naming the owner');
like($err, qr/HINT:  Drop the schema, then create the extension again/, '... and a hint');
is( $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'user_service'),
		       (SELECT count(*) FROM pg_class WHERE relnamespace = 'user_service'::regnamespace)}),
	'0|0', 'nothing was created');

# Given to the installer, a schema that holds another role's function (an
# overload that would catch calls) or lets others create is refused too.
$node->safe_psql('postgres', q{
	CREATE FUNCTION user_service.verify_password(e varchar, p varchar) RETURNS boolean
	LANGUAGE sql AS 'SELECT true'}, extra_params => [ '-U', 'mallory' ]);
$node->safe_psql('postgres', 'ALTER SCHEMA user_service OWNER TO CURRENT_USER');
($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nCREATE EXTENSION user_service");
like($err, qr/ERROR:  42501: schema "user_service" already holds objects, or lets other roles create them/,
	'a schema holding another role\'s function is refused');
$node->safe_psql('postgres', q{
	DROP FUNCTION user_service.verify_password(varchar, varchar);
	GRANT CREATE ON SCHEMA user_service TO mallory});
($rc, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION user_service');
like($err, qr/already holds objects, or lets other roles create them/,
	'a schema where another role may create is refused');
$node->safe_psql('postgres', 'REVOKE CREATE ON SCHEMA user_service FROM mallory');

# Empty, owned by the installer, nobody else may create: it installs and works.
$node->safe_psql('postgres', 'CREATE EXTENSION user_service');
is( $node->safe_psql('postgres', q{
		SELECT name FROM user_service.create_user('Ada', 'ada@example.com', 'analytical engine')}),
	'Ada', 'with a schema the installer owns it installs');

# A schema made beforehand by another superuser (a restore run by another
# superuser, say) is accepted too.
$node->safe_psql('postgres', q{
	DROP EXTENSION user_service;
	DROP SCHEMA user_service;
	CREATE ROLE admin SUPERUSER LOGIN});
$node->safe_psql('postgres', 'CREATE SCHEMA user_service', extra_params => [ '-U', 'admin' ]);
($rc, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION user_service');
is($rc, 0, 'a schema owned by a superuser is accepted');

# Without the extension created by mallory's schema, mallory cannot touch it:
# a schema created by CREATE EXTENSION belongs to the installer.
$node->safe_psql('postgres', q{
	DROP EXTENSION user_service;
	DROP SCHEMA user_service;
	CREATE EXTENSION user_service});
($rc, $out, $err) = $node->psql('postgres', 'DROP INDEX user_service.users_email_key',
	extra_params => [ '-U', 'mallory' ]);
like($err, qr/ERROR:  permission denied for schema user_service|must be owner/,
	'the role cannot drop the email index of a schema it does not own');

$node->stop;
done_testing();
