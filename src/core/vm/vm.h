/*
 * VMM drivers behind one interface (QEMU, Firecracker), the snapshot metadata
 * kept in the `config` device, and the host side of the guest agent.
 *
 * A struct vm is one VMM process. The command layer fills a struct vm_spec
 * (machine parameters and the files of the devices), picks a driver with
 * vm_driver_for() and calls the operations in this order:
 *   cold boot:  boot → liveness_wait → agent calls → pause → save_state → stop
 *   resume:     restore → resume → agent calls → ... → pause → save_state → stop
 * Every wait also watches the VMM process, so a VMM that dies ends the wait
 * with -ECHILD at once instead of at the timeout.
 */
#ifndef DRAFTER_VM_H
#define DRAFTER_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/config.h"

enum vm_kind { VM_KIND_QEMU, VM_KIND_FIRECRACKER };

#define VM_MAX_DISKS 16
#define VM_ID_LEN 32 /* hex characters of a snapshot id */
/*
 * QEMU's virtio-serial ports for a new VM: port 0 (the console's, unused),
 * liveness and agent. QEMU's default of 31 has the guest set up queues for
 * 31 ports, which a restore then reads (docs/vm.md). QEMU allows 511.
 */
#define VM_QEMU_SERIAL_PORTS 3
#define VM_QEMU_SERIAL_PORTS_MAX 511

/*
 * Everything a restore must reproduce exactly, recorded in the `config`
 * device at snapshot time (QEMU's migration stream does not carry its own
 * command line; Firecracker's state does, these fields are informational
 * there).
 */
struct vm_machine {
	enum vm_kind kind;
	char accel[8];          /* QEMU: "tcg" or "kvm" */
	char machine[16];       /* QEMU machine type: "microvm" */
	bool fc_fork;           /* Firecracker: state written by the loopholelabs fork */
	uint32_t cpu_count;
	uint32_t memory_mib;
	char cpu_template[32];
	char *boot_args;
	char interface[32];     /* tap in the namespace; "" = no NIC */
	char mac[24];
	uint32_t agent_port;    /* vsock ports (Firecracker), kept for the original's config */
	uint32_t liveness_port;
	bool initramfs;         /* booted with an initramfs device */
	uint32_t serial_ports;  /* QEMU: virtio-serial max_ports; 0 = QEMU's default (31) */
	char *disks[VM_MAX_DISKS]; /* device names attached as drives, in order */
	size_t n_disks;
};

void vm_machine_free(struct vm_machine *m);
int vm_machine_copy(struct vm_machine *dst, const struct vm_machine *src);
/* Would A and B build the same machine (a state saved by one loads into the other)? */
bool vm_machine_equal(const struct vm_machine *a, const struct vm_machine *b);
/* Index of disk NAME in M, or -1. */
int vm_machine_disk_index(const struct vm_machine *m, const char *name);

/* The `config` device: the original's {"agentVSockPort":N} plus drafter's own record. */
struct vm_meta {
	struct vm_machine machine;
	bool has_drafter;            /* false: written by the original (only agentVSockPort) */
	char snapshot_id[VM_ID_LEN + 1];
	uint64_t state_size;         /* bytes of device state at the start of `state` */
	char state_sha256[65];
	uint64_t created_unix;
};

void vm_meta_free(struct vm_meta *meta);
/* Serialise META as JSON (caller frees). */
char *vm_meta_to_json(const struct vm_meta *meta);
/* Parse a config device's bytes (cut at the first NUL). -EINVAL on junk, -E2BIG when too large. */
int vm_meta_parse(const char *buf, size_t len, struct vm_meta *meta);
int vm_meta_read(const char *path, struct vm_meta *meta);
/* Write META to PATH (through PATH.tmp and rename), padded like every output. */
int vm_meta_write(const char *path, const struct vm_meta *meta);

