/*
 * Progress line on a terminal: redrawn in place at most five times a second,
 * cleared at the end. See progress.h.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/progress.h"
#include "core/util.h"

#define PROGRESS_INTERVAL_NS (200ULL * 1000 * 1000)

void progress_init(struct progress *p, const char *label, uint64_t total)
{
	const char *env = getenv("DRAFTER_PROGRESS");

	memset(p, 0, sizeof *p);
	snprintf(p->label, sizeof p->label, "%s", label ? label : "");
	p->total = total;
	p->fd = STDERR_FILENO;
	p->enabled = isatty(STDERR_FILENO) && !(env && str_eq(env, "0"));
	p->start_ns = now_ns();
}

void progress_set_output(struct progress *p, bool enabled, int fd)
{
	p->enabled = enabled;
	p->fd = fd;
}

void progress_set_total(struct progress *p, uint64_t total)
{
	p->total = total;
}

void progress_restart(struct progress *p, const char *label, uint64_t total)
{
	snprintf(p->label, sizeof p->label, "%s", label ? label : "");
	p->total = total;
	p->done = 0;
	p->start_ns = now_ns();
	/* Draw the new phase at its next update, not after the interval. */
	p->drawn = false;
}

static void format_eta(uint64_t secs, char *buf, size_t len)
{
	if (secs >= 3600)
		snprintf(buf, len, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, secs / 3600,
			 secs / 60 % 60, secs % 60);
	else
		snprintf(buf, len, "%" PRIu64 ":%02" PRIu64, secs / 60, secs % 60);
}

void progress_format(const struct progress *p, uint64_t now, char *buf, size_t len)
{
	char done[32], total[32], rate[32], eta[32];
	uint64_t elapsed = now > p->start_ns ? now - p->start_ns : 0;
	double bps = elapsed ? (double)p->done * 1e9 / (double)elapsed : 0;

	format_bytes(p->done, done, sizeof done);
	format_bytes((uint64_t)bps, rate, sizeof rate);
	if (p->total == 0) {
		snprintf(buf, len, "%s: %s, %s/s", p->label, done, rate);
		return;
	}
	format_bytes(p->total, total, sizeof total);
	if (bps >= 1 && p->done < p->total)
		format_eta((uint64_t)((double)(p->total - p->done) / bps), eta, sizeof eta);
	else if (p->done >= p->total)
		snprintf(eta, sizeof eta, "0:00");
	else
		snprintf(eta, sizeof eta, "-:--");
	snprintf(buf, len, "%s: %s / %s (%u%%), %s/s, ETA %s", p->label, done, total,
		 (unsigned)(p->done >= p->total ? 100 : p->done * 100 / p->total), rate, eta);
}

static void draw(struct progress *p, uint64_t now)
{
	char line[256];
	int n;

	progress_format(p, now, line, sizeof line);
	/* \r to the line start, the text, then erase what a longer line left. */
	n = dprintf(p->fd, "\r%s\033[K", line);
	if (n > 0)
		p->drawn = true;
	p->last_draw_ns = now;
}

void progress_set(struct progress *p, uint64_t done)
{
	uint64_t now;

	p->done = done;
	if (!p->enabled)
		return;
	now = now_ns();
	if (p->drawn && now - p->last_draw_ns < PROGRESS_INTERVAL_NS)
		return;
	draw(p, now);
}

void progress_add(struct progress *p, uint64_t bytes)
{
	progress_set(p, p->done + bytes);
}

void progress_end(struct progress *p)
{
	if (p->enabled && p->drawn)
		(void)dprintf(p->fd, "\r\033[K");
	p->drawn = false;
}
