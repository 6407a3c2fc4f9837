/*
 * A one-line progress display (bytes done, rate, ETA) for long transfers:
 * packaging, copying devices, migrations. It draws on stderr only when
 * stderr is a terminal and stays silent otherwise, so logs and pipes never
 * see carriage returns. Single-threaded: one owner calls it.
 */
#ifndef DRAFTER_PROGRESS_H
#define DRAFTER_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress {
	bool enabled;      /* draw at all */
	bool drawn;        /* a line is on screen and needs clearing */
	int fd;            /* where to draw (stderr) */
	char label[64];
	uint64_t total;    /* 0: unknown, no percentage or ETA */
	uint64_t done;
	uint64_t start_ns;
	uint64_t last_draw_ns;
};

/*
 * Start a display for TOTAL bytes (0 if unknown). It is enabled when stderr
 * is a terminal and the DRAFTER_PROGRESS environment variable is not "0".
 */
void progress_init(struct progress *p, const char *label, uint64_t total);
/* Force the display on or off, drawing to FD (tests, --quiet). */
void progress_set_output(struct progress *p, bool enabled, int fd);
void progress_set_total(struct progress *p, uint64_t total);
/* Start a new phase on the same line: new label and total, counters reset. */
void progress_restart(struct progress *p, const char *label, uint64_t total);
void progress_add(struct progress *p, uint64_t bytes);
void progress_set(struct progress *p, uint64_t done);
/* Clear the line; the caller logs a summary if it wants one. */
void progress_end(struct progress *p);

/*
 * The text of the line at time NOW_NS (without carriage return), e.g.
 * "packing: 1.2 GiB / 3.0 GiB (40%), 512.0 MiB/s, ETA 0:04".
 */
void progress_format(const struct progress *p, uint64_t now_ns, char *buf, size_t len);

#endif
