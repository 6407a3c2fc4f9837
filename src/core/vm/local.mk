# build rules for src/core/vm (included from Makefile.am)
libdrafter_core_la_SOURCES += \
	src/core/vm/vm.h \
	src/core/vm/proc.c \
	src/core/vm/meta.c \
	src/core/vm/agent.c \
	src/core/vm/qmp.c src/core/vm/qmp.h \
	src/core/vm/qemu.c \
	src/core/vm/firecracker.c

# Tests of the VM layer: real QEMU guests, the Firecracker driver against its
# contract server, unit tests of the snapshot metadata and the agent protocol.
TESTS += tests/vm-qemu.sh tests/vm-nat.sh
EXTRA_DIST += tests/vm-qemu.sh tests/vm-nat.sh
TESTS += tests/vm-firecracker.sh
EXTRA_DIST += tests/vm-firecracker.sh tests/fc-contract-jailer tests/fc-lib.sh

check_PROGRAMS += tests/unit/test-vm tests/unit/test-vm-qmp
TESTS += tests/unit/test-vm tests/unit/test-vm-qmp
UNIT_TESTS += tests/unit/test-vm tests/unit/test-vm-qmp

# The VM side of live migration (drafter peer), and its end-to-end test.
libdrafter_core_la_SOURCES += src/core/vm/migrate-vm.c src/core/vm/migrate-vm.h
TESTS += tests/migrate-vm.sh
EXTRA_DIST += tests/migrate-vm.sh
# A Firecracker VM migrated between two peers, against the contract server.
TESTS += tests/migrate-fc.sh
EXTRA_DIST += tests/migrate-fc.sh
