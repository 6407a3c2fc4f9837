/*
 * Unit tests of the VM layer that need no VMM: the config device's record
 * (round trip, the original's form, junk and limits), the memory stamp that
 * ties memory to state, padding, sparse copies, and the host side of the agent
 * RPC against a scripted guest on a socketpair (skipped blank lines, foreign
 * call ids, errors, a closed channel, a timeout, a VMM that exits).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/io.h"
#include "core/util.h"
#include "core/vm/vm.h"
#include "tests/tap.h"

#define MIB (1024ULL * 1024ULL)

static char dir[] = "/tmp/drafter-test-vm.XXXXXX";

static char *path_in(const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

/* Replace PATH with LEN bytes of BUF. */
static int write_file(const char *path, const void *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	return fd < 0 ? -errno : write_all(fd, buf, len);
}

/* A vm_read_fn over a file that counts its calls. */
struct mem_reader {
	const char *path;
	int calls;
};

static ssize_t mem_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct mem_reader *r = ctx;
	int fd = open(r->path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -errno : pread(fd, buf, len, (off_t)off);

	r->calls++;
	if (fd >= 0)
		close(fd);
	return n;
}

/* A vm_write_fn into a file, at most LIMIT bytes of it (a device that ends there). */
struct mem_writer {
	const char *path;
	uint64_t limit;
};

static ssize_t mem_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
	struct mem_writer *w = ctx;
	int fd = open(w->path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	if (off >= w->limit)
		len = 0;
	else if (len > w->limit - off)
		len = (size_t)(w->limit - off);
	n = pwrite(fd, buf, len, (off_t)off);
	close(fd);
	return n < 0 ? -errno : n;
}

