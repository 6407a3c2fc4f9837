/*
 * Holding a guest's inbound packets while it is paused (local suspend and
 * resume, same-host migration): during the window, packets the namespace
 * would forward to the guest's TAP wait in an NFQUEUE instead of being lost
 * or answered with errors, and are released in order afterwards, so that TCP
 * connections only see a delay. The queue is bounded (overflow drops, it
 * never blocks the sender) and the window has a maximum length after which
 * everything is released on its own.
 */
#ifndef DRAFTER_NET_HOLD_H
#define DRAFTER_NET_HOLD_H

#include <stdbool.h>
#include <stdint.h>

#define NET_HOLD_QUEUE_NUM 17490          /* NFQUEUE number used in the namespace */
#define NET_HOLD_QUEUE_MAX 4096           /* packets held at most by default */
#define NET_HOLD_MAX_WINDOW_NS (10ull * 1000000000ull)
/* Larger requests are clamped to these. */
#define NET_HOLD_QUEUE_LIMIT 65536
#define NET_HOLD_WINDOW_LIMIT_NS (600ull * 1000000000ull)

struct net_hold_opts {
	const char *interface;   /* the guest's TAP; NULL: "tap0" */
	uint16_t queue_num;      /* 0: NET_HOLD_QUEUE_NUM */
	uint32_t queue_max;      /* 0: NET_HOLD_QUEUE_MAX; at most NET_HOLD_QUEUE_LIMIT */
	uint64_t max_window_ns;  /* 0: NET_HOLD_MAX_WINDOW_NS; at most NET_HOLD_WINDOW_LIMIT_NS */
};

struct net_hold_stats {
	uint64_t held;       /* packets that were held and then released */
	bool expired;        /* the window reached its maximum length */
	bool compat;         /* the xtables NFQUEUE target was used */
	uint64_t window_ns;  /* how long the window was open */
};

struct net_hold;

/* Start holding the inbound traffic of the guest in namespace NETNS. */
int net_hold_start(const char *netns, struct net_hold **out);
int net_hold_start_opts(const char *netns, const struct net_hold_opts *opts, struct net_hold **out);
/* Release everything held, remove the rules and free H. STATS may be NULL. */
int net_hold_release(struct net_hold *h, struct net_hold_stats *stats);

#endif
