# Fuzzing the whole SQL API: every function is called many times with
# generated arguments (hostile and multi-byte strings, values at and past
# every length limit, up to 1 MB, NULLs, extreme and wrongly typed numbers,
# malformed, deeply nested and huge jsonb, positional and named notation,
# three roles), from a fixed seed that is printed so that a failure can be
# replayed (FUZZ_SEED=n FUZZ_CALLS=n).  What is proven:
#  - every call either succeeds or raises a SQLSTATE that is documented for
#    that function (README, src/*.c), or one that PostgreSQL itself raises
#    for the argument the fuzzer deliberately made unparsable;
#  - every error message is valid in the server encoding;
#  - no backend or worker crashed, and nothing internal (XX...), no
#    resource leak and no error outside an item was logged;
#  - afterwards the invariants hold: the list_users total equals count(*),
#    emails are unique case-insensitively and well formed, names trimmed,
#    every password hash is an argon2 PHC string, every batch finished and
#    its counts add up (view, batch_status, items, batch_results), every
#    failed item carries a SQLSTATE its kind documents, and no finished item
#    keeps a password.
use strict;
use warnings;
use Encode qw(encode_utf8);
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $seed = $ENV{FUZZ_SEED} // 20261127;
my $ncalls = $ENV{FUZZ_CALLS} // 12000;
diag("fuzz: FUZZ_SEED=$seed FUZZ_CALLS=$ncalls (set both to replay this run)");
srand($seed);

# ---------------------------------------------------------------------------
# Allowed SQLSTATEs
# ---------------------------------------------------------------------------

# What each function documents (README's tables, the ereport calls in src/):
#   22004  a NULL argument ("<argument> must not be null", us_arg_not_null)
#   22023  invalid input: name/email/password rules, page/per_page,
#          submit_batch's kind, items and concurrency, wait_batch's negative
#          timeout, process_batches' max_items < 1
#   23505  the email is taken in any case (pre-check or the unique index)
#   P0002  no such user / no such batch
#   42501  batch_status, batch_results, wait_batch and cancel_batch of
#          another role's batch, and
#          submit_batch of a kind whose function the role may not execute;
#          also (added per call below) any function a role was not granted
#          EXECUTE on, and the views for a role without SELECT (README:
#          "Giving an application role access")
my %api_errors = (
	create_user      => [qw(22004 22023 23505)],
	get_user         => [qw(22004 P0002)],
	update_user      => [qw(22004 22023 23505 P0002)],
	delete_user      => [qw(22004 P0002)],
	list_users       => [qw(22004 22023)],
	list_users_after => [qw(22004 22023)],
	list_users_rows       => [qw(22004 22023)],
	list_users_after_rows => [qw(22004 22023)],
	list_users_json       => [qw(22004 22023)],
	list_users_after_json => [qw(22004 22023)],
	verify_password  => [qw(22004)],
	import_user      => [qw(22004 22023 23505)],
	set_password     => [qw(22004 22023 P0002)],
	submit_batch     => [qw(22004 22023 42501)],
	batch_status     => [qw(22004 P0002 42501)],
	batch_results    => [qw(22004 P0002 42501)],
	cancel_batch     => [qw(22004 P0002 42501)],
	wait_batch       => [qw(22004 22023 P0002 42501)],
	process_batches  => [qw(22004 22023)],
	running_items    => [],
	worker_info      => [],
	batches_view     => [],
	workers_view     => [],
	stats_view       => [],);

# What a failed batch item may carry: the SQLSTATEs of its kind's function
# (README: "same validation, same SQLSTATEs"), or a transient error retried
# user_service.max_attempts times (40001 serialization failure, 40P01
# deadlock, 55P03 lock timeout).
my %item_errors = (
	create_user  => [qw(22004 22023 23505)],
	update_user  => [qw(22004 22023 23505 P0002)],
	delete_user  => [qw(22004 P0002)],
	set_password => [qw(22004 22023 P0002)],
	# import_user (1.2): create_user's rules, the hash instead of the password
	import_user => [qw(22004 22023 23505)],);
my @transient = qw(40001 40P01 55P03);

# SQLSTATEs that PostgreSQL raises before the extension sees an argument,
# allowed only for the calls whose generator produced that argument:
#   42883  undefined_function: an argument of a type with no implicit cast
#          (numeric or boolean for bigint, json for jsonb ...), a misspelt
#          argument name, a wrong number of arguments
#   22P02  invalid_text_representation: 'abc' for bigint, malformed JSON,
#          a lone \ud800 escape in JSON
#   22003  numeric_value_out_of_range: '2147483648' for int, 2^63-1 + 1,
#          a JSON number beyond numeric's range
#   22P05  untranslatable_character: "\u0000" in JSON
#   54001  statement_too_complex: jsonb nested deeper than max_stack_depth
#   22021  character_not_in_repertoire: invalid UTF-8 bytes (E'\xc3\x28')
#   42601  syntax_error: a surrogate in a U& or E'' string literal
#   22007, 22015  invalid_datetime_format, interval_field_overflow: a
#          malformed or out-of-range interval for wait_batch

# ---------------------------------------------------------------------------
# Random helpers (only rand(): one seed gives one sequence of calls)
# ---------------------------------------------------------------------------
sub rint   { return int(rand($_[0])); }
sub pick   { return $_[ rint(scalar @_) ]; }
sub chance { return rand() < $_[0]; }

# pick_weighted([w, value], ...)
sub pick_weighted
{
	my $total = 0;
	$total += $_->[0] for @_;
	my $r = rand($total);
	for (@_)
	{
		return $_->[1] if ($r -= $_->[0]) < 0;
	}
	return $_[-1][1];
}

sub randstr
{
	my ($pool, $n) = @_;
	return join '', map { substr($pool, rint(length $pool), 1) } 1 .. $n;
}

sub bytes { return length(encode_utf8($_[0])); }

# Characters that stress text handling: NUL-free C0 and C1 controls, DEL,
# combining marks, bidi overrides, zero-width characters, the BOM,
# non-ASCII white space, 2-, 3- and 4-byte letters, emoji (with ZWJ),
# U+FFFD, noncharacters, the last code point, characters whose lower case
# changes length or merges with ASCII (Kelvin sign, dotted I, sharp S).
my @special_chars = (
	(map { chr } 1 .. 31, 127, 0x80, 0x85, 0x9b, 0x9f),
	(map { chr } 0x300, 0x301, 0x308, 0x36f, 0x20dd),
	(map { chr } 0x202e, 0x202d, 0x200f, 0x2066, 0x061c),
	(map { chr } 0x200b, 0x200d, 0x2060, 0xfeff),
	(map { chr } 0xa0, 0x1680, 0x2028, 0x2029, 0x3000),
	(map { chr } 0xe9, 0xdf, 0x130, 0x131, 0x212a, 0x1e9e, 0x3a3, 0x3c2),
	(map { chr } 0x4f8b, 0x0627, 0x0915, 0xac00, 0x1f600, 0x1f4a9, 0x1f1fa, 0x1f1f8),
	"\x{1f469}\x{200d}\x{1f4bb}",
	(map { chr } 0xfffd, 0xfffe, 0xffff, 0xfdd0, 0x10ffff, 0xe0001));

