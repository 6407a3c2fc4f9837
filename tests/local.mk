# Tests of the command layer, configuration and flags (included from Makefile.am).
# UNIT_TESTS lists the C unit tests that the sanitizer build runs.
UNIT_TESTS =

# The configuration module's sources beyond config.c and flags.c.
libdrafter_core_la_SOURCES += \
	src/core/schema.c src/core/schema.h \
	src/core/cfgjson.c src/core/cfgjson.h \
	src/core/conffile.c

check_PROGRAMS += tests/unit/test-flags tests/unit/test-config
TESTS += tests/unit/test-flags tests/unit/test-config
UNIT_TESTS += tests/unit/test-flags tests/unit/test-config

TESTS += tests/dispatch.sh tests/config-check.sh tests/man.sh
EXTRA_DIST += tests/dispatch.sh tests/config-check.sh tests/man.sh

# The shared helpers: descriptor I/O loops, small files, xasprintf, libnl errors.
check_PROGRAMS += tests/unit/test-util
TESTS += tests/unit/test-util
UNIT_TESTS += tests/unit/test-util

# Migration peers that stop answering (keepalives and the receive timeout).
TESTS += tests/migrate-stall.sh
EXTRA_DIST += tests/migrate-stall.sh

# More real-VM migrations: two hosts, mutual TLS, post-copy, a cut after authority.
TESTS += tests/migrate-vm-more.sh
EXTRA_DIST += tests/migrate-vm-more.sh tests/vm-lib.sh
