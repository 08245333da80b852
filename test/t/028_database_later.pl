# Workers configured for a database that does not exist yet wait quietly:
# one log line, no worker started and failing again and again, and they
# serve the database once it is created.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UserServiceNode;

my $node = preloaded_node('later', "user_service.database = 'later'\n");

# a few of the launcher's rounds
sleep 8;
my $log = slurp_file($node->logfile);
my @waiting = $log =~ /user_service\.database "later" does not exist: its user_service workers start once it is created/g;
is(scalar(@waiting), 1, 'one log line says the workers wait for the database');
unlike($log, qr/FATAL:  database "later" does not exist/, 'no worker tried to connect and failed');
unlike($log, qr/user_service worker \d+ exited/, 'no worker restarted in a loop');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'user_service worker'}),
	'0', 'no worker runs meanwhile');

$node->safe_psql('postgres', 'CREATE DATABASE later');
$node->safe_psql('later', 'CREATE EXTENSION user_service');
my $sql = 'SELECT user_service.submit_batch(\'create_user\', \'[{"name": "L", "email": "l@example.com", "password": "password l"}]\')';
my $batch = $node->safe_psql('later', $sql);
is($node->safe_psql('later', "SELECT user_service.wait_batch($batch, '60 s')"), 't',
	'once the database exists, its workers process its batches');
like(slurp_file($node->logfile), qr/user_service\.database "later" exists now: starting its user_service workers/,
	'and the log says they started');

$node->stop;
done_testing();
