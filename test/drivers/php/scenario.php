<?php
// The driver scenario of test/t/029_drivers.pl for PHP (pgsql extension), printed as TAP.
// Run from the repository root: php test/drivers/php/scenario.php
// Environment: PGHOST, PGPORT, PGDATABASE, PGUSER, US_TAG (in every email made here),
// US_POOLED=1 behind PgBouncer in transaction mode: pg_query_params only, never pg_prepare.
//
// php-pgsql returns every value as a string; the scenario checks the column's type with
// pg_field_type and converts: (int) for int8, new DateTimeImmutable for timestamptz, === 't' for bool.

declare(strict_types=1);

$tests = 0;
$failed = false;
$step = 'connect';

// ---- TAP output ----------------------------------------------------------------------------

function ok(bool $pass, string $description, ?string $diagnostic = null): bool
{
    global $tests, $failed;
    $tests++;
    echo ($pass ? 'ok ' : 'not ok ') . "$tests - $description\n";
    if (!$pass) {
        $failed = true;
        foreach (explode("\n", (string) $diagnostic) as $line) {
            if ($line !== '') {
                echo "# $line\n";
            }
        }
    }
    return $pass;
}

function is(mixed $got, mixed $expected, string $description): bool
{
    return ok($got === $expected, $description,
        'expected: ' . var_export($expected, true) . "\n     got: " . var_export($got, true));
}

// Warnings and notices (a failed pg_query_params, say) become exceptions: the scenario dies.
set_error_handler(function (int $severity, string $message, string $file, int $line): bool {
    throw new ErrorException($message, 0, $severity, $file, $line);
});

// ---- small helpers for the API -------------------------------------------------------------

/** Runs one statement with bind parameters; any error is an exception. */
function q(PgSql\Connection $db, string $sql, array $params = []): PgSql\Result
{
    $res = pg_query_params($db, $sql, $params);
    if ($res === false) {
        throw new RuntimeException(pg_last_error($db));
    }
    return $res;
}

/** Runs one statement and returns its result, failed or not, to read the SQLSTATE from. */
function attempt(PgSql\Connection $db, string $sql, array $params): PgSql\Result
{
    if (!pg_send_query_params($db, $sql, $params)) {
        throw new RuntimeException(pg_last_error($db));
    }
    $res = pg_get_result($db);
    while (pg_get_result($db) !== false) {
        // a single statement has a single result; drain to leave the connection idle
    }
    return $res;
}

/** Asserts that the statement fails with this SQLSTATE (and, when given, this primary message). */
function fails(PgSql\Connection $db, string $sql, array $params, string $sqlstate, ?string $message,
               string $description): void
{
    $res = attempt($db, $sql, $params);
    is(pg_result_error_field($res, PGSQL_DIAG_SQLSTATE), $sqlstate, "$description: SQLSTATE $sqlstate");
    if ($message !== null) {
        is(pg_result_error_field($res, PGSQL_DIAG_MESSAGE_PRIMARY), $message, "$description: message");
    }
}

/** The type of a result column, as pg_field_type names it (int8, timestamptz, bool, ...). */
function type_of(PgSql\Result $res, string $column): string
{
    return pg_field_type($res, pg_field_num($res, $column));
}

/** int8 text to a PHP int, or null when it does not convert exactly. */
function int8(?string $text): ?int
{
    return $text !== null && (string) (int) $text === $text ? (int) $text : null;
}

/** A user row with its columns typed: id int, created_at/updated_at DateTimeImmutable. */
function user_rows(PgSql\Result $res): array
{
    $types = [type_of($res, 'id'), type_of($res, 'created_at'), type_of($res, 'updated_at')];
    if ($types !== ['int8', 'timestamptz', 'timestamptz']) {
        throw new RuntimeException('unexpected column types ' . implode(', ', $types));
    }
    $rows = [];
    foreach (pg_fetch_all($res) as $row) {
        $row['id'] = int8($row['id']);
        $row['created_at'] = new DateTimeImmutable($row['created_at']);
        $row['updated_at'] = new DateTimeImmutable($row['updated_at']);
        $rows[] = $row;
    }
    return $rows;
}

