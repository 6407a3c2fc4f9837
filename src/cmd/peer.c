/*
 * drafter peer: get the devices from local files (--raddr '') or from a
 * registry or another peer (--raddr), expose them through the storage engine,
 * run the VM they hold (when there are state, memory and config devices), and
 * with --laddr wait for a destination and migrate the running VM away. The VM
 * plugs into the engine through struct xfer_hooks (src/core/vm/migrate-vm.h).
 * Without a VM (devices only) other processes use the exposed devices.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/net/addr.h"
#include "core/net/hold.h"
#include "core/progress.h"
#include "core/store/store.h"
#include "core/util.h"
#include "core/vm/migrate-vm.h"
#include "core/xfer/migrate.h"
#include "core/xfer/server.h"
#include "core/xfer/storedev.h"
#include "core/xfer/transport.h"

/* The nice value of a VM migration's session after the handover (session_to_background). */
#define PEER_BULK_NICE 10

struct peer {
	struct config *cfg;
	struct xfer_storedev *devs[XFER_MAX_DEVICES];
	size_t n;
	struct store_expose *expose;
	bool shared_caps; /* some device keeps a copy-on-write overlay over a shared base */
	bool handed_over;
	bool failed_after_handover;
	int sigfd;
	/* the signal watcher during an incoming migration */
	struct xfer_conn *in_conn;
	int stop_efd;
	bool interrupted;
	/* the VM, when the devices hold one */
	bool vm_mode;
	struct vmmig *vm;
	int vm_start_r;
	uint64_t vm_resumed_ns;  /* destination: when the VM ran again (0: it did not); set before vm_start_done */
	/* destination: the session runs in its own thread; this one starts the VM */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool devices_ready, got_authority, dest_done, vm_start_done; /* under lock */
	bool ready_sent; /* destination, the main thread's: READY went to the source */
	const struct xfer_dest_opts *dest_o;
	const struct xfer_hooks *dest_h;
	struct xfer_stats dest_st;
	bool dest_auth;
	int dest_r;
	char dest_err[512];
	char vm_err[512];
	uint64_t paused_ns;      /* source: realtime when the VM was paused for the handover */
	struct net_hold *hold;   /* the guest's inbound packets, held while no VM runs here */
	pthread_t hold_thread;   /* destination: sets the hold up while the session starts */
	bool hold_pending;       /* hold_thread to join (under hold_lock) */
	pthread_mutex_t hold_lock;
	uint64_t handover_ns;    /* source: realtime when authority was sent */
	uint64_t authority_ns;   /* destination: realtime when authority arrived */
	uint64_t dest_blocks_at_auth; /* destination: blocks received before AUTHORITY */
	uint64_t src_paused_ns;  /* destination: the same, as the source sent it with AUTHORITY */
};

