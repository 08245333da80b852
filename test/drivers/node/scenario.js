'use strict';
// The user_service driver scenario with node-postgres (pg), as a TAP script:
// see test/t/029_drivers.pl.  Connection settings come from PGHOST, PGPORT,
// PGDATABASE and PGUSER; US_TAG goes into every email made here, so that
// several runs at once never collide; US_POOLED=1 means PgBouncer in
// transaction mode (node-postgres needs nothing then, as long as no query
// passes a `name`, which none here does).
const util = require('util');

// README-BEGIN
const { Client, types } = require('pg');

types.setTypeParser(20, BigInt); // int8 (ids, totals) as BigInt: exact beyond 2^53

// Settings from PGHOST, PGPORT, PGDATABASE, PGUSER. No query passes a `name` (a named
// prepared statement), so this works through PgBouncer in transaction mode too.
const client = new Client();

// The new user, or null when the email is taken (emails are unique in any case).
async function signUp(name, email, password) {
  try {
    const sql = 'SELECT * FROM user_service.create_user($1, $2, $3)';
    return (await client.query(sql, [name, email, password])).rows[0];
  } catch (err) {
    if (err.code === '23505') return null;
    throw err;
  }
}

// A page of users in id order; every row carries the total number of users.
const usersPage = async (page, perPage) =>
  (await client.query('SELECT * FROM user_service.list_users_rows($1, $2)', [page, perPage])).rows;

const logIn = async (email, password) =>
  (await client.query('SELECT user_service.verify_password($1, $2) AS ok', [email, password])).rows[0].ok;
// README-END

const { DatabaseError } = require('pg');

const tag = process.env.US_TAG || String(process.pid);
const pooled = process.env.US_POOLED === '1';
const emailOf = (who) => `${who}-${tag}@example.com`;

// TAP output: one line per assertion, diagnostics on failure, the plan last.
let count = 0;
let failures = 0;
let step = 'connect';

function ok(pass, description, ...diagnostics) {
  count += 1;
  console.log(`${pass ? 'ok' : 'not ok'} ${count} - ${description}`);
  if (!pass) {
    failures += 1;
    for (const line of diagnostics) console.log(`# ${line}`);
  }
  return pass;
}

const show = (value) => util.inspect(value);

function is(got, expected, description) {
  return ok(got === expected, description, `expected: ${show(expected)}`, `     got: ${show(got)}`);
}

// The server error a query raises, or undefined when it succeeds.
async function queryError(sql, params) {
  try {
    await client.query(sql, params);
  } catch (err) {
    if (err instanceof DatabaseError) return err;
    throw err;
  }
  return undefined;
}

// Checks that a query fails with this SQLSTATE (and message, when given).
async function fails(sql, params, sqlstate, message, description) {
  const err = await queryError(sql, params);
  is(err && err.code, sqlstate, `${description}: SQLSTATE ${sqlstate}`);
  if (message !== undefined) is(err && err.message, message, `${description}: message`);
}

const queryRow = async (sql, params) => (await client.query(sql, params)).rows[0];
const sameTime = (a, b) => a instanceof Date && b instanceof Date && a.getTime() === b.getTime();

// Users made here, deleted at the end (those already gone are ignored).
const made = [];

