/*
 * drafter forward: add the port forwards, keep them while running in the
 * foreground, and remove them on SIGINT/SIGTERM. Every forward is checked
 * before the first rule is added.
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
#include "core/net/forward.h"
#include "core/util.h"

static int run(struct config *cfg)
{
	struct net_forward f;
	sigset_t mask;
	struct signalfd_siginfo si;
	_cleanup_close_ int sfd = -EBADF;
	int r;

	stop_signals(&mask);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	r = net_forward_plan(&cfg->forward, &f);
	if (r < 0) {
		log_error("%s", f.err);
		net_forward_free(&f);
		return 1;
	}
	r = net_forward_remove_stale();
	if (r > 0)
		log_info("removed the rules of %d forwarder(s) that are no longer running", r);
	r = net_forward_up(&f);
	if (r < 0) {
		log_error("%s: %s", f.err, strerror(-r));
		net_forward_free(&f);
		return 1;
	}
	log_info("forwarding %zu port(s) (table 'inet %s'); ready", f.n, f.table);

	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	while (sfd >= 0) {
		ssize_t n = read(sfd, &si, sizeof si);
		if (n == (ssize_t)sizeof si || (n < 0 && errno != EINTR))
			break;
	}
	r = net_forward_down(&f);
	if (r < 0) {
		log_error("%s: %s", f.err, strerror(-r));
		net_forward_free(&f);
		return 1;
	}
	net_forward_free(&f);
	return 0;
}

int cmd_forward(int argc, char **argv)
{
	struct config cfg;
	int r;

	r = config_setup(&cfg, TOOL_FORWARD, argc, argv);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 1;
	}
	r = run(&cfg);
	config_free(&cfg);
	return r;
}
