/*
 * A small QMP client: one JSON command per line, answers matched in order,
 * asynchronous events skipped, optional descriptor passing (getfd).
 */
#ifndef DRAFTER_VM_QMP_H
#define DRAFTER_VM_QMP_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define QMP_MAX_LINE (1024 * 1024)

struct qmp {
	int fd;
	int pidfd;     /* the QEMU process: a wait ends when it exits */
	char *buf;
	size_t len;
	char mig_status[32]; /* last MIGRATION event's status */
	/*
	 * QEMU's times (realtime, ns) of the last STOP event and of the event
	 * before it: QEMU sends STOP once the guest stopped and its devices
	 * quiesced, so the guest stopped between the two.
	 */
	uint64_t stop_ns, before_stop_ns;
	uint64_t last_event_ns;
	bool resumed; /* a RESUME event came after the last STOP */
};

/* Take FD (connected to QEMU's monitor), read the greeting, negotiate capabilities. */
int qmp_open(struct qmp *q, int fd, int pidfd, uint64_t deadline_ns);
void qmp_close(struct qmp *q);

/*
 * Run CMD with ARGS (a JSON object or NULL; not consumed), passing SEND_FD
 * along (-1: none). *RET gets the "return" value (caller puts it), may be
 * NULL. An "error" answer gives -EIO with its description in ERR.
 */
int qmp_call(struct qmp *q, const char *cmd, json_object *args, int send_fd, json_object **ret, char *err,
	     size_t errlen, uint64_t deadline_ns);

/* Same, with ARGS given as JSON text. */
int qmp_callf(struct qmp *q, const char *cmd, const char *args_json, char *err, size_t errlen, uint64_t deadline_ns);

/*
 * Wait for the MIGRATION event that ends a migration (needs the "events"
 * capability): 0 when completed, -EIO when failed (reason in ERR).
 * Clear q->mig_status before starting a migration.
 */
int qmp_wait_migration(struct qmp *q, char *err, size_t errlen, uint64_t deadline_ns);

#endif