async function scenario() {
  // 1. One connection for the whole scenario.
  await client.connect();
  ok(true, `connected${pooled ? ' (pooled)' : ''}`);

  // 2. create_user: int8 id as BigInt, timestamptz as Date.
  step = 'create_user';
  const adaEmail = emailOf('ada');
  const ada = await signUp('Ada', adaEmail, 'analytical engine');
  if (!ok(ada !== undefined && ada !== null, 'create_user returns a row')) {
    throw new Error('no user to go on with');
  }
  made.push(ada.id);
  is(typeof ada.id, 'bigint', 'create_user: id is a BigInt');
  ok(ada.id > 0n, 'create_user: id is positive', `got: ${show(ada.id)}`);
  is(ada.name, 'Ada', 'create_user: name as given');
  is(ada.email, adaEmail, 'create_user: email as given');
  ok(ada.created_at instanceof Date && !Number.isNaN(ada.created_at.getTime()),
    'create_user: created_at is a Date', `got: ${show(ada.created_at)}`);
  ok(sameTime(ada.updated_at, ada.created_at), 'create_user: updated_at equals created_at',
    `created_at: ${show(ada.created_at)}`, `updated_at: ${show(ada.updated_at)}`);

  // 3. get_user: the same row.
  step = 'get_user';
  const got = await queryRow('SELECT * FROM user_service.get_user($1)', [ada.id]);
  ok(got !== undefined && got.id === ada.id && got.name === ada.name && got.email === ada.email &&
     sameTime(got.created_at, ada.created_at) && sameTime(got.updated_at, ada.updated_at),
  'get_user returns the same row', `expected: ${show(ada)}`, `     got: ${show(got)}`);

  // 4. update_user with a named argument: name changed, email kept.
  step = 'update_user';
  const renamed = await queryRow('SELECT * FROM user_service.update_user($1, name => $2)',
    [ada.id, 'Ada Lovelace']);
  is(renamed.name, 'Ada Lovelace', 'update_user: name changed');
  is(renamed.email, adaEmail, 'update_user: email kept');
  ok(renamed.updated_at instanceof Date && renamed.updated_at >= renamed.created_at,
    'update_user: updated_at >= created_at',
    `created_at: ${show(renamed.created_at)}`, `updated_at: ${show(renamed.updated_at)}`);

  // 5. The same email in upper case: 23505, and the connection goes on.
  step = 'duplicate email';
  const upper = adaEmail.toUpperCase();
  await fails('SELECT * FROM user_service.create_user($1, $2, $3)', ['Ada', upper, 'analytical engine'],
    '23505', `a user with email "${upper}" already exists`, 'create_user with a taken email');
  is(await signUp('Ada', upper, 'analytical engine'), null, 'signUp gives null for a taken email');
  is((await queryRow('SELECT 1 AS one')).one, 1, 'the connection is usable after the error');

  // 6. A missing id: P0002.
  step = 'get_user of a missing id';
  await fails('SELECT * FROM user_service.get_user($1)', [9000000000000n],
    'P0002', 'user 9000000000000 not found', 'get_user of a missing id');

  // 7. Three more users.
  step = 'create three more users';
  const others = {};
  for (const [name, who] of [['Grace', 'grace'], ['Alan', 'alan'], ['Edsger', 'edsger']]) {
    const user = await signUp(name, emailOf(who), `${who} password`);
    if (user) made.push(user.id);
    others[who] = user;
  }
  if (!ok(Boolean(others.grace && others.alan && others.edsger), 'three more users created')) {
    throw new Error('not all users were created');
  }
  const mine = [ada.id, others.grace.id, others.alan.id, others.edsger.id];

  // 8. A numbered page: at most 2 rows, each with a BigInt total >= 4, ids ascending.
  step = 'list_users_rows';
  const page = await usersPage(1, 2);
  ok(page.length >= 1 && page.length <= 2, 'list_users_rows(1, 2): one or two rows', `got ${page.length} rows`);
  ok(page.every((row) => typeof row.total === 'bigint'), 'list_users_rows: total is a BigInt',
    `got: ${show(page.map((row) => row.total))}`);
  ok(page.every((row) => row.total >= 4n), 'list_users_rows: total >= 4',
    `got: ${show(page.map((row) => row.total))}`);
  ok(page.every((row, i) => i === 0 || row.id > page[i - 1].id), 'list_users_rows: ids ascending',
    `got: ${show(page.map((row) => row.id))}`);

  // 9. Keyset walk from just before Ada until an empty page.
  step = 'keyset walk';
  const walked = [];
  const totals = [];
  let after = ada.id - 1n;
  let ended = false;
  for (let pages = 0; pages < 100000; pages++) {
    const { rows } = await client.query('SELECT * FROM user_service.list_users_after_rows($1, $2)', [after, 2]);
    if (rows.length === 0) {
      ended = true;
      break;
    }
    for (const row of rows) {
      walked.push(row.id);
      totals.push(row.total);
    }
    after = rows[rows.length - 1].id;
  }
  ok(ended, 'keyset walk: ends with an empty page');
  ok(walked.every((id, i) => i === 0 || id > walked[i - 1]), 'keyset walk: ids strictly ascending');
  const mineWalked = walked.filter((id) => mine.includes(id));
  ok(util.isDeepStrictEqual(mineWalked, mine), 'keyset walk: my four users, in id order, each once',
    `expected: ${show(mine)}`, `     got: ${show(mineWalked)}`);
  ok(totals.length > 0 && totals.every((t) => typeof t === 'bigint' && t >= 4n),
    'keyset walk: every total a BigInt >= 4', `got: ${show(totals)}`);

  // 10. Past the end: no rows; the jsonb form still has the total.
  step = 'past the end';
  is((await usersPage(1000000, 2)).length, 0, 'list_users_rows past the end: no rows');
  const json = (await queryRow('SELECT user_service.list_users_json($1, $2) AS j', [1000000, 2])).j;
  ok(json !== null && Array.isArray(json.users) && json.users.length === 0,
    'list_users_json past the end: users is an empty array', `got: ${show(json)}`);
  ok(json !== null && typeof json.total === 'number' && json.total >= 4,
    'list_users_json past the end: total >= 4', `got: ${show(json)}`);

  // 11. verify_password: the email in any case; a boolean.
  step = 'verify_password';
  is(await logIn(adaEmail.toUpperCase(), 'analytical engine'), true, 'verify_password: right password is true');
  is(await logIn(adaEmail, 'wrong password'), false, 'verify_password: wrong password is false');

  // 12. A batch of two create_user items, done by the workers.
  step = 'batch';
  const items = [
    { name: 'Bat One', email: emailOf('bat1'), password: 'first bat password' },
    { name: 'Bat Two', email: emailOf('bat2'), password: 'second bat password' },
  ];
  const batchId = (await queryRow("SELECT user_service.submit_batch('create_user', $1::jsonb, 2) AS id",
    [JSON.stringify(items)])).id;
  is(typeof batchId, 'bigint', 'submit_batch returns a BigInt');
  let done = false;
  for (let poll = 0; poll < 60 && !done; poll++) {
    done = (await queryRow("SELECT user_service.wait_batch($1, '2 seconds') AS done", [batchId])).done;
  }
  is(done, true, 'wait_batch: the batch is done');
  const status = await queryRow('SELECT * FROM user_service.batch_status($1)', [batchId]);
  is(status.state, 'done', 'batch_status: state done');
  is(status.succeeded, 2, 'batch_status: 2 succeeded');
  const { rows: results } = await client.query('SELECT * FROM user_service.batch_results($1)', [batchId]);
  for (const r of results) if (typeof r.user_id === 'bigint') made.push(r.user_id);
  ok(util.isDeepStrictEqual(results.map((r) => [r.item, r.status]), [[1, 'succeeded'], [2, 'succeeded']]),
    'batch_results: items 1 and 2 succeeded', `got: ${show(results)}`);
  ok(results.length === 2 && results.every((r) => typeof r.user_id === 'bigint'),
    'batch_results: user_id is a BigInt', `got: ${show(results.map((r) => r.user_id))}`);

  // 13. Bad input.
  step = 'bad input';
  await fails('SELECT * FROM user_service.create_user($1, $2, $3)', ['Bad', 'not-an-email', 'analytical engine'],
    '22023', 'invalid email address', 'create_user with a bad email');
  await fails('SELECT * FROM user_service.create_user($1, $2, $3)', [null, emailOf('null'), 'analytical engine'],
    '22004', 'name must not be null', 'create_user with a NULL name');
  await fails("SELECT user_service.submit_batch('create_user', $1::jsonb)", ['[{"name": "x"}]'],
    '22023', 'item 1 is missing the key "email"', 'submit_batch with an item without email');

  // 14. delete_user returns the deleted row; then it is gone.
  step = 'delete_user';
  const deleted = await queryRow('SELECT * FROM user_service.delete_user($1)', [others.grace.id]);
  is(deleted && deleted.id, others.grace.id, 'delete_user returns the id');
  is(deleted && deleted.email, emailOf('grace'), 'delete_user returns the email');
  await fails('SELECT * FROM user_service.get_user($1)', [others.grace.id], 'P0002',
    `user ${others.grace.id} not found`, 'get_user after delete_user');

  // 15. Clean up: every user made here (grace is gone already).
  step = 'clean up';
  let left = 0;
  for (const id of made) {
    const err = await queryError('SELECT * FROM user_service.delete_user($1)', [id]);
    if (err && err.code !== 'P0002') left += 1;
  }
  made.length = 0;
  is(left, 0, 'clean up: every user made here deleted');
}

async function main() {
  try {
    await scenario();
  } catch (err) {
    ok(false, `${step} died: ${err.message}`);
    // Best effort: leave no user of this run behind.
    for (const id of made) await client.query('SELECT * FROM user_service.delete_user($1)', [id]).catch(() => {});
  }
  await client.end().catch(() => {});
  console.log(`1..${count}`);
  process.exitCode = failures === 0 ? 0 : 1;
}

main();
