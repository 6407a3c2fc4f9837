# Build rules for src/core/xfer (included from Makefile.am): wire codec,
# transports, migration engine, device adapters, the accept loop; their
# tests, the libFuzzer targets and the test helper.
libdrafter_core_la_SOURCES += \
	src/core/xfer/wire.c src/core/xfer/wire.h \
	src/core/xfer/transport.c src/core/xfer/transport.h \
	src/core/xfer/migrate.c src/core/xfer/migrate.h \
	src/core/xfer/filedev.c src/core/xfer/filedev.h \
	src/core/xfer/storedev.c src/core/xfer/storedev.h \
	src/core/xfer/server.c src/core/xfer/server.h

check_PROGRAMS += tests/unit/test-xfer tests/xfer-tool tests/unit/test-xfer-crc \
	tests/unit/test-xfer-filedev
UNIT_TESTS += tests/unit/test-xfer tests/unit/test-xfer-crc tests/unit/test-xfer-filedev
TESTS += tests/unit/test-xfer tests/unit/test-xfer-crc tests/unit/test-xfer-filedev tests/registry.sh tests/xfer-tls.sh \
	tests/migrate.sh tests/migrate-kill.sh
EXTRA_DIST += tests/xfer-lib.sh tests/registry.sh tests/xfer-tls.sh \
	tests/migrate.sh tests/migrate-kill.sh

# libFuzzer targets: fuzz/fuzz-wire (hello, frames, messages, blocks) and
# fuzz/fuzz-dest (a whole destination session fed by a hostile source).
# `make fuzz` builds them with clang; `make fuzz-run` runs FUZZ_RUNS
# executions of each (one million by default).
EXTRA_DIST += fuzz/fuzz-wire.c fuzz/fuzz-dest.c fuzz/corpus
FUZZ_RUNS = 1000000
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -I$(top_srcdir)/src -I$(top_builddir) \
	$(ZSTD_CFLAGS) $(SSL_CFLAGS)
if HAVE_CLANG
fuzz/fuzz-wire$(EXEEXT): $(top_srcdir)/fuzz/fuzz-wire.c $(top_srcdir)/src/core/xfer/wire.c \
		$(top_srcdir)/src/core/xfer/wire.h $(top_srcdir)/src/core/util.c
	@mkdir -p fuzz
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $(top_srcdir)/fuzz/fuzz-wire.c \
		$(top_srcdir)/src/core/xfer/wire.c $(top_srcdir)/src/core/util.c $(ZSTD_LIBS) -lm
fuzz/fuzz-dest$(EXEEXT): $(top_srcdir)/fuzz/fuzz-dest.c $(top_srcdir)/src/core/xfer/wire.c \
		$(top_srcdir)/src/core/xfer/migrate.c $(top_srcdir)/src/core/xfer/transport.c \
		$(top_srcdir)/src/core/xfer/wire.h $(top_srcdir)/src/core/xfer/migrate.h \
		$(top_srcdir)/src/core/xfer/transport.h $(top_srcdir)/src/core/util.c $(top_srcdir)/src/core/log.c
	@mkdir -p fuzz
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $(top_srcdir)/fuzz/fuzz-dest.c \
		$(top_srcdir)/src/core/xfer/wire.c $(top_srcdir)/src/core/xfer/migrate.c \
		$(top_srcdir)/src/core/xfer/transport.c $(top_srcdir)/src/core/util.c \
		$(top_srcdir)/src/core/log.c $(SSL_LIBS) $(ZSTD_LIBS) -lpthread -lm
fuzz: fuzz/fuzz-wire$(EXEEXT) fuzz/fuzz-dest$(EXEEXT)
fuzz-run: fuzz
	@mkdir -p fuzz/corpus-wire fuzz/corpus-dest
	fuzz/fuzz-wire$(EXEEXT) -runs=$(FUZZ_RUNS) -max_len=70000 fuzz/corpus-wire $(top_srcdir)/fuzz/corpus
	fuzz/fuzz-dest$(EXEEXT) -runs=$(FUZZ_RUNS) -max_len=70000 fuzz/corpus-dest $(top_srcdir)/fuzz/corpus
else
fuzz fuzz-run:
	@echo "make fuzz needs clang (not found by configure)"; exit 1
endif
CLEANFILES += fuzz/fuzz-wire$(EXEEXT) fuzz/fuzz-dest$(EXEEXT)
.PHONY: fuzz fuzz-run
