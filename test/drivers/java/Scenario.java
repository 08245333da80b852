// The driver scenario of test/t/029_drivers.pl for Java (pgjdbc), printed as TAP.
// Run from the repository root:
//   java -cp /usr/share/java/postgresql.jar test/drivers/java/Scenario.java
// Environment: PGHOST, PGPORT, PGDATABASE, PGUSER, US_TAG (in every email made here),
// US_POOLED=1 behind PgBouncer in transaction mode (no protocol-level prepared statements).

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;

import org.postgresql.util.PSQLException;

public class Scenario {
    static int tests = 0;
    static boolean failed = false;
    static String step = "connect";

    /** One user row as the API returns it (user_info, or a list row without its total). */
    record User(Long id, String name, String email, OffsetDateTime createdAt, OffsetDateTime updatedAt) {
        static User of(ResultSet rs) throws SQLException {
            Object id = rs.getObject("id");
            return new User(id instanceof Long l ? l : null, rs.getString("name"), rs.getString("email"),
                    rs.getObject("created_at", OffsetDateTime.class),
                    rs.getObject("updated_at", OffsetDateTime.class));
        }
    }

    // ---- TAP output -------------------------------------------------------------------------

    static boolean ok(boolean pass, String description, String diagnostic) {
        tests++;
        System.out.println((pass ? "ok " : "not ok ") + tests + " - " + description);
        if (!pass) {
            failed = true;
            if (diagnostic != null)
                for (String line : diagnostic.split("\n"))
                    System.out.println("# " + line);
        }
        return pass;
    }

    static boolean ok(boolean pass, String description) {
        return ok(pass, description, null);
    }

    static boolean is(Object got, Object expected, String description) {
        return ok(Objects.equals(got, expected), description, "expected: " + show(expected) + "\n     got: " + show(got));
    }

    static String show(Object v) {
        return v == null ? "null" : v + " (" + v.getClass().getSimpleName() + ")";
    }

