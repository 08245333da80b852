"""The user_service driver scenario with psycopg 3, as a TAP script.

Run by test/t/029_drivers.pl.  Connection settings come from PGHOST, PGPORT,
PGDATABASE and PGUSER; US_TAG goes into every email made here, so that
several runs at once never collide; US_POOLED=1 means PgBouncer in
transaction mode, where psycopg must not prepare statements.
"""
import os
import sys
from datetime import datetime

from psycopg.types.json import Jsonb

# README-BEGIN
import psycopg
from psycopg.rows import dict_row


class Users:
    def __init__(self, pooled=False):  # settings from PGHOST, PGPORT, PGDATABASE, PGUSER
        # Through PgBouncer in transaction mode (pooled), psycopg must not prepare statements.
        self.conn = psycopg.connect(autocommit=True, row_factory=dict_row,
                                    prepare_threshold=None if pooled else 5)

    def sign_up(self, name, email, password):
        try:
            return self.conn.execute("SELECT * FROM user_service.create_user(%s, %s, %s)",
                                     (name, email, password)).fetchone()
        except psycopg.errors.UniqueViolation:  # the email is taken (in any case)
            return None

    def page(self, page, per_page):
        """Users in id order; every row carries the total number of users."""
        return self.conn.execute("SELECT * FROM user_service.list_users_rows(%s, %s)",
                                 (page, per_page)).fetchall()

    def log_in(self, email, password):
        return self.conn.execute("SELECT user_service.verify_password(%s, %s) AS ok",
                                 (email, password)).fetchone()["ok"]
# README-END


TAG = os.environ.get("US_TAG") or str(os.getpid())
POOLED = os.environ.get("US_POOLED") == "1"


def email_of(who):
    return f"{who}-{TAG}@example.com"


class Tap:
    """TAP output: one line per assertion, diagnostics on failure, the plan last."""

    def __init__(self):
        self.count = 0
        self.failures = 0

    def ok(self, passed, description, *diagnostics):
        self.count += 1
        print(f"{'ok' if passed else 'not ok'} {self.count} - {description}")
        if not passed:
            self.failures += 1
            for line in diagnostics:
                print(f"# {line}")
        return passed

    def is_(self, got, expected, description):
        # Same value and same type: 2 is not 2.0, True is not 1.
        return self.ok(type(got) is type(expected) and got == expected, description,
                       f"expected: {expected!r}", f"     got: {got!r}")


t = Tap()
users = None
made = []  # ids of the users made here, deleted at the end


def query_error(sql, params):
    """The server error a query raises, or None when it succeeds."""
    try:
        users.conn.execute(sql, params)
    except psycopg.DatabaseError as e:
        if e.sqlstate is None:  # not the server's error: the connection is gone
            raise
        return e
    return None


def fails(sql, params, sqlstate, message, description):
    """Checks that a query fails with this SQLSTATE and message."""
    e = query_error(sql, params)
    t.is_(e.sqlstate if e else None, sqlstate, f"{description}: SQLSTATE {sqlstate}")
    t.is_(e.diag.message_primary if e else None, message, f"{description}: message")


def row(sql, params=()):
    return users.conn.execute(sql, params).fetchone()


def rows(sql, params=()):
    return users.conn.execute(sql, params).fetchall()


