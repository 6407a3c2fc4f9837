/*
 * drafter nat: create the namespaces with NATed guest networking, keep them
 * while running in the foreground, and remove everything on SIGINT/SIGTERM.
 * Leftovers of a run that was killed are removed first.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/net/nat.h"
#include "core/util.h"

static int wait_for_signal(void)
{
	sigset_t mask;
	struct signalfd_siginfo si;
	_cleanup_close_ int fd = -EBADF;

	stop_signals(&mask);
	fd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, &si, sizeof si);
		if (n == (ssize_t)sizeof si)
			return (int)si.ssi_signo;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int run(struct config *cfg)
{
	struct net_nat n;
	sigset_t mask;
	pid_t pid;
	int r;

	r = net_nat_plan(&cfg->nat, &n);
	if (r < 0) {
		log_error("%s", n.err);
		net_nat_free(&n);
		return 1;
	}
	/* Signals wait in the queue while the network is being built. */
	stop_signals(&mask);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	r = net_nat_find_leftovers(&n, &pid);
	if (r == -EBUSY) {
		log_error("cannot start: 'drafter nat' with namespace prefix '%s' is already running (pid %ld)",
			  n.prefix, (long)pid);
		net_nat_free(&n);
		return 1;
	}
	if (cfg->nat.cleanup) {
		r = net_nat_cleanup(&n);
		if (r < 0)
			log_error("cannot clean up: %s: %s", n.err, strerror(-r));
		else
			log_info("removed the namespaces, links and rules of namespace prefix '%s'", n.prefix);
		net_nat_free(&n);
		return r < 0 ? 1 : 0;
	}
	if (r == 2) {
		log_error("cannot start: namespaces or table 'inet %s' with prefix '%s' exist but were not "
			  "created by a drafter run; remove them or run with --cleanup",
			  n.table, n.prefix);
		net_nat_free(&n);
		return 1;
	}
	if (r == 1) {
		log_info("removing the leftovers of an earlier run (pid %ld)", (long)pid);
		r = net_nat_cleanup(&n);
		if (r < 0) {
			log_error("cannot remove the leftovers of an earlier run: %s: %s", n.err, strerror(-r));
			net_nat_free(&n);
			return 1;
		}
	}

	r = net_nat_up(&n);
	if (r < 0) {
		char err[sizeof n.err];
		snprintf(err, sizeof err, "%s", n.err);
		(void)net_nat_down(&n);
		log_error("%s: %s", err, strerror(-r));
		net_nat_free(&n);
		return 1;
	}
	log_info("created %zu namespaces (%s0 to %s%zu) on host interface '%s'; ready", n.count, n.prefix,
		 n.prefix, n.count - 1, n.host_if);

	r = wait_for_signal();
	if (r < 0)
		log_error("cannot wait for signals: %s", strerror(-r));
	r = net_nat_down(&n);
	if (r < 0) {
		log_error("%s: %s", n.err, strerror(-r));
		net_nat_free(&n);
		return 1;
	}
	log_info("removed %zu namespaces", n.count);
	net_nat_free(&n);
	return 0;
}

int cmd_nat(int argc, char **argv)
{
	struct config cfg;
	int r;

	r = config_setup(&cfg, TOOL_NAT, argc, argv);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 1;
	}
	/*
	 * The original has no count flag: it makes as many namespaces as its
	 * address ranges hold (254 with the defaults). 0 asks the core for that.
	 */
	if (str_startswith(argv[0], "drafter-"))
		cfg.nat.namespace_count = 0;
	r = run(&cfg);
	config_free(&cfg);
	return r;
}
