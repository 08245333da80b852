# Upgrades give exactly what a fresh install gives.  In one cluster:
# database "updated" installs version 1.0 and runs ALTER EXTENSION
# user_service UPDATE; database "fresh" runs CREATE EXTENSION user_service;
# database "stepwise" goes 1.0 -> 1.1 -> 1.2 -> 1.3 one ALTER at a time,
# and is compared at 1.1 and 1.2 with databases "fresh11" and "fresh12"
# (CREATE EXTENSION ... VERSION).  The comparison is a listing of every object of the extension and
# everything about it: members, columns, defaults, indexes, constraints,
# triggers, views, functions, types, sequences, comments, ACLs and the
# extension's configuration tables.  Data survives: users created under 1.0
# still log in, a batch submitted under 1.1 is processed after the update,
# and the 1.2 features (import_user, user_service.stats) work on the updated
# database.  A 1.2 library under a 1.1 schema refuses import_user with a hint.
# 1.3 stores emails in NFC: the update stops on two users equal under NFC.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run);

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'user_service'
user_service.database = 'postgres'
user_service.argon2_memory_kib = 1024
user_service.argon2_iterations = 1
});
$node->start;

my $latest = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'user_service'");
is($latest, '1.3', 'the current version is 1.3');

# Everything about the extension's objects, one line each, sorted; nothing
# that depends on OIDs or on the database's name.
my $listing_sql = q{
WITH ext AS (SELECT * FROM pg_extension WHERE extname = 'user_service'),
nsp AS (SELECT 'user_service'::regnamespace AS oid),
rels AS (SELECT c.* FROM pg_class c, nsp WHERE c.relnamespace = nsp.oid),
funcs AS (SELECT p.* FROM pg_proc p, nsp WHERE p.pronamespace = nsp.oid)
SELECT line FROM (
  SELECT 'extension ' || extname || ' ' || extversion || ' schema ' || extnamespace::regnamespace
         || ' relocatable ' || extrelocatable AS line FROM ext
  UNION ALL
  SELECT 'schema acl ' || coalesce(nspacl::text, '-') FROM pg_namespace, nsp WHERE pg_namespace.oid = nsp.oid
  UNION ALL
  SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
    FROM pg_depend d, ext
   WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
  UNION ALL
  SELECT 'config ' || c.cfg::regclass || ' condition ' || quote_literal(coalesce(c.cond, '-'))
    FROM ext, unnest(ext.extconfig, ext.extcondition) AS c(cfg, cond)
  UNION ALL
  SELECT 'relation ' || relname || ' kind ' || relkind::text || ' persistence ' || relpersistence::text
         || ' owner ' || pg_get_userbyid(relowner)
         || ' acl ' || coalesce(relacl::text, '-')
         || ' options ' || coalesce(reloptions::text, '-')
         || ' replica identity ' || relreplident::text
         || ' rls ' || relrowsecurity || '/' || relforcerowsecurity
         || ' comment ' || coalesce(quote_literal(obj_description(oid, 'pg_class')), '-')
    FROM rels
  UNION ALL
  SELECT 'column ' || c.relname || '.' || lpad(a.attnum::text, 2, '0') || ' ' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
         || CASE a.attidentity WHEN '' THEN '' ELSE ' identity ' || a.attidentity::text END
         || CASE a.attgenerated WHEN '' THEN '' ELSE ' generated ' || a.attgenerated::text END
         || coalesce(' collate ' || nullif(a.attcollation, 0::oid)::regcollation::text, '')
         || coalesce(' acl ' || a.attacl::text, '')
         || coalesce(' comment ' || quote_literal(col_description(c.oid, a.attnum)), '')
    FROM rels c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
         || ' comment ' || coalesce(quote_literal(obj_description(i.indexrelid, 'pg_class')), '-')
    FROM pg_index i JOIN rels c ON c.oid = i.indrelid
  UNION ALL
  SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
         || CASE WHEN k.convalidated THEN '' ELSE ' not valid' END
    FROM pg_constraint k JOIN rels c ON c.oid = k.conrelid
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
         || ' comment ' || coalesce(quote_literal(obj_description(t.oid, 'pg_trigger')), '-')
    FROM pg_trigger t JOIN rels c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid, true)
    FROM rels c WHERE c.relkind IN ('v', 'm')
  UNION ALL
  SELECT 'sequence ' || c.relname || ' ' || format_type(s.seqtypid, NULL)
         || ' start ' || s.seqstart || ' increment ' || s.seqincrement
         || ' min ' || s.seqmin || ' max ' || s.seqmax || ' cache ' || s.seqcache
         || ' cycle ' || s.seqcycle
         || coalesce(' owned by ' || (SELECT d.refobjid::regclass || '.' || a.attname
                                        FROM pg_depend d
                                        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                       WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                         AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '')
    FROM pg_sequence s JOIN rels c ON c.oid = s.seqrelid
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure || ' returns ' || pg_get_function_result(p.oid)
         || ' acl ' || coalesce(p.proacl::text, '-')
         || ' owner ' || pg_get_userbyid(p.proowner)
         || ' comment ' || coalesce(quote_literal(obj_description(p.oid, 'pg_proc')), '-')
         || E'\n' || CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid)
                          ELSE 'kind ' || p.prokind::text END
    FROM funcs p
  UNION ALL
  SELECT 'type ' || t.oid::regtype || ' kind ' || t.typtype::text
         || ' acl ' || coalesce(t.typacl::text, '-')
         || ' comment ' || coalesce(quote_literal(obj_description(t.oid, 'pg_type')), '-')
    FROM pg_type t, nsp WHERE t.typnamespace = nsp.oid
  UNION ALL
  SELECT 'constraint on type ' || k.contypid::regtype || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
    FROM pg_constraint k JOIN pg_type t ON t.oid = k.contypid, nsp WHERE t.typnamespace = nsp.oid
  UNION ALL
  SELECT 'policy ' || tablename || ' ' || policyname || ' ' || cmd || ' ' || coalesce(qual, '-')
    FROM pg_policies WHERE schemaname = 'user_service'
  UNION ALL
  SELECT 'rule ' || tablename || ' ' || rulename || ' ' || definition
    FROM pg_rules WHERE schemaname = 'user_service'
) l
ORDER BY line COLLATE "C";
};

