-- Soak load: read this client's user back; without one, a keyset page.
\if :mine > 0
SELECT 1 / (id = :mine::bigint
            AND lower(email) = lower('soak' || :mk::text || '@example.com'))::int AS ok
  FROM user_service.get_user(:mine::bigint);
\else
\set after random(0, 100000)
SELECT 1 / (cardinality(users) <= 5 AND total >= 0)::int AS ok
  FROM user_service.list_users_after(:after::bigint, 5);
\endif
