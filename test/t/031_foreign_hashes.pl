# Users move over from other systems with the password hashes those systems
# made, produced at run time by the real producers (Debian packages):
# Python's bcrypt ($2b$, $2a$), passlib's pbkdf2_sha1/_sha256/_sha512,
# Django's make_password (pbkdf2_sha256, pbkdf2_sha1, bcrypt_sha256, bcrypt,
# argon2), PHP's password_hash ($2y$), mkpasswd (sha512-crypt, sha256-crypt,
# yescrypt) and Keycloak-style PBKDF2 credentials computed with hashlib.
# The passwords reach the producers on stdin, never on a command line, and
# never appear in the test's output.  A producer that is missing or fails
# fails the test.
#
# Half are imported with import_user(), half by one import_user batch that
# the workers run (Keycloak credentials as JSON text through the function,
# as JSON objects in the batch).  For each: hash_format names the format
# before the first login, the right password verifies and a wrong one does
# not, a read-only verify keeps the imported hash, the first success in a
# writable transaction replaces it by argon2id (Django's argon2 hash is
# argon2id already and stronger than this server's settings: kept), which
# verifies the same way.  bcrypt uses only the first 72 bytes of a password,
# as its producers do; Django's bcrypt_sha256 all of it.
#
# Hashes that cannot be verified faithfully ($2x$) or would cost too much
# at every login (bcrypt cost 15, PBKDF2 with 5000000 iterations,
# sha512-crypt with rounds=6000000, yescrypt with 1 GiB: produced hashes
# with their cost edited, since an import checks the cost without
# verifying), malformed ones and Keycloak credentials of another algorithm
# or cut short are refused with 22023 and a reason that never quotes them,
# by the function and as one bad item of a batch (the whole submission,
# nothing stored), with user_service.redact_log on and off.
# password_formats counts the users per format before and after the logins;
# the server log holds neither a password nor an imported hash.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;
use IPC::Run qw(run);
use JSON::PP;
use MIME::Base64 qw(decode_base64);

my $python = '/usr/bin/python3';       # python3-bcrypt, -passlib, -django, -argon2
my $php = '/usr/bin/php';              # php-cli
my $mkpasswd = '/usr/bin/mkpasswd';    # whois
my $json = JSON::PP->new->canonical;

# The users of the other systems: label, producer, what it is asked for,
# the format hash_format must name, and how the hash is imported.
my @users = (
	[ 'py-bcrypt-2b',          'python',   'bcrypt 2b 10',                 'bcrypt',        'fn' ],
	[ 'py-bcrypt-2a',          'python',   'bcrypt 2a 10',                 'bcrypt',        'batch' ],
	[ 'py-bcrypt-2b-long',     'python',   'bcrypt 2b 10',                 'bcrypt',        'batch' ],
	[ 'passlib-pbkdf2-sha1',   'python',   'passlib pbkdf2_sha1 20000',    'pbkdf2-sha1',   'fn' ],
	[ 'passlib-pbkdf2-sha256', 'python',   'passlib pbkdf2_sha256 29000',  'pbkdf2-sha256', 'batch' ],
	[ 'passlib-pbkdf2-sha512', 'python',   'passlib pbkdf2_sha512 25000',  'pbkdf2-sha512', 'fn' ],
	[ 'django-pbkdf2-sha256',  'python',   'django pbkdf2_sha256',         'pbkdf2-sha256', 'batch' ],
	[ 'django-pbkdf2-sha1',    'python',   'django pbkdf2_sha1',           'pbkdf2-sha1',   'fn' ],
	[ 'django-bcrypt-sha256',  'python',   'django bcrypt_sha256',         'bcrypt-sha256', 'batch' ],
	[ 'django-bcrypt-sha256-long', 'python', 'django bcrypt_sha256',       'bcrypt-sha256', 'fn' ],
	[ 'django-bcrypt',         'python',   'django bcrypt',                'bcrypt',        'fn' ],
	[ 'django-argon2',         'python',   'django argon2',                'argon2id',      'batch' ],
	[ 'keycloak-pbkdf2-fn',    'python',   'keycloak pbkdf2 20000',        'pbkdf2-sha1',   'fn' ],
	[ 'keycloak-pbkdf2-batch', 'python',   'keycloak pbkdf2 20000',        'pbkdf2-sha1',   'batch' ],
	[ 'keycloak-sha256-fn',    'python',   'keycloak pbkdf2-sha256 27500', 'pbkdf2-sha256', 'fn' ],
	[ 'keycloak-sha256-batch', 'python',   'keycloak pbkdf2-sha256 27500', 'pbkdf2-sha256', 'batch' ],
	[ 'keycloak-sha512-fn',    'python',   'keycloak pbkdf2-sha512 30000', 'pbkdf2-sha512', 'fn' ],
	[ 'keycloak-sha512-batch', 'python',   'keycloak pbkdf2-sha512 30000', 'pbkdf2-sha512', 'batch' ],
	[ 'php-default',           'php',      'default',                      'bcrypt',        'fn' ],
	[ 'php-bcrypt',            'php',      'bcrypt 11',                    'bcrypt',        'batch' ],
	[ 'php-bcrypt-long',       'php',      'bcrypt 10',                    'bcrypt',        'fn' ],
	[ 'mkpasswd-sha512',       'mkpasswd', '-m sha-512',                   'sha512-crypt',  'batch' ],
	[ 'mkpasswd-sha256',       'mkpasswd', '-m sha-256 -R 10000',          'sha256-crypt',  'fn' ],
	[ 'mkpasswd-yescrypt',     'mkpasswd', '-m yescrypt',                  'yescrypt',      'batch' ],);
