# build rules for src/core/net (included from Makefile.am)
libdrafter_core_la_SOURCES += \
	src/core/net/addr.c src/core/net/addr.h \
	src/core/net/nft.c src/core/net/nft.h \
	src/core/net/netns.c src/core/net/netns.h \
	src/core/net/link.c src/core/net/link.h \
	src/core/net/nat.c src/core/net/nat.h \
	src/core/net/forward.c src/core/net/forward.h \
	src/core/net/hold.c src/core/net/hold.h

# Unit tests (the sanitizer build runs these too).
check_PROGRAMS += tests/unit/test-net-addr tests/unit/test-net-kernel
TESTS += tests/unit/test-net-addr tests/unit/test-net-kernel
UNIT_TESTS += tests/unit/test-net-addr tests/unit/test-net-kernel

# Integration tests in namespaces of their own, and their helpers: a guest
# stand-in wired to tap0, the packet-holding API.
check_PROGRAMS += tests/net-wire tests/net-hold
tests_net_wire_SOURCES = tests/net-wire.c
tests_net_hold_SOURCES = tests/net-hold.c
TESTS += tests/net-nat.sh tests/net-forward.sh tests/net-hold.sh
EXTRA_DIST += tests/net-nat.sh tests/net-forward.sh tests/net-hold.sh tests/net-lib.sh