/* Set one of the flags the threads of a destination wait for (under p->lock). */
static void peer_signal(struct peer *p, bool *flag)
{
	pthread_mutex_lock(&p->lock);
	*flag = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Exposed path of device NAME (the VM layer asks by name). */
/* The index of device NAME, or -1. */
static ssize_t peer_device(const struct peer *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (str_eq(store_device_name(xfer_storedev_store(p->devs[i])), name))
			return (ssize_t)i;
	return -1;
}

/* The store device named NAME, or NULL. */
static struct store_device *peer_store(const struct peer *p, const char *name)
{
	ssize_t i = peer_device(p, name);

	return i < 0 ? NULL : xfer_storedev_store(p->devs[i]);
}

static const char *peer_path(void *ctx, const char *name)
{
	struct peer *p = ctx;
	ssize_t i = peer_device(p, name);

	return i < 0 ? NULL : store_expose_path(p->expose, (size_t)i);
}

/*
 * Hold the packets for the guest in our namespace while it cannot take them
 * (destination: from before the connection until its VM runs; source: while
 * its VM is paused for the handover), so that a client's SYN waits instead
 * of being lost and retried a second later. ENGAGE: hold from now on, else
 * only prepare (the costly part) so that a later net_hold_engage() is cheap.
 * Best effort: without NFQUEUE support packets are just lost.
 */
static void peer_hold(struct peer *p, bool engage)
{
	struct net_hold_opts o = { .max_window_ns = 120ULL * 1000000000ULL };
	const char *tap = p->cfg->vm.interface;
	int r;

	if (p->hold || !p->vm_mode)
		return;
	if (!str_empty(tap))
		o.interface = tap;
	r = engage ? net_hold_start_opts(p->cfg->vm.netns, &o, &p->hold)
		   : net_hold_prepare(p->cfg->vm.netns, &o, &p->hold);
	if (r < 0) {
		log_warn("cannot hold the guest's packets in '%s' during the migration: %s", p->cfg->vm.netns,
			 strerror(-r));
		p->hold = NULL;
	}
}

static void *hold_main(void *arg)
{
	thread_name("peer-hold");
	peer_hold(arg, true);
	return NULL;
}

/* Destination: set the hold up (10-20 ms of nftables work) while connecting. */
static void peer_hold_async(struct peer *p)
{
	if (!p->vm_mode)
		return;
	if (pthread_create(&p->hold_thread, NULL, hold_main, p) != 0)
		peer_hold(p, true);
	else
		p->hold_pending = true;
}

/* Wait for peer_hold_async: before the devices are exposed, so before any VM runs. */
static void peer_hold_wait(struct peer *p)
{
	pthread_mutex_lock(&p->hold_lock);
	if (p->hold_pending) {
		pthread_join(p->hold_thread, NULL);
		p->hold_pending = false;
	}
	pthread_mutex_unlock(&p->hold_lock);
}

static void log_released(const struct net_hold_stats *st)
{
	log_debug("released %" PRIu64 " held packets after %.0fms%s", st->held, (double)st->window_ns / 1e6,
		  st->expired ? " (the window expired)" : "");
}

static void peer_release(struct peer *p)
{
	struct net_hold_stats st = { 0 };
	int r;

	if (!p->hold)
		return;
	r = net_hold_release(p->hold, &st);
	p->hold = NULL;
	if (r < 0)
		log_warn("holding the guest's packets in '%s' failed: %s", p->cfg->vm.netns,
			 strerror(-r));
	log_released(&st);
}

/*
 * The VM runs here (or loads, and runs next): what was held goes to it, and
 * the hold stays prepared (nothing is diverted) for a migration away, or
 * until the peer exits.
 * Taking it down now would cost CPU that the resumed VM needs. The guest's
 * MAC goes in the neighbour table, so the packets need no address
 * resolution first.
 */
static void peer_disengage(struct peer *p)
{
	struct net_hold_stats st = { 0 };
	uint8_t mac[6];

	if (!p->hold)
		return;
	net_hold_set_guest_mac(p->hold, net_mac_parse(vmmig_guest_mac(p->vm), mac) == 0 ? mac : NULL);
	(void)net_hold_disengage(p->hold, &st);
	log_released(&st);
}

/*
 * Destination: block until the devices are ours (0) or the migration failed.
 * Called by the thread that is about to load the VM: from here on the page
 * cache is the VM's, blocks arriving no longer go into it.
 */
static int peer_wait_authority(void *ctx)
{
	struct peer *p = ctx;
	bool ok;

	/*
	 * The VMM waits for the state (or could not start ahead): the source
	 * may pause its VM now (READY, docs/protocol.md), not before.
	 */
	if (!p->ready_sent && (p->in_conn->hello.caps & XFER_CAP_READY)) {
		p->ready_sent = true;
		(void)xfer_send(p->in_conn, XFER_T_READY, 0, 0, 0, NULL, 0);
	}

	pthread_mutex_lock(&p->lock);
	while (!p->got_authority && !p->dest_done)
		pthread_cond_wait(&p->cond, &p->lock);
	ok = p->got_authority;
	pthread_mutex_unlock(&p->lock);
	return ok ? 0 : -ECANCELED;
}

/*
 * Destination: the VM loads next. Guest memory stops being copied into the
 * page cache only now, so the final dirty blocks that arrive while the
 * snapshot is checked are copied too (the VM touches them first); after
 * this a copy could overwrite what the VM writes. The pages of blocks the
 * final dirty lists named must be gone before the load reads them (they
 * are dropped from a thread of the exposure's). The held packets go after
 * the load (peer_vm_start).
 */
static void peer_settle(void *ctx)
{
	struct peer *p = ctx;

	store_expose_prefill_stop(p->expose);
	store_expose_settle(p->expose);
}

/* Destination: ask now for the missing blocks of LEN bytes at OFF of device NAME. */
static void peer_prefetch(void *ctx, const char *name, uint64_t off, uint64_t len)
{
	struct peer *p = ctx;
	struct store_device *d = peer_store(p, name);
	struct store_wait *w = d ? store_device_wait(d) : NULL;

	if (!w || !len || off >= store_device_size(d))
		return;
	uint32_t bs = store_device_block_size(d);
	uint64_t end = len > store_device_size(d) - off ? store_device_size(d) : off + len;
	store_wait_request(w, off / bs, (end - 1) / bs - off / bs + 1);
}

/* Destination: LEN bytes at OFF of device NAME, from the store (no FUSE round trip). */
static ssize_t peer_read(void *ctx, const char *name, void *buf, size_t len, uint64_t off)
{
	struct peer *p = ctx;
	struct store_device *d = peer_store(p, name);

	return d ? store_device_read(d, buf, len, off) : -ENOENT;
}

/* A suspend's writes (state, stamp, record) go to the device itself, and the kernel's copy is dropped. */
static ssize_t peer_write(void *ctx, const char *name, const void *buf, size_t len, uint64_t off)
{
	struct peer *p = ctx;
	struct store_device *d = peer_store(p, name);
	ssize_t n;

	if (!d)
		return -ENOENT;
	if (off > store_device_size(d) || len > store_device_size(d) - off)
		return -EFBIG; /* nothing written: the device keeps what it had */
	n = store_device_write(d, buf, len, off);
	if (n > 0)
		store_device_notify_changed(d, off, (uint64_t)n);
	return n;
}

/*
 * Start the VM from the exposed devices (a destination passes WAIT: its
 * VMM starts while the migration runs and loads the state once the devices
 * are ours). Always from the main thread: the VMM is killed when the thread
 * that spawned it ends (PR_SET_PDEATHSIG).
 */
static int peer_vm_start(struct peer *p, const struct vmmig_wait *wait)
{
	int r = vmmig_start(p->cfg, peer_path, p, -1, wait, &p->vm, p->vm_err, sizeof p->vm_err);

	if (r < 0 && wait && peer_wait_authority(p) == 0) {
		/* e.g. the TAP still taken by a VM the source stops at the handover, or another machine */
		log_debug("cannot start the VMM ahead of the handover (%s): starting it now", p->vm_err);
		store_expose_prefill_stop(p->expose);
		store_expose_settle(p->expose);
		vmmig_free(p->vm);
		p->vm = NULL;
		r = vmmig_start(p->cfg, peer_path, p, -1, NULL, &p->vm, p->vm_err, sizeof p->vm_err);
		peer_disengage(p); /* with the MAC of the machine started now */
	} else {
		/*
		 * The held packets go once the VM runs, not before its state
		 * loads: a QEMU reads a packet from its TAP as soon as one
		 * comes, even while it waits for the state, and keeps it;
		 * the load then sets the TAP's virtio-net header length anew,
		 * and that packet reached the guest damaged. In bench/migrate
		 * (tcpdump) the first packet released before the load went
		 * unanswered in 10 rounds of 11.
		 */
		peer_disengage(p);
	}
	if (r == 0)
		store_expose_warm(p->expose); /* not while the VM loaded */
	if (p->vm)
		vmmig_set_writer(p->vm, peer_write, p);
	/* Running: the source may learn it now (RESUMED), AfterResume can take a while. */
	p->vm_resumed_ns = r == 0 ? vmmig_resumed_ns(p->vm) : 0;
	peer_signal(p, &p->vm_start_done);
	if (r == 0)
		r = vmmig_after_resume(p->vm, p->vm_err, sizeof p->vm_err);
	p->vm_start_r = r;
	return r;
}

static void *dest_thread(void *arg)
{
	struct peer *p = arg;

	thread_name("peer-dest");
	p->dest_r = xfer_dest_run(p->in_conn, p->dest_o, p->dest_h, &p->dest_st, &p->dest_auth, p->dest_err,
				  sizeof p->dest_err);
	if (p->dest_r < 0) {
		/*
		 * Blocks that will never come fail with EIO, so that a VMM
		 * starting or loading its state does not wait for them forever.
		 */
		for (size_t i = 0; i < p->n; i++)
			xfer_storedev_fail(p->devs[i], -EIO);
	}
	peer_signal(p, &p->dest_done);
	return NULL;
}

static int peer_expose(struct peer *p)
{
	struct store_device *sds[XFER_MAX_DEVICES];
	struct store_expose_opts o = {
		.kind = store_expose_kind_from_cfg(p->cfg->transport.exposure),
		.mount_dir = !str_empty(p->cfg->transport.mount_dir) ? p->cfg->transport.mount_dir : "out/mnt",
	};
	int r;

	for (size_t i = 0; i < p->n; i++)
		sds[i] = xfer_storedev_store(p->devs[i]);
	r = store_expose_new(&o, sds, p->n, &p->expose);
	if (r < 0)
		return r;
	for (size_t i = 0; i < p->n; i++)
		log_info("device '%s' is at '%s' (%s)", store_device_name(sds[i]),
			 store_expose_path(p->expose, i), store_expose_kind_name(p->expose));
	return 0;
}

/* KEY: the realtime NS as seconds since the epoch, to the microsecond (null: 0, unknown). */
static void json_add_time(struct json_object *o, const char *key, uint64_t ns)
{
	char num[32];

	snprintf(num, sizeof num, "%.6f", (double)ns / 1e9);
	json_object_object_add(o, key, ns ? json_object_new_double_s((double)ns / 1e9, num) : NULL);
}

/*
 * The one-line summary both sides print at the end of a migration: bytes on
 * the wire, blocks sent before the authority transfer and after it (the
 * final dirty blocks, post-copied), dirty cycles, total time and downtime
 * (source paused to VM resumed on the destination; the source only knows its
 * own part, pause to handover, unless the destination reported its resume).
 * DOWNTIME_MS < 0: unknown; PARTIAL: it ends at the handover.
 */
static void peer_summary(struct peer *p, bool source, const char *addr, const struct xfer_stats *st,
			 double downtime_ms, bool partial, uint64_t paused_ns, uint64_t resumed_ns)
{
	uint64_t blocks = st->blocks_raw + st->blocks_zero + st->blocks_zstd;
	/* The source counts what it sent after the handover; the destination what came after it. */
	uint64_t post = source ? st->blocks_postcopy : blocks - p->dest_blocks_at_auth;
	double total = (double)(st->end_ns - st->start_ns) / 1e9;
	char bytes[32], down[48], cycles[32] = "";

	if (post > blocks)
		post = blocks;
	if (source) /* the destination does not see the cycles as such */
		snprintf(cycles, sizeof cycles, "%u", st->cycles);

	if (p->cfg->transport.json) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "role", json_object_new_string(source ? "source" : "destination"));
		json_object_object_add(o, "peer", json_object_new_string(addr));
		json_object_object_add(o, "vm", json_object_new_boolean(p->vm != NULL));
		json_object_object_add(o, "devices", json_object_new_int64((int64_t)p->n));
		json_object_object_add(o, "bytes_sent", json_object_new_int64((int64_t)st->bytes_wire));
		json_object_object_add(o, "bytes_data", json_object_new_int64((int64_t)st->bytes_data));
		json_object_object_add(o, "blocks_precopied", json_object_new_int64((int64_t)(blocks - post)));
		json_object_object_add(o, "blocks_postcopied", json_object_new_int64((int64_t)post));
		json_object_object_add(o, "blocks_requested", json_object_new_int64((int64_t)st->blocks_priority));
		json_object_object_add(o, "blocks_shared_base", json_object_new_int64((int64_t)st->blocks_have));
		json_object_object_add(o, "cycles", source ? json_object_new_int64(st->cycles) : NULL);
		char num[32];
		snprintf(num, sizeof num, "%.3f", total);
		json_object_object_add(o, "total_s", json_object_new_double_s(total, num));
		snprintf(num, sizeof num, "%.1f", downtime_ms);
		json_object_object_add(o, "downtime_ms", downtime_ms >= 0 ? json_object_new_double_s(downtime_ms, num) : NULL);
		json_add_time(o, "paused_at", paused_ns);
		json_add_time(o, "resumed_at", resumed_ns);
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		json_object_put(o);
	}
	format_bytes(st->bytes_wire, bytes, sizeof bytes);
	if (downtime_ms >= 0)
		snprintf(down, sizeof down, "%s %.0fms",
			 partial ? "paused until handover" : "downtime", downtime_ms);
	else
		snprintf(down, sizeof down, "downtime unknown");
	log_info("%s %s '%s': %s on the wire, %" PRIu64 " blocks pre-copied, %" PRIu64
		 " post-copied (%" PRIu64 " on demand)%s%s%s, total %.2fs, %s",
		 p->vm ? "VM migrated" : "devices migrated", source ? "to" : "from", addr, bytes, blocks - post, post,
		 st->blocks_priority, source ? ", " : "", source ? cycles : "", source ? " cycles" : "", total, down);
}