my %user = map { $_->[0] => { producer => $_->[1], spec => $_->[2], format => $_->[3], via => $_->[4] } }
  @users;

# What each producer must write (the Keycloak credentials are checked apart).
my %shape = (
	'py-bcrypt-2b'              => qr/^\$2b\$10\$[.\/A-Za-z0-9]{53}$/,
	'py-bcrypt-2a'              => qr/^\$2a\$10\$[.\/A-Za-z0-9]{53}$/,
	'py-bcrypt-2b-long'         => qr/^\$2b\$10\$[.\/A-Za-z0-9]{53}$/,
	'passlib-pbkdf2-sha1'       => qr/^\$pbkdf2\$20000\$[.\/A-Za-z0-9]+\$[.\/A-Za-z0-9]{27}$/,
	'passlib-pbkdf2-sha256'     => qr/^\$pbkdf2-sha256\$29000\$[.\/A-Za-z0-9]+\$[.\/A-Za-z0-9]{43}$/,
	'passlib-pbkdf2-sha512'     => qr/^\$pbkdf2-sha512\$25000\$[.\/A-Za-z0-9]+\$[.\/A-Za-z0-9]{86}$/,
	'django-pbkdf2-sha256'      => qr/^pbkdf2_sha256\$\d+\$[A-Za-z0-9]+\$[A-Za-z0-9+\/]{43}=$/,
	'django-pbkdf2-sha1'        => qr/^pbkdf2_sha1\$\d+\$[A-Za-z0-9]+\$[A-Za-z0-9+\/]{27}=$/,
	'django-bcrypt-sha256'      => qr/^bcrypt_sha256\$\$2b\$12\$[.\/A-Za-z0-9]{53}$/,
	'django-bcrypt-sha256-long' => qr/^bcrypt_sha256\$\$2b\$12\$[.\/A-Za-z0-9]{53}$/,
	'django-bcrypt'             => qr/^bcrypt\$\$2b\$12\$[.\/A-Za-z0-9]{53}$/,
	'django-argon2'             => qr/^argon2\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+\/]+\$[A-Za-z0-9+\/]+$/,
	'php-default'               => qr/^\$2y\$10\$[.\/A-Za-z0-9]{53}$/,
	'php-bcrypt'                => qr/^\$2y\$11\$[.\/A-Za-z0-9]{53}$/,
	'php-bcrypt-long'           => qr/^\$2y\$10\$[.\/A-Za-z0-9]{53}$/,
	'mkpasswd-sha512'           => qr/^\$6\$[.\/A-Za-z0-9]{1,16}\$[.\/A-Za-z0-9]{86}$/,
	'mkpasswd-sha256'           => qr/^\$5\$rounds=10000\$[.\/A-Za-z0-9]{1,16}\$[.\/A-Za-z0-9]{43}$/,
	'mkpasswd-yescrypt'         => qr/^\$y\$j9T\$[.\/A-Za-z0-9]+\$[.\/A-Za-z0-9]{43}$/,);