/* A fresh random snapshot id (VM_ID_LEN hex characters). */
int vm_new_id(char id[VM_ID_LEN + 1]);
/* SHA-256 (hex) of the first LEN bytes of FD. */
int vm_sha256_fd(int fd, uint64_t len, char hex[65]);

/*
 * The record that ties a memory file to its state: written right after the
 * guest RAM (VM_STAMP_LEN bytes at offset RAM_BYTES, inside the padding),
 * read back on restore.
 */
#define VM_STAMP_LEN 64
int vm_memory_stamp(const char *path, uint64_t ram_bytes, const char *snapshot_id);
int vm_memory_check(const char *path, uint64_t ram_bytes, const char *snapshot_id);

/*
 * Reading a file, or a device without going through its exposure: LEN
 * bytes at OFF into BUF; the bytes read (fewer only at the end) or -errno.
 */
typedef ssize_t (*vm_read_fn)(void *ctx, void *buf, size_t len, uint64_t off);
/* Writing a device without going through its exposure: the bytes written or -errno. */
typedef ssize_t (*vm_write_fn)(void *ctx, const void *buf, size_t len, uint64_t off);
/* vm_memory_stamp with a writer: -EFBIG when the record does not fit. */
int vm_memory_stamp_with(vm_write_fn wr, void *ctx, uint64_t ram_bytes, const char *snapshot_id);
/* vm_meta_read with a reader. */
int vm_meta_read_from(vm_read_fn rd, void *ctx, struct vm_meta *meta);
/*
 * OpenSSL sets a digest up on its first use in a process (1.2 ms here): have
 * that done ahead of a hash that is on the clock, such as a migration's.
 */
void vm_hash_prepare(void);
/* Does STATE (meta->state_size bytes) hash to META's state? -EBADE when not. */
int vm_state_check(const struct vm_meta *meta, const void *state);
/* Does the memory RD reads carry META's stamp? -ESTALE when not. */
int vm_memory_check_from(const struct vm_meta *meta, vm_read_fn rd, void *ctx);

/*
 * Finish a saved snapshot: new snapshot id in META, hash STATE (and pad it
 * like the original, unless the VMM reads the whole file: upstream
 * Firecracker), stamp MEMORY. The caller writes META to the config device last.
 */
int vm_seal_snapshot(const char *state, uint64_t state_size, bool pad_state, const char *memory,
		     uint64_t ram_bytes, struct vm_meta *meta);
/* The same for a state held in memory, which the caller writes where it goes; STAMP writes the memory. */
int vm_seal_state(const void *state, uint64_t state_size, vm_write_fn stamp, void *ctx, uint64_t ram_bytes,
		  struct vm_meta *meta);
/* Does the VMM of M read only the recorded bytes of the state (so padding is harmless)? */
bool vm_state_paddable(const struct vm_machine *m);
/* Do STATE and MEMORY belong to META? -EBADE: state differs; -ESTALE: memory is another snapshot's. */
int vm_check_snapshot(const struct vm_meta *meta, const char *state, const char *memory);
int vm_fsync_path(const char *path);

/* The original's output padding: size → roundup(size, 1 MiB) + 1 MiB. */
uint64_t vm_padded_size(uint64_t size);
int vm_pad_file(const char *path);

/* Copy SRC to DST (sparse-aware, reflink when the filesystem can). */
int vm_copy_file(const char *src, const char *dst);
/*
 * The same in two steps, so that a VMM can open DST while its data is still
 * being copied: prepare creates DST with SRC's size (all holes), data fills
 * in SRC's data ranges without changing DST's size.
 */
int vm_copy_prepare(const char *src, const char *dst);
int vm_copy_data(const char *src, const char *dst);