/* ---- destination ---- */

static int dest_open(void *ctx, uint16_t id, const char *name, uint64_t size, uint32_t block_size,
		     uint32_t flags, struct xfer_dev **out, char *err, size_t errlen)
{
	struct peer *p = ctx;
	const struct cfg_device *cd = config_find_device(p->cfg, name);
	bool shared;
	int r;

	if (!cd || cd->shared) {
		snprintf(err, errlen, "the source offers device '%s', which is not configured here", name);
		return -ENOENT;
	}
	shared = (flags & XFER_DEV_SHARED_BASE) && cd->shared_base && !str_empty(cd->overlay) &&
		 !str_empty(cd->state);
	r = xfer_storedev_open_dest(cd, size, block_size, shared, &p->devs[p->n]);
	if (r < 0) {
		snprintf(err, errlen, "cannot set up device '%s' at '%s': %s", name,
			 !str_empty(cd->base) ? cd->base : "?", strerror(-r));
		return r;
	}
	if (str_empty(cd->base) && str_empty(cd->path))
		log_info("device '%s' is kept in a temporary file: its changes are discarded at exit", name);
	xfer_storedev_set_conn(p->devs[p->n], p->in_conn, id);
	*out = xfer_storedev_dev(p->devs[p->n]);
	p->n++;
	return 0;
}

