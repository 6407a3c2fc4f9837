/*
 * Unit tests of the guest-side code (the guest/ sources): Go flag and duration
 * syntax, the panrpc JSON-lines codec, command execution with the
 * original's error wording, the agent's request loop over a real socket
 * pair, and virtio-serial port discovery against a fake sysfs tree.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/guest.h"
#include "tests/tap.h"

static void test_duration(void)
{
	uint64_t ns = 0;

	is_int(guest_parse_duration("1m", &ns), 0, "duration 1m parses");
	is_int(ns, 60000000000LL, "1m = 60 s");
	guest_parse_duration("1m0s", &ns);
	is_int(ns, 60000000000LL, "1m0s = 60 s");
	guest_parse_duration("500ms", &ns);
	is_int(ns, 500000000LL, "500ms");
	guest_parse_duration("1.5s", &ns);
	is_int(ns, 1500000000LL, "1.5s");
	guest_parse_duration("1h2m3s", &ns);
	is_int(ns, 3723000000000LL, "1h2m3s");
	guest_parse_duration("250us", &ns);
	is_int(ns, 250000LL, "250us");
	is_int(guest_parse_duration("0", &ns), 0, "0 parses");
	is_int(ns, 0, "0 = 0");
	is_int(guest_parse_duration("5", &ns), -EINVAL, "a number without unit is refused (Go)");
	is_int(guest_parse_duration("", &ns), -EINVAL, "empty is refused");
	is_int(guest_parse_duration("1x", &ns), -EINVAL, "unknown unit is refused");
	is_int(guest_parse_duration("99999999999h", &ns), -ERANGE, "overflow is refused");
}

static void test_flags(void)
{
	uint32_t port = 26;
	uint64_t timeout = 0;
	const char *before = "", *after = "";
	bool bg = false;
	const struct guest_flag flags[] = {
	    {"daemon", GUEST_FLAG_BOOL, &bg, ""},
	    {"vsock-port", GUEST_FLAG_U32, &port, ""},
	    {"vsock-timeout", GUEST_FLAG_DURATION, &timeout, ""},
	    {"before-suspend-cmd", GUEST_FLAG_STRING, &before, ""},
	    {"after-resume-cmd", GUEST_FLAG_STRING, &after, ""},
	};
	char err[256];
	char *a1[] = {"agent",
	              "--vsock-port",
	              "27",
	              "-vsock-timeout=2s",
	              "-before-suspend-cmd",
	              "echo hi",
	              "--after-resume-cmd=echo a=b",
	              NULL};
	char *a2[] = {"agent", "--nope", "1", NULL};
	char *a3[] = {"agent", "--vsock-port", NULL};
	char *a4[] = {"agent", "--vsock-port", "-1", NULL};
	char *a5[] = {"agent", "-h", NULL};
	char *a6[] = {"agent", "stray", NULL};
	char *a7[] = {"agent", "--vsock-port", "4294967296", NULL};

	is_int(guest_flags_parse(flags, 5, 7, a1, err, sizeof(err)), 0, "Go-style flags parse");
	is_int(port, 27, "--vsock-port 27");
	is_int(timeout, 2000000000LL, "-vsock-timeout=2s");
	is_str(before, "echo hi", "-before-suspend-cmd value");
	is_str(after, "echo a=b", "--after-resume-cmd= keeps '=' in the value");
	is_int(guest_flags_parse(flags, 5, 3, a2, err, sizeof(err)), -EINVAL,
	       "unknown flag refused");
	is_str(err, "flag provided but not defined: -nope", "unknown flag message (Go wording)");
	is_int(guest_flags_parse(flags, 5, 2, a3, err, sizeof(err)), -EINVAL,
	       "missing value refused");
	is_str(err, "flag needs an argument: -vsock-port", "missing value message");
	is_int(guest_flags_parse(flags, 5, 3, a4, err, sizeof(err)), -EINVAL,
	       "negative port refused");
	is_int(guest_flags_parse(flags, 5, 2, a5, err, sizeof(err)), 1, "-h asks for help");
	is_int(guest_flags_parse(flags, 5, 2, a6, err, sizeof(err)), -EINVAL,
	       "positional argument refused");
	is_int(guest_flags_parse(flags, 5, 3, a7, err, sizeof(err)), -ERANGE,
	       "port beyond 32 bits refused");
	char *a8[] = {"svc", "-daemon", "--vsock-port=9", NULL};
	char *a9[] = {"svc", "-daemon=false", NULL};
	char *a10[] = {"svc", "-daemon=maybe", NULL};
	is_int(guest_flags_parse(flags, 5, 3, a8, err, sizeof(err)), 0, "bool flag alone");
	ok(bg && port == 9, "-daemon alone is true and takes no value");
	is_int(guest_flags_parse(flags, 5, 2, a9, err, sizeof(err)), 0, "-daemon=false parses");
	ok(!bg, "-daemon=false is false");
	is_int(guest_flags_parse(flags, 5, 2, a10, err, sizeof(err)), -EINVAL, "bad bool refused");
}

static void test_rpc(void)
{
	struct guest_rpc_request req;
	char buf[512];
	const char *l1 = "{\"request\":{\"call\":\"0f8e9a52-3c1f\",\"function\":\"BeforeSuspend\","
	                 "\"args\":[]},\"response\":null}";
	const char *l2 =
	    "{\"request\":null,\"response\":{\"call\":\"x\",\"value\":null,\"err\":\"\"}}";
	const char *l3 =
	    " {\"response\":null, \"request\":{\"args\":[{\"a\":[1,2,{\"b\":\"}\"}]}], \"call\":42,"
	    "\"function\":\"After\\u0052esume\",\"extra\":true}}\r";
	const char *l4 = "{\"request\":{\"call\":\"a\"}}";
	const char *l5 = "{\"request\":{\"call\":\"a\",\"function\":\"X\"}} trailing";
	const char *l6 = "{\"request\":{\"call\":\"a\",\"function\":\"X\"";

	is_int(guest_rpc_parse(l1, strlen(l1), &req), 1, "request line parses");
	is_str(req.call, "\"0f8e9a52-3c1f\"", "call id kept as raw JSON");
	is_str(req.function, "BeforeSuspend", "function name");
	is_int(guest_rpc_parse(l2, strlen(l2), &req), 0, "a response is not a request");
	is_int(guest_rpc_parse("  \t", 3, &req), 0, "whitespace-only line is ignored");
	is_int(guest_rpc_parse(l3, strlen(l3), &req), 1,
	       "nested args, numeric id, escapes, any key order");
	is_str(req.call, "42", "numeric call id echoed as is");
	is_str(req.function, "AfterResume", "\\u escape decoded in function name");
	is_int(guest_rpc_parse(l4, strlen(l4), &req), -EINVAL, "request without function refused");
	is_int(guest_rpc_parse(l5, strlen(l5), &req), -EINVAL, "trailing garbage refused");
	is_int(guest_rpc_parse(l6, strlen(l6), &req), -EINVAL, "truncated object refused");
	is_int(guest_rpc_parse("[1,2]", 5, &req), -EINVAL, "non-object refused");

	is_int(guest_rpc_format_response("\"id-1\"", "", buf, sizeof(buf)) > 0, 1,
	       "format success");
	is_str(buf,
	       "{\"request\":null,\"response\":{\"call\":\"id-1\",\"value\":null,\"err\":\"\"}}\n",
	       "success response is the original's wire format");
	guest_rpc_format_response("7", "bad \"x\"\n", buf, sizeof(buf));
	is_str(buf,
	       "{\"request\":null,\"response\":{\"call\":7,\"value\":null,\"err\":\"bad "
	       "\\\"x\\\"\\n\"}}\n",
	       "error string is JSON-escaped");
	is_int(guest_rpc_format_response("1", "e", buf, 20), -ENOSPC, "small buffer reported");
	/* what we write must read back as a response, not as a request */
	guest_rpc_format_response("\"z\"", "oops", buf, sizeof(buf));
	is_int(guest_rpc_parse(buf, strlen(buf), &req), 0, "own response parses as a non-request");
}

