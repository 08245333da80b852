-- Soak load: rename this client's user, change its address to the same one
-- in other letter case (its own address never conflicts), and set its
-- password again (the same text, a new salt).
\if :mine > 0
SELECT 1 / (name = ('Renamed ' || :mk::text))::int AS ok
  FROM user_service.update_user(:mine::bigint, name => 'Renamed ' || :mk::text);
SELECT 1 / (email = ('SOAK' || :mk::text || '@example.com'))::int AS ok
  FROM user_service.update_user(:mine::bigint, email => 'SOAK' || :mk::text || '@example.com');
SELECT user_service.set_password(:mine::bigint, 'password-' || :mk::text);
\endif