/*
 * After the handover, what is left of a VM's migration is bulk (the blocks
 * not sent yet, the source's cleanup), while the destination checks the
 * snapshot, its VMM loads the state and the guest resumes: all latency,
 * with no more cores than before. The session's thread goes on at a lower
 * priority (nice 10) on both sides, so that under contention the cut-over
 * and the running guest go first; the blocks the guest waits for still
 * come, as nothing else runs while it waits. bench/migrate: own downtime
 * 17-18 ms against 20 ms in pre-copy, 69 against 78 ms in post-copy, with
 * client-side figures no worse (docs/migration.md).
 */
static void session_to_background(void)
{
	int r = thread_lower_priority(PEER_BULK_NICE);

	if (r < 0)
		log_debug("cannot lower the session's priority: %s", strerror(-r));
}

static int dest_authority(void *ctx, const uint8_t *data, size_t len)
{
	struct peer *p = ctx;
	int r;

	if (len == 8) {
		uint64_t v = 0;
		for (int i = 7; i >= 0; i--)
			v = v << 8 | data[i];
		p->src_paused_ns = v;
	}
	for (size_t i = 0; i < p->n; i++) {
		r = xfer_storedev_commit(p->devs[i]);
		if (r < 0)
			return r;
	}
	if (!p->expose) {
		r = peer_expose(p);
		if (r < 0)
			return r;
	}
	p->authority_ns = realtime_ns();
	/* This runs in the session's thread, which keeps dest_st current. */
	p->dest_blocks_at_auth = p->dest_st.blocks_raw + p->dest_st.blocks_zero + p->dest_st.blocks_zstd;
	/*
	 * The VMM reads guest memory while it loads the device state, and those
	 * reads wait for blocks that this very thread delivers: the main thread
	 * loads and resumes the VM while post-copy goes on here. It is woken
	 * before this thread lowers its priority: the other way round, a busy
	 * machine kept the wake-up waiting for this thread's turn, 11 ms in
	 * two of four bench/migrate rounds.
	 */
	peer_signal(p, &p->got_authority);
	log_info("took over %zu devices", p->n);
	if (p->vm_mode)
		session_to_background();
	return 0;
}

