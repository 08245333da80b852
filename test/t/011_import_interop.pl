# Users move over from another system without resetting their passwords:
# hashes made by Python's argon2-cffi (Debian python3-argon2) with its own
# default parameters, and argon2i and argon2d ones made with its low-level
# API, are imported by an import_user batch that the background workers
# process.  verify_password accepts the right password and rejects a wrong
# one.  A successful verify keeps those that cost more memory, or memory
# times passes, than this server's settings (a rehash never downgrades) and
# upgrades the weaker one; under settings above them all, the first successful verify in a writable transaction
# replaces it with one made with the current parameters (argon2id 1.3),
# which still verifies, here and in argon2-cffi, and is not downgraded when
# the settings go back.  A read-only verify leaves the imported hash alone.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;
use IPC::Run qw(run);

my $python = '/usr/bin/python3';

# Run a Python snippet with argon2 imported; the password comes on stdin.
sub py
{
	my ($code, $stdin) = @_;
	my ($out, $err);
	my $ok = run([ $python, '-c', "import sys, os, argon2, argon2.low_level\n$code" ],
		\$stdin, \$out, \$err);
	die "python failed: $err" unless $ok;
	chomp $out;
	return $out;
}

my $node = preloaded_node('import', "user_service.argon2_memory_kib = 1024\n");

# The other system's users: email => [password, code that hashes stdin].
my $low_level = q{
print(argon2.low_level.hash_secret(sys.stdin.read().encode(), os.urandom(16),
      time_cost=%d, memory_cost=%d, parallelism=%d, hash_len=32,
      type=argon2.low_level.Type.%s, version=%d).decode())};
my %users = (
	'cffi-default@example.com' =>
	  [ 'default secret', q{print(argon2.PasswordHasher().hash(sys.stdin.read()))} ],
	'cffi-i@example.com' => [ 'argon2i secret', sprintf($low_level, 3, 4096, 2, 'I', 19) ],
	'cffi-d@example.com' => [ 'argon2d secret', sprintf($low_level, 2, 2048, 1, 'D', 19) ],
	'cffi-i-v16@example.com' => [ 'old secret', sprintf($low_level, 2, 512, 1, 'I', 16) ],);
my %hash;
$hash{$_} = py($users{$_}[1], $users{$_}[0]) for keys %users;

like($hash{'cffi-default@example.com'}, qr/^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/,
	"argon2-cffi's default hash is argon2id");
like($hash{'cffi-i@example.com'}, qr/^\$argon2i\$v=19\$m=4096,t=3,p=2\$/, 'an argon2i hash');
like($hash{'cffi-d@example.com'}, qr/^\$argon2d\$v=19\$m=2048,t=2,p=1\$/, 'an argon2d hash');
like($hash{'cffi-i-v16@example.com'}, qr/^\$argon2i\$v=16\$m=512,t=2,p=1\$/,
	'a version 0x10 hash');

# One import_user batch with all of them, processed by the workers.  (The
# strings hold no quote or backslash: PHC strings are base64 and digits.)
my @emails = sort keys %users;
for my $email (@emails)
{
	die "unexpected character in $hash{$email}" if $hash{$email} =~ /["\\]/;
}
my $items = join(",\n",
	map { qq{{"name": "Imported $_", "email": "$_", "password_hash": "$hash{$_}"}} } @emails);
my $batch = $node->safe_psql('postgres',
	"SELECT user_service.submit_batch('import_user', \$json\$[$items]\$json\$)");
is($node->safe_psql('postgres', "SELECT user_service.wait_batch($batch, '60 s')"),
	't', 'the workers process the import');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(status, ',' ORDER BY item) FROM user_service.batch_results($batch)"),
	join(',', ('succeeded') x @emails),
	'every item succeeded');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM user_service.batch_items WHERE batch_id = $batch AND payload ? 'password_hash'"),
	'0',
	'no hash is left in the job table');

sub stored
{
	my ($email) = @_;
	return $node->safe_psql('postgres',
		"SELECT password_hash FROM user_service.users WHERE email = '$email'");
}

sub verify
{
	my ($email, $password, $read_only, $settings) = @_;
	my $sql = "SELECT user_service.verify_password('$email', '$password')";
	$sql = "BEGIN READ ONLY; $sql; COMMIT" if $read_only;
	$sql = "$settings $sql" if $settings;
	return $node->safe_psql('postgres', $sql);
}
# settings stronger than every imported hash (argon2-cffi's default: m=102400, t=2)
my $stronger = 'SET user_service.argon2_memory_kib = 131072; SET user_service.argon2_iterations = 3;';

my $verify_py = q{
h, pw = sys.stdin.read().split("\n", 1)
try:
    print(argon2.PasswordHasher().verify(h, pw))
except argon2.exceptions.VerifyMismatchError:
    print(False)
};

for my $email (@emails)
{
	my $password = $users{$email}[0];

	is(stored($email), $hash{$email}, "$email: stored as imported");
	is(verify($email, $password, 1), 't', "$email: the right password verifies");
	is(verify($email, "not $password", 1), 'f', "$email: a wrong password does not");
	is(verify($email, "not $password", 0), 'f', "$email: nor in a writable transaction");
	is(stored($email), $hash{$email}, "$email: read-only and failed verifies keep the imported hash");

	is(verify($email, $password, 0), 't', "$email: verified in a writable transaction");
	my ($m, $t) = $hash{$email} =~ /\$m=(\d+),t=(\d+),/;
	if ($m > 1024 || $m * $t > 1024)
	{
		is(stored($email), $hash{$email},
			"$email: kept: it costs more than this server's settings (m=1024, t=1), never downgraded");
	}
	else
	{
		like(stored($email), qr/^\$argon2id\$v=19\$m=1024,t=1,p=1\$/,
			"$email: upgraded: weaker (argon2i 0x10, less memory) and no costlier");
	}

	# under settings above every imported hash's, a successful verify upgrades
	is(verify($email, $password, 0, $stronger), 't', "$email: verified under stronger settings");
	my $rehashed = stored($email);
	like(
		$rehashed,
		qr/^\$argon2id\$v=19\$m=131072,t=3,p=1\$[A-Za-z0-9+\/]{22}\$[A-Za-z0-9+\/]{43}$/,
		"$email: rehashed with the current parameters");
	is(verify($email, $password, 0, $stronger), 't', "$email: the rehashed one verifies");
	is(verify($email, "not $password", 0, $stronger), 'f', "$email: and rejects a wrong password");
	is(stored($email), $rehashed, "$email: and is not rehashed again");
	is(verify($email, $password, 0), 't', "$email: nor downgraded when the settings go back");
	is(stored($email), $rehashed, "$email: it stays as it is");
	is(py($verify_py, "$rehashed\n$password"), 'True', "$email: argon2-cffi verifies the rehashed one");
}

$node->stop;
done_testing();