/* The files and settings one VMM process runs with. */
struct vm_spec {
	const struct cfg_vm *cfg;
	struct vm_machine machine;   /* owned */
	char *run_dir;               /* QEMU: per-VM directory; Firecracker: chroot base */
	char *kernel;                /* cold boot only */
	char *initramfs;             /* cold boot only, optional */
	char *state;                 /* restore: state to load (first state_size bytes) */
	uint64_t state_size;
	const void *state_data;      /* restore, QEMU, optional: those bytes, read already (not owned) */
	char *memory;                /* guest RAM file (created for boot, loaded on restore) */
	char *disk_paths[VM_MAX_DISKS]; /* parallel to machine.disks */
	bool enable_input, enable_output;
	/*
	 * Restore: run the VM as soon as its state has loaded, if it was
	 * running when saved (QEMU's suspend saves it so): no command stands
	 * between the load and the guest. Else restore leaves it paused.
	 */
	bool autostart;
	/*
	 * Restore calls this once the VMM process is up and right before it
	 * loads the device state, which reads guest memory (virtio rings):
	 * the memory and disk files must be complete from then on. It lets
	 * the caller fill them while the VMM starts. NULL: nothing to wait for.
	 */
	int (*before_load)(void *ctx);
	void *before_load_ctx;
};

void vm_spec_free(struct vm_spec *spec);

struct vm;

struct vmm_ops {
	const char *name;
	/* Start the VMM and boot the kernel from spec->kernel; RAM lives in spec->memory. */
	int (*boot)(struct vm *vm);
	/* Start the VMM from spec->state + spec->memory; the VM is left paused (but see spec->autostart). */
	int (*restore)(struct vm *vm);
	int (*resume)(struct vm *vm);
	int (*pause)(struct vm *vm);
	/* VM paused: write its device state to PATH; *SIZE = bytes written. */
	int (*save_state)(struct vm *vm, const char *path, uint64_t *size);
	/*
	 * Optional, for a running VM: pause it and save its device state to
	 * PATH (*SIZE bytes), its disks flushed, with as little of the work as
	 * the VMM allows after the guest stops; *PAUSED_NS: realtime at or
	 * before the guest stopped. NULL: pause, save_state, then flush the disks.
	 */
	int (*suspend)(struct vm *vm, const char *path, uint64_t *size, uint64_t *paused_ns);
	/* Write guest RAM back to spec->memory (VM paused or running). */
	int (*flush_memory)(struct vm *vm);
	/* Stop the VMM (gracefully when it answers, else SIGKILL) and remove its run files. */
	void (*stop)(struct vm *vm);
	/* Wait until the guest reports that it booted. */
	int (*liveness_wait)(struct vm *vm, uint64_t deadline_ns);
	/* A connected stream to the guest agent (caller closes). */
	int (*agent_connect)(struct vm *vm, uint64_t deadline_ns);
	/* Path of the guest agent channel (for users and tests); may be NULL. */
	const char *(*agent_path)(struct vm *vm);
	/* The VMM's own text for the last failed call ("" if none). */
	const char *(*last_error)(struct vm *vm);
};

struct vm {
	const struct vmm_ops *ops;
	struct vm_spec spec;
	pid_t pid;
	int pidfd;           /* of the VMM (QEMU, or the jailer/Firecracker) */
	int exit_status;     /* wait status once reaped, -1 before */
	int log_fd;          /* memfd holding the VMM's stderr */
	void *priv;          /* driver state */
};

extern const struct vmm_ops vm_qemu_ops;
extern const struct vmm_ops vm_firecracker_ops;

/* The driver for CFG's vmm setting ("auto": Firecracker with /dev/kvm and its binaries, else QEMU). */
int vm_pick_kind(const struct cfg_vm *cfg, enum vm_kind *kind);
const struct vmm_ops *vm_ops_for(enum vm_kind kind);
const char *vm_kind_name(enum vm_kind kind);
int vm_kind_from_name(const char *s, enum vm_kind *kind);