/*
 * Every device is announced: with a VM, expose the devices now so that its
 * VMM can start while the blocks arrive (reads of blocks still missing wait
 * for them; the VMM writes nothing before it loads its state).
 */
static int dest_ready(void *ctx)
{
	struct peer *p = ctx;
	int r;

	if (!p->vm_mode)
		return 0;
	peer_hold_wait(p);
	r = peer_expose(p);
	if (r < 0)
		return r;
	/*
	 * Until the VM loads, guest memory that arrives goes into the page
	 * cache too (best effort): the VMM maps it and would otherwise fault
	 * every page in through FUSE once it runs.
	 */
	ssize_t mem = peer_device(p, "memory");
	if (mem >= 0 && (r = store_expose_prefill_start(p->expose, (size_t)mem)) < 0)
		log_debug("cannot fill the page cache as guest memory arrives: %s", strerror(-r));
	peer_signal(p, &p->devices_ready);
	return 0;
}

/*
 * At DONE (every block is here, so a VM start cannot wait for the session
 * thread): when the VM ran again, for the source's summary. Bounded, so a
 * VMM that hangs does not hold the session.
 */
static uint64_t dest_resumed(void *ctx)
{
	struct peer *p = ctx;
	struct timespec until;
	uint64_t t = 0;

	if (!p->vm_mode)
		return 0;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&p->lock);
	while (!p->vm_start_done)
		if (pthread_cond_timedwait(&p->cond, &p->lock, &until) == ETIMEDOUT)
			break;
	t = p->vm_resumed_ns;
	pthread_mutex_unlock(&p->lock);
	return t;
}

static void *signal_watch(void *arg)
{
	struct peer *p = arg;
	struct pollfd f[2] = { { .fd = p->sigfd, .events = POLLIN }, { .fd = p->stop_efd, .events = POLLIN } };

	thread_name("peer-signals");
	while (poll(f, 2, -1) < 0 && errno == EINTR)
		;
	if (f[0].revents) {
		struct signalfd_siginfo si;
		(void)!read(p->sigfd, &si, sizeof(si));
		__atomic_store_n(&p->interrupted, true, __ATOMIC_RELEASE);
		xfer_conn_shutdown(p->in_conn);
	}
	return NULL;
}

