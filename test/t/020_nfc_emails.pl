# Emails are one address whatever Unicode form they are typed in: in a UTF-8
# database every path that stores or looks up an email uses Normalization
# Form C (create_user, update_user, verify_password, the batch kinds), so
# "jos\x{e9}" with a composed or a decomposed e-acute cannot be two accounts
# that look the same.  In other encodings PostgreSQL normalizes nothing, and
# neither does the extension.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $node = preloaded_node('nfc', "user_service.workers = 0\n");
$node->safe_psql('postgres',
	"CREATE DATABASE u8 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0");
$node->safe_psql('u8', 'CREATE EXTENSION user_service');

my $composed = q{U&'jos\00e9@example.com'};
my $decomposed = q{U&'jose\0301@example.com'};

is($node->safe_psql('u8', "SELECT $composed = $decomposed, $composed = normalize($decomposed, NFC)"),
	'f|t', 'the two forms differ as text and are equal in NFC');

$node->safe_psql('u8', "SELECT * FROM user_service.create_user('Jose', $decomposed, 'first password')");
is($node->safe_psql('u8', "SELECT email = $composed FROM user_service.users WHERE id = 1"),
	't', 'create_user stores the decomposed form in NFC');

my ($rc, $out, $err) = $node->psql('u8',
	"SELECT * FROM user_service.create_user('Other', $composed, 'second password')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  23505: a user with email ".*" already exists/,
	'the composed form is the same address (23505)');
($rc, $out, $err) = $node->psql('u8',
	"SELECT * FROM user_service.create_user('Other', upper($decomposed), 'second password')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  23505: /, '... and so is the upper-cased decomposed form');

is( $node->safe_psql('u8', qq{
		SELECT user_service.verify_password($composed, 'first password'),
		       user_service.verify_password($decomposed, 'first password'),
		       user_service.verify_password(' ' || $decomposed || ' ', 'first password'),
		       user_service.verify_password($decomposed, 'wrong password')}),
	't|t|t|f', 'verify_password finds the user by either form');

# update_user and the batch kinds go through the same rules.
$node->safe_psql('u8', q{SELECT * FROM user_service.create_user('Ren', 'ren@example.com', 'third password')});
$node->safe_psql('u8', qq{SELECT * FROM user_service.update_user(2, email => U&'rene\\0301\@example.com')});
is($node->safe_psql('u8', "SELECT email = U&'ren\\00e9\@example.com' FROM user_service.users WHERE id = 2"),
	't', 'update_user stores NFC');
($rc, $out, $err) = $node->psql('u8', "SELECT * FROM user_service.update_user(2, email => $composed)",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  23505: /, 'update_user to the other form of a taken address is refused');

my $batch = $node->safe_psql('u8', qq{
	SELECT user_service.submit_batch('create_user', jsonb_build_array(
		jsonb_build_object('name', 'A', 'email', U&'zo\\0308\@example.com', 'password', 'batch password 1'),
		jsonb_build_object('name', 'B', 'email', U&'z\\00f6\@example.com', 'password', 'batch password 2'),
		jsonb_build_object('name', 'C', 'email', $decomposed, 'password', 'batch password 3')))});
$node->safe_psql('u8', 'SELECT user_service.process_batches()');
is( $node->safe_psql('u8', qq{
		SELECT string_agg(item || ':' || status || ':' || coalesce(sqlstate, '-'), ' ' ORDER BY item)
		  FROM user_service.batch_results($batch)}),
	'1:succeeded:- 2:failed:23505 3:failed:23505', 'a batch meets the same rule, within itself and against the table');
is($node->safe_psql('u8', "SELECT count(*) FROM user_service.users WHERE email = U&'z\\00f6\@example.com'"),
	'1', 'the batch stored NFC');

# In a SQL_ASCII database bytes are bytes.
$node->safe_psql('postgres', 'CREATE DATABASE ascii ENCODING SQL_ASCII TEMPLATE template0');
$node->safe_psql('ascii', 'CREATE EXTENSION user_service');
$node->safe_psql('ascii', "SELECT * FROM user_service.create_user('A', E'jos\\xc3\\xa9\@example.com', 'first password')");
$node->safe_psql('ascii', "SELECT * FROM user_service.create_user('B', E'jose\\xcc\\x81\@example.com', 'first password')");
is($node->safe_psql('ascii', 'SELECT count(*) FROM user_service.users'), '2',
	'in SQL_ASCII the extension normalizes nothing, as PostgreSQL');

$node->stop;
done_testing();
