/*
 * Accept loop with a thread per session. The main thread waits in poll() on
 * the listening socket, the signal fd and an eventfd that finished sessions
 * ring; on a stop it shuts every open connection down and joins the threads,
 * so nothing outlives the command.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "core/xfer/server.h"

struct session {
	struct session *next;
	struct server *srv;
	pthread_t thread;
	int fd;
	char peer[128];
	struct xfer_conn *conn; /* set once the TLS handshake is through */
	bool finished;
	int result;
};

struct server {
	const struct xfer_server_opts *o;
	pthread_mutex_t lock;
	struct session *sessions;
	unsigned active;
	int efd;
	bool stop;
};

int xfer_signals_block(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -EINVAL;
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

static void *session_main(void *arg)
{
	struct session *s = arg;
	struct server *srv = s->srv;
	struct xfer_conn *c = NULL;
	char err[256];
	uint64_t one = 1;
	int r;

	thread_name("xfer-session");
	/* The connection gets its own descriptor; s->fd stays open until the
	 * session is reaped, so a stop can always shut it down safely. */
	int fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
	r = fd < 0 ? -errno : xfer_conn_accepted(fd, s->peer, srv->o->tls, &c, err, sizeof(err));
	if (fd < 0)
		snprintf(err, sizeof(err), "%s", strerror(-r));
	if (r < 0) {
		if (srv->o->refused)
			srv->o->refused(srv->o->ctx, s->peer, err);
	} else {
		pthread_mutex_lock(&srv->lock);
		s->conn = c;
		bool stop = srv->stop;
		pthread_mutex_unlock(&srv->lock);
		r = stop ? 0 : srv->o->handle(srv->o->ctx, c);
		pthread_mutex_lock(&srv->lock);
		s->conn = NULL;
		pthread_mutex_unlock(&srv->lock);
		xfer_conn_free(c);
	}
	pthread_mutex_lock(&srv->lock);
	s->finished = true;
	s->result = r;
	pthread_mutex_unlock(&srv->lock);
	(void)!write(srv->efd, &one, sizeof(one));
	return NULL;
}

/* Join finished sessions; returns 1 if one asked to stop the server. */
static int reap(struct server *srv, bool all)
{
	int stop = 0;

	for (;;) {
		struct session *done = NULL, **pp;

		pthread_mutex_lock(&srv->lock);
		for (pp = &srv->sessions; *pp; pp = &(*pp)->next) {
			if ((*pp)->finished || all) {
				done = *pp;
				*pp = done->next;
				srv->active--;
				break;
			}
		}
		pthread_mutex_unlock(&srv->lock);
		if (!done)
			return stop;
		pthread_join(done->thread, NULL);
		close(done->fd);
		if (done->result == 1)
			stop = 1;
		free(done);
	}
}

int xfer_serve(const struct xfer_server_opts *o, int sigfd)
{
	struct server srv = { .o = o };
	int ret = 0;

	srv.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv.efd < 0)
		return -errno;
	pthread_mutex_init(&srv.lock, NULL);

	for (;;) {
		bool full = o->max_sessions && srv.active >= o->max_sessions;
		struct pollfd p[3] = {
			{ .fd = full ? -1 : o->lfd, .events = POLLIN },
			{ .fd = sigfd, .events = POLLIN },
			{ .fd = srv.efd, .events = POLLIN },
		};
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				ret = (int)si.ssi_signo;
				break;
			}
		}
		if (p[2].revents) {
			uint64_t v;
			(void)!read(srv.efd, &v, sizeof(v));
			if (reap(&srv, false)) {
				ret = 0;
				break;
			}
		}
		if (p[0].revents & POLLIN) {
			int fd;
			struct session *s = xcalloc(1, sizeof(*s));
			int r = xfer_accept_fd(o->lfd, &fd, s->peer, sizeof(s->peer));
			if (r < 0) {
				free(s);
				continue;
			}
			s->fd = fd;
			s->srv = &srv;
			pthread_mutex_lock(&srv.lock);
			if (pthread_create(&s->thread, NULL, session_main, s) != 0) {
				pthread_mutex_unlock(&srv.lock);
				close(fd);
				free(s);
				continue;
			}
			s->next = srv.sessions;
			srv.sessions = s;
			srv.active++;
			pthread_mutex_unlock(&srv.lock);
		}
	}

	/* Stop: wake every session out of its I/O and wait for it. */
	pthread_mutex_lock(&srv.lock);
	srv.stop = true;
	for (struct session *s = srv.sessions; s; s = s->next)
		(void)shutdown(s->fd, SHUT_RDWR);
	pthread_mutex_unlock(&srv.lock);
	reap(&srv, true);
	close(srv.efd);
	pthread_mutex_destroy(&srv.lock);
	return ret;
}
