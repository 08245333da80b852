-- Soak load (test/t/009_soak.pl): a new user of this client's own, with a
-- key that no other client draws.  The client keeps its id in :mine (and the
-- key in :mk) for the other scripts; a division by zero marks a wrong answer.
\set k random(1, 9000000000000000000)
SELECT id AS mine, 1 / (email = 'soak' || :k::text || '@Example.com')::int AS ok
  FROM user_service.create_user('Soak ' || :k::text, 'soak' || :k::text || '@Example.com',
                                'password-' || :k::text) \gset
\set mk :k
