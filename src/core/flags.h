/* Go-style flag parsing for the legacy tool names (placeholder). */
#ifndef DRAFTER_FLAGS_H
#define DRAFTER_FLAGS_H
#endif