static void test_command(void)
{
	char err[256];

	is_int(guest_run_command("sh", "", err, sizeof(err)), 0, "empty command is a no-op");
	is_int(guest_run_command("sh", "true", err, sizeof(err)), 0, "true succeeds");
	is_str(err, "", "no error text on success");
	is_int(guest_run_command("sh", "exit 3", err, sizeof(err)), -1, "exit 3 fails");
	is_str(err, "exit status 3", "Go's wording for an exit status");
	guest_run_command("sh", "kill -KILL $$", err, sizeof(err));
	is_str(err, "signal: killed", "Go's wording for a signal");
	is_int(guest_run_command("/nonexistent/shell", "true", err, sizeof(err)), -1,
	       "missing shell fails");
	is_str(err, "cannot run '/nonexistent/shell': No such file or directory",
	       "missing shell message");
	is_int(guest_run_command("sh", "read x; test -z \"$x\"", err, sizeof(err)), 0,
	       "command's stdin is /dev/null");
}

/* Reads one line from fd within 10 s. */
static int read_line(int fd, char *buf, size_t len)
{
	size_t o = 0;

	while (o + 1 < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (poll(&p, 1, 10000) <= 0 || read(fd, buf + o, 1) != 1)
			return -1;
		if (buf[o] == '\n') {
			buf[o] = '\0';
			return 0;
		}
		o++;
	}
	return -1;
}