/* Set up VM (takes SPEC's ownership). Call vm_free() at the end, also after errors. */
void vm_init(struct vm *vm, enum vm_kind kind, struct vm_spec *spec);
void vm_free(struct vm *vm);
/* True while the VMM process runs (reaps it when it has exited). */
bool vm_alive(struct vm *vm);
/* Text for an exited VMM ("exited with status 1", "killed by signal 9"). */
void vm_describe_exit(const struct vm *vm, char *buf, size_t len);

/* The last non-empty line the VMM wrote to stderr ("" if none). */
void vm_last_log_line(const struct vm *vm, char *buf, size_t len);

/*
 * The cause to print after a failed VM operation R (-errno): how the VMM
 * ended (-ECHILD), the VMM's own message (-EIO), the missing namespace
 * (-ENONET), else strerror. Returns BUF.
 */
const char *vm_error_text(struct vm *vm, int r, char *buf, size_t len);

/* Process helpers shared by the drivers (proc.c). */
struct vm_spawn {
	char **argv;
	const char *netns;     /* name under /run/netns, NULL or "" for the current one */
	int stdin_fd, stdout_fd, stderr_fd; /* -1: /dev/null */
	const int *keep_fds;   /* inherited by the child under the same numbers */
	size_t n_keep_fds;
	bool new_pgrp;         /* own process group, so a terminal's ^C reaches only drafter */
	uid_t uid;             /* run as UID:GID when either is not 0 */
	gid_t gid;
	int numa_node;         /* pin to this node's CPUs when its cpulist is readable; -1: no */
	bool no_hugepage_advice; /* madvise(MADV_HUGEPAGE) fails with EINVAL in the child */
};
/* The CPU list of NUMA node NODE ("0-3,8"), from sysfs. */
int vm_numa_cpulist(int node, char *buf, size_t len);
int vm_spawn(const struct vm_spawn *sp, pid_t *pid, int *pidfd);
/* Wait up to TIMEOUT_NS for the process behind PIDFD to exit; reap it. */
int vm_wait_exit(pid_t pid, int pidfd, uint64_t timeout_ns, int *status);
/* -ENOENT with a clear meaning when /run/netns/NAME is missing. */
int vm_netns_check(const char *name);
/* Milliseconds left until DEADLINE_NS for poll(); 0 when passed. */
int vm_poll_ms(uint64_t deadline_ns);

/*
 * Wait until FD is readable or DEADLINE_NS passes, watching PIDFD (-1: none).
 * 0 readable, -ETIMEDOUT, -ECHILD when the process exited.
 */
int vm_wait_readable(int fd, int pidfd, uint64_t deadline_ns);
/* A descriptor (a signalfd) whose readiness ends every wait with -EINTR; -1: none. */
void vm_set_interrupt_fd(int fd);

/* Guest agent RPC (agent.c): the original's newline-delimited JSON. */
#define VM_AGENT_MAX_LINE (64 * 1024)

/*
 * Call FUNCTION on the guest agent behind FD and wait for its response until
 * DEADLINE_NS. 0 on success; -EREMOTEIO when the guest returned an error
 * (its text in ERR); -ETIMEDOUT; -ECONNRESET when the channel closed; -ECHILD
 * when the VMM (PIDFD) died.
 */
int vm_agent_call(int fd, int pidfd, const char *function, uint64_t deadline_ns, char *err, size_t errlen);
/* Build the request line for FUNCTION with call id ID (tests use it). */
char *vm_agent_request(const char *id, const char *function);
/* Parse one line: 1 if it is the response to ID (ERR filled), 0 if not ours, -EINVAL on junk. */
int vm_agent_parse_response(const char *line, const char *id, char *err, size_t errlen);

/* UNIX socket helpers. */
int vm_unix_listen(const char *path, uid_t uid, gid_t gid);
int vm_unix_connect(const char *path);
/* Accept one connection on LFD until DEADLINE_NS, watching PIDFD. */
int vm_unix_accept(int lfd, int pidfd, uint64_t deadline_ns);

#endif