static int peer_migrate_in(struct peer *p)
{
	struct config *cfg = p->cfg;
	struct xfer_tls *tls = NULL;
	struct xfer_stats st = { 0 };
	char err[512];
	bool auth = false;
	pthread_t watcher;
	int r;

	r = xfer_tls_new(&cfg->transport.tls, false, &tls, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		return r;
	}
	peer_hold_async(p);
	r = xfer_dial(cfg->transport.raddr, tls, &p->in_conn, err, sizeof(err));
	if (r < 0) {
		log_error("cannot connect to '%s': %s", cfg->transport.raddr, err);
		peer_hold_wait(p);
		xfer_tls_free(tls);
		return r;
	}
	r = xfer_handshake(p->in_conn, XFER_ROLE_DEST,
			   XFER_CAP_ZSTD | (p->shared_caps ? XFER_CAP_SHARED_BASE : 0) | (p->vm_mode ? XFER_CAP_READY : 0));
	if (r < 0) {
		log_error("cannot migrate from '%s': %s", cfg->transport.raddr, p->in_conn->err);
		goto out;
	}
	p->stop_efd = eventfd(0, EFD_CLOEXEC);
	pthread_create(&watcher, NULL, signal_watch, p);
	struct xfer_dest_opts o = { .ctx = p, .open = dest_open, .ready = dest_ready };
	struct xfer_hooks h = { .ctx = p, .authority = dest_authority, .resumed = dest_resumed };
	pthread_t dt;
	p->dest_o = &o;
	p->dest_h = &h;
	if (pthread_create(&dt, NULL, dest_thread, p) != 0) {
		r = -EAGAIN;
		snprintf(err, sizeof(err), "cannot start a thread");
	} else {
		struct vmmig_wait w = { .fn = peer_wait_authority, .prefetch = peer_prefetch, .settle = peer_settle,
					.read = peer_read, .ctx = p };
		bool start_vm;

		pthread_mutex_lock(&p->lock);
		while (!p->devices_ready && !p->got_authority && !p->dest_done)
			pthread_cond_wait(&p->cond, &p->lock);
		start_vm = p->vm_mode && (p->got_authority || (p->devices_ready && !p->dest_done));
		pthread_mutex_unlock(&p->lock);
		peer_hold_wait(p);
		if (start_vm && peer_vm_start(p, &w) == 0) {
			uint64_t t = vmmig_resumed_ns(p->vm);
			if (p->src_paused_ns && t > p->src_paused_ns && t > p->authority_ns)
				log_info("VM resumed here %.0fms after the source paused it (%.0fms after the handover)",
					 (double)(t - p->src_paused_ns) / 1e6, (double)(t - p->authority_ns) / 1e6);
			else
				log_info("VM resumed here");
		}
		peer_signal(p, &p->vm_start_done); /* also when no VM was started */
		pthread_join(dt, NULL);
		/* without a VM nothing settled: readers of the devices see the final lists from here */
		store_expose_settle(p->expose);
		r = p->dest_r;
		st = p->dest_st;
		auth = p->dest_auth;
		snprintf(err, sizeof(err), "%s", p->dest_err);
	}
	uint64_t one = 1;
	(void)!write(p->stop_efd, &one, sizeof(one));
	pthread_join(watcher, NULL);
	close(p->stop_efd);
	for (size_t i = 0; i < p->n; i++)
		xfer_storedev_set_conn(p->devs[i], NULL, 0);
	if (__atomic_load_n(&p->interrupted, __ATOMIC_ACQUIRE) && r < 0)
		snprintf(err, sizeof(err), "interrupted");
	if (r < 0 && !auth) {
		log_error("cannot migrate from '%s': %s", cfg->transport.raddr, err);
	} else if (r < 0) {
		/* The devices are ours now, but some blocks will never come. */
		for (size_t i = 0; i < p->n; i++)
			xfer_storedev_fail(p->devs[i], -EIO);
		log_error("lost '%s' after the handover, missing blocks fail with I/O errors: %s",
			  cfg->transport.raddr, err);
		p->failed_after_handover = true;
		r = 0;
	} else {
		char size[32];
		format_bytes(st.bytes_data, size, sizeof(size));
		log_info("migrated %zu devices (%s) from '%s' in %.2fs, %" PRIu64 " blocks requested first",
			 p->n, size, cfg->transport.raddr, (double)(st.end_ns - st.start_ns) / 1e9,
			 st.blocks_priority);
	}
	if (p->vm_mode && auth && p->vm_start_r < 0) {
		log_error("cannot resume the migrated VM: %s", p->vm_err);
		r = r < 0 ? r : p->vm_start_r;
		goto out;
	}
	if (r == 0 && !p->failed_after_handover) {
		uint64_t t = vmmig_resumed_ns(p->vm);
		peer_summary(p, false, cfg->transport.raddr, &st,
			     p->vm && p->src_paused_ns && t > p->src_paused_ns ? (double)(t - p->src_paused_ns) / 1e6
									    : -1.0,
			     false, p->vm ? p->src_paused_ns : 0, p->vm ? t : 0);
	}
out:
	peer_hold_wait(p);
	xfer_conn_free(p->in_conn);
	p->in_conn = NULL;
	xfer_tls_free(tls);
	return r;
}

/* ---- source ---- */

static int src_flush(void *ctx)
{
	struct peer *p = ctx;
	int r = vmmig_flush(p->vm);

	if (r < 0)
		return r;
	return p->expose ? store_expose_flush_all(p->expose) : 0;
}

static void src_first(void *ctx, void (*emit)(void *arg, const char *name, uint64_t off, uint64_t len), void *arg)
{
	struct peer *p = ctx;

	if (p->vm)
		vmmig_first_ranges(p->vm, emit, arg);
}

static int src_before_suspend(void *ctx)
{
	struct peer *p = ctx;
	int r = p->vm ? vmmig_before_suspend(p->vm, p->vm_err, sizeof p->vm_err) : 0;

	if (r < 0)
		log_warn("cannot suspend the VM for the migration: %s", p->vm_err);
	return r;
}

static int src_suspend(void *ctx)
{
	struct peer *p = ctx;
	int r;

	if (p->vm) {
		r = vmmig_suspend(p->vm, &p->paused_ns, p->vm_err, sizeof p->vm_err);
		if (r < 0) {
			log_warn("cannot suspend the VM for the migration: %s", p->vm_err);
			return r;
		}
		/*
		 * Paused: what comes for the guest now waits for the VM that
		 * will run it. Not waited for: the first engage adds the
		 * hold's rules (0.1-0.5 ms of the worker's), which the final
		 * lists need not wait for; a failure shows at the release.
		 */
		net_hold_engage_nowait(p->hold);
	}
	/*
	 * A suspended VM left nothing of its own devices in the page cache: its
	 * disks were flushed as it paused, memory, state and record by the
	 * suspend. Whoever writes the others may have.
	 */
	r = 0;
	for (size_t i = 0; r == 0 && p->expose && i < p->n; i++)
		if (!p->vm || !vmmig_owns(p->vm, store_device_name(xfer_storedev_store(p->devs[i]))))
			r = store_expose_flush(p->expose, i);

	/*
	 * After this no write reaches the devices: the final dirty lists are
	 * final. (Nothing is synced to disk here, in the pause: closing the
	 * devices does it.)
	 */
	for (size_t i = 0; i < p->n; i++)
		xfer_storedev_gate(p->devs[i], XFER_GATE_PAUSED);
	return r;
}