/* PID's scheduling class once it is WANT, or what it still is after 2 s. */
static int policy_of(pid_t pid, int want)
{
	int p = -1;

	for (int i = 0; i < 200; i++) {
		p = sched_getscheduler(pid);
		if (p == want)
			break;
		usleep(10000);
	}
	return p;
}

static void test_serve(void)
{
	char dir[] = "/tmp/test-guest.XXXXXX", before[600], after[600], marker[256], line[1024];
	char policy[256], buf[16] = "";
	struct guest_agent_opts o = {.shell_cmd = "sh"};
	FILE *f;
	int sv[2], status = 0;
	pid_t pid;
	char *big;

	if (!mkdtemp(dir) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		ok(0, "test setup");
		return;
	}
	snprintf(marker, sizeof(marker), "%s/marker", dir);
	/* the answer must only come after the command finished: it sleeps first */
	snprintf(before, sizeof(before), "sleep 0.3; echo done > %s", marker);
	o.before_suspend_cmd = before;
	/* field 41 of /proc/PID/stat: the scheduling class the command runs in */
	snprintf(policy, sizeof(policy), "%s/policy", dir);
	snprintf(after, sizeof(after), "cut -d' ' -f41 /proc/$$/stat > %s; exit 5", policy);
	o.after_resume_cmd = after;
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		_exit(guest_agent_serve(&o, sv[1]) == 0 ? 0 : 1);
	}
	close(sv[1]);

	const char *req = "{\"request\":{\"call\":\"c1\",\"function\":\"BeforeSuspend\",\"args\":[]"
	                  "},\"response\":null}\n";
	ok(write(sv[0], req, strlen(req)) == (ssize_t)strlen(req), "request sent");
	is_int(read_line(sv[0], line, sizeof(line)), 0, "response received");
	is_str(line,
	       "{\"request\":null,\"response\":{\"call\":\"c1\",\"value\":null,\"err\":\"\"}}",
	       "BeforeSuspend answered with success");
	ok(access(marker, F_OK) == 0, "before-suspend command had finished when the answer came");
	is_int(policy_of(pid, SCHED_IDLE), SCHED_IDLE,
	       "after its BeforeSuspend answer the agent yields (SCHED_IDLE)");

	/* two requests in one write, with blank lines and a response mixed in */
	const char *two =
	    "\n{\"request\":null,\"response\":{\"call\":\"h\",\"value\":null,\"err\":\"\"}}\n"
	    "{\"request\":{\"call\":2,\"function\":\"AfterResume\",\"args\":[]},\"response\":null}"
	    "\n\n"
	    "{\"request\":{\"call\":3,\"function\":\"Nope\",\"args\":[]},\"response\":null}\n";
	ok(write(sv[0], two, strlen(two)) == (ssize_t)strlen(two), "pipelined requests sent");
	is_int(read_line(sv[0], line, sizeof(line)), 0, "first response");
	is_str(
	    line,
	    "{\"request\":null,\"response\":{\"call\":2,\"value\":null,\"err\":\"exit status 5\"}}",
	    "AfterResume failure reported in err");
	f = fopen(policy, "r");
	ok(f && fgets(buf, sizeof(buf), f) && atoi(buf) == SCHED_OTHER,
	   "the after-resume command ran in the normal class, not the agent's");
	if (f)
		fclose(f);
	is_int(policy_of(pid, SCHED_OTHER), SCHED_OTHER,
	       "after its AfterResume answer the agent is back in the normal class");
	is_int(read_line(sv[0], line, sizeof(line)), 0, "second response");
	is_str(line,
	       "{\"request\":null,\"response\":{\"call\":3,\"value\":null,\"err\":\"unknown "
	       "function 'Nope'\"}}",
	       "unknown function reported in err");

	/* an over-long line is dropped, the connection keeps working */
	big = malloc(GUEST_MAX_LINE + 100);
	memset(big, 'x', GUEST_MAX_LINE + 99);
	big[GUEST_MAX_LINE + 99] = '\n';
	ok(write(sv[0], big, GUEST_MAX_LINE + 100) == GUEST_MAX_LINE + 100, "over-long line sent");
	free(big);
	const char *r4 = "{\"request\":{\"call\":\"c4\",\"function\":\"AfterResume\",\"args\":[]},"
	                 "\"response\":null}\n";
	ok(write(sv[0], r4, strlen(r4)) == (ssize_t)strlen(r4), "request after the long line sent");
	is_int(read_line(sv[0], line, sizeof(line)), 0, "answered after an over-long line");
	ok(strstr(line, "\"call\":\"c4\"") != NULL, "the answer is for the request after it");

	close(sv[0]);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "serve returns 0 on EOF");
	unlink(marker);
	unlink(policy);
	rmdir(dir);
}