static void test_meta(void)
{
	struct vm_meta m = { 0 }, back = { 0 };
	char *json, *p = path_in("config.json");
	struct stat st;

	m.machine.kind = VM_KIND_QEMU;
	snprintf(m.machine.accel, sizeof m.machine.accel, "tcg");
	snprintf(m.machine.machine, sizeof m.machine.machine, "microvm");
	m.machine.cpu_count = 2;
	m.machine.memory_mib = 256;
	snprintf(m.machine.cpu_template, sizeof m.machine.cpu_template, "None");
	m.machine.boot_args = xstrdup("console=ttyS0 quiet \"quoted\"");
	snprintf(m.machine.interface, sizeof m.machine.interface, "tap0");
	snprintf(m.machine.mac, sizeof m.machine.mac, "02:0e:d9:fd:68:3d");
	m.machine.agent_port = 26;
	m.machine.liveness_port = 25;
	m.machine.initramfs = true;
	m.machine.serial_ports = VM_QEMU_SERIAL_PORTS;
	m.machine.disks[0] = xstrdup("disk");
	m.machine.disks[1] = xstrdup("oci");
	m.machine.n_disks = 2;
	ok(vm_new_id(m.snapshot_id) == 0 && strlen(m.snapshot_id) == VM_ID_LEN, "new snapshot id has %d hex digits",
	   VM_ID_LEN);
	memset(m.state_sha256, 'a', 64);
	m.state_size = 68027;

	json = vm_meta_to_json(&m);
	ok(strncmp(json, "{\"agentVSockPort\":26,", 21) == 0, "the original's field comes first: %.40s", json);
	free(json);

	is_int(vm_meta_write(p, &m), 0, "config written");
	ok(stat(p, &st) == 0, "config exists");
	is_int(st.st_size, 2 * MIB, "config padded to 1 MiB + 1 MiB");
	is_int(vm_meta_read(p, &back), 0, "config read back (cut at the first NUL)");
	ok(back.has_drafter, "drafter record present");
	is_int(back.machine.kind, VM_KIND_QEMU, "vmm");
	is_str(back.machine.accel, "tcg", "accel");
	is_int(back.machine.cpu_count, 2, "cpu count");
	is_int(back.machine.memory_mib, 256, "memory size");
	is_str(back.machine.boot_args, "console=ttyS0 quiet \"quoted\"", "boot args with quotes");
	is_int(back.machine.n_disks, 2, "two disks");
	is_str(back.machine.disks[1], "oci", "disk order kept");
	ok(back.machine.initramfs, "initramfs flag");
	is_int(back.machine.serial_ports, VM_QEMU_SERIAL_PORTS, "virtio-serial ports");
	is_str(back.snapshot_id, m.snapshot_id, "snapshot id");
	is_int(back.state_size, 68027, "state size");
	ok(vm_machine_equal(&back.machine, &m.machine), "the machine read back equals the one written");
	back.machine.serial_ports = 0;
	ok(!vm_machine_equal(&back.machine, &m.machine),
	   "another number of virtio-serial ports is another machine");
	vm_meta_free(&back);
	vm_meta_free(&m);

	/* A record from before serialPorts: QEMU's default (0 here), as it was booted. */
	const char old[] = "{\"agentVSockPort\":26,\"drafter\":{\"vmm\":\"qemu\",\"cpuCount\":1,\"memorySize\":1,"
			   "\"snapshotId\":\"00000000000000000000000000000000\"}}";
	is_int(vm_meta_parse(old, sizeof old, &back), 0, "a record without serialPorts parses");
	is_int(back.machine.serial_ports, 0, "without serialPorts: QEMU's default number of ports");
	json = vm_meta_to_json(&back);
	ok(!strstr(json, "serialPorts"), "and is written back without it");
	free(json);
	vm_meta_free(&back);

	/* The original's config.json: Firecracker, agent port only. */
	const char orig[] = "{\"agentVSockPort\":27}\0\0\0\0";
	is_int(vm_meta_parse(orig, sizeof orig, &back), 0, "the original's config parses");
	ok(!back.has_drafter && back.machine.kind == VM_KIND_FIRECRACKER && back.machine.agent_port == 27,
	   "the original's config: Firecracker, port 27, no drafter record");
	vm_meta_free(&back);

	const char *bad[] = {
		"",
		"not json",
		"[1,2]",
		"{\"agentVSockPort\":\"26\"}",
		"{\"agentVSockPort\":26,\"drafter\":{\"vmm\":\"bochs\",\"cpuCount\":1,\"memorySize\":1,\"snapshotId\":\"00000000000000000000000000000000\"}}",
		"{\"agentVSockPort\":26,\"drafter\":{\"vmm\":\"qemu\",\"cpuCount\":0,\"memorySize\":1,\"snapshotId\":\"00000000000000000000000000000000\"}}",
		"{\"agentVSockPort\":26,\"drafter\":{\"vmm\":\"qemu\",\"cpuCount\":1,\"memorySize\":1,\"snapshotId\":\"../../etc\"}}",
		"{\"agentVSockPort\":26,\"drafter\":{\"vmm\":\"qemu\",\"serialPorts\":512,\"cpuCount\":1,\"memorySize\":1,\"snapshotId\":\"00000000000000000000000000000000\"}}",
		"{\"agentVSockPort\":26,\"drafter\":{\"vmm\":\"qemu\",\"serialPorts\":\"3\",\"cpuCount\":1,\"memorySize\":1,\"snapshotId\":\"00000000000000000000000000000000\"}}",
		"{\"agentVSockPort\":26,\"drafter\":{\"vmm\":\"qemu\",\"cpuCount\":1,\"memorySize\":1,\"snapshotId\":\"00000000000000000000000000000000\",\"disks\":[\"\"]}}",
		"{\"agentVSockPort\":26,\"drafter\":{\"vmm\":\"qemu\",\"cpuCount\":1,\"memorySize\":1,\"snapshotId\":\"00000000000000000000000000000000\",\"disks\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = vm_meta_parse(bad[i], strlen(bad[i]), &back);
		ok(r == -EINVAL || r == -E2BIG, "junk config %zu refused (%d)", i, r);
		vm_meta_free(&back);
	}
	/* Larger than the limit without a NUL: refused before parsing. */
	size_t big = 2 * MIB;
	char *huge = xcalloc(1, big + 1);
	memset(huge, ' ', big);
	huge[0] = '{';
	is_int(vm_meta_parse(huge, big, &back), -E2BIG, "config over 1 MiB refused");

	/* vm_meta_read stops at the first NUL, which may lie past its first read. */
	ok(write_file(p, huge, big) == 0, "a config file of 2 MiB without a NUL");
	is_int(vm_meta_read(p, &back), -E2BIG, "read: over 1 MiB without a NUL refused");
	size_t pad = 100 * 1024;
	int len = snprintf(huge, big, "{\"agentVSockPort\":31,\"pad\":\"");
	memset(huge + len, 'x', pad);
	strcpy(huge + len + pad, "\"}");
	memset(huge + strlen(huge), 0, big - strlen(huge));
	ok(write_file(p, huge, big) == 0, "a config of 100 KiB, padded with NULs to 2 MiB");
	is_int(vm_meta_read(p, &back), 0, "read: a record longer than one read step");
	is_int(back.machine.agent_port, 31, "read: its field");
	vm_meta_free(&back);
	struct mem_reader mr = { p, 0 };
	is_int(vm_meta_read_from(mem_read, &mr, &back), 0, "read through a reader: the same record");
	is_int(back.machine.agent_port, 31, "read through a reader: its field");
	ok(mr.calls >= 2 && mr.calls < 8, "read through a reader: stops at the NUL (%d reads of a 2 MiB file)",
	   mr.calls);
	vm_meta_free(&back);
	ok(write_file(p, "{\"agentVSockPort\":32}", 21) == 0, "a config without padding");
	is_int(vm_meta_read(p, &back), 0, "read: a record that ends with the file");
	is_int(back.machine.agent_port, 32, "read: its field");
	vm_meta_free(&back);
	free(huge);
	free(p);
}

