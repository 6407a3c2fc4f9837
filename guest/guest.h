/*
 * Shared declarations of the guest-side programs (drafter-agent,
 * drafter-liveness): Go-style flag parsing, the channel to the host
 * (vsock or a virtio-serial port), the panrpc JSON-lines codec and the
 * agent's request loop. These programs are linked statically and run in
 * the guest, so they use only libc.
 */
#ifndef DRAFTER_GUEST_H
#define DRAFTER_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_VSOCK_CID_HOST     2
#define GUEST_AGENT_PORT_NAME    "org.drafter.agent"
#define GUEST_LIVENESS_PORT_NAME "org.drafter.liveness"
/* A request line longer than this ends the connection: the host never sends one. */
#define GUEST_MAX_LINE (64 * 1024)

/* ---- Go-style flags ("-name value", "--name=value", ...) ---- */

enum guest_flag_type {
	GUEST_FLAG_STRING,
	GUEST_FLAG_U32,
	GUEST_FLAG_DURATION, /* Go time.Duration syntax, stored in ns */
	GUEST_FLAG_BOOL,     /* "-name" alone means true, or "-name=false" */
};

struct guest_flag {
	const char *name;
	enum guest_flag_type type;
	void *value; /* const char ** / uint32_t * / uint64_t * / bool * */
	const char *usage;
};

/*
 * Parses argv against flags. Returns 0, 1 when help was asked for (usage
 * already printed to stdout), or -EINVAL with a message in err.
 */
int guest_flags_parse(const struct guest_flag *flags, size_t n, int argc, char **argv, char *err,
                      size_t errlen);
void guest_flags_usage(const char *prog, const struct guest_flag *flags, size_t n, void *out);

/* Go's time.ParseDuration: "1m", "1m0s", "500ms", "1.5h", "0". */
int guest_parse_duration(const char *s, uint64_t *ns);

/* ---- transport ---- */

enum guest_transport {
	GUEST_TRANSPORT_AUTO,
	GUEST_TRANSPORT_VSOCK,
	GUEST_TRANSPORT_SERIAL,
};

int guest_transport_parse(const char *s, enum guest_transport *out);

/*
 * Finds the virtio-serial port called name under sysfs_dir (normally
 * "/sys/class/virtio-ports") and writes "/dev/vportNpM" into path.
 * Returns 0, -ENOENT when there is no such port.
 */
int guest_serial_find(const char *sysfs_dir, const char *name, char *path, size_t len);

/* Auto-detection: the port when it exists, else vsock. */
enum guest_transport guest_transport_detect(enum guest_transport want, const char *sysfs_dir,
                                            const char *name, char *path, size_t len);

/* Connects to the host's vsock port; gives up after timeout_ns. Returns an fd or -errno. */
int guest_vsock_dial(uint32_t cid, uint32_t port, uint64_t timeout_ns);

/*
 * Blocks until a host client is connected to the virtio-serial port fd,
 * by writing one '\n' in blocking mode (virtio-console holds writes while
 * the host side is closed; the host skips empty lines). Returns 0 or -errno
 * (-EINTR when a signal, e.g. a timeout alarm, interrupted the wait).
 */
int guest_serial_wait_host(int fd);

/* Reads /proc/sys/kernel/random/boot_id (trimmed) into buf. */
int guest_boot_id(char *buf, size_t len);

/* ---- panrpc JSON lines ---- */

struct guest_rpc_request {
	char call[256];     /* the call id as raw JSON text, echoed verbatim */
	char function[128]; /* decoded function name */
};

/*
 * Parses one line. Returns 1 for a request (req filled), 0 for a message
 * that is not a request (a response, or whitespace only), -EINVAL for
 * malformed JSON, -E2BIG when a field exceeds its limit.
 */
int guest_rpc_parse(const char *line, size_t len, struct guest_rpc_request *req);

/* Formats a response line (with '\n'); err "" for success. Returns length or -ENOSPC. */
int guest_rpc_format_response(const char *call, const char *err, char *buf, size_t len);

/* ---- agent ---- */

struct guest_agent_opts {
	const char *shell_cmd;
	const char *before_suspend_cmd;
	const char *after_resume_cmd;
};

/*
 * Runs "<shell> -c <cmd>" with stdin from /dev/null and waits for it. On
 * failure writes Go's wording ("exit status 3", "signal: killed") into err.
 * Returns 0 when the command succeeded (or cmd is empty), -1 otherwise.
 */
int guest_run_command(const char *shell, const char *cmd, char *err, size_t errlen);

/*
 * Answers one request line; writes the response line into out. Returns its
 * length, 0 if none. *yield: 1 after BeforeSuspend, 0 after AfterResume,
 * -1 otherwise: whether the agent yields the CPU (SCHED_IDLE) once the
 * answer is out.
 */
int guest_agent_handle_line(const struct guest_agent_opts *o, const char *line, size_t len,
                            char *out, size_t outlen, int *yield);

/*
 * Serves requests on fd until the peer goes away: returns 0 on EOF, -errno
 * on a read or write error, -E2BIG when a line was too long.
 */
int guest_agent_serve(const struct guest_agent_opts *o, int fd);

#endif
