# The README's import from a CSV file, run as it is written there: \copy
# into a staging table and one import_user batch from it.  The CSV holds
# hashes of three formats (a bcrypt hash by PHP's password_hash, a Django
# PBKDF2 hash, a sha512-crypt hash by mkpasswd, all of 'correct horse'),
# a header line and a name with a comma and a quote; the workers import
# them and the users log in.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run qw(run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $readme = slurp_file("$FindBin::RealBin/../../README.md");
my ($section) = $readme =~ /\nFrom a CSV file in psql[^\n]*\n\n```sql\n(.*?)```/s;
ok(defined $section, 'the README shows the CSV import');
like($section // '', qr/\\copy staging FROM 'users\.csv'/, 'from a file users.csv');

my $node = preloaded_node('csv');
my $dir = PostgreSQL::Test::Utils::tempdir();
open(my $csv, '>', "$dir/users.csv") or die "users.csv: $!";
print $csv <<'CSV';
name,email,password_hash
"Lovelace, Ada ""the first""",ada@example.com,$2y$10$9ZutdN2p887wneeOYWGrt.WEem1FiRdwsta7oK5mtf.kYkUpXHeHS
Alan,alan@example.com,pbkdf2_sha256$260000$jTjAv9KVNjC9QdOuyVFbuS$P8ugDeeDbblcKYTgBtyMJRilqJOSi1xU6daF8ZWjL/g=
Grace,grace@example.com,$6$muNB.EL02W50VoAh$7YW3JQ719AQjiyl.LffambnHb0OqkmIs6oqgARBKccQIWyMdhlJB6qruu9GNZrEzkaj7Y5aZ2AsciP1nRMGL80
CSV
close($csv);

# psql from the CSV's folder: \copy reads users.csv relative to it
my ($out, $err);
my $ok = run [ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
  '<', \$section, '>', \$out, '2>', \$err, init => sub { chdir $dir or die "chdir: $!" };
ok($ok, 'the README\'s lines run in psql') or diag($err);
my ($batch) = ($out // '') =~ /^(\d+)$/m;
ok(defined $batch, 'they submit one batch');
$batch //= 0;
$node->poll_query_until('postgres', "SELECT user_service.wait_batch($batch, '10 seconds')")
  or die 'the batch did not finish';
is($node->safe_psql('postgres', "SELECT total, succeeded FROM user_service.batch_status($batch)"),
	'3|3', 'the three users are imported');
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(name || ' ' || user_service.hash_format(password_hash), ', ' ORDER BY email)
		  FROM user_service.users}),
	'Lovelace, Ada "the first" bcrypt, Alan pbkdf2-sha256, Grace sha512-crypt',
	'names as the CSV quotes them, each hash in its format');
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(user_service.verify_password(email, 'correct horse')::text, ',' ORDER BY email)
		  FROM user_service.users}),
	'true,true,true', 'and they log in with their passwords');

$node->stop;
done_testing();
