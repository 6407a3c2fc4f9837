# build rules for src/core/pkg (included from Makefile.am)
libdrafter_core_la_SOURCES += \
	src/core/pkg/pkg.c src/core/pkg/pkg.h \
	src/core/progress.c src/core/progress.h

check_PROGRAMS += tests/unit/test-pkg tests/unit/test-progress tests/unit/test-pkg-cmp
TESTS += tests/unit/test-pkg tests/unit/test-progress tests/package.sh tests/package-interop.sh
UNIT_TESTS += tests/unit/test-pkg tests/unit/test-progress
EXTRA_DIST += tests/package.sh tests/package-interop.sh
