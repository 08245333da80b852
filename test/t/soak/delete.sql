-- Soak load: delete this client's user; it is gone at once.
\if :mine > 0
SELECT user_service.delete_user(:mine::bigint);
SELECT 1 / (count(*) = 0)::int AS ok FROM user_service.users WHERE id = :mine::bigint;
\set mine 0
\endif
