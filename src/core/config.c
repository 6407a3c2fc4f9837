/* placeholder, replaced by the configuration module */
#include "config.h"
#include <string.h>
#include "core/config.h"
static const char *const names[] = { "nat", "forward", "snapshot", "package", "run", "registry", "peer", "terminate" };
const char *tool_name(enum drafter_tool t) { return names[t]; }
void config_init(struct config *cfg, enum drafter_tool tool) { memset(cfg, 0, sizeof *cfg); cfg->tool = tool; }
void config_free(struct config *cfg) { (void)cfg; }
int config_setup(struct config *cfg, enum drafter_tool tool, int argc, char **argv) { config_init(cfg, tool); return 0; }