static int src_resume(void *ctx)
{
	struct peer *p = ctx;
	for (size_t i = 0; i < p->n; i++)
		xfer_storedev_gate(p->devs[i], XFER_GATE_OPEN);
	if (p->vm) {
		int r = vmmig_resume(p->vm, p->vm_err, sizeof p->vm_err);
		/* The VM takes its packets again; the hold stays ready for the next attempt. */
		peer_disengage(p);
		if (r == 0)
			r = vmmig_after_resume(p->vm, p->vm_err, sizeof p->vm_err);
		if (r < 0) {
			log_error("cannot resume the VM after the failed migration: %s", p->vm_err);
			return r;
		}
		log_info("VM running again here");
	}
	return 0;
}

/* The source's pause time travels with AUTHORITY, so the destination can tell the downtime. */
static int src_authority_data(void *ctx, uint8_t *buf, size_t cap)
{
	struct peer *p = ctx;

	if (!p->vm || cap < 8)
		return 0;
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(p->paused_ns >> (8 * i));
	return 8;
}

static int src_handover(void *ctx)
{
	struct peer *p = ctx;
	p->handed_over = true;
	p->handover_ns = realtime_ns();
	if (p->vm)
		session_to_background();
	for (size_t i = 0; i < p->n; i++)
		xfer_storedev_gate(p->devs[i], XFER_GATE_CLOSED);
	/*
	 * The destination runs the VM from now on: this one never runs again.
	 * Waiting for it to exit, or taking the packet hold down, would hold up
	 * the blocks the destination is about to ask for: both wait until the
	 * migration is over.
	 */
	vmmig_halt(p->vm);
	return 0;
}

static int peer_session(void *ctx, struct xfer_conn *c)
{
	struct peer *p = ctx;
	struct xfer_dev *devs[XFER_MAX_DEVICES];
	struct xfer_source_opts so = { .concurrency = p->cfg->transport.concurrency,
					.postcopy = p->cfg->transport.postcopy };
	struct xfer_hooks h = { .ctx = p, .flush = src_flush, .before_suspend = src_before_suspend, .suspend = src_suspend,
				.resume = src_resume, .handover = src_handover,
				.authority_data = src_authority_data, .first = src_first };
	struct xfer_stats st = { 0 };
	char err[256], size[32];
	bool auth;
	int r;

	r = xfer_handshake(c, XFER_ROLE_SOURCE, XFER_CAP_ZSTD | XFER_CAP_READY);
	if (r < 0) {
		log_warn("refused '%s': %s", c->peer, c->err);
		return 0;
	}
	for (size_t i = 0; i < p->n; i++) {
		xfer_storedev_begin(p->devs[i]);
		devs[i] = xfer_storedev_dev(p->devs[i]);
	}
	log_info("migrating %zu devices to '%s'", p->n, c->peer);
	if (p->vm)
		peer_hold(p, false);
	r = xfer_source_run(c, devs, p->n, &so, &h, &st, &auth, err, sizeof(err));
	if (auth) {
		vmmig_stop(p->vm);
		/* What was held here was for a VM that is gone: the destination holds its own. */
		peer_release(p);
	}
	if (r < 0 && !auth) {
		log_warn("migration to '%s' failed, the devices stay here and writable: %s", c->peer, err);
		return 0;
	}
	if (r < 0) {
		log_error("migration to '%s' failed after the handover: %s", c->peer, err);
		p->failed_after_handover = true;
		return 1;
	}
	format_bytes(st.bytes_data, size, sizeof(size));
	if (st.ready_wait_ns)
		log_debug("the suspend waited %.1fms for the destination's VMM to start",
			  (double)st.ready_wait_ns / 1e6);
	log_info("migrated %zu devices (%s in %" PRIu64 " blocks, %" PRIu64
		 " blocks already there) to '%s' in %.2fs: %u dirty cycles, %" PRIu64
		 " blocks dirty at the suspend, handover after %.0fms of suspension",
		 p->n, size, st.blocks_raw + st.blocks_zero + st.blocks_zstd, st.blocks_have, c->peer,
		 (double)(st.end_ns - st.start_ns) / 1e9, st.cycles, st.final_dirty,
		 (double)(st.authority_ns - st.suspend_ns) / 1e6);
	/* The destination tells when its VM ran again (RESUMED); else only our part is known. */
	bool resumed = p->vm && st.dest_resumed_ns > p->paused_ns;
	peer_summary(p, true, c->peer, &st,
		     resumed  ? (double)(st.dest_resumed_ns - p->paused_ns) / 1e6
		     : p->vm ? (double)(p->handover_ns - p->paused_ns) / 1e6
			     : (double)(st.authority_ns - st.suspend_ns) / 1e6,
		     !resumed, p->vm ? p->paused_ns : 0, resumed ? st.dest_resumed_ns : 0);
	return 1;
}

static void peer_refused(void *ctx, const char *peer, const char *err)
{
	(void)ctx;
	log_warn("refused '%s': %s", peer, err);
}