function create_user(PgSql\Connection $db, string $name, string $email, string $password): array
{
    $rows = user_rows(q($db, 'SELECT * FROM user_service.create_user($1, $2, $3)', [$name, $email, $password]));
    is(count($rows), 1, "create_user $name returns one row");
    return $rows[0];
}

function same_user(array $a, array $b): bool
{
    return $a['id'] === $b['id'] && $a['name'] === $b['name'] && $a['email'] === $b['email']
        && $a['created_at'] == $b['created_at'] && $a['updated_at'] == $b['updated_at'];
}

/** Deletes the users made here; a user already gone (P0002) is fine. */
function clean_up(PgSql\Connection $db, array $mine, bool $assert): void
{
    $problems = [];
    foreach (array_filter($mine, 'is_int') as $email => $id) {
        $res = attempt($db, 'SELECT * FROM user_service.delete_user($1)', [$id]);
        $state = pg_result_error_field($res, PGSQL_DIAG_SQLSTATE);
        if ($state === null || $state === false) {
            $rows = pg_fetch_all($res);
            if (count($rows) !== 1 || $rows[0]['email'] !== $email) {
                $problems[] = "delete_user($id) returned " . json_encode($rows);
            }
        } elseif ($state !== 'P0002') {
            $problems[] = "delete_user($id): $state " . pg_result_error_field($res, PGSQL_DIAG_MESSAGE_PRIMARY);
        }
    }
    if ($assert) {
        ok($problems === [], 'deleted the ' . count(array_filter($mine, 'is_int')) . ' remaining users made here', implode("\n", $problems));
    }
}

// ---- the scenario ----------------------------------------------------------------------------

$tag = getenv('US_TAG') ?: 'php' . getmypid();
$mine = [];        // email => id of every user made here
$db = null;