sub listing
{
	my ($db) = @_;
	return $node->safe_psql($db, $listing_sql);
}

# The two listings must be equal: is() on their unified diff, so that a
# mismatch shows just the lines that differ.
sub same_listing
{
	my ($got_db, $want_db, $name) = @_;
	my $got = listing($got_db);
	my $want = listing($want_db);
	my $diff = '';
	if ($got ne $want)
	{
		my $dir = PostgreSQL::Test::Utils::tempdir();
		PostgreSQL::Test::Utils::append_to_file("$dir/$want_db", "$want\n");
		PostgreSQL::Test::Utils::append_to_file("$dir/$got_db", "$got\n");
		run([ 'diff', '-u', "$dir/$want_db", "$dir/$got_db" ], '>', \$diff);
		$diff = "listings differ\n" if $diff eq '';
	}
	return is($diff, '', $name);
}

$node->safe_psql('postgres', "CREATE DATABASE $_")
  for qw(updated fresh stepwise fresh11 fresh12);

# A fresh install at the current version.
$node->safe_psql('fresh', 'CREATE EXTENSION user_service');
is($node->safe_psql('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'user_service'"),
	'1.3', 'CREATE EXTENSION installs 1.3');

# 1.0 with a user, then ALTER EXTENSION UPDATE.
$node->safe_psql('updated', q{
	CREATE EXTENSION user_service VERSION '1.0';
	SELECT user_service.create_user('Ada', 'ada@example.com', 'analytical engine');
	SELECT user_service.create_user('Alan', 'alan@example.com', 'universal machine');
	SELECT user_service.delete_user(2)});
is($node->safe_psql('updated', "SELECT extversion FROM pg_extension WHERE extname = 'user_service'"),
	'1.0', 'version 1.0 installed');
$node->safe_psql('updated', 'ALTER EXTENSION user_service UPDATE');
is($node->safe_psql('updated', "SELECT extversion FROM pg_extension WHERE extname = 'user_service'"),
	'1.3', 'ALTER EXTENSION UPDATE goes to 1.3');

# The listing covers what it should (an empty or broken one must not pass).
my $fresh = listing('fresh');
like($fresh, qr/^member view user_service\.stats$/m, 'the listing has the members');
like($fresh, qr/^column users\.04 password_hash text not null collate "default"$/m, 'the listing has the columns');
like($fresh, qr/^index CREATE UNIQUE INDEX users_email_key ON user_service\.users USING btree \(lower\(email\)\)/m,
	'the listing has the indexes');
like($fresh, qr/^constraint registered_kinds registered_kinds_kind_check CHECK /m,
	'the listing has the constraints');
like($fresh, qr/^trigger CREATE TRIGGER count_inserts AFTER INSERT ON user_service\.users/m,
	'the listing has the triggers');
like($fresh, qr/^function user_service\.submit_batch\(text,jsonb,integer\) returns bigint acl \{(\w+)=X\/\1\}/m,
	'the listing has the functions and their ACLs');
like($fresh, qr/^CREATE OR REPLACE FUNCTION user_service\.submit_batch/m, 'and their definitions');
like($fresh, qr/^config user_service\.users condition ''$/m, 'the listing has the configuration tables');
like($fresh, qr/^view stats /m, 'the listing has the view definitions');
like($fresh, qr/^sequence users_id_seq bigint .* owned by user_service\.users\.id$/m,
	'the listing has the sequences');

like($fresh, qr/^relation batch_progress kind r .* replica identity f /m, 'the listing has the replica identities');

same_listing('updated', 'fresh', '1.0 updated to 1.3 has exactly the objects of a fresh 1.3 install');

# The data survived the update, and 1.2 and 1.3 work there.
is( $node->safe_psql(
		'updated', q{
		SELECT user_service.verify_password('ada@example.com', 'analytical engine'),
		       user_service.verify_password('ada@example.com', 'wrong password'),
		       (user_service.list_users()).total,
		       (SELECT name FROM user_service.get_user(1))}),
	't|f|1|Ada',
	'a user created under 1.0 still logs in; the exact count is kept');
my $imported = $node->safe_psql('updated', q{
	SELECT user_service.submit_batch('import_user', format('[{"name": "Grace", "email": "grace@example.com", "password_hash": %s}]',
		to_jsonb(password_hash))::jsonb)
	  FROM user_service.users WHERE id = 1});
is($node->safe_psql('updated', 'SELECT user_service.process_batches()'), '1',
	'an import_user batch is processed after the update');
is( $node->safe_psql(
		'updated', q{
		SELECT user_service.verify_password('grace@example.com', 'analytical engine'), users
		  FROM user_service.stats}),
	't|2',
	'the imported user logs in; user_service.stats counts the users');

# 1.0 -> 1.1 -> 1.2 -> 1.3 one step at a time, with a batch left pending under 1.1.
$node->safe_psql('fresh11', "CREATE EXTENSION user_service VERSION '1.1'");
$node->safe_psql('fresh12', "CREATE EXTENSION user_service VERSION '1.2'");
$node->safe_psql('stepwise', q{
	CREATE EXTENSION user_service VERSION '1.0';
	SELECT user_service.create_user('Ada', 'ada@example.com', 'analytical engine');
	ALTER EXTENSION user_service UPDATE TO '1.1'});
is($node->safe_psql('stepwise', "SELECT extversion FROM pg_extension WHERE extname = 'user_service'"),
	'1.1', 'UPDATE TO 1.1');
same_listing('stepwise', 'fresh11', '1.0 updated to 1.1 has exactly the objects of a fresh 1.1 install');

my ($rc, $out, $err) = $node->psql('stepwise', q{
	SELECT user_service.submit_batch('import_user',
		'[{"name": "X", "email": "x@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$c2FsdHNhbHQ"}]')});
like($err, qr/ERROR:  batch kind "import_user" needs user_service 1\.2, but version 1\.1 is installed.*HINT:  Run ALTER EXTENSION user_service UPDATE\./s,
	'a 1.1 schema refuses import_user with a hint');
my $pending = $node->safe_psql('stepwise', q{
	SELECT user_service.submit_batch('set_password', '[{"id": 1, "password": "difference engine"}]')});
is($node->safe_psql('stepwise', "SELECT state FROM user_service.batch_status($pending)"),
	'pending', 'a batch waits under 1.1');

$node->safe_psql('stepwise', "ALTER EXTENSION user_service UPDATE TO '1.2'");
is($node->safe_psql('stepwise', "SELECT extversion FROM pg_extension WHERE extname = 'user_service'"),
	'1.2', 'UPDATE TO 1.2');
same_listing('stepwise', 'fresh12', '1.0 updated to 1.1 and then to 1.2 has exactly the objects of a fresh 1.2 install');
is($node->safe_psql('stepwise', 'SELECT user_service.process_batches()'), '1',
	'the batch submitted under 1.1 is processed under 1.2');
is( $node->safe_psql(
		'stepwise', qq{
		SELECT state, succeeded FROM user_service.batch_status($pending);
		SELECT user_service.verify_password('ada\@example.com', 'difference engine')}),
	"done|1\nt",
	'... with its effect');

# A batch left pending under 1.2 (an item to a row) moves into 1.3's chunks,
# with the finished items of 1.2.
my $pending12 = $node->safe_psql('stepwise', q{
	SELECT user_service.submit_batch('update_user', '[{"id": 1, "name": "Ada L."}, {"id": 999, "name": "Nobody"}]')});
# A big one of a cheap kind goes into chunks of 250 consecutive items (an item
# to a chunk, the workers would take it an item per transaction), one of a
# kind that hashes into chunks of one item (a claim is one hash).
my $big12 = $node->safe_psql('stepwise', q{
	SELECT user_service.submit_batch('delete_user',
		(SELECT jsonb_agg(jsonb_build_object('id', i) ORDER BY i) FROM generate_series(1001, 1600) i))});
my $hash12 = $node->safe_psql('stepwise', q{
	SELECT user_service.submit_batch('set_password',
		'[{"id": 1, "password": "analytical engine"}, {"id": 1, "password": "difference engine"}]')});
$node->safe_psql('stepwise', "ALTER EXTENSION user_service UPDATE TO '1.3'");
is($node->safe_psql('stepwise', "SELECT extversion FROM pg_extension WHERE extname = 'user_service'"),
	'1.3', 'UPDATE TO 1.3');
is( $node->safe_psql('stepwise', qq{
		SELECT string_agg(batch_id || ':' || item || ':' || status, ' ' ORDER BY batch_id, item)
		  FROM user_service.batch_items WHERE batch_id IN ($pending, $pending12)}),
	"$pending:1:succeeded $pending12:1:pending $pending12:2:pending",
	'the items of 1.2, finished and pending, are in the chunks');
is( $node->safe_psql('stepwise', qq{
		SELECT string_agg(batch_id || ':' || first_item || '+' || cardinality(status) || ':' || pending
		                  || ':' || (due IS NULL), ' ' ORDER BY batch_id, first_item)
		  FROM user_service.batch_chunks WHERE batch_id IN ($pending, $pending12, $big12, $hash12)}),
	"$pending:1+1:0:true $pending12:1+2:2:true $big12:1+250:250:true $big12:251+250:250:true "
	  . "$big12:501+100:100:true $hash12:1+1:1:true $hash12:2+1:1:true",
	'... a chunk of up to 250 items for a cheap kind, of one for a kind that hashes');
is($node->safe_psql('stepwise', 'SELECT user_service.process_batches()'), '604',
	'the batches submitted under 1.2 are processed under 1.3');
is( $node->safe_psql('stepwise', qq{
		SELECT string_agg(state || ':' || succeeded || ':' || failed, ' ' ORDER BY batch_id)
		  FROM user_service.batches WHERE batch_id IN ($big12, $hash12)}),
	'done:0:600 done:2:0', '... each item once');
is( $node->safe_psql('stepwise', qq{
		SELECT string_agg(item || ':' || status || ':' || coalesce(sqlstate, ''), ' ' ORDER BY item)
		  FROM user_service.batch_results($pending12);
		SELECT name FROM user_service.users WHERE id = 1}),
	"1:succeeded: 2:failed:P0002\nAda L.",
	'... with a result per item and its effect');
same_listing('stepwise', 'fresh', '1.0 updated to 1.1, 1.2 and then 1.3 has exactly the objects of a fresh install');
is($node->safe_psql('stepwise', 'SELECT user_service.recount_users()'), '1', 'recount_users works after the update');

# delete_user changes its result type in 1.3 (void -> user_info): the
# function is made again, and a role granted EXECUTE on it keeps it.
$node->safe_psql('postgres', 'CREATE DATABASE grants');
$node->safe_psql('grants', q{
	CREATE EXTENSION user_service VERSION '1.2';
	CREATE ROLE upgrade_app;
	GRANT USAGE ON SCHEMA user_service TO upgrade_app;
	GRANT EXECUTE ON FUNCTION user_service.delete_user(bigint), user_service.create_user(text, text, text)
	   TO upgrade_app});
$node->safe_psql('grants', 'ALTER EXTENSION user_service UPDATE');
is( $node->safe_psql(
		'grants', q{
		SELECT has_function_privilege('upgrade_app', 'user_service.delete_user(bigint)', 'EXECUTE'),
		       has_function_privilege('public', 'user_service.delete_user(bigint)', 'EXECUTE');
		SET ROLE upgrade_app;
		SELECT name FROM user_service.delete_user(
		    (SELECT id FROM user_service.create_user('Gone', 'gone@example.com', 'gone password')))}),
	"t|f\nGone", '1.3 delete_user returns the deleted user, and keeps the grants it had');
# as real grants: the role depends on them, and pg_dump sees them as the
# administrator's, not the extension's
($rc, $out, $err) = $node->psql('grants', 'DROP ROLE upgrade_app');
like($err, qr/cannot be dropped because some objects depend on it\nDETAIL:  .*privileges for function user_service\.delete_user\(bigint\)/s,
	'the role the grant was carried over to cannot be dropped while it holds it');
is( $node->safe_psql(
		'grants', q{
		SELECT count(*) FROM pg_init_privs i, aclexplode(i.initprivs) a
		 WHERE i.objoid = 'user_service.delete_user(bigint)'::regprocedure
		   AND a.grantee = 'upgrade_app'::regrole}),
	'0', 'and the extension\'s initial privileges do not include it');
my $dump = $node->safe_psql('grants', q{SELECT 1});
run([ 'pg_dump', '-s', '-d', $node->connstr('grants') ], '>', \$dump);
like($dump, qr/GRANT ALL ON FUNCTION user_service\.delete_user\(id bigint\) TO upgrade_app;/,
	'pg_dump keeps the grant');

# 1.3 compares emails in Unicode NFC.  Under 1.2 "jos\x{e9}" composed and
# decomposed could be two users: the update names them and changes nothing
# until one is gone; then it stores the other in NFC.
$node->safe_psql('postgres',
	"CREATE DATABASE nfc ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
$node->safe_psql('nfc', q{
	CREATE EXTENSION user_service VERSION '1.2';
	SELECT user_service.create_user('Composed', U&'jos\00e9@example.com', 'composed password');
	SELECT user_service.create_user('Decomposed', 'decomposed@example.com', 'decomposed password');
	-- what 1.2 stored as given (the 1.3 library would store NFC)
	UPDATE user_service.users SET email = U&'jose\0301@example.com', updated_at = created_at WHERE id = 2;
	SELECT user_service.create_user('Plain', 'plain@example.com', 'plain password');
	SELECT user_service.create_user('Other', U&'m\00fcller@example.com', 'other password');});
($rc, $out, $err) = $node->psql('nfc', 'ALTER EXTENSION user_service UPDATE',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  23505: cannot update user_service to 1\.3: some email addresses are equal under Unicode normalization\nDETAIL:  Emails are compared in NFC from 1\.3 on; these have the same address: users 1, 2\.\nHINT:  Keep one user of each group/,
	'two users equal under NFC stop the update, named');
is($node->safe_psql('nfc', "SELECT extversion FROM pg_extension WHERE extname = 'user_service'"),
	'1.2', '... which changes nothing');
$node->safe_psql('nfc', 'SELECT user_service.delete_user(1)');
$node->safe_psql('nfc', 'ALTER EXTENSION user_service UPDATE');
is( $node->safe_psql('nfc', q{
		SELECT string_agg(id || ':' || (email = normalize(email, NFC)), ' ' ORDER BY id),
		       bool_and(updated_at = created_at)
		  FROM user_service.users}),
	'2:true 3:true 4:true|t', 'then every email is stored in NFC, updated_at kept');
is( $node->safe_psql('nfc', q{
		SELECT user_service.verify_password(U&'jos\00e9@example.com', 'decomposed password'),
		       user_service.verify_password(U&'jose\0301@example.com', 'decomposed password')}),
	't|t', 'the remaining user logs in with either form');

# Nothing left to update.
($rc, $out, $err) = $node->psql('updated', 'ALTER EXTENSION user_service UPDATE');
like($err, qr/version "1\.3" of extension "user_service" is already installed/,
	'at the current version, UPDATE has nothing to do');

$node->stop;
done_testing();