/* Wait for a signal, or for the VMM (VMFD, -1: none) to exit: then -ECHILD. */
static int peer_wait_signal(int sigfd, int vmfd)
{
	struct pollfd f[2] = { { .fd = sigfd, .events = POLLIN }, { .fd = vmfd, .events = POLLIN } };
	struct signalfd_siginfo si;

	while (poll(f, vmfd >= 0 ? 2 : 1, -1) < 0 && errno == EINTR)
		;
	if (!f[0].revents && f[1].revents)
		return -ECHILD;
	return read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si) ? (int)si.ssi_signo : 0;
}

int cmd_peer(int argc, char **argv)
{
	struct config cfg;
	struct peer p = { .cfg = &cfg, .sigfd = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
			  .hold_lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	struct xfer_tls *tls = NULL;
	char err[512];
	int r, ret = 1, lfd = -1;

	r = config_setup(&cfg, TOOL_PEER, argc, argv);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 1;
	}
	xfer_transport_init();
	xfer_transport_set_timeout(cfg.transport.timeout_ns);
	p.sigfd = xfer_signals_block();
	if (p.sigfd < 0) {
		log_error_errno(p.sigfd, "cannot set up signal handling: %m");
		goto out;
	}
	p.vm_mode = vmmig_wanted(&cfg);
	for (size_t i = 0; i < cfg.n_devices; i++) {
		if (cfg.devices[i].shared)
			log_warn("device '%s' is shared: it is never migrated and needs a VM to be used",
				 cfg.devices[i].name);
		else if (cfg.devices[i].shared_base && !str_empty(cfg.devices[i].overlay))
			p.shared_caps = true;
	}

	if (!str_empty(cfg.transport.laddr)) {
		/* Listen early so a bad address fails before anything moves. */
		r = xfer_tls_new(&cfg.transport.tls, true, &tls, err, sizeof(err));
		if (r < 0) {
			log_error("%s", err);
			goto out;
		}
		r = xfer_listen(cfg.transport.laddr, &lfd, err, sizeof(err));
		if (r < 0) {
			log_error("%s", err);
			goto out;
		}
	}

	if (!str_empty(cfg.transport.raddr)) {
		r = peer_migrate_in(&p);
		if (r < 0)
			goto out;
	} else {
		for (size_t i = 0; i < cfg.n_devices; i++) {
			const struct cfg_device *cd = &cfg.devices[i];
			if (cd->shared)
				continue;
			r = xfer_storedev_open_local(cd, &p.devs[p.n]);
			if (r < 0) {
				log_error_errno(r, "cannot open device '%s' from '%s': %m", cd->name,
						!str_empty(cd->base) ? cd->base : cd->path ? cd->path : "");
				goto out;
			}
			p.n++;
		}
		if (p.n == 0) {
			log_error("no devices to serve");
			goto out;
		}
		r = peer_expose(&p);
		if (r < 0) {
			log_error_errno(r, "cannot expose the devices: %m");
			goto out;
		}
		if (p.vm_mode) {
			r = peer_vm_start(&p, NULL);
			if (r < 0) {
				log_error("cannot start the VM: %s", p.vm_err);
				goto out;
			}
			log_info("VM running");
		}
	}

	if (lfd >= 0 && !p.failed_after_handover) {
		log_info("waiting for a migration on '%s'%s", cfg.transport.laddr, tls ? " (TLS)" : "");
		struct xfer_server_opts so = {
			.lfd = lfd,
			.tls = tls,
			.ctx = &p,
			.handle = peer_session,
			.refused = peer_refused,
			.max_sessions = 1,
		};
		r = xfer_serve(&so, p.sigfd);
		if (r < 0) {
			log_error_errno(r, "cannot serve on '%s': %m", cfg.transport.laddr);
			goto out;
		}
	} else {
		if (peer_wait_signal(p.sigfd, vmmig_pidfd(p.vm)) == -ECHILD) {
			/* e.g. guest memory that never arrived (the source vanished during post-copy) */
			vmmig_describe_exit(p.vm, p.vm_err, sizeof p.vm_err);
			log_error("the VM stopped unexpectedly: %s", p.vm_err);
			p.handed_over = true; /* nothing left to suspend */
			ret = 1;
			goto out;
		}
	}
	ret = p.failed_after_handover ? 1 : 0;
	if (p.vm && !p.handed_over && !p.failed_after_handover) {
		/* Stopped by a signal: keep the VM in its devices, so the files resume where it stopped. */
		r = vmmig_suspend(p.vm, NULL, p.vm_err, sizeof p.vm_err);
		vmmig_stop(p.vm);
		if (r < 0) {
			log_error("cannot suspend the VM: %s", p.vm_err);
			ret = 1;
		} else {
			log_info("VM suspended into its devices");
		}
	}
out:
	if (lfd >= 0) {
		close(lfd);
		if (str_startswith(cfg.transport.laddr, "unix:"))
			(void)unlink(cfg.transport.laddr + 5);
	}
	peer_release(&p);
	vmmig_free(p.vm);
	store_expose_free(p.expose);
	for (size_t i = 0; i < p.n; i++)
		xfer_storedev_free(p.devs[i]);
	if (p.sigfd >= 0)
		close(p.sigfd);
	xfer_tls_free(tls);
	config_free(&cfg);
	return ret;
}
