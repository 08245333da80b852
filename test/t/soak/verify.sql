-- Soak load: this client's password verifies (under any letter case of the
-- address), a wrong one does not; an unknown address never verifies.
\if :mine > 0
SELECT 1 / (user_service.verify_password('soak' || :mk::text || '@example.com', 'password-' || :mk::text)
            AND NOT user_service.verify_password('soak' || :mk::text || '@example.com',
                                                 'wrong-password-' || :mk::text))::int AS ok;
\else
\set k random(1, 9000000000000000000)
SELECT 1 / (NOT user_service.verify_password('nobody' || :k::text || '@example.com',
                                             'password-' || :k::text))::int AS ok;
\endif
