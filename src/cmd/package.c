/*
 * drafter package (drafter-packager): archive a VM's devices into one
 * .tar.zst package, or extract them from one. The devices, the package path
 * and the compression settings come from the plan config_setup() builds;
 * the archive work is in core/pkg.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/pkg/pkg.h"
#include "core/progress.h"
#include "core/util.h"

int cmd_package(int argc, char **argv)
{
	struct config cfg;
	_cleanup_free_ struct pkg_device *devs = NULL;
	struct pkg_options opt = { 0 };
	struct pkg_stats st = { 0 };
	struct pkg_error err = { { 0 } };
	struct progress prog;
	char logical[32], data[32], archive[32];
	uint64_t start;
	int r;

	r = config_setup(&cfg, TOOL_PACKAGE, argc, argv);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 1;
	}
	if (cfg.n_devices == 0) {
		log_error("no devices to %s: give --devices or a devices list in the configuration",
			  cfg.package.extract ? "extract" : "package");
		config_free(&cfg);
		return 1;
	}
	devs = xcalloc(cfg.n_devices, sizeof *devs);
	for (size_t i = 0; i < cfg.n_devices; i++) {
		devs[i].name = cfg.devices[i].name;
		devs[i].path = cfg.devices[i].path;
	}
	opt.level = cfg.package.level;
	opt.threads = cfg.package.threads;
	progress_init(&prog, cfg.package.extract ? "extracting" : "packaging", 0);
	opt.progress = &prog;

	start = now_ns();
	if (cfg.package.extract)
		r = pkg_extract(cfg.package.path, devs, cfg.n_devices, &opt, &st, &err);
	else
		r = pkg_create(cfg.package.path, devs, cfg.n_devices, &opt, &st, &err);
	if (r < 0) {
		log_error("%s", err.msg);
		config_free(&cfg);
		return 1;
	}
	format_bytes(st.logical, logical, sizeof logical);
	format_bytes(st.data, data, sizeof data);
	format_bytes(st.archive, archive, sizeof archive);
	log_info("%s %u device%s (%s, %s of data) %s '%s' (%s) in %.2fs",
		 cfg.package.extract ? "extracted" : "packaged", st.devices,
		 st.devices == 1 ? "" : "s", logical, data, cfg.package.extract ? "from" : "into",
		 cfg.package.path, archive, (double)(now_ns() - start) / 1e9);
	config_free(&cfg);
	return 0;
}