def scenario():
    global users
    step = "connect"

    def at(name):
        nonlocal step
        step = name

    try:
        # 1. One connection for the whole scenario.
        users = Users(pooled=POOLED)
        t.ok(True, "connected" + (" (pooled)" if POOLED else ""))

        # 2. create_user: int8 id as int, timestamptz as an aware datetime.
        at("create_user")
        ada_email = email_of("ada")
        ada = users.sign_up("Ada", ada_email, "analytical engine")
        if not t.ok(ada is not None, "create_user returns a row"):
            raise RuntimeError("no user to go on with")
        made.append(ada["id"])
        t.ok(type(ada["id"]) is int and ada["id"] > 0, "create_user: id is a positive int", f"got: {ada['id']!r}")
        t.is_(ada["name"], "Ada", "create_user: name as given")
        t.is_(ada["email"], ada_email, "create_user: email as given")
        t.ok(isinstance(ada["created_at"], datetime) and ada["created_at"].tzinfo is not None,
             "create_user: created_at is a datetime with tzinfo", f"got: {ada['created_at']!r}")
        t.is_(ada["updated_at"], ada["created_at"], "create_user: updated_at equals created_at")

        # 3. get_user: the same row.
        at("get_user")
        t.is_(row("SELECT * FROM user_service.get_user(%s)", (ada["id"],)), ada, "get_user returns the same row")

        # 4. update_user with a named argument: name changed, email kept.
        at("update_user")
        renamed = row("SELECT * FROM user_service.update_user(%s, name => %s)", (ada["id"], "Ada Lovelace"))
        t.is_(renamed["name"], "Ada Lovelace", "update_user: name changed")
        t.is_(renamed["email"], ada_email, "update_user: email kept")
        t.ok(renamed["updated_at"] >= renamed["created_at"], "update_user: updated_at >= created_at",
             f"created_at: {renamed['created_at']!r}", f"updated_at: {renamed['updated_at']!r}")

        # 5. The same email in upper case: 23505, and the connection goes on.
        at("duplicate email")
        upper = ada_email.upper()
        fails("SELECT * FROM user_service.create_user(%s, %s, %s)", ("Ada", upper, "analytical engine"),
              "23505", f'a user with email "{upper}" already exists', "create_user with a taken email")
        t.is_(users.sign_up("Ada", upper, "analytical engine"), None, "sign_up gives None for a taken email")
        t.is_(row("SELECT 1 AS one")["one"], 1, "the connection is usable after the error")

        # 6. A missing id: P0002.
        at("get_user of a missing id")
        fails("SELECT * FROM user_service.get_user(%s)", (9000000000000,),
              "P0002", "user 9000000000000 not found", "get_user of a missing id")

        # 7. Three more users.
        at("create three more users")
        others = {}
        for name, who in (("Grace", "grace"), ("Alan", "alan"), ("Edsger", "edsger")):
            others[who] = users.sign_up(name, email_of(who), f"{who} password")
            if others[who]:
                made.append(others[who]["id"])
        if not t.ok(all(others.values()), "three more users created"):
            raise RuntimeError("not all users were created")
        mine = [ada["id"], others["grace"]["id"], others["alan"]["id"], others["edsger"]["id"]]

        # 8. A numbered page: at most 2 rows, each with an int total >= 4, ids ascending.
        at("list_users_rows")
        page = users.page(1, 2)
        t.ok(1 <= len(page) <= 2, "list_users_rows(1, 2): one or two rows", f"got {len(page)} rows")
        totals = [r["total"] for r in page]
        t.ok(all(type(n) is int for n in totals), "list_users_rows: total is an int", f"got: {totals!r}")
        t.ok(all(n >= 4 for n in totals), "list_users_rows: total >= 4", f"got: {totals!r}")
        ids = [r["id"] for r in page]
        t.ok(ids == sorted(set(ids)), "list_users_rows: ids ascending", f"got: {ids!r}")

        # 9. Keyset walk from just before Ada until an empty page.
        at("keyset walk")
        walked, totals, after, ended = [], [], ada["id"] - 1, False
        for _ in range(100000):
            batch = rows("SELECT * FROM user_service.list_users_after_rows(%s, %s)", (after, 2))
            if not batch:
                ended = True
                break
            walked += [r["id"] for r in batch]
            totals += [r["total"] for r in batch]
            after = batch[-1]["id"]
        t.ok(ended, "keyset walk: ends with an empty page")
        t.ok(walked == sorted(set(walked)), "keyset walk: ids strictly ascending")
        t.is_([i for i in walked if i in mine], mine, "keyset walk: my four users, in id order, each once")
        t.ok(totals and all(type(n) is int and n >= 4 for n in totals),
             "keyset walk: every total an int >= 4", f"got: {totals!r}")

        # 10. Past the end: no rows; the jsonb form still has the total.
        at("past the end")
        t.is_(len(users.page(1000000, 2)), 0, "list_users_rows past the end: no rows")
        j = row("SELECT user_service.list_users_json(%s, %s) AS j", (1000000, 2))["j"]
        t.is_(j.get("users") if isinstance(j, dict) else j, [],
              "list_users_json past the end: users is an empty list")
        total = j.get("total") if isinstance(j, dict) else None
        t.ok(type(total) is int and total >= 4, "list_users_json past the end: total >= 4", f"got: {j!r}")

        # 11. verify_password: the email in any case; a bool.
        at("verify_password")
        t.is_(users.log_in(ada_email.upper(), "analytical engine"), True,
              "verify_password: right password is True")
        t.is_(users.log_in(ada_email, "wrong password"), False, "verify_password: wrong password is False")

        # 12. A batch of two create_user items, done by the workers.
        at("batch")
        items = [
            {"name": "Bat One", "email": email_of("bat1"), "password": "first bat password"},
            {"name": "Bat Two", "email": email_of("bat2"), "password": "second bat password"},
        ]
        batch_id = row("SELECT user_service.submit_batch('create_user', %s, 2) AS id", (Jsonb(items),))["id"]
        t.ok(type(batch_id) is int, "submit_batch returns an int", f"got: {batch_id!r}")
        done = False
        for _ in range(60):
            done = row("SELECT user_service.wait_batch(%s, '2 seconds') AS done", (batch_id,))["done"]
            if done:
                break
        t.is_(done, True, "wait_batch: the batch is done")
        status = row("SELECT * FROM user_service.batch_status(%s)", (batch_id,))
        t.is_(status["state"], "done", "batch_status: state done")
        t.is_(status["succeeded"], 2, "batch_status: 2 succeeded")
        results = rows("SELECT * FROM user_service.batch_results(%s)", (batch_id,))
        made.extend(r["user_id"] for r in results if r["user_id"] is not None)
        t.is_([(r["item"], r["status"]) for r in results], [(1, "succeeded"), (2, "succeeded")],
              "batch_results: items 1 and 2 succeeded")
        t.ok(len(results) == 2 and all(type(r["user_id"]) is int for r in results),
             "batch_results: user_id is an int", f"got: {[r['user_id'] for r in results]!r}")

        # 13. Bad input.
        at("bad input")
        fails("SELECT * FROM user_service.create_user(%s, %s, %s)", ("Bad", "not-an-email", "analytical engine"),
              "22023", "invalid email address", "create_user with a bad email")
        fails("SELECT * FROM user_service.create_user(%s, %s, %s)", (None, email_of("null"), "analytical engine"),
              "22004", "name must not be null", "create_user with a NULL name")
        fails("SELECT user_service.submit_batch('create_user', %s)", (Jsonb([{"name": "x"}]),),
              "22023", 'item 1 is missing the key "email"', "submit_batch with an item without email")

        # 14. delete_user returns the deleted row; then it is gone.
        at("delete_user")
        grace = others["grace"]
        deleted = row("SELECT * FROM user_service.delete_user(%s)", (grace["id"],))
        t.is_(deleted and deleted["id"], grace["id"], "delete_user returns the id")
        t.is_(deleted and deleted["email"], email_of("grace"), "delete_user returns the email")
        fails("SELECT * FROM user_service.get_user(%s)", (grace["id"],),
              "P0002", f"user {grace['id']} not found", "get_user after delete_user")

        # 15. Clean up: every user made here (grace is gone already).
        at("clean up")
        left = 0
        for user_id in made:
            e = query_error("SELECT * FROM user_service.delete_user(%s)", (user_id,))
            if e and e.sqlstate != "P0002":
                left += 1
        made.clear()
        t.is_(left, 0, "clean up: every user made here deleted")
    except Exception as e:
        t.ok(False, f"{step} died: {' '.join(str(e).split())}")
        # Best effort: leave no user of this run behind.
        for user_id in made:
            try:
                users.conn.execute("SELECT * FROM user_service.delete_user(%s)", (user_id,))
            except Exception:
                pass
    finally:
        if users is not None:
            users.conn.close()


scenario()
print(f"1..{t.count}")
sys.exit(0 if t.failures == 0 else 1)
