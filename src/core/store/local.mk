# build rules for src/core/store (included from Makefile.am)
libdrafter_core_la_SOURCES += \
	src/core/store/store.h \
	src/core/store/store-internal.h \
	src/core/store/store-expose-internal.h \
	src/core/store/store-bitmap.c \
	src/core/store/store-file.c \
	src/core/store/store-overlay.c \
	src/core/store/store-tracker.c \
	src/core/store/store-volatility.c \
	src/core/store/store-wait.c \
	src/core/store/store-device.c \
	src/core/store/store-expose.c \
	src/core/store/store-fuse.c \
	src/core/store/store-fillq.c \
	src/core/store/store-nbd.c \
	src/core/store/store-config.c

# Tests of the storage engine.
# test-store-fuse mounts for real (root and /dev/fuse, else it skips) and
# runs tests/store-mmap-writer as the separate process that maps the files.
check_PROGRAMS += tests/unit/test-store tests/unit/test-store-nbd \
	tests/unit/test-store-fuse tests/unit/test-store-migrate tests/store-mmap-writer
TESTS += tests/unit/test-store tests/unit/test-store-nbd tests/unit/test-store-fuse \
	tests/unit/test-store-migrate
UNIT_TESTS += tests/unit/test-store tests/unit/test-store-nbd tests/unit/test-store-fuse \
	tests/unit/test-store-migrate

# The kernel NBD path for real: a QEMU guest with the Debian kernel's nbd.ko
# runs tests/store-nbd-guest (skipped where no such kernel is installed).
check_PROGRAMS += tests/store-nbd-guest
TESTS += tests/store-nbd-kernel.sh
EXTRA_DIST += tests/store-nbd-kernel.sh
