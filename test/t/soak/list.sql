-- Soak load: a page is as long as the total says, and the total is the
-- number of rows, both under the statement's snapshot.
\set page random(1, 50)
SELECT 1 / (cardinality(users) = least(20, greatest(total - (:page::int - 1) * 20, 0)))::int AS ok
  FROM user_service.list_users(:page::int, 20);
SELECT 1 / ((SELECT total FROM user_service.list_users(1, 1))
            = (SELECT count(*) FROM user_service.users))::int AS ok;
