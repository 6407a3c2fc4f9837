# build rules for guest (included from Makefile.am)
#
# The guest programs run inside the VM, so they are linked statically
# against libc only: their own CFLAGS/LDFLAGS/LDADD replace the defaults
# (no core library, no sanitizers, which cannot link statically).
# libtool spells a fully static link -all-static (its -static only
# concerns libtool libraries).
# They are installed next to the blueprint builder in $(pkglibexecdir).

GUEST_COMMON = guest/guest.h guest/transport.c src/core/io.c src/core/io.h
GUEST_WARN_FLAGS = $(WARN_CFLAGS)
GUEST_STATIC_FLAGS = -all-static

pkglibexec_PROGRAMS = guest/drafter-agent guest/drafter-liveness guest/drafter-testsvc
dist_pkglibexec_SCRIPTS = guest/build-blueprint

guest_drafter_agent_SOURCES = guest/drafter-agent.c guest/agent.c guest/rpc.c $(GUEST_COMMON)
guest_drafter_agent_CFLAGS = $(GUEST_WARN_FLAGS)
guest_drafter_agent_LDFLAGS = $(GUEST_STATIC_FLAGS)
guest_drafter_agent_LDADD =

guest_drafter_liveness_SOURCES = guest/drafter-liveness.c $(GUEST_COMMON)
guest_drafter_liveness_CFLAGS = $(GUEST_WARN_FLAGS)
guest_drafter_liveness_LDFLAGS = $(GUEST_STATIC_FLAGS)
guest_drafter_liveness_LDADD =

guest_drafter_testsvc_SOURCES = guest/drafter-testsvc.c $(GUEST_COMMON)
guest_drafter_testsvc_CFLAGS = $(GUEST_WARN_FLAGS)
guest_drafter_testsvc_LDFLAGS = $(GUEST_STATIC_FLAGS)
guest_drafter_testsvc_LDADD =

# What build-blueprint puts into the images; installed so that the
# installed builder finds it in $(pkgdatadir)/guest.
guestdatadir = $(pkgdatadir)/guest
dist_guestdata_DATA = guest/initramfs-init
guestrootfsetcdir = $(guestdatadir)/rootfs/etc
dist_guestrootfsetc_DATA = guest/rootfs/etc/inittab guest/rootfs/etc/passwd guest/rootfs/etc/group
guestrootfsinitdir = $(guestdatadir)/rootfs/etc/init.d
dist_guestrootfsinit_DATA = guest/rootfs/etc/init.d/rcS
guestrootfshooksdir = $(guestdatadir)/rootfs/etc/drafter
dist_guestrootfshooks_DATA = guest/rootfs/etc/drafter/before-suspend guest/rootfs/etc/drafter/after-resume
EXTRA_DIST += guest/README.md guest/guest.h

# Build the test blueprint into out/blueprint (cached; see guest/README.md).
blueprint: guest/drafter-agent guest/drafter-liveness guest/drafter-testsvc
	$(top_srcdir)/guest/build-blueprint --bindir $(abs_top_builddir)/guest \
		-o $(abs_top_builddir)/out/blueprint
.PHONY: blueprint

# Unit tests of the guest code (linked normally, so they run under the sanitizers too).
check_PROGRAMS += tests/unit/test-guest tests/unit/test-guest-client
tests_unit_test_guest_SOURCES = tests/unit/test-guest.c guest/agent.c guest/rpc.c $(GUEST_COMMON)
tests_unit_test_guest_LDADD =
# Own flags (the same as the default) give its objects their own names: io.c
# is also built by libtool into the core library.
tests_unit_test_guest_CFLAGS = $(AM_CFLAGS)
tests_unit_test_guest_client_SOURCES = tests/unit/test-guest-client.c
tests_unit_test_guest_client_LDADD =
TESTS += tests/unit/test-guest tests/guest.sh tests/guest-testsvc.sh
UNIT_TESTS += tests/unit/test-guest
EXTRA_DIST += tests/guest.sh tests/guest-testsvc.sh