    /** Asserts that the call fails with this SQLSTATE (and, when given, this primary message). */
    static void fails(Connection conn, String sql, Object[] params, String sqlstate, String message,
                      String description) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            bind(ps, params);
            ps.executeQuery().close();
            ok(false, description + ": SQLSTATE " + sqlstate, "expected SQLSTATE " + sqlstate + ", got no error");
            if (message != null)
                ok(false, description + ": message", "expected an error, got none");
        } catch (SQLException e) {
            is(e.getSQLState(), sqlstate, description + ": SQLSTATE " + sqlstate);
            if (message != null)
                is(primaryMessage(e), message, description + ": message");
        }
    }

    /** The server's primary message, without the "ERROR:" prefix and the detail pgjdbc adds. */
    static String primaryMessage(SQLException e) {
        if (e instanceof PSQLException p && p.getServerErrorMessage() != null)
            return p.getServerErrorMessage().getMessage();
        return e.getMessage();
    }

    static void bind(PreparedStatement ps, Object[] params) throws SQLException {
        for (int i = 0; i < params.length; i++) {
            if (params[i] == null)
                ps.setNull(i + 1, Types.VARCHAR);
            else
                ps.setObject(i + 1, params[i]);
        }
    }

    // ---- small helpers for the API ----------------------------------------------------------

    static List<User> users(Connection conn, String sql, Object... params) throws SQLException {
        List<User> rows = new ArrayList<>();
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            bind(ps, params);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next())
                    rows.add(User.of(rs));
            }
        }
        return rows;
    }

    static Object scalar(Connection conn, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            bind(ps, params);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getObject(1);
            }
        }
    }

    static User createUser(Connection conn, String name, String email, String password) throws SQLException {
        List<User> rows = users(conn, "SELECT * FROM user_service.create_user(?, ?, ?)", name, email, password);
        is(rows.size(), 1, "create_user " + name + " returns one row");
        return rows.isEmpty() ? null : rows.get(0);
    }

    static String env(String name, String fallback) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? fallback : v;
    }

    // ---- the scenario -----------------------------------------------------------------------

    static Connection db;                               // the scenario's one connection, once open

    public static void main(String[] args) {
        String tag = env("US_TAG", "java" + ProcessHandle.current().pid());
        Map<String, Long> mine = new LinkedHashMap<>();   // email -> id of every user made here
        try {
            scenario(tag, mine);
        } catch (Throwable e) {
            tests++;
            failed = true;
            System.out.println("not ok " + tests + " - " + step + " died: " + String.valueOf(e.getMessage()).replace("\n", " "));
        } finally {
            if (db != null) {
                if (failed)
                    cleanUp(db, mine, false);   // best effort after a failure, no assertions
                try {
                    db.close();
                } catch (SQLException ignored) {
                }
            }
        }
        System.out.println("1.." + tests);
        System.exit(failed ? 1 : 0);
    }

    static void scenario(String tag, Map<String, Long> mine) throws SQLException {
        // 1. connect; the README's example runs on this connection with a user of its own
        step = "connect";
        String email = "readme-" + tag + "@example.com";
        // README-BEGIN
        // Behind PgBouncer in transaction mode (US_POOLED=1), nothing may be prepared on the server.
        Properties props = new Properties();
        props.setProperty("user", System.getenv("PGUSER"));
        if ("1".equals(System.getenv("US_POOLED")))
            props.setProperty("prepareThreshold", "0");
        Connection conn = DriverManager.getConnection("jdbc:postgresql://" + System.getenv("PGHOST") + ":"
                + System.getenv("PGPORT") + "/" + System.getenv("PGDATABASE"), props);
        PreparedStatement signUp = conn.prepareStatement("SELECT id FROM user_service.create_user(?, ?, ?)");
        signUp.setString(1, "Ada");
        signUp.setString(2, email);
        signUp.setString(3, "analytical engine");
        Long id = null;                                               // int8 reads as a Long
        try (ResultSet rs = signUp.executeQuery()) {
            if (rs.next()) id = rs.getObject("id", Long.class);
        } catch (SQLException e) {
            if (!"23505".equals(e.getSQLState())) throw e;            // 23505: the email is taken, in any case
        }
        PreparedStatement page = conn.prepareStatement("SELECT id, email, total FROM user_service.list_users_rows(?, ?)");
        page.setInt(1, 1);
        page.setInt(2, 20);
        ResultSet rows = page.executeQuery();                         // every row carries the exact total
        PreparedStatement login = conn.prepareStatement("SELECT user_service.verify_password(?, ?)");
        login.setString(1, email);
        login.setString(2, "analytical engine");
        ResultSet verified = login.executeQuery();
        // README-END
        db = conn;
        is(scalar(conn, "SELECT current_user"), System.getenv("PGUSER"), "connected as PGUSER");
        // what the example got: a Long id, a page whose every row has the same exact total, true
        mine.put(email, id);
        ok(id != null, "README example: create_user gave a Long id");
        List<Object> exampleTotals = new ArrayList<>();
        while (rows.next())
            exampleTotals.add(rows.getObject("total"));
        Object first = exampleTotals.isEmpty() ? null : exampleTotals.get(0);
        ok(first instanceof Long t && t >= 1 && exampleTotals.size() == Math.min(20, t)
                        && exampleTotals.stream().allMatch(first::equals),
                "README example: list_users_rows(1, 20) has min(20, total) rows, each with the same Long total",
                "got totals " + exampleTotals);
        ok(verified.next() && Boolean.TRUE.equals(verified.getObject(1)), "README example: verify_password is true");
        signUp.close();
        page.close();
        login.close();

        // 2. create Ada
        step = "create_user";
        String adaEmail = "ada-" + tag + "@example.com";
        User ada = createUser(conn, "Ada", adaEmail, "analytical engine");
        mine.put(adaEmail, ada.id());
        ok(ada.id() != null, "id is a java.lang.Long", "got " + show(ada.id()));
        is(ada.name(), "Ada", "name as given");
        is(ada.email(), adaEmail, "email as given");
        ok(ada.createdAt() != null, "created_at reads as an OffsetDateTime");
        is(ada.updatedAt(), ada.createdAt(), "updated_at == created_at on creation");

        // 3. get_user returns the same row
        step = "get_user";
        List<User> got = users(conn, "SELECT * FROM user_service.get_user(?)", ada.id());
        is(got, List.of(ada), "get_user returns the created row");

        // 4. update the name with named argument notation
        step = "update_user";
        List<User> upd = users(conn, "SELECT * FROM user_service.update_user(?, name => ?)", ada.id(), "Ada Lovelace");
        is(upd.size(), 1, "update_user returns one row");
        User lovelace = upd.isEmpty() ? ada : upd.get(0);
        is(lovelace.name(), "Ada Lovelace", "update_user changed the name");
        is(lovelace.email(), adaEmail, "update_user kept the email");
        is(lovelace.createdAt(), ada.createdAt(), "update_user kept created_at");
        ok(!lovelace.updatedAt().isBefore(lovelace.createdAt()), "updated_at >= created_at",
                "created_at " + lovelace.createdAt() + ", updated_at " + lovelace.updatedAt());

        // 5. the same email in upper case is taken; the connection stays usable
        step = "duplicate email";
        String upper = adaEmail.toUpperCase();
        fails(conn, "SELECT * FROM user_service.create_user(?, ?, ?)", new Object[]{"Ada", upper, "analytical engine"},
                "23505", "a user with email \"" + upper + "\" already exists", "duplicate email in upper case");
        is(users(conn, "SELECT * FROM user_service.get_user(?)", ada.id()), List.of(lovelace),
                "the connection is usable after the error");

        // 6. a missing id
        step = "get_user of a missing id";
        fails(conn, "SELECT * FROM user_service.get_user(?)", new Object[]{9000000000000L},
                "P0002", "user 9000000000000 not found", "get_user of a missing id");

        // 7. three more users
        step = "create three more users";
        List<User> four = new ArrayList<>(List.of(lovelace));
        for (String[] u : new String[][]{{"Grace", "grace", "compiler cobol"}, {"Alan", "alan", "universal machine"},
                {"Edsger", "edsger", "goto considered harmful"}}) {
            String address = u[1] + "-" + tag + "@example.com";
            User user = createUser(conn, u[0], address, u[2]);
            mine.put(address, user.id());
            four.add(user);
        }
        User grace = four.get(1);
        List<Long> ourIds = four.stream().map(User::id).toList();
        ok(ourIds.stream().allMatch(Objects::nonNull), "the four ids are Longs", "got " + ourIds);

        // 8. one page with its exact total
        step = "list_users_rows";
        List<Long> pageIds = new ArrayList<>();
        List<Object> totals = new ArrayList<>();
        try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM user_service.list_users_rows(?, ?)")) {
            ps.setInt(1, 1);
            ps.setInt(2, 2);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    pageIds.add(rs.getObject("id", Long.class));
                    totals.add(rs.getObject("total"));
                }
            }
        }
        ok(!totals.isEmpty() && totals.stream().allMatch(t -> t instanceof Long l && l >= 4),
                "list_users_rows(1, 2): every total is a Long >= 4", "got " + totals);
        long total = totals.isEmpty() || !(totals.get(0) instanceof Long l) ? -1 : l;
        is(pageIds.size(), (int) Math.min(2, total), "list_users_rows(1, 2) has min(2, total) rows");
        ok(ascending(pageIds), "list_users_rows(1, 2): ids ascending", "got " + pageIds);

        // 9. keyset walk from just before Ada to an empty page
        step = "keyset walk";
        List<Long> walked = new ArrayList<>();
        boolean totalsOk = true, pagesOk = true;
        long after = ada.id() - 1;
        for (int pages = 0; pages < 100000; pages++) {
            List<Long> ids = new ArrayList<>();
            try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM user_service.list_users_after_rows(?, ?)")) {
                ps.setLong(1, after);
                ps.setInt(2, 2);
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        ids.add(rs.getObject("id", Long.class));
                        totalsOk &= rs.getObject("total") instanceof Long t && t >= 4;
                    }
                }
            }
            if (ids.isEmpty())
                break;
            pagesOk &= ids.size() <= 2;
            walked.addAll(ids);
            after = ids.get(ids.size() - 1);
        }
        ok(ascending(walked), "the walk's ids ascend, none twice", "got " + walked);
        is(walked.stream().filter(ourIds::contains).toList(), ourIds, "the walk met our four users once each, in id order");
        ok(totalsOk, "every row of the walk has a Long total >= 4");
        ok(pagesOk, "no page of the walk has more than 2 rows");

        // 10. past the end: no rows; the jsonb form still has the total
        step = "past the end";
        is(users(conn, "SELECT id, name, email, created_at, updated_at FROM user_service.list_users_rows(?, ?)",
                1000000, 2).size(), 0, "list_users_rows(1000000, 2) returns no rows");
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT (j->>'total')::bigint AS total, jsonb_typeof(j->'users') AS kind,"
                        + " jsonb_array_length(j->'users') AS n FROM user_service.list_users_json(?, ?) j")) {
            ps.setInt(1, 1000000);
            ps.setInt(2, 2);
            try (ResultSet rs = ps.executeQuery()) {
                ok(rs.next(), "list_users_json(1000000, 2) returns a value");
                Object jt = rs.getObject("total");
                ok(jt instanceof Long l && l >= 4, "list_users_json(1000000, 2): total >= 4", "got " + show(jt));
                is(rs.getString("kind"), "array", "list_users_json(1000000, 2): users is an array");
                is(rs.getObject("n"), 0, "list_users_json(1000000, 2): users is empty");
            }
        }

        // 11. verify_password takes the email in any case
        step = "verify_password";
        String verify = "SELECT user_service.verify_password(?, ?)";
        is(scalar(conn, verify, adaEmail.toUpperCase(), "analytical engine"), Boolean.TRUE,
                "verify_password with the right password is Boolean true");
        is(scalar(conn, verify, adaEmail, "wrong password"), Boolean.FALSE,
                "verify_password with a wrong password is Boolean false");

        // 12. a batch of two users, done by the workers
        step = "batch";
        String bat1 = "bat1-" + tag + "@example.com", bat2 = "bat2-" + tag + "@example.com";
        String items = "[{\"name\": \"Bat One\", \"email\": \"" + bat1 + "\", \"password\": \"batch password 1\"},"
                + " {\"name\": \"Bat Two\", \"email\": \"" + bat2 + "\", \"password\": \"batch password 2\"}]";
        Object batchObj = scalar(conn, "SELECT user_service.submit_batch('create_user', ?::jsonb, 2)", items);
        ok(batchObj instanceof Long, "submit_batch returns a Long", "got " + show(batchObj));
        long batch = ((Number) batchObj).longValue();
        boolean done = false;
        for (int polls = 0; polls < 60 && !done; polls++)
            done = Boolean.TRUE.equals(scalar(conn, "SELECT user_service.wait_batch(?, '2 seconds')", batch));
        ok(done, "wait_batch returned true within 60 polls");
        try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM user_service.batch_status(?)")) {
            ps.setLong(1, batch);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                is(rs.getString("state"), "done", "batch_status: state done");
                is(rs.getObject("batch_id"), batch, "batch_status: the batch asked for");
                is(rs.getInt("succeeded"), 2, "batch_status: succeeded 2");
            }
        }
        List<String> results = new ArrayList<>();
        List<Long> batchIds = new ArrayList<>();
        try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM user_service.batch_results(?)")) {
            ps.setLong(1, batch);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    Object uid = rs.getObject("user_id");
                    results.add(rs.getInt("item") + " " + rs.getString("status") + " "
                            + (uid instanceof Long ? "Long" : show(uid)));
                    if (uid instanceof Long l)
                        batchIds.add(l);
                }
            }
        }
        for (int i = 0; i < batchIds.size(); i++)
            mine.put(i == 0 ? bat1 : bat2, batchIds.get(i));
        is(results, List.of("1 succeeded Long", "2 succeeded Long"),
                "batch_results: items 1 and 2 succeeded, user_id a Long");
        List<String> batchEmails = new ArrayList<>();
        for (Long userId : batchIds)
            batchEmails.addAll(users(conn, "SELECT * FROM user_service.get_user(?)", userId).stream().map(User::email).toList());
        is(batchEmails, List.of(bat1, bat2), "the batch's user_ids are the users it created");

        // 13. bad input
        step = "bad input";
        String create = "SELECT * FROM user_service.create_user(?, ?, ?)";
        fails(conn, create, new Object[]{"Bad", "not-an-email", "analytical engine"}, "22023", "invalid email address",
                "create_user with a bad email");
        fails(conn, create, new Object[]{null, "null-" + tag + "@example.com", "analytical engine"}, "22004",
                "name must not be null", "create_user with a NULL name");
        fails(conn, "SELECT user_service.submit_batch('create_user', ?::jsonb)", new Object[]{"[{\"name\": \"x\"}]"},
                "22023", "item 1 is missing the key \"email\"", "submit_batch with an item without email");

        // 14. delete_user returns the deleted row; then it is gone
        step = "delete_user";
        List<User> deleted = users(conn, "SELECT * FROM user_service.delete_user(?)", grace.id());
        is(deleted.stream().map(u -> u.id() + " " + u.email()).toList(), List.of(grace.id() + " " + grace.email()),
                "delete_user returns grace's row");
        mine.remove(grace.email());
        fails(conn, "SELECT * FROM user_service.get_user(?)", new Object[]{grace.id()}, "P0002", null,
                "get_user after delete_user");

        // 15. clean up, close
        step = "clean up";
        cleanUp(conn, mine, true);
        conn.close();
        ok(conn.isClosed(), "closed the connection");
    }

    /** Deletes the users made here; a user already gone (P0002) is fine. */
    static void cleanUp(Connection conn, Map<String, Long> mine, boolean assertIt) {
        List<String> problems = new ArrayList<>();
        for (Map.Entry<String, Long> e : mine.entrySet()) {
            if (e.getValue() == null)
                continue;
            try {
                List<User> rows = users(conn, "SELECT * FROM user_service.delete_user(?)", e.getValue());
                if (rows.size() != 1 || !e.getKey().equals(rows.get(0).email()))
                    problems.add("delete_user(" + e.getValue() + ") returned " + rows);
            } catch (SQLException ex) {
                if (!"P0002".equals(ex.getSQLState()))
                    problems.add("delete_user(" + e.getValue() + "): " + ex.getSQLState() + " " + primaryMessage(ex));
            }
        }
        if (assertIt)
            ok(problems.isEmpty(), "deleted the " + mine.size() + " remaining users made here", String.join("\n", problems));
    }

    static boolean ascending(List<Long> ids) {
        for (int i = 1; i < ids.size(); i++)
            if (ids.get(i - 1) == null || ids.get(i) == null || ids.get(i - 1) >= ids.get(i))
                return false;
        return true;
    }
}
