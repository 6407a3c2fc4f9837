# Man pages, written directly in roff (included from Makefile.am). The
# legacy names that differ from the page names are .so links to them.
dist_man_MANS += \
	man/drafter.1 \
	man/drafter.conf.5 \
	man/drafter-config.1 \
	man/drafter-nat.1 \
	man/drafter-forward.1 \
	man/drafter-snapshot.1 \
	man/drafter-package.1 \
	man/drafter-run.1 \
	man/drafter-registry.1 \
	man/drafter-peer.1 \
	man/drafter-terminate.1 \
	man/drafter-forwarder.1 \
	man/drafter-snapshotter.1 \
	man/drafter-packager.1 \
	man/drafter-runner.1 \
	man/drafter-terminator.1
