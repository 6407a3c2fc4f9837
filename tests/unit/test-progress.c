/*
 * Unit tests of the progress line: its text for known values, and that it
 * draws only when enabled and clears what it drew.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/progress.h"
#include "tests/tap.h"

int main(void)
{
	struct progress p;
	char line[256], got[1024];
	int fds[2];
	ssize_t n;

	progress_init(&p, "packing", 4ULL << 30);
	p.start_ns = 1000000000ULL;
	p.done = 1ULL << 30;
	/* 1 GiB in 2 s: 512 MiB/s, 3 GiB left: 6 s. */
	progress_format(&p, 3000000000ULL, line, sizeof line);
	is_str(line, "packing: 1.0 GiB / 4.0 GiB (25%), 512.0 MiB/s, ETA 0:06", "line with total");

	p.total = 0;
	progress_format(&p, 3000000000ULL, line, sizeof line);
	is_str(line, "packing: 1.0 GiB, 512.0 MiB/s", "line without total");

	p.total = 1ULL << 30;
	progress_format(&p, 3000000000ULL, line, sizeof line);
	is_str(line, "packing: 1.0 GiB / 1.0 GiB (100%), 512.0 MiB/s, ETA 0:00", "finished line");

	p.total = 4ULL << 40;
	progress_format(&p, 3000000000ULL, line, sizeof line);
	ok(strstr(line, "ETA 2:16:30") != NULL, "hours in the ETA (%s)", line);

	p.done = 0;
	progress_format(&p, p.start_ns, line, sizeof line);
	ok(strstr(line, "ETA -:--") != NULL, "unknown ETA before any progress (%s)", line);

	/* Drawing: to a pipe we choose; nothing at all when disabled. */
	if (pipe(fds) < 0)
		return 1;
	progress_init(&p, "x", 100);
	progress_set_output(&p, false, fds[1]);
	progress_add(&p, 10);
	progress_end(&p);
	progress_set_output(&p, true, fds[1]);
	progress_add(&p, 10);
	progress_add(&p, 10); /* within the redraw interval: not drawn again */
	progress_end(&p);
	close(fds[1]);
	n = read(fds[0], got, sizeof got - 1);
	got[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	ok(n > 0 && got[0] == '\r' && strstr(got, "x: 20 B / 100 B (20%)") != NULL,
	   "enabled display draws a line in place");
	ok(strstr(got, "30 B") == NULL, "redraws are rate-limited");
	ok(n >= 4 && strcmp(got + n - 4, "\r\033[K") == 0, "the line is cleared at the end");
	ok(strstr(got, "10 B /") == NULL, "disabled display draws nothing");
	return done_testing();
}