# Passwords: spaces, punctuation and UTF-8 bytes; the long ones are ASCII so
# that byte positions are characters.  A variant is what the producer's own
# verifier is asked about too: 72 equal bytes of an 80-byte bcrypt password
# (bcrypt uses no more), byte 90 of 100 changed for bcrypt_sha256 (its
# SHA-256 pre-hash uses all of them).
for my $label (keys %user)
{
	my $u = $user{$label};
	if ($label =~ /bcrypt-.*long$/ && $label !~ /sha256/)
	{
		$u->{password} = substr("long-$label-" x 10, 0, 80);
		$u->{variant} = substr($u->{password}, 0, 72) . ('#' x 8);
		$u->{wrong} = substr($u->{password}, 0, 71) . '#' . substr($u->{password}, 72);
	}
	elsif ($label =~ /sha256-long$/)
	{
		$u->{password} = substr("prehash-$label-" x 10, 0, 100);
		$u->{variant} = substr($u->{password}, 0, 89) . '#' . substr($u->{password}, 90);
		$u->{wrong} = "$u->{password}#";
	}
	else
	{
		$u->{password} = "Tr0ub4dor&3 $label \xc3\xa9t\xc3\xa9 \xe2\x9c\x93";
		$u->{wrong} = "Tr0ub4dor&3 $label \xc3\xa9t\xc3\xa9 \xe2\x9c\x94";
	}
	($u->{email} = "$label\@example.com") =~ tr/_/-/;
}
die 'a password holds a character the producers cannot take'
  if grep { /[\t\n']/ } map { @{$_}{qw(password wrong)}, $_->{variant} // '' } values %user;

# No password may appear in what the test prints: masked in every diag.
sub mask
{
	my ($text) = @_;
	$text //= '';
	for my $u (values %user)
	{
		for my $pw (grep { defined } @{$u}{qw(password wrong variant)})
		{
			$text =~ s/\Q$pw\E/***/g;
		}
	}
	return $text;
}

# Run a producer: requests "label TAB spec TAB password [TAB variant]" on
# stdin, answers "label TAB hash [TAB does its own verifier accept the
# variant]" on stdout.  A producer that is missing or fails ends the test
# as a failure.
sub produce
{
	my ($what, $cmd, @labels) = @_;
	my $in = join('',
		map { join("\t", $_, $user{$_}{spec}, $user{$_}{password}, $user{$_}{variant} // ()) . "\n" }
		  @labels);
	my ($out, $err) = ('', '');
	my $ok = eval { run($cmd, \$in, \$out, \$err) };
	ok($ok, "$what ran") or diag(mask($@ || $err)), die "$what failed";
	my %got;
	for my $line (split /\n/, $out)
	{
		my ($label, $hash, $verdict) = split /\t/, $line;
		$got{$label} = [ $hash, $verdict ];
	}
	for my $label (@labels)
	{
		ok(defined $got{$label}, "$what: a hash for $label") or die "$what failed";
		$user{$label}{given} = $got{$label}[0];
		$user{$label}{producer_verdict} = $got{$label}[1];
	}
	return;
}

my $python_producer = q{
import sys, os, json, base64, hashlib
import bcrypt, passlib.hash, django
from django.conf import settings
settings.configure(PASSWORD_HASHERS=[
    'django.contrib.auth.hashers.PBKDF2PasswordHasher',
    'django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher',
    'django.contrib.auth.hashers.BCryptSHA256PasswordHasher',
    'django.contrib.auth.hashers.BCryptPasswordHasher',
    'django.contrib.auth.hashers.Argon2PasswordHasher'])
django.setup()
from django.contrib.auth.hashers import make_password, check_password

for line in sys.stdin.buffer.read().splitlines():
    label, spec, pw, *variant = line.split(b'\t')
    label, spec = label.decode(), spec.decode().split()
    variant = variant[0] if variant else None
    check = None
    if spec[0] == 'bcrypt':
        try:
            h = bcrypt.hashpw(pw, bcrypt.gensalt(rounds=int(spec[2]), prefix=spec[1].encode())).decode()
        except ValueError:          # a bcrypt that refuses passwords over 72 bytes
            print(label, '-', 'raises', sep='\t')
            continue
        check = lambda: bcrypt.checkpw(variant, h.encode())
    elif spec[0] == 'passlib':
        h = getattr(passlib.hash, spec[1]).using(rounds=int(spec[2])).hash(pw)
    elif spec[0] == 'django':
        h = make_password(pw.decode(), hasher=spec[1])
        check = lambda: check_password(variant.decode(), h)
    elif spec[0] == 'keycloak':
        digest = {'pbkdf2': 'sha1', 'pbkdf2-sha256': 'sha256', 'pbkdf2-sha512': 'sha512'}[spec[1]]
        salt = os.urandom(16)
        key = hashlib.pbkdf2_hmac(digest, pw, salt, int(spec[2]), 64)
        h = json.dumps({'algorithm': spec[1], 'iterations': int(spec[2]),
                        'salt': base64.b64encode(salt).decode(),
                        'hash': base64.b64encode(key).decode()})
    else:
        sys.exit('unknown request ' + ' '.join(spec))
    print(label, h, *([str(check())] if variant is not None else []), sep='\t')
};

my $php_producer = q{
while (($line = fgets(STDIN)) !== false) {
    $f = explode("\t", rtrim($line, "\n"));
    $spec = explode(' ', $f[1]);
    if ($spec[0] === 'default')
        $h = password_hash($f[2], PASSWORD_DEFAULT);
    elseif ($spec[0] === 'bcrypt')
        $h = password_hash($f[2], PASSWORD_BCRYPT, ['cost' => (int) $spec[1]]);
    else {
        fwrite(STDERR, "unknown request\n");
        exit(1);
    }
    echo $f[0], "\t", $h;
    if (isset($f[3]))
        echo "\t", password_verify($f[3], $h) ? 'True' : 'False';
    echo "\n";
}
};

# mkpasswd takes one password on stdin (--stdin), never on its command line.
my $mkpasswd_producer = q{
while IFS=$'\t' read -r label spec pw; do
    hash=$(printf '%s' "$pw" | /usr/bin/mkpasswd $spec --stdin) || exit 1
    printf '%s\t%s\n' "$label" "$hash"
done
};

produce("Python (bcrypt, passlib, Django, hashlib)", [ $python, '-c', $python_producer ],
	grep { $user{$_}{producer} eq 'python' } map { $_->[0] } @users);
produce("PHP's password_hash", [ $php, '-r', $php_producer ],
	grep { $user{$_}{producer} eq 'php' } map { $_->[0] } @users);
ok(-x $mkpasswd, 'mkpasswd is installed') or die 'mkpasswd is missing';
produce('mkpasswd', [ '/bin/bash', '-c', $mkpasswd_producer ],
	grep { $user{$_}{producer} eq 'mkpasswd' } map { $_->[0] } @users);

# bcrypt's 72 bytes: the producers' own verifiers accept the 80-byte
# password's variant; a Python bcrypt that refuses long passwords leaves
# the case to PHP.
if (($user{'py-bcrypt-2b-long'}{producer_verdict} // '') eq 'raises')
{
	pass("Python's bcrypt refuses passwords over 72 bytes: PHP's password_hash covers them");
	@users = grep { $_->[0] ne 'py-bcrypt-2b-long' } @users;
	delete $user{'py-bcrypt-2b-long'};
}
else
{
	is($user{'py-bcrypt-2b-long'}{producer_verdict},
		'True', "Python's bcrypt uses the first 72 bytes of an 80-byte password");
}
is($user{'php-bcrypt-long'}{producer_verdict},
	'True', "PHP's password_hash uses the first 72 bytes of an 80-byte password");
is($user{'django-bcrypt-sha256-long'}{producer_verdict},
	'False', "Django's bcrypt_sha256 rejects a 100-byte password whose byte 90 differs");

my @labels = map { $_->[0] } @users;

# The shape of every produced hash, and what the extension must store.
sub ab64
{
	my ($b64) = @_;
	(my $s = $b64) =~ s/=+$//;
	$s =~ tr/+/./;
	return $s;
}
for my $label (@labels)
{
	my $u = $user{$label};
	if ($label =~ /^keycloak-/)
	{
		my $cred = eval { decode_json($u->{given}) };
		my ($alg, $iter) = (split / /, $u->{spec})[ 1, 2 ];
		ok( $cred
			  && join(',', sort keys %$cred) eq 'algorithm,hash,iterations,salt'
			  && $cred->{algorithm} eq $alg
			  && $cred->{iterations} == $iter
			  && length(decode_base64($cred->{salt})) == 16
			  && length(decode_base64($cred->{hash})) == 64,
			"$label: a Keycloak credential ($alg, $iter iterations, 16-byte salt, 64-byte hash)");
		$u->{credential} = $cred;
		$u->{stored} = sprintf('$%s$%d$%s$%s', $alg, $iter, ab64($cred->{salt}), ab64($cred->{hash}));
	}
	else
	{
		like($u->{given}, $shape{$label}, "$label: the producer wrote the expected form");
		# Django's "bcrypt$" and "argon2" only name the format: stored without
		($u->{stored} = $u->{given}) =~ s/^(?:bcrypt\$(?=\$2)|argon2(?=\$argon2))//;
	}
}

my $node = preloaded_node('foreign');

sub lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# Run a psql script (VERBOSITY verbose): its rc, stdout and stderr.  A psql
# per statement costs more than most hashes here, so statements go in
# scripts.
sub script
{
	my ($sql, %params) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', $sql,
		stdout => \$out, stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ], %params);
	return ($rc, $out, $err);
}

# Run steps [tag, SQL of one value] in one session, each statement in its
# own transaction (a step given as [tag, SQL, 'ro'] in a READ ONLY one):
# the values by tag.  An error stops the script (its stderr, passwords
# masked, goes to a diag).
sub steps
{
	my (@steps) = @_;
	my $sql = join(
		"\n",
		map {
			my ($tag, $expr, $ro) = @$_;
			my $select = "SELECT '$tag', ($expr);";
			$ro ? "BEGIN READ ONLY; $select COMMIT;" : $select;
		} @steps);
	my ($rc, $out, $err) = script($sql);
	diag(mask($err)) if $rc != 0;
	return map { split /\|/, $_, 2 } split /\n/, $out;
}

sub stored_sql
{
	my ($label) = @_;
	return 'SELECT password_hash FROM user_service.users WHERE email = ' . lit($user{$label}{email});
}

sub format_sql
{
	my ($label) = @_;
	return 'SELECT user_service.hash_format(password_hash) FROM user_service.users WHERE email = '
	  . lit($user{$label}{email});
}

sub verify_sql
{
	my ($label, $password) = @_;
	return 'user_service.verify_password(' . lit($user{$label}{email}) . ', ' . lit($password) . ')';
}

sub query
{
	my %v = steps([ 'q', $_[0] ]);
	return $v{q} // 'ERROR';
}

sub formats
{
	return query(q{SELECT string_agg(format || '=' || users, ',' ORDER BY format)
	  FROM user_service.password_formats});
}

sub counts
{
	return query(q{SELECT (SELECT count(*) FROM user_service.users) || ' users, '
		|| (SELECT count(*) FROM user_service.batches) || ' batches, '
		|| (SELECT count(*) FROM user_service.batch_items) || ' items'});
}

# Half through the function (the Keycloak credentials as JSON text) ...
my @direct = grep { $user{$_}{via} eq 'fn' } @labels;
my %imported = steps(
	map {
		[
			$_,
			'SELECT email FROM user_service.import_user('
			  . lit("Imported $_") . ', '
			  . lit($user{$_}{email}) . ', '
			  . lit($user{$_}{given}) . ')'
		]
	} @direct);
is($imported{$_}, $user{$_}{email}, "$_: imported with import_user()") for @direct;

# ... half through one import_user batch that the workers run (the Keycloak
# credentials as JSON objects).
my @batched = grep { $user{$_}{via} eq 'batch' } @labels;
my $items = $json->encode(
	[
		map {
			{
				name => "Imported $_",
				email => $user{$_}{email},
				password_hash => $user{$_}{credential} // $user{$_}{given}
			}
		} @batched
	]);
like($items, qr/"password_hash":\{"algorithm":"pbkdf2-sha256"/,
	'the batch carries the Keycloak credentials as JSON objects');
my $batch = query("SELECT user_service.submit_batch('import_user', " . lit($items) . ')');
like($batch, qr/^\d+$/, 'one import_user batch submitted');
is(query("SELECT user_service.wait_batch($batch, '60 s')"), 't', 'the workers process the batch');
is( query(
		"SELECT string_agg(status || coalesce(' ' || sqlstate || ' ' || error, ''), ', ' ORDER BY item)
		   FROM user_service.batch_results($batch)"),
	join(', ', ('succeeded') x @batched),
	'every item of the batch succeeded');
is( query(
		"SELECT count(*) FROM user_service.batch_items WHERE batch_id = $batch AND payload ? 'password_hash'"),
	'0',
	'no hash is left in the job table');

# Refusals: 22023, a reason, never the hash; by the function and as one bad
# item of a batch (the whole submission refused, nothing stored).  The
# over-limit ones are produced hashes with their cost edited: an import
# checks the cost, it does not verify.
my $b2b = $user{'py-bcrypt-2b'}{given};
my $passlib = $user{'passlib-pbkdf2-sha256'}{given};
my $django = $user{'django-pbkdf2-sha256'}{given};
my $sha512 = $user{'mkpasswd-sha512'}{given};
my $yescrypt = $user{'mkpasswd-yescrypt'}{given};
my $kc_text = $user{'keycloak-sha256-fn'}{given};
my %unknown_alg = (%{ $user{'keycloak-sha256-fn'}{credential} }, algorithm => 'argon2');
(my $over_rounds = $sha512) =~ s/^\$6\$/\$6\$rounds=6000000\$/;
# what mkpasswd -m yescrypt -R 11 writes (N = 2^18, r = 32: 1 GiB); making
# it takes mkpasswd as long and as much memory
(my $one_gib = $yescrypt) =~ s/^\$y\$j9T\$/\$y\$jFT\$/;
my @refused = (
	[ '$2x$ bcrypt', $b2b =~ s/^\$2b\$/\$2x\$/r, qr/2x/ ],
	[ 'bcrypt cost 15', $b2b =~ s/^\$2b\$10\$/\$2b\$15\$/r, qr/cost must be at most 14/ ],
	[ 'a truncated bcrypt hash', substr($b2b, 0, 59), qr/53 characters/ ],
	[
		"passlib's PBKDF2 with 5000000 iterations", $passlib =~ s/\$29000\$/\$5000000\$/r,
		qr/at most 4000000 iterations/
	],
	[
		"Django's PBKDF2 with 5000000 iterations",
		$django =~ s/^(pbkdf2_sha256)\$\d+\$/$1\$5000000\$/r,
		qr/at most 4000000 iterations/
	],
	[ 'sha512-crypt with rounds=6000000', $over_rounds, qr/rounds of a sha-crypt hash must be at most 1000000/ ],
	[ 'yescrypt with 1 GiB', $one_gib, qr/256 MiB/ ],
	[ 'garbage', 'xq7!Zr09-not-a-password-hash-Lk2$$vv', qr/not a known password hash format/ ],
	[ 'a Keycloak credential of an unknown algorithm', $json->encode(\%unknown_alg), qr/algorithm/ ],
	[ 'a Keycloak credential cut short', substr($kc_text, 0, 120), qr/Keycloak/ ],);
ok($over_rounds =~ /^\$6\$rounds=6000000\$[^\$]+\$[^\$]{86}$/ && $one_gib =~ /^\$y\$jFT\$/,
	'the over-limit edits apply');
ok(substr($kc_text, 0, 120) =~ /"hash": "[^"]{20}/, 'the cut-short credential holds part of its hash');

# Whether a text quotes a hash: the whole of it, or its last 20 characters
# (the checksum; in a Keycloak credential, the start of the hash).
sub quotes_hash
{
	my ($text, $hash) = @_;
	my $tail = $hash =~ /"hash": ?"([^"]{20})/ ? $1 : substr($hash, -20);
	return index($text, $hash) >= 0 || index($text, $tail) >= 0;
}

# All cases in one psql session that goes on after errors; \warn marks
# which statement each error belongs to.
my $before = counts();
my $good = $user{'py-bcrypt-2a'}{given};
my $sql = '';
for my $n (1 .. @refused)
{
	my (undef, $hash) = @{ $refused[ $n - 1 ] };
	my $bad_items = $json->encode(
		[
			{ name => 'Good 1', email => "good-a$n\@example.com", password_hash => $good },
			{
				name => 'Bad',
				email => "refused$n\@example.com",
				password_hash => ($hash =~ /^\{/ && eval { decode_json($hash) }) || $hash
			},
			{ name => 'Good 2', email => "good-b$n\@example.com", password_hash => $good }
		]);
	$sql .= "\\warn '-- fn $n'\n"
	  . 'SELECT * FROM user_service.import_user('
	  . lit("Refused $n") . ', '
	  . lit("refused$n\@example.com") . ', '
	  . lit($hash) . ");\n"
	  . "\\warn '-- batch $n'\n"
	  . "SELECT user_service.submit_batch('import_user', "
	  . lit($bad_items) . ");\n";
}
sub refusals
{
	my ($prefix) = @_;
	my (undef, undef, $errors) = script($prefix . $sql, on_error_stop => 0);
	return $errors =~ /^-- (\w+ \d+)\n(.*?)(?=^-- |\z)/msg;
}
my %error = refusals('');
for my $n (1 .. @refused)
{
	my ($what, $hash, $reason) = @{ $refused[ $n - 1 ] };
	my $fn = $error{"fn $n"} // '';
	my $in_batch = $error{"batch $n"} // '';

	like($fn, qr/ERROR:  22023: password_hash cannot be imported: /,
		"import_user refuses $what: 22023 and why");
	like($fn, qr/ERROR:  \w{5}: .*$reason/, '... the right reason');
	ok(!quotes_hash($fn, $hash), '... without quoting the hash');
	like($in_batch, qr/ERROR:  22023: item 2: "password_hash" cannot be imported: /,
		"a batch with $what as item 2: 22023 naming the item");
	like($in_batch, qr/ERROR:  \w{5}: .*$reason/, '... and the reason');
	ok(!quotes_hash($in_batch, $hash), '... without quoting the hash');
}
is(counts(), $before, 'no refused hash stored a user, a batch or an item');

# The formats before any login.
my %count;
$count{ $user{$_}{format} }++ for @labels;
is(formats(), join(',', map { "$_=$count{$_}" } sort keys %count),
	'password_formats counts the imported users per format');

# Each user's logins, in one session (each statement its own transaction).
for my $label (@labels)
{
	my $u = $user{$label};
	my @special;

	# the formats' own rules, read only (no upgrade yet)
	if ($label =~ /bcrypt-.*long$/ && $label !~ /sha256/)
	{
		@special = ([ 'first72', verify_sql($label, $u->{variant}), 'ro' ],
			[ 'byte72', verify_sql($label, $u->{wrong}), 'ro' ]);
	}
	elsif ($label =~ /sha256-long$/)
	{
		@special = ([ 'byte90', verify_sql($label, $u->{variant}), 'ro' ]);
	}
	my %v = steps(
		[ 'imported', stored_sql($label) ],
		[ 'format', format_sql($label) ],
		@special,
		[ 'ro_right', verify_sql($label, $u->{password}), 'ro' ],
		[ 'wrong', verify_sql($label, $u->{wrong}) ],
		[ 'kept', stored_sql($label) ],
		[ 'right', verify_sql($label, $u->{password}) ],
		[ 'after', stored_sql($label) ],
		[ 'right_again', verify_sql($label, $u->{password}) ],
		[ 'wrong_again', verify_sql($label, $u->{wrong}) ],
		[ 'final', stored_sql($label) ],
		[ 'final_format', format_sql($label) ]);

	is($v{imported}, $u->{stored}, "$label: stored as imported");
	is($v{format}, $u->{format}, "$label: hash_format says $u->{format}");
	if (exists $v{first72})
	{
		is($v{first72}, 't', "$label: the 80-byte password's first 72 bytes are enough, as for its producer");
		is($v{byte72}, 'f', "$label: byte 72 of them is not ignored");
	}
	if (exists $v{byte90})
	{
		is($v{byte90}, 'f',
			"$label: the 100-byte password with byte 90 changed does not verify, as for Django");
	}
	is($v{ro_right}, 't', "$label: the right password verifies (read only)");
	is($v{wrong}, 'f', "$label: a wrong one does not");
	is($v{kept}, $u->{stored}, "$label: read-only and failed verifies keep the imported hash");
	is($v{right}, 't', "$label: the right password verifies (writable)");
	if ($label eq 'django-argon2')
	{
		is($v{after}, $u->{stored},
			"$label: argon2id already, stronger than this server's settings: kept (never downgraded)");
	}
	else
	{
		like(
			$v{after} // '',
			qr/^\$argon2id\$v=19\$m=8192,t=1,p=1\$[A-Za-z0-9+\/]{22}\$[A-Za-z0-9+\/]{43}$/,
			"$label: replaced by argon2id at the first success");
	}
	is($v{right_again}, 't', "$label: the password still verifies");
	is($v{wrong_again}, 'f', "$label: a wrong one still does not");
	is($v{final}, $v{after}, "$label: and the hash stays as it is");
	is($v{final_format}, 'argon2id', "$label: hash_format says argon2id");
}
is(formats(), 'argon2id=' . scalar(@labels), 'password_formats: only argon2id after the logins');

# Neither a password nor an imported hash reached the server log.
my $log = slurp_file($node->logfile);
ok(!(grep { index($log, $_) >= 0 } map { @{ $user{$_} }{qw(password wrong)} } @labels),
	'no password in the server log');
ok(!(grep { quotes_hash($log, $_) } map { $user{$_}{given} } @labels),
	'no imported hash in the server log');

# The refusals do not rely on the log hook (which also rewrites what
# PostgreSQL itself reports to the client) to keep the hash out: with
# user_service.redact_log off, their messages still never quote it.  (Done
# last: the server log then holds the refused hashes' statements.)
%error = refusals("SET user_service.redact_log = off;\n");
for my $n (1 .. @refused)
{
	my ($what, $hash) = @{ $refused[ $n - 1 ] };

	like($error{"fn $n"} // '', qr/ERROR:  22023: /, "redact_log off: import_user refuses $what");
	ok(!quotes_hash($error{"fn $n"} // '', $hash), '... without quoting the hash');
	like($error{"batch $n"} // '', qr/ERROR:  22023: item 2: /, '... and so does a batch');
	ok(!quotes_hash($error{"batch $n"} // '', $hash), '... without quoting the hash');
}

$node->stop;
done_testing();