try {
    // 1. connect; the README's example runs on this connection with a user of its own
    $email = "readme-$tag@example.com";
    // README-BEGIN
    // pg_query_params never prepares a named statement: it works behind PgBouncer in transaction mode too.
    $db = pg_connect(sprintf('host=%s port=%s dbname=%s user=%s',
        getenv('PGHOST'), getenv('PGPORT'), getenv('PGDATABASE'), getenv('PGUSER')), PGSQL_CONNECT_FORCE_NEW);

    // Send, then read the result: a failure is then a result with a SQLSTATE, not a PHP warning.
    pg_send_query_params($db, 'SELECT id FROM user_service.create_user($1, $2, $3)',
        ['Ada', $email, 'analytical engine']);
    $res = pg_get_result($db);
    $id = null;
    if (pg_result_status($res) === PGSQL_TUPLES_OK) {
        $id = (int) pg_fetch_result($res, 0, 'id');                 // int8 arrives as a string
    } elseif (pg_result_error_field($res, PGSQL_DIAG_SQLSTATE) !== '23505') {   // 23505: the email is taken
        throw new RuntimeException(pg_result_error($res));
    }
    $page = pg_query_params($db, 'SELECT id, email, total FROM user_service.list_users_rows($1, $2)', [1, 20]);
    $users = pg_fetch_all($page);                                   // every row carries the exact total
    $res = pg_query_params($db, 'SELECT user_service.verify_password($1, $2)', [$email, 'analytical engine']);
    $verified = pg_fetch_result($res, 0, 0) === 't';                // booleans arrive as 't' or 'f'
    // README-END
    is(pg_fetch_result(q($db, 'SELECT current_user'), 0, 0), getenv('PGUSER'), 'connected as PGUSER');
    // what the example got: an int id, a page whose every row has the same exact total, true
    $mine[$email] = $id;
    ok(is_int($id) && $id > 0, 'README example: create_user gave an id', 'got ' . var_export($id, true));
    $totals = array_column($users, 'total');
    $total = int8($totals[0] ?? null);
    ok(type_of($page, 'total') === 'int8' && $total !== null && $total >= 1
        && count($users) === min(20, $total) && count(array_unique($totals)) === 1,
        'README example: list_users_rows(1, 20) has min(20, total) rows, each with the same int8 total',
        'got totals ' . json_encode($totals) . ' of type ' . type_of($page, 'total'));
    ok($verified && type_of($res, 'verify_password') === 'bool', 'README example: verify_password is true');

    // 2. create Ada
    $step = 'create_user';
    $ada_email = "ada-$tag@example.com";
    $res = q($db, 'SELECT * FROM user_service.create_user($1, $2, $3)', ['Ada', $ada_email, 'analytical engine']);
    is(pg_num_rows($res), 1, 'create_user Ada returns one row');
    is([type_of($res, 'id'), type_of($res, 'created_at'), type_of($res, 'updated_at')],
        ['int8', 'timestamptz', 'timestamptz'], 'id is int8, created_at and updated_at timestamptz');
    $raw = pg_fetch_assoc($res);
    ok(int8($raw['id']) !== null, 'id converts with (int) exactly', 'got ' . var_export($raw['id'], true));
    [$ada] = user_rows($res);
    $mine[$ada_email] = $ada['id'];
    is($ada['name'], 'Ada', 'name as given');
    is($ada['email'], $ada_email, 'email as given');
    ok($ada['created_at'] instanceof DateTimeImmutable, 'created_at parses as a DateTimeImmutable');
    ok($ada['updated_at'] == $ada['created_at'], 'updated_at == created_at on creation',
        "created_at {$raw['created_at']}, updated_at {$raw['updated_at']}");

    // 3. get_user returns the same row
    $step = 'get_user';
    $got = user_rows(q($db, 'SELECT * FROM user_service.get_user($1)', [$ada['id']]));
    ok(count($got) === 1 && same_user($got[0], $ada), 'get_user returns the created row', json_encode($got));

    // 4. update the name with named argument notation
    $step = 'update_user';
    $upd = user_rows(q($db, 'SELECT * FROM user_service.update_user($1, name => $2)', [$ada['id'], 'Ada Lovelace']));
    is(count($upd), 1, 'update_user returns one row');
    $lovelace = $upd[0] ?? $ada;
    is($lovelace['name'], 'Ada Lovelace', 'update_user changed the name');
    is($lovelace['email'], $ada_email, 'update_user kept the email');
    ok($lovelace['created_at'] == $ada['created_at'], 'update_user kept created_at');
    ok($lovelace['updated_at'] >= $lovelace['created_at'], 'updated_at >= created_at');

    // 5. the same email in upper case is taken; the connection stays usable
    $step = 'duplicate email';
    $upper = strtoupper($ada_email);
    fails($db, 'SELECT * FROM user_service.create_user($1, $2, $3)', ['Ada', $upper, 'analytical engine'],
        '23505', "a user with email \"$upper\" already exists", 'duplicate email in upper case');
    $got = user_rows(q($db, 'SELECT * FROM user_service.get_user($1)', [$ada['id']]));
    ok(count($got) === 1 && same_user($got[0], $lovelace), 'the connection is usable after the error');

    // 6. a missing id
    $step = 'get_user of a missing id';
    fails($db, 'SELECT * FROM user_service.get_user($1)', [9000000000000], 'P0002', 'user 9000000000000 not found',
        'get_user of a missing id');

    // 7. three more users
    $step = 'create three more users';
    $four = [$lovelace];
    foreach ([['Grace', 'grace', 'compiler cobol'], ['Alan', 'alan', 'universal machine'],
              ['Edsger', 'edsger', 'goto considered harmful']] as [$name, $local, $password]) {
        $user = create_user($db, $name, "$local-$tag@example.com", $password);
        $mine[$user['email']] = $user['id'];
        $four[] = $user;
    }
    $grace = $four[1];
    $our_ids = array_column($four, 'id');
    ok(count(array_filter($our_ids, 'is_int')) === 4, 'the four ids are ints', json_encode($our_ids));

    // 8. one page with its exact total
    $step = 'list_users_rows';
    $res = q($db, 'SELECT * FROM user_service.list_users_rows($1, $2)', [1, 2]);
    is(type_of($res, 'total'), 'int8', 'list_users_rows: total is int8');
    $rows = pg_fetch_all($res);
    $totals = array_map('int8', array_column($rows, 'total'));
    ok($totals !== [] && count(array_filter($totals, fn ($t) => $t !== null && $t >= 4)) === count($totals),
        'list_users_rows(1, 2): every total is >= 4', 'got ' . json_encode($totals));
    is(count($rows), min(2, $totals[0] ?? 0), 'list_users_rows(1, 2) has min(2, total) rows');
    $ids = array_map('int8', array_column($rows, 'id'));
    ok(ascending($ids), 'list_users_rows(1, 2): ids ascending', 'got ' . json_encode($ids));

    // 9. keyset walk from just before Ada to an empty page
    $step = 'keyset walk';
    $walked = [];
    $totals_ok = true;
    $pages_ok = true;
    $after = $ada['id'] - 1;
    for ($pages = 0; $pages < 100000; $pages++) {
        $rows = pg_fetch_all(q($db, 'SELECT * FROM user_service.list_users_after_rows($1, $2)', [$after, 2]));
        if ($rows === []) {
            break;
        }
        $pages_ok = $pages_ok && count($rows) <= 2;
        foreach ($rows as $row) {
            $total = int8($row['total']);
            $totals_ok = $totals_ok && $total !== null && $total >= 4;
            $walked[] = int8($row['id']);
        }
        $after = end($walked);
    }
    ok(ascending($walked), "the walk's ids ascend, none twice", 'got ' . json_encode($walked));
    is(array_values(array_intersect($walked, $our_ids)), $our_ids,
        'the walk met our four users once each, in id order');
    ok($totals_ok, 'every row of the walk has a total >= 4');
    ok($pages_ok, 'no page of the walk has more than 2 rows');

    // 10. past the end: no rows; the jsonb form still has the total
    $step = 'past the end';
    is(pg_num_rows(q($db, 'SELECT * FROM user_service.list_users_rows($1, $2)', [1000000, 2])), 0,
        'list_users_rows(1000000, 2) returns no rows');
    $res = q($db, 'SELECT user_service.list_users_json($1, $2)', [1000000, 2]);
    is(type_of($res, 'list_users_json'), 'jsonb', 'list_users_json returns jsonb');
    $json = json_decode(pg_fetch_result($res, 0, 0), true, 512, JSON_THROW_ON_ERROR);
    ok(is_int($json['total'] ?? null) && $json['total'] >= 4, 'list_users_json(1000000, 2): total >= 4',
        'got ' . json_encode($json));
    is($json['users'] ?? null, [], 'list_users_json(1000000, 2): users is an empty array');

    // 11. verify_password takes the email in any case
    $step = 'verify_password';
    $res = q($db, 'SELECT user_service.verify_password($1, $2)', [strtoupper($ada_email), 'analytical engine']);
    is(type_of($res, 'verify_password'), 'bool', 'verify_password returns bool');
    is(pg_fetch_result($res, 0, 0), 't', 'verify_password with the right password is true');
    $res = q($db, 'SELECT user_service.verify_password($1, $2)', [$ada_email, 'wrong password']);
    is(pg_fetch_result($res, 0, 0), 'f', 'verify_password with a wrong password is false');

    // 12. a batch of two users, done by the workers
    $step = 'batch';
    $bat = ["bat1-$tag@example.com", "bat2-$tag@example.com"];
    $items = json_encode([
        ['name' => 'Bat One', 'email' => $bat[0], 'password' => 'batch password 1'],
        ['name' => 'Bat Two', 'email' => $bat[1], 'password' => 'batch password 2'],
    ], JSON_THROW_ON_ERROR);
    $res = q($db, "SELECT user_service.submit_batch('create_user', \$1::jsonb, 2)", [$items]);
    is(type_of($res, 'submit_batch'), 'int8', 'submit_batch returns int8');
    $batch = int8(pg_fetch_result($res, 0, 0));
    $done = false;
    for ($polls = 0; $polls < 60 && !$done; $polls++) {
        $done = pg_fetch_result(q($db, "SELECT user_service.wait_batch(\$1, '2 seconds')", [$batch]), 0, 0) === 't';
    }
    ok($done, 'wait_batch returned true within 60 polls');
    $status = pg_fetch_assoc(q($db, 'SELECT * FROM user_service.batch_status($1)', [$batch]));
    is(int8($status['batch_id']), $batch, 'batch_status: the batch asked for');
    is($status['state'], 'done', 'batch_status: state done');
    is((int) $status['succeeded'], 2, 'batch_status: succeeded 2');
    $res = q($db, 'SELECT * FROM user_service.batch_results($1)', [$batch]);
    is(type_of($res, 'user_id'), 'int8', 'batch_results: user_id is int8');
    $results = [];
    $batch_ids = [];
    foreach (pg_fetch_all($res) as $i => $row) {
        $results[] = "{$row['item']} {$row['status']} " . (int8($row['user_id']) === null ? 'no user_id' : 'user_id');
        if (int8($row['user_id']) !== null) {
            $batch_ids[] = int8($row['user_id']);
            $mine[$bat[$i] ?? "item $i"] = int8($row['user_id']);
        }
    }
    is($results, ['1 succeeded user_id', '2 succeeded user_id'], 'batch_results: items 1 and 2 succeeded with a user_id');
    $emails = [];
    foreach ($batch_ids as $user_id) {
        $emails[] = pg_fetch_result(q($db, 'SELECT email FROM user_service.get_user($1)', [$user_id]), 0, 0);
    }
    is($emails, $bat, "the batch's user_ids are the users it created");

    // 13. bad input
    $step = 'bad input';
    $create = 'SELECT * FROM user_service.create_user($1, $2, $3)';
    fails($db, $create, ['Bad', 'not-an-email', 'analytical engine'], '22023', 'invalid email address',
        'create_user with a bad email');
    fails($db, $create, [null, "null-$tag@example.com", 'analytical engine'], '22004', 'name must not be null',
        'create_user with a NULL name');
    fails($db, "SELECT user_service.submit_batch('create_user', \$1::jsonb)", ['[{"name": "x"}]'], '22023',
        'item 1 is missing the key "email"', 'submit_batch with an item without email');

    // 14. delete_user returns the deleted row; then it is gone
    $step = 'delete_user';
    $deleted = user_rows(q($db, 'SELECT * FROM user_service.delete_user($1)', [$grace['id']]));
    is(array_map(fn ($u) => [$u['id'], $u['email']], $deleted), [[$grace['id'], $grace['email']]],
        "delete_user returns grace's row");
    unset($mine[$grace['email']]);
    fails($db, 'SELECT * FROM user_service.get_user($1)', [$grace['id']], 'P0002', null, 'get_user after delete_user');

    // 15. clean up, close
    $step = 'clean up';
    clean_up($db, $mine, true);
    ok(pg_close($db), 'closed the connection');
    $db = null;
} catch (Throwable $e) {
    $tests++;
    $failed = true;
    echo "not ok $tests - $step died: " . str_replace("\n", ' ', $e->getMessage()) . "\n";
    if ($db instanceof PgSql\Connection) {
        try {
            clean_up($db, $mine, false);   // best effort, no assertions
        } catch (Throwable) {
        }
    }
}

echo "1..$tests\n";
exit($failed ? 1 : 0);

function ascending(array $ids): bool
{
    for ($i = 1; $i < count($ids); $i++) {
        if (!is_int($ids[$i - 1]) || !is_int($ids[$i]) || $ids[$i - 1] >= $ids[$i]) {
            return false;
        }
    }
    return true;
}