static void test_serial_find(void)
{
	char dir[] = "/tmp/test-guest-sysfs.XXXXXX", p[512], path[256];
	FILE *f;

	if (!mkdtemp(dir)) {
		ok(0, "sysfs setup");
		return;
	}
	snprintf(p, sizeof(p), "%s/vport0p1", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/vport0p1/name", dir);
	f = fopen(p, "w");
	fputs("org.drafter.liveness\n", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/vport0p2", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/vport0p2/name", dir);
	f = fopen(p, "w");
	fputs("org.drafter.agent\n", f);
	fclose(f);

	is_int(guest_serial_find(dir, "org.drafter.agent", path, sizeof(path)), 0,
	       "agent port found");
	is_str(path, "/dev/vport0p2", "device node of the named port");
	is_int(guest_serial_find(dir, "org.other", path, sizeof(path)), -ENOENT,
	       "unknown name: ENOENT");
	is_int(guest_transport_detect(GUEST_TRANSPORT_AUTO, dir, "org.drafter.liveness", path,
	                              sizeof(path)),
	       GUEST_TRANSPORT_SERIAL, "auto picks the port when present");
	is_str(path, "/dev/vport0p1", "liveness port node");
	is_int(guest_transport_detect(GUEST_TRANSPORT_AUTO, dir, "org.other", path, sizeof(path)),
	       GUEST_TRANSPORT_VSOCK, "auto falls back to vsock");
	is_int(guest_transport_detect(GUEST_TRANSPORT_VSOCK, dir, "org.drafter.agent", path,
	                              sizeof(path)),
	       GUEST_TRANSPORT_VSOCK, "explicit vsock wins over a port");
	is_int(guest_serial_find("/nonexistent", "x", path, sizeof(path)), -ENOENT,
	       "no sysfs dir: ENOENT");

	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	if (system(p) != 0)
		diag("cannot remove %s", dir);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_duration();
	test_flags();
	test_rpc();
	test_command();
	test_serve();
	test_serial_find();
	return done_testing();
}
