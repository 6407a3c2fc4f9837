/*
 * The agent's work, independent of the transport: read request lines from
 * the host, run the before-suspend / after-resume command and answer only
 * when it has finished, with the error in the original's (Go exec) wording.
 *
 * From its BeforeSuspend answer to its AfterResume answer the agent runs in
 * the SCHED_IDLE class: right after a resume (or a migration) the guest's
 * own services go first, and the agent's call, which nobody waits on as
 * closely as on them, takes what CPU is left. Commands run at the normal
 * class (docs/guest-agent.md).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/io.h"
#include "core/util.h"
#include "guest/guest.h"

/* The agent's scheduling class: SCHED_IDLE when YIELD (best effort: failing changes nothing). */
static void agent_yield(bool yield)
{
	struct sched_param sp = {0};

	(void)sched_setscheduler(0, yield ? SCHED_IDLE : SCHED_OTHER, &sp);
}

int guest_run_command(const char *shell, const char *cmd, char *err, size_t errlen)
{
	_cleanup_close_ int rd = -EBADF, wr = -EBADF;
	int pfd[2], child_errno = 0, status;
	ssize_t n;
	pid_t pid;

	err[0] = '\0';
	if (!cmd || !*cmd)
		return 0;
	/* A close-on-exec pipe tells the parent whether exec worked. */
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "cannot create pipe: %s", strerror(errno));
		return -1;
	}
	rd = pfd[0];
	wr = pfd[1];
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "cannot fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		char *argv[] = {(char *)shell, (char *)"-c", (char *)cmd, NULL};
		int e;

		if (nul >= 0 && nul != STDIN_FILENO) {
			dup2(nul, STDIN_FILENO);
			close(nul);
		}
		signal(SIGPIPE, SIG_DFL);
		agent_yield(false);
		execvp(shell, argv);
		e = errno;
		(void)!write(pfd[1], &e, sizeof(e));
		_exit(127);
	}
	closep(&wr);
	wr = -EBADF;
	do
		n = read(rd, &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			snprintf(err, errlen, "cannot wait for '%s': %s", shell, strerror(errno));
			return -1;
		}
	}
	if (n == (ssize_t)sizeof(child_errno)) {
		snprintf(err, errlen, "cannot run '%s': %s", shell, strerror(child_errno));
		return -1;
	}
	if (WIFEXITED(status)) {
		if (WEXITSTATUS(status) == 0)
			return 0;
		snprintf(err, errlen, "exit status %d", WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		const char *s = strsignal(WTERMSIG(status));

		/* Go prints "signal: killed": strsignal's text, lowercased first letter */
		snprintf(err, errlen, "signal: %s", s ? s : "unknown");
		if (s)
			err[8] = (char)tolower((unsigned char)err[8]);
	} else
		snprintf(err, errlen, "unexpected wait status %d", status);
	return -1;
}

int guest_agent_handle_line(const struct guest_agent_opts *o, const char *line, size_t len,
                            char *out, size_t outlen, int *yield)
{
	struct guest_rpc_request req;
	char err[512];
	const char *cmd = NULL;
	int r;

	*yield = -1;
	r = guest_rpc_parse(line, len, &req);
	if (r <= 0)
		return 0; /* not a request (or garbage): nothing to answer */
	if (strcmp(req.function, "BeforeSuspend") == 0) {
		cmd = o->before_suspend_cmd;
		*yield = 1;
	} else if (strcmp(req.function, "AfterResume") == 0) {
		cmd = o->after_resume_cmd;
		*yield = 0;
	}
	if (*yield < 0) {
		snprintf(err, sizeof(err), "unknown function '%s'", req.function);
	} else {
		fprintf(stderr, "drafter-agent: %s\n", req.function);
		guest_run_command(o->shell_cmd, cmd, err, sizeof(err));
		if (err[0])
			fprintf(stderr, "drafter-agent: %s failed: %s\n", req.function, err);
	}
	r = guest_rpc_format_response(req.call, err, out, outlen);
	return r < 0 ? 0 : r;
}

int guest_agent_serve(const struct guest_agent_opts *o, int fd)
{
	_cleanup_free_ char *buf = malloc(GUEST_MAX_LINE);
	char out[1024];
	size_t have = 0;
	bool discarding = false;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(fd, buf + have, GUEST_MAX_LINE - have);
		size_t start = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		have += (size_t)n;
		for (size_t i = start; i < have; i++) {
			int len;

			if (buf[i] != '\n')
				continue;
			if (!discarding) {
				int yield;

				len = guest_agent_handle_line(o, buf + start, i - start, out,
				                              sizeof(out), &yield);
				if (len > 0) {
					int r = write_all(fd, out, (size_t)len);

					if (r < 0)
						return r;
				}
				if (len > 0 && yield >= 0)
					agent_yield(yield);
			}
			discarding = false;
			start = i + 1;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		if (have == GUEST_MAX_LINE) {
			/* Over-long line: drop it up to its newline, keep the connection. */
			discarding = true;
			have = 0;
		}
	}
}