static void test_stamp_and_copy(void)
{
	char *mem = path_in("memory.bin"), *copy = path_in("memory.copy"), *state = path_in("state.bin");
	char id[VM_ID_LEN + 1], other[VM_ID_LEN + 1];
	struct vm_meta meta = { 0 };
	struct stat st;
	int fd;

	is_int((int)(vm_padded_size(0) / MIB), 1, "padding of 0 bytes: 1 MiB");
	is_int((int)(vm_padded_size(1) / MIB), 2, "padding of 1 byte: 2 MiB");
	is_int((int)(vm_padded_size(MIB) / MIB), 2, "padding of 1 MiB: 2 MiB");

	fd = open(mem, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ok(fd >= 0 && ftruncate(fd, 4 * MIB) == 0, "4 MiB memory file");
	ok(pwrite(fd, "guest data", 10, 3 * MIB) == 10, "some guest data in it");
	close(fd);
	vm_new_id(id);
	vm_new_id(other);
	is_int(vm_memory_stamp(mem, 4 * MIB, id), 0, "stamped");
	ok(stat(mem, &st) == 0 && st.st_size == (off_t)(5 * MIB), "stamping pads to RAM + 1 MiB");
	is_int(vm_memory_check(mem, 4 * MIB, id), 0, "its own id matches");
	is_int(vm_memory_check(mem, 4 * MIB, other), -ESTALE, "another snapshot's id does not");
	is_int(vm_memory_check(mem, 2 * MIB, id), -ESTALE, "a different RAM size does not");

	is_int(vm_copy_file(mem, copy), 0, "sparse copy");
	ok(stat(copy, &st) == 0 && st.st_size == (off_t)(5 * MIB), "copy has the same size");
	ok(st.st_blocks * 512 < 2 * (long long)MIB, "copy stays sparse");
	is_int(vm_memory_check(copy, 4 * MIB, id), 0, "copy keeps the stamp");
	fd = open(copy, O_RDONLY | O_CLOEXEC);
	char buf[11] = { 0 };
	ok(fd >= 0 && pread(fd, buf, 10, 3 * MIB) == 10 && strcmp(buf, "guest data") == 0, "copy keeps the data");
	close(fd);

	/* Seal: state hashed and padded, memory stamped; check finds both. */
	fd = open(state, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ok(fd >= 0 && write(fd, "device state bytes", 18) == 18, "state written");
	close(fd);
	meta.machine.memory_mib = 4;
	is_int(vm_seal_snapshot(state, 18, true, mem, 4 * MIB, &meta), 0, "sealed");
	ok(stat(state, &st) == 0 && st.st_size == (off_t)MIB * 2, "state padded");
	is_int(vm_check_snapshot(&meta, state, mem), 0, "state and memory belong together");
	is_int(vm_check_snapshot(&meta, state, copy), -ESTALE, "memory of the earlier stamp refused");
	/* The same checks on bytes a reader gives (a migration's destination reads its store). */
	is_int(vm_state_check(&meta, "device state bytes"), 0, "state bytes in memory: their hash matches");
	is_int(vm_state_check(&meta, "device stAte bytes"), -EBADE, "other state bytes: refused");
	struct mem_reader mr = { mem, 0 };
	is_int(vm_memory_check_from(&meta, mem_read, &mr), 0, "stamp through a reader: matches");
	ok(mr.calls == 1, "... in one read of the stamp (%d)", mr.calls);
	mr.path = copy;
	is_int(vm_memory_check_from(&meta, mem_read, &mr), -ESTALE, "the earlier stamp through a reader: refused");
	/* A seal of a state held in memory, the stamp written with a writer (a migration's source). */
	struct vm_meta m2 = { .machine.memory_mib = 4 };
	struct mem_writer mw = { copy, 5 * MIB };
	is_int(vm_seal_state("device state bytes", 18, mem_write, &mw, 4 * MIB, &m2), 0,
	       "sealed in memory, stamped with a writer");
	ok(m2.state_size == 18 && str_eq(m2.state_sha256, meta.state_sha256) && !str_eq(m2.snapshot_id, meta.snapshot_id),
	   "same state hash, a new snapshot id");
	is_int(vm_memory_check(copy, 4 * MIB, m2.snapshot_id), 0, "the writer's stamp is the one a check reads");
	mw.limit = 4 * MIB + 10;
	is_int(vm_seal_state("device state bytes", 18, mem_write, &mw, 4 * MIB, &m2), -EFBIG,
	       "a memory device too short for the stamp: -EFBIG");
	vm_meta_free(&m2);
	fd = open(state, O_WRONLY | O_CLOEXEC);
	ok(fd >= 0 && pwrite(fd, "X", 1, 3) == 1, "state modified");
	close(fd);
	is_int(vm_check_snapshot(&meta, state, mem), -EBADE, "modified state refused");
	meta.state_size = 3 * MIB;
	is_int(vm_check_snapshot(&meta, state, mem), -EBADE, "state shorter than recorded refused");
	vm_meta_free(&meta);
	free(mem);
	free(copy);
	free(state);
}

/* A scripted guest: reads one request, writes SCRIPT with %s replaced by the call id, then maybe closes. */
struct guest {
	int fd;
	const char *script;
	bool close_after;
};

static void *guest_main(void *arg)
{
	struct guest *g = arg;
	char buf[4096], id[64] = "";
	ssize_t n = read(g->fd, buf, sizeof buf - 1);

	if (n > 0) {
		buf[n] = 0;
		char *c = strstr(buf, "\"call\":\"");
		if (c)
			sscanf(c + 8, "%63[^\"]", id);
		char out[8192];
		size_t o = 0;
		for (const char *p = g->script; *p && o < sizeof out - 70; p++) {
			if (p[0] == '%' && p[1] == 's') {
				o += (size_t)snprintf(out + o, sizeof out - o, "%s", id);
				p++;
			} else {
				out[o++] = *p;
			}
		}
		(void)!write(g->fd, out, o);
	}
	if (g->close_after)
		shutdown(g->fd, SHUT_RDWR);
	return NULL;
}

static int call_with(const char *script, bool close_after, uint64_t timeout_ns, char *err, size_t errlen)
{
	int sv[2];
	pthread_t th;
	struct guest g;
	int r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	g.fd = sv[1];
	g.script = script;
	g.close_after = close_after;
	pthread_create(&th, NULL, guest_main, &g);
	r = vm_agent_call(sv[0], -1, "BeforeSuspend", now_ns() + timeout_ns, err, errlen);
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(th, NULL);
	close(sv[0]);
	close(sv[1]);
	return r;
}

static void test_agent(void)
{
	char err[256];
	char *req = vm_agent_request("abc", "AfterResume");

	is_str(req, "{\"request\":{\"call\":\"abc\",\"function\":\"AfterResume\",\"args\":[]},\"response\":null}\n",
	       "request line in the original's format");
	free(req);
	is_int(vm_agent_parse_response("{\"request\":null,\"response\":{\"call\":\"abc\",\"value\":null,\"err\":\"\"}}",
				       "abc", err, sizeof err),
	       1, "response to our call");
	is_int(vm_agent_parse_response("{\"request\":null,\"response\":{\"call\":\"xyz\",\"value\":null,\"err\":\"\"}}",
				       "abc", err, sizeof err),
	       0, "response to another call is not ours");
	is_int(vm_agent_parse_response("{\"request\":{\"call\":\"1\",\"function\":\"F\",\"args\":[]},\"response\":null}",
				       "abc", err, sizeof err),
	       0, "a request from the guest is not a response");
	is_int(vm_agent_parse_response("{oops", "abc", err, sizeof err), -EINVAL, "junk line");

	is_int(call_with("{\"request\":null,\"response\":{\"call\":\"%s\",\"value\":null,\"err\":\"\"}}\n", false,
			 5000000000ULL, err, sizeof err),
	       0, "call answered");
	is_int(call_with("\n\n{\"request\":null,\"response\":{\"call\":\"other\",\"value\":null,\"err\":\"\"}}\nnot json\n"
			 "{\"request\":null,\"response\":{\"call\":\"%s\",\"value\":null,\"err\":\"\"}}\n",
			 false, 5000000000ULL, err, sizeof err),
	       0, "blank lines, other calls and junk are skipped");
	is_int(call_with("{\"request\":null,\"response\":{\"call\":\"%s\",\"value\":null,\"err\":\"exit status 3\"}}\n",
			 false, 5000000000ULL, err, sizeof err),
	       -EREMOTEIO, "guest error");
	is_str(err, "exit status 3", "guest error text");
	is_int(call_with("\n", true, 5000000000ULL, err, sizeof err), -ECONNRESET, "channel closed before the answer");
	is_int(call_with("\n", false, 200000000ULL, err, sizeof err), -ETIMEDOUT, "no answer: timeout");

	/* A VMM that exits ends the wait at once. */
	int sv[2];
	pid_t pid;
	int pidfd;
	char *argv[] = { "sleep", "0.2", NULL };
	struct vm_spawn sp = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .numa_node = -1 };
	ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	is_int(vm_spawn(&sp, &pid, &pidfd), 0, "spawned a stand-in VMM");
	uint64_t t0 = now_ns();
	is_int(vm_agent_call(sv[0], pidfd, "AfterResume", now_ns() + 60000000000ULL, err, sizeof err), -ECHILD,
	       "VMM exit ends the call with -ECHILD");
	ok(now_ns() - t0 < 30000000000ULL, "well before the timeout");
	int st;
	is_int(vm_wait_exit(pid, pidfd, 5000000000ULL, &st), 0, "reaped");
	close(pidfd);
	close(sv[0]);
	close(sv[1]);

	char *bad[] = { "/nonexistent/drafter-no-such-binary", NULL };
	sp.argv = bad;
	is_int(vm_spawn(&sp, &pid, &pidfd), -ENOENT, "exec failure reported as -ENOENT");
	sp.argv = argv;
	sp.netns = "drafter-no-such-netns";
	is_int(vm_spawn(&sp, &pid, &pidfd), -ENOENT, "missing namespace reported as -ENOENT");
	is_int(vm_netns_check("a/b"), -EINVAL, "namespace names with '/' refused");
}

static void test_kind(void)
{
	struct cfg_vm c = { 0 };
	enum vm_kind k;

	c.vmm = VMM_QEMU;
	ok(vm_pick_kind(&c, &k) == 0 && k == VM_KIND_QEMU, "vmm=qemu");
	c.vmm = VMM_FIRECRACKER;
	ok(vm_pick_kind(&c, &k) == 0 && k == VM_KIND_FIRECRACKER, "vmm=firecracker");
	c.vmm = VMM_AUTO;
	c.firecracker_bin = "/nonexistent/firecracker";
	c.jailer_bin = "/nonexistent/jailer";
	ok(vm_pick_kind(&c, &k) == 0 && k == VM_KIND_QEMU, "auto without Firecracker binaries: QEMU");
	ok(vm_kind_from_name("bochs", &k) == -EINVAL, "unknown VMM name refused");
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_meta();
	test_stamp_and_copy();
	test_agent();
	test_kind();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	(void)!system(cmd);
	return done_testing();
}
