/*
 * Holding a guest's inbound packets while it is paused (local suspend and
 * resume, migration): during a window, packets for the guest's TAP, whether
 * the namespace forwards them or sends them itself, wait in an NFQUEUE
 * instead of being lost or answered with errors, and are released afterwards,
 * each flow's packets in order and the flow whose latest packet came last
 * first, so that TCP connections only see a delay and the clients still
 * waiting are served before those that gave up. The queue is bounded
 * (overflow drops, it never blocks the sender) and a window has a maximum
 * length after which everything is released on its own.
 *
 * The costly part (thread, queue socket, tables and chains) is done ahead of
 * time by net_hold_prepare(); net_hold_engage() then only adds the rules
 * that divert packets (the first time) and switches the queue to holding,
 * which takes well under a millisecond. A hold is driven from one thread.
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
	bool expired;        /* a window reached its maximum length */
	bool compat;         /* the xtables NFQUEUE target is used */
	uint64_t window_ns;  /* how long the window(s) were open */
	uint64_t engage_ns;  /* how long the worker took for the last engage */
};

struct net_hold;

/*
 * Get ready to hold the inbound traffic of the guest in namespace NETNS
 * without diverting anything yet. Removes the leftovers of a holder that
 * died. -ENOENT: no such namespace; -EBUSY: another holder has it.
 */
int net_hold_prepare(const char *netns, const struct net_hold_opts *opts, struct net_hold **out);
/* Hold from now on (a window starts). Nothing happens when already engaged. */
int net_hold_engage(struct net_hold *h);
/*
 * The same without waiting for the worker (0.1-0.5 ms, when it adds the
 * rules the first time): the hold's next call waits for it, and a failure
 * comes back from net_hold_release().
 */
void net_hold_engage_nowait(struct net_hold *h);
/*
 * End the window: stop holding, release what was held, stay prepared for
 * another net_hold_engage(). STATS (may be NULL) describe that window only.
 */
int net_hold_disengage(struct net_hold *h, struct net_hold_stats *stats);
/*
 * The guest's MAC address (NULL: unknown, the default). When known,
 * disengaging puts it in the namespace's neighbour table for the held
 * packets' destinations on the TAP's subnets (state STALE), so they leave
 * at once instead of waiting for the guest to answer address resolution.
 */
void net_hold_set_guest_mac(struct net_hold *h, const uint8_t mac[6]);
/*
 * Release everything held, remove the rules and free H. STATS (may be NULL)
 * add up every window of H.
 */
int net_hold_release(struct net_hold *h, struct net_hold_stats *stats);

/* net_hold_prepare() and net_hold_engage() at once. */
int net_hold_start(const char *netns, struct net_hold **out);
int net_hold_start_opts(const char *netns, const struct net_hold_opts *opts, struct net_hold **out);

#endif