# Strings that break naive quoting, formatting and escaping, and text that
# looks like broken UTF-8 or escapes but is valid UTF-8.
my @hostile_snippets = (
	q{'}, q{''}, q{"}, q{\\}, q{\\'}, q{%s}, q{%n}, q{%d%d%d%n}, q{%x%x%x},
	q{'; DROP TABLE user_service.users; --}, q{' OR '1'='1}, q{$$}, q{$q$},
	q{*/}, q{/*}, q{--}, q{;}, q{\\x00}, q{\\u0000}, q{\\xC3\\x28},
	q{\\xF0\\x28\\x8C\\xBC}, q{%C3%28}, q{&#0;}, q{\\N}, q{\\.}, q{NULL},
	q{null}, q{<script>alert(1)</script>}, q{{"id": 1}}, q{[1,2]}, q{@},
	q{@@}, q{..}, q{.}, q{\\\\}, "\x{c3}\x{28}", "\x{f0}\x{28}\x{8c}\x{bc}",
	"\x{ed}\x{a0}\x{80}", q{U&'\\0000'}, q{E'\\xff'});

my $alnum = join '', 'a' .. 'z', 'A' .. 'Z', 0 .. 9;

sub special_char { return pick(@special_chars); }

# A hostile string: a few segments of snippets, special characters, letters.
sub hostile_string
{
	my $s = '';
	for (1 .. 1 + rint(6))
	{
		$s .= pick_weighted(
			[ 4, sub { pick(@hostile_snippets) } ],
			[ 4, sub { join '', map { special_char() } 1 .. 1 + rint(4) } ],
			[ 3, sub { randstr($alnum, 1 + rint(8)) } ],
			[ 1, sub { special_char() x (1 + rint(50)) } ])->();
	}
	return $s;
}

# ---------------------------------------------------------------------------
# SQL literals: every string is sent in one of several notations that give
# the same value.  An argument is a pair [sql, extra allowed SQLSTATEs].
# ---------------------------------------------------------------------------
sub lit_std
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

sub lit_any
{
	my ($s) = @_;
	return pick_weighted(
		[ 10, sub { lit_std($s) } ],
		[ 2, sub { lit_std($s) . '::text' } ],
		[ 1, sub { (my $e = $s) =~ s/([\\'])/$1$1/g; "E'$e'" } ],
		[
			1,
			sub {
				(my $u = $s) =~ s/\\/\\\\/g;
				$u =~ s/'/''/g;
				$u =~ s/([^\x20-\x7e])/
				  ord($1) > 0xffff ? sprintf('\\+%06X', ord $1) : sprintf('\\%04X', ord $1)/ge;
				"U&'$u'";
			}
		],
		[
			1,
			sub {
				index($s, '$fz$') < 0 && substr($s, -1) ne '$'
				  ? "\$fz\$$s\$fz\$"
				  : lit_std($s);
			}
		])->();
}

# Arguments PostgreSQL rejects (or resolves to no function) before the
# extension is called, by parameter type.
my %wrong_type = (
	text => [
		[ '42', ['42883'] ],
		[ '4.2', ['42883'] ],
		[ 'true', ['42883'] ],
		[ q{'\x41'::bytea}, ['42883'] ],
		[ q{'{}'::jsonb}, ['42883'] ],
		[ q{E'\\xc3\\x28'}, ['22021'] ],
		[ q{E'\\xff'}, ['22021'] ],
		[ q{convert_from('\xc328'::bytea, 'UTF8')}, ['22021'] ],
		[ q{convert_from('\xeda080'::bytea, 'UTF8')}, ['22021'] ],
		[ q{E'\\uD800'}, ['42601'] ],
		[ q{U&'\\DC00'}, ['42601'] ],],
	bigint => [
		[ '1.5', ['42883'] ],
		[ '9223372036854775808', ['42883'] ],
		[ 'true', ['42883'] ],
		[ q{'1'::text}, ['42883'] ],
		[ q{NULL::text}, ['42883'] ],
		[ q{'abc'}, ['22P02'] ],
		[ q{''}, ['22P02'] ],
		[ q{'1.5'}, ['22P02'] ],
		[ q{'1e3'}, ['22P02'] ],
		[ q{'0x10'}, ['22P02'] ],
		[ q{'1_000'}, ['22P02'] ],
		[ q{'9223372036854775808'}, ['22003'] ],
		[ q{'-9223372036854775809'}, ['22003'] ],
		[ '9223372036854775807 + 1', ['22003'] ],],
	int => [
		[ '2147483648', ['42883'] ],
		[ '1.5', ['42883'] ],
		[ 'true', ['42883'] ],
		[ q{'5'::text}, ['42883'] ],
		[ q{'abc'}, ['22P02'] ],
		[ q{''}, ['22P02'] ],
		[ q{'0x10'}, ['22P02'] ],
		[ q{'2147483648'}, ['22003'] ],
		[ q{'-2147483649'}, ['22003'] ],
		[ '2147483647 + 1', ['22003'] ],
		[ '-2147483648::int', ['22003'] ],],
	interval => [
		[ '10', ['42883'] ],
		[ q{'1 ms'::text}, ['42883'] ],
		[ q{'abc'}, ['22007'] ],
		[ q{''}, ['22007'] ],
		[ q{'1 fortnight'}, ['22007'] ],
		[ q{'9999999999 years'}, ['22015'] ],],
	jsonb => [
		[ q{'[{"id": 1}]'::json}, ['42883'] ],
		[ q{'[{"id": 1}]'::text}, ['42883'] ],
		[ '1', ['42883'] ],],);

# Integers: extremes of int4 and int8, around zero, and in-range values
# written in odd but valid ways.
my @int_extremes = (
	'0', '-1', '1', '2147483647', '-2147483648', q{'-2147483648'},
	'(-2147483647 - 1)', q{' 7 '}, q{'+7'}, q{'-0'}, '00000000001');
my @bigint_extremes = (
	@int_extremes, '9223372036854775807', '-9223372036854775808',
	q{'-9223372036854775808'}, '(-9223372036854775807 - 1)',
	'4294967296', '4294967297', '-4294967296');

# ---------------------------------------------------------------------------
# What the fuzzer knows of the state it created (estimates: items run
# concurrently in the workers).  Enough to aim many ids at existing rows.
# ---------------------------------------------------------------------------
my $users_est   = 0;    # users created so far (about 40% of the attempts)
my $batches_est = 0;    # batches submitted so far (about a third of the calls)
my $email_seq   = 0;
my @known;              # [email, password] pairs that may exist

sub existing_user_id  { return 1 + rint($users_est + 5); }
sub existing_batch_id { return 1 + rint($batches_est + 2); }

# ---------------------------------------------------------------------------
# Text arguments
# ---------------------------------------------------------------------------
my @domains = (
	'example.com', 'EXAMPLE.COM', 'sub.example.org', 'a.bc',
	"\x{4f8b}\x{3048}.\x{30c6}\x{30b9}\x{30c8}", 'xn--80ak6aa92e.com',
	"m\x{fc}nchen.de", "\x{1f600}.example");

sub valid_name
{
	return pick_weighted(
		[ 4, sub { 'User ' . rint(100000) } ],
		[ 2, sub { randstr($alnum, 1 + rint(20)) } ],
		[ 2, sub { join '', map { special_char() } 1 .. 1 + rint(10) } ],
		[ 1, sub { "  \t" . hostile_string() . " \n" } ],
		[ 1, sub { "Ren\x{e9}e O'Brien-\x{1f600}" } ])->();
}

sub valid_email
{
	my $local = pick_weighted(
		[ 5, sub { 'u' . ++$email_seq } ],
		[
			2,
			sub {
				'u' . ++$email_seq . '.' . randstr("$alnum.+-_'%\"\\", 1 + rint(10));
			}
		],
		[
			1,
			sub {
				'u' . ++$email_seq
				  . join('', map { special_char() } 1 .. 1 + rint(3));
			}
		])->();
	# control characters and spaces (U+0001..U+0020, U+007F) are invalid
	$local =~ s/[\x00-\x20\x7f]/x/g;
	my $email = $local . '@' . pick(@domains);
	$email = " $email\t" if chance(0.05);
	return $email;
}

sub valid_password
{
	return pick_weighted(
		[ 4, sub { randstr($alnum, 8 + rint(30)) } ],
		[ 2, sub { hostile_string() . randstr($alnum, 8) } ],
		[ 1, sub { join '', map { special_char() } 1 .. 8 + rint(20) } ])->();
}

# Strings at and just past the limits: 200 characters of name, 254 of
# email, 8 to 1024 bytes of password (multi-byte, so that characters and
# bytes differ).
sub boundary_value
{
	my ($role) = @_;
	my $mb = pick('a', "\x{e9}", "\x{4f8b}", "\x{1f600}");
	if ($role eq 'email')
	{
		my $domain = '@example.com';
		my $n = pick(254, 255, 253) - length($domain) - 6;
		return 'b' . sprintf('%05d', ++$email_seq % 100000) . ($mb x $n) . $domain;
	}
	if ($role eq 'password')
	{
		my $target = pick(7, 8, 9, 1023, 1024, 1025);
		my $s = '';
		$s .= $mb while bytes($s . $mb) <= $target;
		$s .= 'x' while bytes($s) < $target;
		return $s;
	}
	return $mb x pick(199, 200, 201);
}

# One text argument for a parameter with the given role (name, email,
# password, kind, or any).
sub text_arg
{
	my ($role) = @_;
	my $valid = sub {
		return valid_name()     if $role eq 'name';
		return valid_email()    if $role eq 'email';
		return valid_password() if $role eq 'password';
		return phc_string()     if $role eq 'password_hash';
		return hostile_string();
	};
	return pick_weighted(
		[ 55, sub { [ lit_any($valid->()), [] ] } ],
		[ 15, sub { [ lit_any(hostile_string()), [] ] } ],
		[ 8, sub { [ lit_any(boundary_value($role)), [] ] } ],
		[ 5, sub { [ 'NULL', [] ] } ],
		[ 4, sub { [ lit_any(pick('', ' ', "\t\n", "\x{a0}", "\x{3000}")), [] ] } ],
		[ 3, sub { [ lit_std(hostile_string() x (10 + rint(400))), [] ] } ],
		[ 1, sub { [ "repeat(" . lit_std(pick('a', "\x{1f600}", "'", '\\')) . ", 1048576)", [] ] } ],
		[ 0.15, sub { [ lit_std(randstr($alnum, 64) x 16384), [] ] } ],
		[ 4, sub { [ @{ pick(@{ $wrong_type{text} }) } ] } ],
		[
			4,
			sub {
				[
					pick(
						'NULL::text', "chr(1) || 'x'",
						"upper(" . lit_std($valid->()) . ")",
						"format('%s%%s', " . lit_std($valid->()) . ")",
						lit_std($valid->()) . ' || ' . lit_std(special_char())),
					[]
				];
			}
		])->();
}

sub int_arg
{
	my ($type, $valid) = @_;
	return pick_weighted(
		[ 60, sub { [ $valid->(), [] ] } ],
		[ 20, sub { [ pick($type eq 'int' ? @int_extremes : @bigint_extremes), [] ] } ],
		[ 5, sub { [ pick('NULL', "NULL::$type"), [] ] } ],
		[ 8, sub { [ @{ pick(@{ $wrong_type{$type} }) } ] } ],
		[ 7, sub { [ (chance(0.5) ? '-' : '') . rint(1 << 31), [] ] } ])->();
}

sub user_id_arg
{
	return int_arg('bigint', sub { existing_user_id() });
}

# A batch id; $bogus asks for one that cannot exist (so that wait_batch
# may get a long timeout and still return at once).
sub batch_id_arg
{
	my ($bogus) = @_;
	return [ pick('0', '-1', '-9223372036854775808', '9223372036854775807',
			'2147483647', 1000000000 + rint(1000000)), [] ]
	  if $bogus;
	return int_arg('bigint', sub { existing_batch_id() });
}

# ---------------------------------------------------------------------------
# JSON for submit_batch
# ---------------------------------------------------------------------------

# A JSON string; non-ASCII is sometimes written as \u escapes (surrogate
# pairs beyond the BMP).
sub json_str
{
	my ($s) = @_;
	my $escape_all = chance(0.2);
	$s =~ s/(["\\])/\\$1/g;
	$s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
	if ($escape_all)
	{
		$s =~ s/([^\x00-\x7f])/
		  ord($1) > 0xffff
		  ? sprintf('\\u%04x\\u%04x', 0xd800 + ((ord($1) - 0x10000) >> 10),
			0xdc00 + ((ord($1) - 0x10000) & 0x3ff))
		  : sprintf('\\u%04x', ord $1)/ge;
	}
	return "\"$s\"";
}

# A JSON value for a key of a given role; returns [json, extras].
sub json_value
{
	my ($role) = @_;
	if ($role eq 'id')
	{
		return pick_weighted(
			[ 70, sub { [ existing_user_id(), [] ] } ],
			[
				25,
				sub {
					[
						pick(
							'0', '-1', '9223372036854775807', '-9223372036854775808',
							'9223372036854775808', '-9223372036854775809', '1.5', '1e3',
							'1E+2', '-0', '0.0', '1e-3', '1e400', '"7"', 'true', 'null',
							'[]', '{}', '[1]', '{"id": 1}', '100000000000000000000000000000'),
						[]
					];
				}
			],
			[ 1, sub { [ '1e1000000', ['22003'] ] } ],
			[ 4, sub { [ rint(1 << 31), [] ] } ])->();
	}
	return pick_weighted(
		[ 70, sub { [ json_str(text_value($role)), [] ] } ],
		[ 10, sub { [ pick('null', '1', 'true', '[]', '{}', '["x"]', '{"a": "b"}', '1.5'), [] ] } ],
		[ 2, sub { [ json_str('x') =~ s/x/\\u0000/r, ['22P05'] ] } ],
		[ 2, sub { [ pick('"\ud800"', '"\udc00x"', '"\ud800\u0041"'), ['22P02'] ] } ],
		[ 1, sub { [ '"\udbff\udfff"', [] ] } ],
		[ 1, sub { [ json_str(hostile_string() x (10 + rint(300))), [] ] } ])->();
}

# A plain text value for a role (no SQL literal around it).
sub text_value
{
	my ($role) = @_;
	return pick_weighted(
		[
			70,
			sub {
				$role eq 'name'     ? valid_name()
				  : $role eq 'email'    ? valid_email()
				  : $role eq 'password' ? valid_password()
				  : $role eq 'password_hash' ? phc_string()
				  : hostile_string();
			}
		],
		[ 15, sub { hostile_string() } ],
		[ 10, sub { boundary_value($role) } ],
		[ 5, sub { pick('', ' ', "\t", "\x{3000}") } ])->();
}

# Canonical unpadded base64 of n random bytes (what PHC strings carry).
sub b64_random
{
	my ($n) = @_;
	(my $b = encode_base64(join('', map { chr rint(256) } 1 .. $n), '')) =~ s/=+$//;
	return $b;
}

# crypt(3)'s alphabet
my $itoa64 = join '', '.', '/', 0 .. 9, 'A' .. 'Z', 'a' .. 'z';

# A hash of another system for import_user (src/foreign_hash.c): well formed
# ones of every format (random bytes: they import, and never verify), and
# hostile ones: truncated, a character too many, costs past the bounds,
# $2x$, unknown digests, broken base64, Keycloak objects with wrong types.
sub foreign_hash
{
	my $b64 = join '', 'A' .. 'Z', 'a' .. 'z', 0 .. 9, '+', '/';
	my $good = pick_weighted(
		[ 3, sub { '$2' . pick('a', 'b', 'y') . '$' . pick('04', '10', '12', '14') . '$' . randstr($itoa64, 53) } ],
		[ 1, sub { 'bcrypt_sha256$$2b$12$' . randstr($itoa64, 53) } ],
		[ 2, sub { 'pbkdf2_sha' . pick('1', '256') . '$' . (1 + rint(400000)) . '$' . randstr($itoa64 =~ s/[.\/]//gr, 22) . '$' . b64_random(pick(20, 32)) . '=' } ],
		[ 2, sub { '$pbkdf2' . pick('', '-sha256', '-sha512') . '$' . (1 + rint(100000)) . '$' . (b64_random(16) =~ tr/+/./r) . '$' . (b64_random(pick(20, 32, 64)) =~ tr/+/./r) } ],
		[ 2, sub { '$' . pick('5', '6') . '$' . pick('', 'rounds=' . (1000 + rint(100000)) . '$') . randstr($itoa64, 16) . '$' . randstr($itoa64, 86) } ],
		[ 1, sub { '$y$j' . pick('7', '9', 'B', 'D', 'F', 'z') . 'T$' . randstr($itoa64, 22) . '$' . randstr($itoa64, 43) } ],
		[ 1, sub { '{"algorithm": "pbkdf2' . pick('', '-sha256', '-sha512', '-md5') . '", "iterations": ' . pick(1, 27500, 2.5, '"9"', -1, 99999999) . ', "salt": "' . b64_random(16) . '", "hash": "' . b64_random(32) . '"}' } ],
		[ 1, sub { '{bcrypt}$2b$10$' . randstr($itoa64, 53) } ],
		[ 1, sub { 'argon2$argon2id$v=19$m=64,t=1,p=1$' . b64_random(16) . '$' . b64_random(32) } ])->();
	return pick_weighted(
		[ 4, sub { $good } ],
		[ 1, sub { substr($good, 0, rint(length $good)) } ],
		[ 1, sub { $good . pick('$', '=', ' ', "\x{e9}", hostile_string()) } ],
		[ 1, sub { my $h = $good; substr($h, rint(length $h), 1) = pick('$', '!', '%', "\x{3000}", ''); $h } ],
		[ 1, sub { pick('$2x$10$' . randstr($itoa64, 53), '$2b$31$' . randstr($itoa64, 53), '$6$rounds=999999999$salt$' . randstr($itoa64, 86),
				'pbkdf2_sha256$4000001$salt$' . b64_random(32) . '=', '$pbkdf2-sha512$2000001$c2FsdA$' . b64_random(64), '$1$salt$' . randstr($itoa64, 22),
				'$7$C6..../....SodiumChloride$' . randstr($itoa64, 43), '{}', '{"algorithm": null}', '[' . '{' x 50) } ])->();
}

# An argon2 PHC string for import_user: acceptable ones (argon2id/i/d, with
# and without v=, salts and tags of several lengths), and ones that are
# not: out-of-range or zero costs, a version that does not exist,
# non-canonical or padded base64, a missing tag, hostile text; and a third
# of the time another system's hash (foreign_hash).
sub phc_string
{
	my $b64 = join '', 'A' .. 'Z', 'a' .. 'z', 0 .. 9, '+', '/';
	return foreign_hash() if chance(0.35);
	return pick_weighted(
		[ 5, sub { '$argon2id$v=19$m=64,t=1,p=1$' . b64_random(16) . '$' . b64_random(32) } ],
		[ 2, sub { '$argon2i$v=19$m=256,t=2,p=2$' . b64_random(8 + rint(24)) . '$' . b64_random(4 + rint(60)) } ],
		[ 1, sub { '$argon2d$m=128,t=1,p=1$' . b64_random(16) . '$' . b64_random(32) } ],
		[
			4,
			sub {
				pick('$argon2id$v=19$m=0,t=0,p=0$$', '$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$',
					'$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ012',
					'$argon2id$v=99$m=64,t=1,p=1$' . b64_random(16) . '$' . b64_random(32),
					'$argon2id$v=19$m=64,t=1,p=1$' . randstr($b64, 22) . '$' . randstr($b64, 43),
					'$argon2id$v=19$m=4294967296,t=1,p=1$' . b64_random(16) . '$' . b64_random(32),
					'$argon2id$v=19$m=1048577,t=1,p=1$' . b64_random(16) . '$' . b64_random(32),
					'$argon2id$v=19$m=64,t=1,p=1$' . b64_random(16) . '$' . b64_random(32) . '=',
					'$argon2id$v=19$m=64,t=1,p=1$' . b64_random(16),
					'$argon2id$v=19$m=064,t=1,p=1$' . b64_random(16) . '$' . b64_random(32),
					hostile_string());
			}
		])->();
}

# The keys of the items of each kind ([key, role, required]).
my %kind_keys = (
	create_user =>
	  [ [ 'name', 'name', 1 ], [ 'email', 'email', 1 ], [ 'password', 'password', 1 ] ],
	update_user => [ [ 'id', 'id', 1 ], [ 'name', 'name', 0 ], [ 'email', 'email', 0 ] ],
	delete_user  => [ [ 'id', 'id', 1 ] ],
	set_password => [ [ 'id', 'id', 1 ], [ 'password', 'password', 1 ] ],
	# (1.2; fuzzed only where the installed version has it)
	import_user => [
		[ 'name', 'name', 1 ], [ 'email', 'email', 1 ], [ 'password_hash', 'password_hash', 1 ]
	],);

# One item of a kind: mostly well formed, sometimes with a key missing,
# an unknown key (long multi-byte ones included), a value of the wrong
# JSON type, or not an object at all.
sub json_item
{
	my ($kind, $extras) = @_;
	return pick('1', '"x"', 'null', '[]', '[{"id": 1}]', 'true')
	  if chance(0.02);
	my @fields;
	for my $k (@{ $kind_keys{$kind} // $kind_keys{create_user} })
	{
		my ($key, $role, $required) = @$k;
		next if chance($required ? 0.03 : 0.4);
		my ($json, $x) = @{ json_value($role) };
		push @$extras, @$x;
		push @fields, json_str($key) . ': ' . $json;
	}
	if (chance(0.04))
	{
		my $key = pick_weighted(
			[ 3, sub { pick('ID', 'Name', 'passwd', 'email ', '', 'id2') } ],
			[ 2, sub { hostile_string() } ],
			[ 2, sub { 'k' . join '', map { pick("\x{e9}", "\x{4f8b}", "\x{1f600}", 'a') } 1 .. 20 + rint(60) } ])->();
		push @fields, json_str($key) . ': ' . json_str('v');
	}
	@fields = reverse @fields if chance(0.2);
	push @fields, $fields[0] if @fields && chance(0.03);    # duplicate key
	$users_est += 0.5 if $kind eq 'create_user' || $kind eq 'import_user';
	return '{' . join(', ', @fields) . '}';
}

my $import_user_exists;    # set once the server has been asked

sub kind_value
{
	my @kinds = qw(create_user update_user delete_user set_password);
	push @kinds, 'import_user' if $import_user_exists;
	return pick_weighted([ 90, sub { pick(@kinds) } ],
		[ 10, sub { pick('CREATE_USER', 'create_user ', ' delete_user', '', 'import_user', 'drop', hostile_string()) } ])->();
}

# The items argument of submit_batch: [sql, extras].
sub items_arg
{
	my ($kind) = @_;
	my $nkind = exists $kind_keys{$kind} ? $kind : pick(sort keys %kind_keys);
	return pick_weighted(
		[
			80,
			sub {
				my @extras;
				my $n = pick_weighted([ 6, 1 ], [ 3, 2 + rint(8) ], [ 1, 10 + rint(40) ]);
				my $json = '[' . join(', ', map { json_item($nkind, \@extras) } 1 .. $n) . ']';
				[ lit_std($json) . (chance(0.5) ? '::jsonb' : ''), \@extras ];
			}
		],
		[ 4, sub { [ lit_std(pick('[]', '{}', 'null', '1', '"[]"', '[[]]', '[null]')), [] ] } ],
		[ 3, sub { [ 'NULL', [] ] } ],
		[
			5,
			sub {
				# malformed: a valid document cut or spoilt somewhere
				my $json = '[' . join(', ', map { json_item($nkind, []) } 1 .. 1 + rint(3)) . ']';
				my $at = rint(length $json);
				$json = chance(0.5) ? substr($json, 0, $at) : substr($json, 0, $at) . pick(',', '}', ']', '"', '\\', ':', "'") . substr($json, $at);
				[ lit_std($json), [ '22P02', '22P05', '22003' ] ];
			}
		],
		[ 1, sub { [ lit_std('[' . ('[' x 500) . (']' x 500) . ']'), [] ] } ],
		[ 3, sub { [ @{ pick(@{ $wrong_type{jsonb} }) } ] } ])->();
}

# ---------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------

# The parameters of each function: [name, type, generator, has_default].
my %params = (
	create_user => [
		[ 'name', 'text', sub { text_arg('name') } ],
		[ 'email', 'text', sub { text_arg('email') } ],
		[ 'password', 'text', sub { text_arg('password') } ]
	],
	get_user    => [ [ 'id', 'bigint', \&user_id_arg ] ],
	update_user => [
		[ 'id', 'bigint', \&user_id_arg ],
		[ 'name', 'text', sub { text_arg('name') }, 1 ],
		[ 'email', 'text', sub { text_arg('email') }, 1 ]
	],
	delete_user => [ [ 'id', 'bigint', \&user_id_arg ] ],
	list_users  => [
		[ 'page', 'int', sub { int_arg('int', sub { 1 + rint(20) }) }, 1 ],
		[ 'per_page', 'int', sub { int_arg('int', sub { 1 + rint(110) }) }, 1 ]
	],
	list_users_after => [
		[ 'after_id', 'bigint', sub { int_arg('bigint', sub { rint($users_est + 10) }) }, 1 ],
		[ 'per_page', 'int', sub { int_arg('int', sub { 1 + rint(110) }) }, 1 ]
	],
	verify_password => [],    # generated together, see below
	import_user     => [
		[ 'name', 'text', sub { text_arg('name') } ],
		[ 'email', 'text', sub { text_arg('email') } ],
		# other systems' hashes (argon2 ones are imported by batch items: the
		# checks at the end tell the hashes the extension made by that)
		[ 'password_hash', 'text', sub { chance(0.8) ? [ lit_any(foreign_hash()), [] ] : text_arg('any') } ]
	],
	set_password    => [
		[ 'id', 'bigint', \&user_id_arg ],
		[ 'password', 'text', sub { text_arg('password') } ]
	],
	submit_batch    => [],    # generated together, see below
	batch_status    => [ [ 'batch_id', 'bigint', sub { batch_id_arg(chance(0.1)) } ] ],
	batch_results   => [ [ 'batch_id', 'bigint', sub { batch_id_arg(chance(0.1)) } ] ],
	cancel_batch    => [ [ 'batch_id', 'bigint', sub { batch_id_arg(chance(0.1)) } ] ],
	wait_batch      => [],    # generated together, see below
	process_batches => [
		[ 'max_items', 'int', sub { int_arg('int', sub { pick(1, 2, 10, 100, 1000) }) }, 1 ]
	],
	running_items => [],
	worker_info   => [],);
# the rows and jsonb forms take list_users' and list_users_after's arguments
$params{"${_}_rows"} = $params{"${_}_json"} = $params{$_} for qw(list_users list_users_after);

# Render a call of user_service.$fn with arguments [[name, sql], ...], in
# positional, named or mixed notation, optionally leaving out trailing
# arguments that have defaults.  Returns the expression.
sub render_call
{
	my ($fn, $args, $ndefaults) = @_;
	my @a = @$args;
	# trailing defaults may be left out
	while ($ndefaults-- > 0 && @a && chance(0.3))
	{
		pop @a;
	}
	my $style = rint(4);
	my @out;
	if ($style == 0 || !@a)
	{
		@out = map { $_->[1] } @a;
	}
	elsif ($style == 1)
	{
		@out = map { "$_->[0] " . pick('=>', ':=') . " $_->[1]" } @a;
		@out = reverse @out if chance(0.5);
	}
	else
	{
		my $npos = rint(scalar @a);
		@out = ((map { $_->[1] } @a[ 0 .. $npos - 1 ]),
			map { "$_->[0] => $_->[1]" } @a[ $npos .. $#a ]);
	}
	return "user_service.$fn(" . join(', ', @out) . ')';
}

# A statement around a call expression: as a table function, in the select
# list, several times in one statement, or fed rows of values.
sub render_statement
{
	my ($fn, $call) = @_;
	if ($fn eq 'list_users' || $fn eq 'list_users_after')
	{
		return pick("SELECT total, cardinality(users) FROM $call",
			"SELECT ($call).total", "SELECT * FROM $call, generate_series(1, 2)");
	}
	if ($fn =~ /_rows$/)
	{
		return pick("SELECT count(*), min(total) FROM $call", "SELECT * FROM $call",
			"SELECT * FROM generate_series(1, 2), $call");
	}
	if ($fn =~ /_json$/)
	{
		return pick("SELECT $call ->> 'total'", "SELECT jsonb_array_length($call -> 'users')");
	}
	if ($fn eq 'batch_results' || $fn eq 'running_items' || $fn eq 'worker_info')
	{
		return pick("SELECT count(*) FROM $call", "SELECT * FROM $call");
	}
	return pick_weighted(
		[ 6, "SELECT * FROM $call" ],
		[ 3, "SELECT $call" ],
		[ 1, "SELECT $call FROM generate_series(1, 2)" ]);
}

# One fuzz call: [fn, statement, [allowed SQLSTATEs]].
sub gen_call
{
	my ($fn) = @_;
	my @extras;
	my @args;
	my $ndefaults = 0;

	if ($fn =~ /^(\w+)_view$/)
	{
		my $view = $1;
		return [ $fn, pick("SELECT * FROM user_service.$view", "SELECT count(*) FROM user_service.$view"), [] ];
	}
	if ($fn eq 'verify_password')
	{
		my ($email, $password) = @{ pick(@known) // [ 'x@example.com', 'password' ] };
		my $e = pick_weighted(
			[ 3, sub { [ lit_any($email), [] ] } ],
			[ 2, sub { [ lit_any(uc $email), [] ] } ],
			[ 1, sub { [ lit_any(" $email "), [] ] } ],
			[ 4, sub { text_arg('email') } ])->();
		my $p = pick_weighted([ 5, sub { [ lit_any($password), [] ] } ],
			[ 5, sub { text_arg('password') } ])->();
		@args = ([ 'email', @$e ], [ 'password', @$p ]);
	}
	elsif ($fn eq 'submit_batch')
	{
		my $kind = kind_value();
		my $k = chance(0.97) ? [ lit_any($kind), [] ] : text_arg('kind');
		my $items = items_arg($kind);
		my $conc = int_arg('int', sub { 1 + rint(8) });
		@args = ([ 'kind', @$k ], [ 'items', @$items ], [ 'concurrency', @$conc ]);
		$ndefaults = 1;
		$batches_est += 0.35;
	}
	elsif ($fn eq 'wait_batch')
	{
		# a long timeout only with an id that cannot exist
		my $bogus = chance(0.2);
		my $id = batch_id_arg($bogus);
		my @timeouts = $bogus
		  ? (q{'1 minute'}, q{'178000000 years'}, q{'1 mon -29 days'}, q{'2147483647 months 2147483647 days'})
		  : (q{'0'}, q{'1 ms'}, q{'10 milliseconds'}, q{interval '1 microsecond'}, q{'0.02'},
			q{'1 mon -30 days'}, q{'-1 day +86400.01 seconds'}, q{'PT0.01S'});
		my $t = pick_weighted(
			[ 80, sub { [ pick(@timeouts), [] ] } ],
			[ 8, sub { [ pick(q{'-1 s'}, q{'@ 1 sec ago'}, q{'-178000000 years'}, q{'-2147483648 months'}), [] ] } ],
			[ 4, sub { [ 'NULL', [] ] } ],
			[ 8, sub { [ @{ pick(@{ $wrong_type{interval} }) } ] } ])->();
		@args = ([ 'batch_id', @$id ], [ 'timeout', @$t ]);
		$ndefaults = $bogus ? 1 : 0;
	}
	else
	{
		for my $p (@{ $params{$fn} })
		{
			my ($name, $type, $gen, $has_default) = @$p;
			push @args, [ $name, @{ $gen->() } ];
			$ndefaults = $has_default ? $ndefaults + 1 : 0;
		}
	}
	push @extras, @{ $_->[2] } for @args;

	# Now and then a call PostgreSQL cannot resolve: an argument too many,
	# one missing, a misspelt argument name.
	if (@args && chance(0.01))
	{
		my $how = rint(3);
		if ($how == 0) { push @args, [ 'extra', '1', [] ]; }
		elsif ($how == 1) { pop @args; $ndefaults = 0; }
		else { $args[0][0] .= 'x'; }
		push @extras, '42883';
	}

	my $call = render_call($fn, \@args, $ndefaults);
	if ($fn eq 'create_user' && @args == 3 && $args[1][1] =~ /^'([^']*)'$/ && $args[2][1] =~ /^'([^']*)'$/)
	{
		# remember plain credentials for verify_password
		my ($e, $p) = ($args[1][1], $args[2][1]);
		push @known, [ substr($e, 1, -1), substr($p, 1, -1) ] if @known < 5000;
	}
	$users_est += 0.4 if $fn eq 'create_user';
	return [ $fn, render_statement($fn, $call), \@extras ];
}

# A few calls no random choice is likely to make: the largest arguments.
sub special_calls
{
	my @s;
	my $bulk = sub {
		my ($kind, $n, $obj, $concurrency) = @_;
		$batches_est++;
		return [ 'submit_batch',
			"SELECT user_service.submit_batch('$kind', (SELECT jsonb_agg($obj ORDER BY i) FROM generate_series(1, $n) i), $concurrency)",
			[] ];
	};
	# Huge batches.  Items that do not hash are claimed in groups of up to
	# 250 within the batch's concurrency: the largest batches have 100, or
	# they would take long.  The 20000 delete_user items take the grouped
	# fast path, with duplicate ids and a few existing users among many
	# missing ones.
	push @s, $bulk->('delete_user', 20000,
		q{jsonb_build_object('id', CASE WHEN i % 200 = 0 THEN i / 200 ELSE 1000000 + i % 3000 END)}, 100);
	push @s, $bulk->('update_user', 5000, q{jsonb_build_object('id', i % 5000, 'name', 'Bulk ' || i)}, 100);
	push @s, $bulk->('update_user', 2000, q{jsonb_build_object('id', i % 50, 'email', 'bulk' || i || '@EXAMPLE.com')}, 'NULL');
	push @s, $bulk->('create_user', 300,
		q{jsonb_build_object('name', 'Bulk ' || i, 'email', CASE WHEN i % 3 = 0 THEN 'bad' ELSE 'bulk' || (i % 7) || '@example.com' END, 'password', 'bulk password ' || i)}, 2);
	push @s, $bulk->('set_password', 300, q{jsonb_build_object('id', i, 'password', repeat('p', i))}, 'NULL');
	push @s, $bulk->('delete_user', 5000, q{jsonb_build_object('id', 1000000 + i)}, 1);
	# deeply nested jsonb: 10000 levels parse (and are no object), 100000
	# exceed max_stack_depth
	for my $depth (10000, 100000)
	{
		push @s, [ 'submit_batch',
			"SELECT user_service.submit_batch('delete_user', ('[' || repeat('[', $depth) || repeat(']', $depth) || ']')::jsonb)",
			['54001'] ];
		push @s, [ 'submit_batch',
			"SELECT user_service.submit_batch('create_user', ('[{\"name\": ' || repeat('[', $depth) || repeat(']', $depth) || '}]')::jsonb)",
			['54001'] ];
	}
	# 1 MB arguments, in literals and computed
	my $mb = 'x' x (1 << 20);
	push @s, [ 'create_user', "SELECT user_service.create_user('$mb', 'mb1\@example.com', 'password1')", [] ];
	push @s, [ 'create_user', "SELECT user_service.create_user('MB', '$mb\@example.com', 'password1')", [] ];
	push @s, [ 'create_user', "SELECT user_service.create_user('MB', 'mb2\@example.com', '$mb')", [] ];
	push @s, [ 'verify_password', "SELECT user_service.verify_password('$mb', '$mb')", [] ];
	push @s, [ 'verify_password', "SELECT user_service.verify_password(repeat('\x{1f600}', 262144), repeat('p', 1048576))", [] ];
	push @s, [ 'update_user', "SELECT user_service.update_user(1, repeat('n', 1048576), repeat('e', 1048576))", [] ];
	push @s, [ 'set_password', "SELECT user_service.set_password(1, repeat('\x{e9}', 524288))", [] ];
	push @s, [ 'submit_batch', "SELECT user_service.submit_batch(repeat('k', 1048576), '[{\"id\": 1}]')", [] ];
	push @s, [ 'submit_batch',
		"SELECT user_service.submit_batch('set_password', jsonb_build_array(jsonb_build_object('id', 1, 'password', repeat('p', 1048576))))",
		[] ];
	push @s, [ 'submit_batch',
		"SELECT user_service.submit_batch('create_user', jsonb_build_array(jsonb_build_object(repeat('\x{e9}', 524288), 1)))",
		[] ];
	# Cancellation: of a batch in the transaction that submits it (nothing
	# ever runs), and of a slow batch (concurrency 1) while the workers are
	# at it, by the next call, as the superuser (it reads the view).
	push @s, [ 'cancel_batch',
		q{SELECT user_service.cancel_batch(user_service.submit_batch('create_user', '[{"name": "C", "email": "c1@example.com", "password": "cancelled 1"}, {"name": "C", "email": "c2@example.com", "password": "cancelled 2"}]'))},
		[] ];
	push @s, [
		[ 'submit_batch',
			q{SELECT user_service.submit_batch('update_user', (SELECT jsonb_agg(jsonb_build_object('id', i % 500, 'name', 'Slow ' || i) ORDER BY i) FROM generate_series(1, 5000) i), 1)},
			[], 'superuser' ],
		[ 'cancel_batch',
			q{SELECT user_service.cancel_batch((SELECT max(batch_id) FROM user_service.batches))},
			[], 'superuser' ] ];
	$batches_est += 5;
	return @s;
}

# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('fuzz');
# UTF-8 with a locale whose lower() knows non-ASCII letters
$node->init(extra => [ '--encoding=UTF8', '--locale=C.UTF-8' ]);
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.workers = 2
user_service.argon2_memory_kib = 64
user_service.argon2_iterations = 1
# backend type and SQLSTATE on every line: the log scan below reads them
log_line_prefix = '%m [%p] %b %e '
log_statement = none
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION user_service');

# Two application roles: one with the whole API (README's grants), one
# that may only submit create_user batches.
$node->safe_psql(
	'postgres', q{
CREATE ROLE fuzz_app;
GRANT USAGE ON SCHEMA user_service TO fuzz_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service TO fuzz_app;
CREATE ROLE fuzz_limited;
GRANT USAGE ON SCHEMA user_service TO fuzz_limited;
GRANT EXECUTE ON FUNCTION user_service.submit_batch(text, jsonb, int),
                          user_service.create_user(text, text, text) TO fuzz_limited;
});

# The import_user kind and the view user_service.stats came with 1.2: they
# are fuzzed when the installed version has them (1.2 lists the kinds in a
# CHECK constraint, 1.3 has the view batch_kinds instead).
$import_user_exists = $node->safe_psql(
	'postgres', q{
SELECT to_regclass('user_service.batch_kinds') IS NOT NULL
    OR EXISTS (SELECT FROM pg_constraint
                WHERE conrelid = 'user_service.batch_jobs'::regclass AND contype = 'c'
                  AND pg_get_constraintdef(oid) LIKE '%import_user%')}) eq 't';
note('import_user kind ' . ($import_user_exists ? 'present: fuzzed' : 'absent'));
my $stats_exists = $node->safe_psql('postgres',
	q{SELECT to_regclass('user_service.stats') IS NOT NULL}) eq 't';
$item_errors{import_user} = [] unless $import_user_exists;

# The harness: one row per call, run by a procedure that executes each
# statement in a subtransaction (as the call's role), records its SQLSTATE
# and message, and commits after every call so that batches reach the
# workers while the fuzzing goes on.
$node->safe_psql(
	'postgres', q{
CREATE SCHEMA fuzz;
CREATE TABLE fuzz.calls (
    n        int PRIMARY KEY,
    fn       text NOT NULL,
    role     text,
    stmt     text NOT NULL,
    allowed  text[] NOT NULL,
    sqlstate text,
    message  text,
    ms       float8
);
CREATE FUNCTION fuzz.valid_utf8(t text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM convert_from(convert_to(t, 'UTF8'), 'UTF8');
    RETURN true;
EXCEPTION WHEN character_not_in_repertoire THEN
    RETURN false;
END $$;
-- a message or statement as one printable line, whatever it contains
CREATE FUNCTION fuzz.shown(t text, len int) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(
               CASE WHEN fuzz.valid_utf8(t) THEN left(t, len)
                    ELSE 'INVALID UTF-8: ' || left(encode(textsend(t), 'escape'), len) END,
               '[[:cntrl:]|]', '?', 'g')
$$;
CREATE PROCEDURE fuzz.run_all() LANGUAGE plpgsql AS $$
DECLARE
    c      record;
    r      record;
    state  text;
    msg    text;
    t0     timestamptz;
BEGIN
    FOR c IN SELECT n FROM fuzz.calls WHERE sqlstate IS NULL ORDER BY n LOOP
        SELECT n, role, stmt INTO r FROM fuzz.calls WHERE n = c.n;
        state := '00000';
        msg := NULL;
        t0 := clock_timestamp();
        BEGIN
            IF r.role IS NOT NULL THEN
                EXECUTE format('SET LOCAL ROLE %I', r.role);
            END IF;
            EXECUTE r.stmt;
            RESET ROLE;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        END;
        UPDATE fuzz.calls
           SET sqlstate = state, message = msg,
               ms = 1000 * extract(epoch FROM clock_timestamp() - t0)
         WHERE n = c.n;
        COMMIT;
    END LOOP;
END $$;
CREATE VIEW fuzz.unexpected AS
    SELECT * FROM fuzz.calls
     WHERE sqlstate IS NOT NULL AND sqlstate <> '00000' AND NOT sqlstate = ANY (allowed);
});

# ---------------------------------------------------------------------------
# Generate the calls
# ---------------------------------------------------------------------------
my @weights = (
	[ 10, 'create_user' ],     [ 6,  'get_user' ],
	[ 7,  'update_user' ],     [ 5,  'delete_user' ],
	[ 5,  'list_users' ],      [ 5,  'list_users_after' ],
	[ 2,  'list_users_rows' ], [ 2,  'list_users_after_rows' ],
	[ 2,  'list_users_json' ], [ 2,  'list_users_after_json' ],
	[ 4,  'import_user' ],
	[ 6,  'verify_password' ], [ 5,  'set_password' ],
	[ 12, 'submit_batch' ],    [ 5,  'batch_status' ],
	[ 5,  'batch_results' ],   [ 4,  'cancel_batch' ],
	[ 5,  'wait_batch' ],      [ 4,  'process_batches' ],
	[ 3,  'running_items' ],   [ 3,  'worker_info' ],
	[ 3,  'batches_view' ],    [ 3,  'workers_view' ],);
push @weights, [ 3, 'stats_view' ] if $stats_exists;

my @calls = map { gen_call(pick_weighted(@weights)) } 1 .. $ncalls;
# the largest calls, spread over the run
for my $s (special_calls())
{
	# (a group of calls stays together, in its order)
	splice @calls, rint(scalar @calls), 0, (ref $s->[0] ? @$s : $s);
}

# The role of each call: mostly the superuser, else one of the two
# application roles.  The application roles add what their grants imply:
# fuzz_app may not read the views (42501), fuzz_limited may execute
# nothing but submit_batch and create_user (42501 everywhere).
my $file = PostgreSQL::Test::Utils::tempdir() . '/calls.copy';
# (encode_utf8 also writes noncharacters such as U+FFFE, which PostgreSQL
# accepts and a strict UTF-8 output layer would refuse)
open my $fh, '>:raw', $file or die "cannot write $file: $!";
my $n = 0;
my %per_fn;
for my $c (@calls)
{
	my ($fn, $stmt, $extras, $fixed_role) = @$c;
	my $role = pick_weighted([ 75, undef ], [ 20, 'fuzz_app' ], [ 5, 'fuzz_limited' ]);
	$role = undef if defined $fixed_role;
	my %allowed = map { $_ => 1 } @{ $api_errors{$fn} }, @$extras;
	$allowed{42501} = 1 if defined $role && ($role eq 'fuzz_limited' || $fn =~ /_view$/);
	$per_fn{$fn}++;
	my $copy = $stmt;
	$copy =~ s/\\/\\\\/g;
	$copy =~ s/\n/\\n/g;
	$copy =~ s/\r/\\r/g;
	$copy =~ s/\t/\\t/g;
	print $fh encode_utf8(join("\t", ++$n, $fn, $role // '\N', $copy,
			'{' . join(',', sort keys %allowed) . '}') . "\n");
}
# self-test of the checker: a call whose error is not in its (empty) list
print $fh join("\t", 0, 'selftest', '\N', 'SELECT 1/0', '{}'), "\n";
close $fh;
note("calls per function: " . join(', ', map { "$_ $per_fn{$_}" } sort keys %per_fn));

$node->safe_psql('postgres', "COPY fuzz.calls (n, fn, role, stmt, allowed) FROM '$file' WITH (ENCODING 'UTF8')");
is($node->safe_psql('postgres', 'SELECT count(*) FROM fuzz.calls'), $n + 1, "$n calls loaded");

# ---------------------------------------------------------------------------
# Run them
# ---------------------------------------------------------------------------
my $t0 = time;
my ($rc, $out, $err) = $node->psql('postgres', 'CALL fuzz.run_all()', timeout => 900);
note(sprintf('fuzz calls ran in %.1f s', time - $t0));
is($rc, 0, 'the fuzz session survived every call') or diag($err);
if ($rc != 0)
{
	# the first call without a result is the one that was running
	diag('running when the session ended: '
		  . $node->safe_psql('postgres',
			q{SELECT n || ' ' || fn || ': ' || fuzz.shown(stmt, 300) FROM fuzz.calls WHERE sqlstate IS NULL ORDER BY n LIMIT 1}));
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM fuzz.calls WHERE sqlstate IS NULL'),
	'0', 'every call was executed');

is($node->safe_psql('postgres', q{SELECT n || ' ' || sqlstate FROM fuzz.unexpected WHERE fn = 'selftest'}),
	'0 22012', 'the checker flags an error outside a call\'s allowed list (self-test)');

my $unexpected = $node->safe_psql(
	'postgres', q{
SELECT n || ' ' || fn || ' [' || coalesce(role, 'superuser') || '] ' || sqlstate || ' '
       || fuzz.shown(message, 200) || E'\n    ' || fuzz.shown(stmt, 300)
  FROM fuzz.unexpected WHERE fn <> 'selftest' ORDER BY n LIMIT 30});
ok($unexpected eq '', 'every call succeeded or raised a documented SQLSTATE')
  or diag("undocumented SQLSTATEs (call, function, role, SQLSTATE, message, statement):\n$unexpected");

my $bad_messages = $node->safe_psql(
	'postgres', q{
SELECT n || ' ' || fn || ' ' || sqlstate || ' ' || fuzz.shown(message, 200) || E'\n    ' || fuzz.shown(stmt, 300)
  FROM fuzz.calls WHERE message IS NOT NULL AND NOT fuzz.valid_utf8(message) ORDER BY n LIMIT 10});
ok($bad_messages eq '', 'every error message is valid UTF-8')
  or diag("messages with invalid UTF-8:\n$bad_messages");

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(fn, ', ' ORDER BY fn) FROM (
    SELECT fn FROM fuzz.calls WHERE fn <> 'selftest' GROUP BY fn
    HAVING count(*) FILTER (WHERE sqlstate = '00000') = 0) f}),
	'',
	'every function succeeded at least once (the generators reach the code past validation)');

# The SQLSTATEs seen per function (for the README's error table).
note("SQLSTATEs per function (count):\n"
	  . $node->safe_psql(
		'postgres', q{
SELECT fn || ' (' || round(sum(ms)) || ' ms): ' || string_agg(sqlstate || ' ' || c, ', ' ORDER BY sqlstate)
  FROM (SELECT fn, sqlstate, count(*) AS c, sum(ms) AS ms
          FROM fuzz.calls WHERE fn <> 'selftest' GROUP BY 1, 2) s
 GROUP BY fn ORDER BY fn}));
note("slowest calls (ms):\n"
	  . $node->safe_psql('postgres',
		q{SELECT round(ms) || ' ' || fn || ' ' || fuzz.shown(stmt, 120) FROM fuzz.calls ORDER BY ms DESC LIMIT 5}));

# ---------------------------------------------------------------------------
# Batches: all finish, and their counts add up
# ---------------------------------------------------------------------------
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 0 FROM user_service.batches WHERE state NOT IN ('done', 'cancelled')}),
	'every batch finished');
my $nbatches = $node->safe_psql('postgres', 'SELECT count(*) FROM user_service.batch_jobs');
cmp_ok($nbatches, '>=', $ncalls / 100, "the fuzz submitted batches ($nbatches)");

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(b.batch_id::text, ', ')
  FROM user_service.batches b
 CROSS JOIN LATERAL (
       SELECT count(*) AS total,
              count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
              count(*) FILTER (WHERE status = 'failed') AS failed,
              count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
              count(*) FILTER (WHERE status = 'pending') AS pending,
              count(DISTINCT item) AS items, min(item) AS first, max(item) AS last
         FROM user_service.batch_items i WHERE i.batch_id = b.batch_id) i
 WHERE b.pending <> 0 OR b.running <> 0 OR b.finished_at IS NULL
    OR b.succeeded + b.failed + b.cancelled <> b.total
    OR i.total <> b.total OR i.items <> b.total OR i.first <> 1 OR i.last <> b.total
    OR i.succeeded <> b.succeeded OR i.failed <> b.failed OR i.cancelled <> b.cancelled
    OR i.pending <> 0}),
	'',
	'every batch: succeeded + failed + cancelled = total = its items, numbered 1..total, none pending');

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(b.batch_id::text, ', ')
  FROM user_service.batches b, user_service.batch_status(b.batch_id) s
 WHERE (s.batch_id, s.kind, s.state, s.total, s.pending, s.running, s.succeeded, s.failed,
        s.cancelled, s.concurrency, s.submitted_at, s.started_at, s.finished_at)
       IS DISTINCT FROM
       (b.batch_id, b.kind, b.state, b.total, b.pending, b.running, b.succeeded, b.failed,
        b.cancelled, b.concurrency, b.submitted_at, b.started_at, b.finished_at)}),
	'',
	'batch_status agrees with the batches view for every batch');

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(b.batch_id::text, ', ')
  FROM user_service.batches b
 CROSS JOIN LATERAL (
       SELECT count(*) AS n, count(DISTINCT item) AS items,
              count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
              count(*) FILTER (WHERE status = 'failed') AS failed,
              count(*) FILTER (WHERE status = 'cancelled') AS cancelled
         FROM user_service.batch_results(b.batch_id)) r
 WHERE r.n <> b.total OR r.items <> b.total OR r.succeeded <> b.succeeded
    OR r.failed <> b.failed OR r.cancelled <> b.cancelled}),
	'',
	'batch_results: exactly one result per item, matching the counts');

my $tr = join "', '", @transient;
note("batch items per kind and status:\n"
	  . $node->safe_psql(
		'postgres', q{
SELECT kind || ': ' || string_agg(status || ' ' || n, ', ' ORDER BY status)
  FROM (SELECT j.kind, i.status, count(*) AS n
          FROM user_service.batch_items i JOIN user_service.batch_jobs j ON j.id = i.batch_id
         GROUP BY 1, 2) s
 GROUP BY kind ORDER BY kind}));
my $item_rules = join ",\n", map {
	"('$_', ARRAY[" . join(',', map { "'$_'" } @{ $item_errors{$_} }, @transient) . "]::text[])"
} sort keys %item_errors;
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(DISTINCT j.kind || ' ' || i.status || ' ' || coalesce(i.sqlstate, '-') || ' '
                  || coalesce(fuzz.shown(i.error, 100), '-'), E'\\n')
  FROM user_service.batch_items i
  JOIN user_service.batch_jobs j ON j.id = i.batch_id
  JOIN (VALUES $item_rules) AS r(kind, allowed) ON r.kind = j.kind
 WHERE (i.status = 'succeeded' AND (i.user_id IS NULL OR i.sqlstate IS NOT NULL OR i.error IS NOT NULL))
    OR (i.status = 'failed' AND (i.sqlstate IS NULL OR i.error IS NULL OR NOT i.sqlstate = ANY (r.allowed)))
    -- (a cancelled item may keep the SQLSTATE of an earlier transient attempt)
    OR (i.status = 'cancelled' AND (i.user_id IS NOT NULL OR NOT coalesce(i.sqlstate, '40001') = ANY (ARRAY['$tr'])))
    OR (i.error IS NOT NULL AND NOT fuzz.valid_utf8(i.error))}),
	'',
	'every item result is consistent, and failed items carry a SQLSTATE their kind documents');

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM user_service.batch_items WHERE status <> 'pending' AND payload ? 'password'}),
	'0',
	'no finished item keeps its password');

# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------
my $nusers = $node->safe_psql('postgres', 'SELECT count(*) FROM user_service.users');
cmp_ok($nusers, '>=', $ncalls / 100, "the fuzz left users behind ($nusers)");
is( $node->safe_psql(
		'postgres', q{
SELECT (SELECT total FROM user_service.list_users(1, 1)) || ' '
    || (SELECT total FROM user_service.list_users_after(0, 1)) || ' '
    || (SELECT coalesce(sum(delta), 0) FROM user_service.user_count_deltas)}),
	"$nusers $nusers $nusers",
	'list_users and list_users_after totals (and the deltas) equal count(*)');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) - count(DISTINCT lower(email)) FROM user_service.users}),
	'0', 'emails are unique case-insensitively');

# Strict PHC argon2: type, optional version 16 or 19, m/t/p without leading
# zeros, unpadded standard base64 salt and tag of at least 8 and 4 bytes.
my $phc =
  '^\$argon2(id|i|d)\$(v=(16|19)\$)?m=[1-9][0-9]*,t=[1-9][0-9]*,p=[1-9][0-9]*'
  . '\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{6,}$';
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(id || ': ' || fuzz.shown(password_hash, 100), E'\\n')
  FROM user_service.users
 WHERE CASE WHEN user_service.hash_format(password_hash) LIKE 'argon2%'
            THEN password_hash !~ '$phc'
                 OR length(split_part(password_hash, '\$', -2)) % 4 = 1
                 OR length(split_part(password_hash, '\$', -1)) % 4 = 1
            ELSE user_service.hash_format(password_hash) = 'unknown' END}),
	'',
	'every stored hash is an argon2 PHC string or another system\'s hash in a known format');
# The hash check above covers imported hashes too: some were imported.
if ($import_user_exists)
{
	cmp_ok(
		$node->safe_psql(
			'postgres', q{
SELECT count(*) FROM user_service.batch_items i JOIN user_service.batch_jobs j ON j.id = i.batch_id
 WHERE j.kind = 'import_user' AND i.status = 'succeeded'}),
		'>', 0, 'some import_user items imported a hash');
}
# (hashes imported by import_user items keep their own parameters)
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM user_service.users
 WHERE password_hash !~ '^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$'
   AND user_service.hash_format(password_hash) LIKE 'argon2%'
   AND id NOT IN (SELECT i.user_id FROM user_service.batch_items i
                    JOIN user_service.batch_jobs j ON j.id = i.batch_id
                   WHERE j.kind = 'import_user' AND i.user_id IS NOT NULL)}),
	'0',
	'every hash the extension made uses the configured parameters, a 16-byte salt and a 32-byte tag');

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(id || ': ' || fuzz.shown(name, 60) || ' / ' || fuzz.shown(email, 100), E'\n')
  FROM user_service.users
 WHERE name = '' OR char_length(name) > 200 OR name <> btrim(name, E' \t\n\r\f\x0b')
    OR char_length(email) > 254 OR email <> btrim(email, E' \t\n\r\f\x0b')
    OR email ~ '[\x01-\x20\x7f]'
    OR email !~ '^[^@]+@[^@.]+(\.[^@.]+)+$'}),
	'',
	'every stored name and email follows the input rules');

# ---------------------------------------------------------------------------
# The server log: no crash, nothing internal, no leak, no error outside an
# item in the workers, no worker that died.
# ---------------------------------------------------------------------------
my @findings;
for my $line (split /\n/, slurp_file($node->logfile))
{
	if ($line =~ /terminated by signal|was terminated by exception|server process .* was terminated|PANIC|TRAP:/
		|| $line =~ /\] .+ XX\d{3} \w+:/
		|| $line =~ /\] .+ [0-9A-Z]{5} WARNING: .*(leak|not closed)/
		|| $line =~ /\] user_service (worker|launcher) [0-9A-Z]{5} (ERROR|FATAL):/
		|| $line =~ /background worker "user_service .*" \(PID \d+\) exited with exit code [1-9]/)
	{
		push @findings, substr($line, 0, 300);
	}
}
is(scalar @findings, 0, 'the server log shows no crash, internal error, leak or worker error')
  or diag(join "\n", @findings[ 0 .. ($#findings < 19 ? $#findings : 19) ]);

$node->stop;
done_testing();
