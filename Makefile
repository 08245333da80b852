# user_service: PGXS build.
#
#   make && make install              build and install (as root)
#   bash test/run-tests.sh            everything: build, install, pg_regress,
#                                     isolation and TAP, one summary line
#
# `make installcheck` runs the same three suites; each starts its own
# temporary, preloaded instance (--temp-instance), so no server is needed.

EXTENSION = user_service user_service_proxy
MODULE_big = user_service
OBJS = \
	src/user_service.o \
	src/catalog.o \
	src/slots.o \
	src/hash_cap.o \
	src/password.o \
	src/foreign_hash.o \
	src/login_throttle.o \
	src/redact.o \
	src/validation.o \
	src/user_ops.o \
	src/user_count.o \
	src/shard.o \
	src/email_claims.o \
	src/cluster.o \
	src/proxy.o \
	src/users.o \
	src/user_list.o \
	src/kind_registry.o \
	src/batch_kinds.o \
	src/batch_submit.o \
	src/batch_run.o \
	src/batch_housekeeping.o \
	src/batches.o \
	src/launcher.o \
	src/worker.o
DATA = user_service--1.0.sql user_service--1.0--1.1.sql user_service--1.1--1.2.sql \
	user_service--1.2--1.3.sql user_service_proxy--1.3.sql

SHLIB_LINK += -largon2 -lsodium -lcrypt -lcrypto
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

# pg_regress: sql/*.sql against expected/*.out, one file per feature.
REGRESS = users validation list passwords privileges batches import kinds
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/temp.conf

# pg_isolation_regress: test/isolation/specs/*.spec against
# test/isolation/expected/*.out (the later --inputdir wins).
ISOLATION = duplicate_email concurrent_update batch_claims update_timestamps kind_unregister
ISOLATION_OPTS = --inputdir=test/isolation --temp-instance=tmp_check_iso \
	--temp-config=test/isolation/temp.conf

# prove with PostgreSQL::Test::Cluster.
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso results regression.diffs \
	regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The three suites one at a time, so that the test runner can run all of
# them even when one fails (installcheck stops at the first failure).
.PHONY: check-regress check-isolation check-tap
check-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
check-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)
check-tap:
	$(prove_installcheck)
