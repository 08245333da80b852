# Hashes interoperate with another argon2 implementation: Python's
# argon2-cffi (Debian python3-argon2) verifies ours, and ours verify its,
# made with its own defaults and with odd parameters.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run);

my $python = '/usr/bin/python3';

# Run a Python snippet with argon2 imported; the password comes on stdin.
sub py
{
	my ($code, $stdin) = @_;
	my ($out, $err);
	my $ok = run([ $python, '-c', "import sys, argon2\n$code" ], \$stdin, \$out, \$err);
	die "python failed: $err" unless $ok;
	chomp $out;
	return $out;
}

my $node = PostgreSQL::Test::Cluster->new('interop');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'user_service'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION user_service');

my $verify_py = q{
h, pw = sys.stdin.read().split("\n", 1)
try:
    print(argon2.PasswordHasher().verify(h, pw))
except argon2.exceptions.VerifyMismatchError:
    print(False)
};

# 1. Ours, verified by argon2-cffi (which runs on libargon2): default and
#    non-default parameters.  The default ones (argon2id, one lane) are made
#    by libsodium, the others (four lanes) by libargon2.
$node->safe_psql('postgres',
	q{SELECT user_service.create_user('Ours', 'ours@example.com', 'our secret 1')});
$node->safe_psql('postgres', q{
	SET user_service.argon2_memory_kib = 4096;
	SET user_service.argon2_iterations = 3;
	SET user_service.argon2_parallelism = 4;
	SELECT user_service.create_user('Ours p4', 'ours4@example.com', 'our secret 4')});
for my $case ([ 'ours@example.com', 'our secret 1' ], [ 'ours4@example.com', 'our secret 4' ])
{
	my ($email, $pw) = @$case;
	my $hash = $node->safe_psql('postgres',
		"SELECT password_hash FROM user_service.users WHERE email = '$email'");
	like($hash, qr/^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+\/]+\$[A-Za-z0-9+\/]+$/,
		"$email: PHC string");
	is(py($verify_py, "$hash\n$pw"), 'True', "argon2-cffi verifies our hash of $email");
	is(py($verify_py, "$hash\nnot $pw"), 'False', "argon2-cffi rejects a wrong password for $email");
}

# 2. argon2-cffi's, verified by us.
my %theirs = (
	'cffi-default@example.com' => py(q{print(argon2.PasswordHasher().hash(sys.stdin.read()))},
		'cffi secret 1'),
	'cffi-odd@example.com' => py(q{
print(argon2.PasswordHasher(time_cost=3, memory_cost=2048, parallelism=3,
                            hash_len=20, salt_len=8).hash(sys.stdin.read()))},
		'cffi secret 2'),
	'cffi-i@example.com' => py(q{
print(argon2.PasswordHasher(time_cost=2, memory_cost=512, parallelism=1,
                            type=argon2.Type.I).hash(sys.stdin.read()))},
		'cffi secret 3'),);
my %password = (
	'cffi-default@example.com' => 'cffi secret 1',
	'cffi-odd@example.com' => 'cffi secret 2',
	'cffi-i@example.com' => 'cffi secret 3',);
for my $email (sort keys %theirs)
{
	$node->safe_psql('postgres',
		"INSERT INTO user_service.users (name, email, password_hash) VALUES ('Theirs', '$email', '$theirs{$email}')"
	);
	is( $node->safe_psql('postgres',
			"BEGIN READ ONLY; SELECT user_service.verify_password('$email', '$password{$email}'); COMMIT"),
		't', "we verify argon2-cffi's hash for $email");
	is( $node->safe_psql('postgres',
			"SELECT user_service.verify_password('$email', 'wrong password')"),
		'f', "we reject a wrong password for $email");
}

# 3. A successful verify upgrades their hash to ours; argon2-cffi still
#    verifies the upgraded one.
is( $node->safe_psql('postgres',
		"SELECT user_service.verify_password('cffi-odd\@example.com', 'cffi secret 2')"),
	't', 'verify in a writable transaction');
my $upgraded = $node->safe_psql('postgres',
	"SELECT password_hash FROM user_service.users WHERE email = 'cffi-odd\@example.com'");
like($upgraded, qr/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, 'hash upgraded to the current parameters');
is(py($verify_py, "$upgraded\ncffi secret 2"), 'True', 'argon2-cffi verifies the upgraded hash');

$node->stop;
done_testing();
