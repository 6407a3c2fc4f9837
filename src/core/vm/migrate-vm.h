/*
 * A VM whose devices are exposed by the storage engine, driven the way a
 * migration needs it: started from the exposed files (source: before serving;
 * destination: once authority arrived), flushed before dirty cycles,
 * suspended into its own devices (so the engine moves the saved state like
 * any other block), resumed again when a migration fails before authority,
 * and stopped for good after the handover. Used by `drafter peer`.
 */
#ifndef DRAFTER_VM_MIGRATE_VM_H
#define DRAFTER_VM_MIGRATE_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

struct vmmig;

/* Exposed path of device NAME, or NULL when there is no such device. */
typedef const char *(*vmmig_path_fn)(void *ctx, const char *name);

/* Do CFG's devices describe a VM (state, memory and config devices)? */
bool vmmig_wanted(const struct config *cfg);

/*
 * A destination starts its VMM while the migration still runs: FN blocks
 * until the devices are ours (0) or the migration failed (-errno). Then
 * PREFETCH (optional) is told which LEN bytes at OFF of device NAME the
 * VM reads first, so that blocks still missing there are asked for at once
 * rather than one read after the other, and SETTLE comes right before the
 * load.
 */
typedef void (*vmmig_range_fn)(void *ctx, const char *name, uint64_t off, uint64_t len);

struct vmmig_wait {
	int (*fn)(void *ctx);
	vmmig_range_fn prefetch;
	/*
	 * Optional: the snapshot is checked and the VMM loads the state next;
	 * from now on nothing may write the devices behind the VM's back.
	 */
	void (*settle)(void *ctx);
	/*
	 * Optional: read LEN bytes at OFF of device NAME directly, not through
	 * its exposure (a missing block is waited for as by a read of the
	 * exposed file); the bytes read or -errno. The record, the state and
	 * the stamp are then read with it, and QEMU gets the state from memory.
	 */
	ssize_t (*read)(void *ctx, const char *name, void *buf, size_t len, uint64_t off);
	void *ctx;
};

/*
 * The byte ranges of devices a destination reads before it can resume the
 * VM: the snapshot record, the state, the memory stamp. A destination asks
 * for them at once; a source sends them first after the handover.
 */
void vmmig_first_ranges(const struct vmmig *m, vmmig_range_fn fn, void *ctx);

/*
 * Restore and resume the VM whose devices PATH names; on success call
 * vmmig_after_resume next. *OUT is set in every case (vmmig_free it).
 * CFG must outlive the VM. SIGFD (-1: none) interrupts the waits. With
 * WAIT, the VMM starts from the snapshot record as it is now and loads the
 * state only after WAIT->fn returned, from the record then; a record that
 * describes another machine fails with -EAGAIN. Whatever made such an
 * early start fail, the caller may start again without WAIT once the
 * devices are its own. On failure ERR says why in the user's words.
 */
int vmmig_start(const struct config *cfg, vmmig_path_fn path, void *ctx, int sigfd, const struct vmmig_wait *wait,
		struct vmmig **out, char *err, size_t errlen);
/*
 * Write LEN bytes at OFF of device NAME directly, not through its exposure
 * (whose cached pages of that range the writer drops); LEN or -errno,
 * -EFBIG with nothing written when the device is too small for them.
 */
typedef ssize_t (*vmmig_write_fn)(void *ctx, const char *name, const void *buf, size_t len, uint64_t off);
/*
 * From now on a suspend writes the state, the memory's stamp and the
 * snapshot record with FN: in the pause, each write through the exposure
 * was a round trip to its threads or several (open, size, write, flush,
 * close), each waiting for a core.
 */
void vmmig_set_writer(struct vmmig *m, vmmig_write_fn fn, void *ctx);
/* The guest agent's AfterResume, with the original's retries within the resume timeout. */
int vmmig_after_resume(struct vmmig *m, char *err, size_t errlen);
/* Write guest RAM back to the memory device (before a dirty cycle). */
int vmmig_flush(struct vmmig *m);
/*
 * BeforeSuspend, bounded by the rescue timeout; a guest that fails it or
 * does not answer is only warned about. -ECHILD (ERR says why) when the VMM
 * is gone. The next vmmig_suspend does not call it again.
 */
int vmmig_before_suspend(struct vmmig *m, char *err, size_t errlen);
/*
 * BeforeSuspend (unless vmmig_before_suspend came first), pause, save the
 * device state into the `state` device, seal the snapshot (memory stamp,
 * then the `config` device), flush memory. After it the VM changes
 * nothing. *PAUSED_NS (realtime) = when the VM stopped.
 */
int vmmig_suspend(struct vmmig *m, uint64_t *paused_ns, char *err, size_t errlen);
/* The migration failed before authority: run again (then vmmig_after_resume). */
int vmmig_resume(struct vmmig *m, char *err, size_t errlen);
/* Stop the VMM (after the handover, or on the way out after a suspend). */
void vmmig_stop(struct vmmig *m);
/*
 * Kill the VMM of a VM saved into its devices without waiting for it to go
 * (it holds nothing that is not on the devices), its threads first moved to
 * SCHED_IDLE so that its exit waits for a free core; vmmig_stop reaps it.
 */
void vmmig_halt(struct vmmig *m);
/* Realtime ns when the VM last started running (restore or resume), 0: never. */
uint64_t vmmig_resumed_ns(const struct vmmig *m);
/* The guest NIC's MAC address ("02:0e:d9:fd:68:3d"), "" when it has none. */
const char *vmmig_guest_mac(const struct vmmig *m);
/* Process descriptor of the VMM (readable when it exits), -1 when stopped. */
int vmmig_pidfd(struct vmmig *m);
/* Is device NAME one the VM uses (its state, memory, record, boot files, disks)? */
bool vmmig_owns(const struct vmmig *m, const char *name);
/* Text for a VMM that exited by itself. */
void vmmig_describe_exit(struct vmmig *m, char *buf, size_t len);
void vmmig_free(struct vmmig *m);

#endif
