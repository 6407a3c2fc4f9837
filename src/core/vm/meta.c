/*
 * The `config` device and the files around a snapshot. The config device
 * stays readable by the original (its only field, agentVSockPort, comes
 * first) and adds drafter's record of the machine a restore must rebuild,
 * plus a snapshot id and the state's length and hash. The same id is stamped
 * into the memory file right after the guest RAM, so a memory file that does
 * not belong to the state is refused before any VMM sees it (QEMU would
 * "restore" it and then crash the guest).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "core/io.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm/vm.h"

#define MIB (1024ULL * 1024ULL)
/* A config device larger than this is not ours: refuse to parse it. */
#define META_MAX_BYTES (1024 * 1024)
#define META_READ_STEP (64 * 1024)
#define STAMP_MAGIC "DRAFTER-MEMORY-1"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free)

void vm_machine_free(struct vm_machine *m)
{
	free(m->boot_args);
	m->boot_args = NULL;
	for (size_t i = 0; i < m->n_disks; i++) {
		free(m->disks[i]);
		m->disks[i] = NULL;
	}
	m->n_disks = 0;
}

int vm_machine_copy(struct vm_machine *dst, const struct vm_machine *src)
{
	*dst = *src;
	dst->boot_args = xstrdup(src->boot_args);
	for (size_t i = 0; i < src->n_disks; i++)
		dst->disks[i] = xstrdup(src->disks[i]);
	return 0;
}

bool vm_machine_equal(const struct vm_machine *a, const struct vm_machine *b)
{
	if (a->kind != b->kind || a->fc_fork != b->fc_fork || a->cpu_count != b->cpu_count ||
	    a->memory_mib != b->memory_mib || a->agent_port != b->agent_port ||
	    a->liveness_port != b->liveness_port || a->initramfs != b->initramfs ||
	    a->serial_ports != b->serial_ports || a->n_disks != b->n_disks)
		return false;
	if (!str_eq(a->accel, b->accel) || !str_eq(a->machine, b->machine) ||
	    !str_eq(a->cpu_template, b->cpu_template) || !str_eq(a->interface, b->interface) ||
	    !str_eq(a->mac, b->mac) || !str_eq(a->boot_args ? a->boot_args : "", b->boot_args ? b->boot_args : ""))
		return false;
	for (size_t i = 0; i < a->n_disks; i++)
		if (!str_eq(a->disks[i], b->disks[i]))
			return false;
	return true;
}

int vm_machine_disk_index(const struct vm_machine *m, const char *name)
{
	for (size_t i = 0; i < m->n_disks; i++)
		if (str_eq(m->disks[i], name))
			return (int)i;
	return -1;
}

void vm_meta_free(struct vm_meta *meta)
{
	vm_machine_free(&meta->machine);
}

char *vm_meta_to_json(const struct vm_meta *meta)
{
	const struct vm_machine *m = &meta->machine;
	_cleanup_(json_object_putp) json_object *root = json_object_new_object();
	json_object *d = json_object_new_object();
	json_object *disks = json_object_new_array();

	json_object_object_add(root, "agentVSockPort", json_object_new_int64(m->agent_port));
	json_object_object_add(d, "version", json_object_new_int(1));
	json_object_object_add(d, "vmm", json_object_new_string(vm_kind_name(m->kind)));
	if (m->kind == VM_KIND_QEMU) {
		json_object_object_add(d, "accel", json_object_new_string(m->accel));
		json_object_object_add(d, "machine", json_object_new_string(m->machine));
		if (m->serial_ports)
			json_object_object_add(d, "serialPorts", json_object_new_int64(m->serial_ports));
	} else {
		json_object_object_add(d, "firecrackerFork", json_object_new_boolean(m->fc_fork));
	}
	json_object_object_add(d, "cpuCount", json_object_new_int64(m->cpu_count));
	json_object_object_add(d, "memorySize", json_object_new_int64(m->memory_mib));
	json_object_object_add(d, "cpuTemplate", json_object_new_string(m->cpu_template));
	json_object_object_add(d, "bootArgs", json_object_new_string(m->boot_args ? m->boot_args : ""));
	json_object_object_add(d, "interface", json_object_new_string(m->interface));
	json_object_object_add(d, "mac", json_object_new_string(m->mac));
	json_object_object_add(d, "livenessVSockPort", json_object_new_int64(m->liveness_port));
	json_object_object_add(d, "initramfs", json_object_new_boolean(m->initramfs));
	for (size_t i = 0; i < m->n_disks; i++)
		json_object_array_add(disks, json_object_new_string(m->disks[i]));
	json_object_object_add(d, "disks", disks);
	json_object_object_add(d, "snapshotId", json_object_new_string(meta->snapshot_id));
	json_object_object_add(d, "stateSize", json_object_new_int64((int64_t)meta->state_size));
	json_object_object_add(d, "stateSha256", json_object_new_string(meta->state_sha256));
	json_object_object_add(d, "created", json_object_new_int64((int64_t)meta->created_unix));
	json_object_object_add(root, "drafter", d);
	return xstrdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
}

static int get_string(json_object *o, const char *key, char *buf, size_t len, bool required)
{
	json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v)) {
		buf[0] = 0;
		return required ? -EINVAL : 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	s = json_object_get_string(v);
	if (strlen(s) >= len)
		return -EINVAL;
	strcpy(buf, s);
	return 0;
}

static int get_u64(json_object *o, const char *key, uint64_t max, uint64_t *out, bool required)
{
	json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(o, key, &v))
		return required ? -EINVAL : 0;
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	errno = 0;
	x = json_object_get_int64(v);
	if (errno || x < 0 || (uint64_t)x > max)
		return -EINVAL;
	*out = (uint64_t)x;
	return 0;
}

static int get_bool(json_object *o, const char *key, bool *out)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return -EINVAL;
	*out = json_object_get_boolean(v);
	return 0;
}

static bool is_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int parse_drafter(json_object *d, struct vm_meta *meta)
{
	struct vm_machine *m = &meta->machine;
	char kind[16], args[4096];
	uint64_t x;
	json_object *disks;
	int r;

	if (!json_object_is_type(d, json_type_object))
		return -EINVAL;
	if ((r = get_string(d, "vmm", kind, sizeof kind, true)) < 0 || vm_kind_from_name(kind, &m->kind) < 0)
		return -EINVAL;
	if ((r = get_string(d, "accel", m->accel, sizeof m->accel, false)) < 0 ||
	    (r = get_string(d, "machine", m->machine, sizeof m->machine, false)) < 0 ||
	    (r = get_string(d, "cpuTemplate", m->cpu_template, sizeof m->cpu_template, false)) < 0 ||
	    (r = get_string(d, "bootArgs", args, sizeof args, false)) < 0 ||
	    (r = get_string(d, "interface", m->interface, sizeof m->interface, false)) < 0 ||
	    (r = get_string(d, "mac", m->mac, sizeof m->mac, false)) < 0 ||
	    (r = get_string(d, "snapshotId", meta->snapshot_id, sizeof meta->snapshot_id, true)) < 0 ||
	    (r = get_string(d, "stateSha256", meta->state_sha256, sizeof meta->state_sha256, false)) < 0 ||
	    (r = get_bool(d, "firecrackerFork", &m->fc_fork)) < 0 ||
	    (r = get_bool(d, "initramfs", &m->initramfs)) < 0)
		return -EINVAL;
	if (!is_hex(meta->snapshot_id, VM_ID_LEN))
		return -EINVAL;
	if (meta->state_sha256[0] && !is_hex(meta->state_sha256, 64))
		return -EINVAL;
	m->boot_args = xstrdup(args);
	x = 1;
	if (get_u64(d, "cpuCount", 256, &x, true) < 0 || x == 0)
		return -EINVAL;
	m->cpu_count = (uint32_t)x;
	if (get_u64(d, "memorySize", 1U << 24, &x, true) < 0 || x == 0)
		return -EINVAL;
	m->memory_mib = (uint32_t)x;
	x = 25;
	if (get_u64(d, "livenessVSockPort", UINT32_MAX, &x, false) < 0)
		return -EINVAL;
	m->liveness_port = (uint32_t)x;
	x = 0;
	if (get_u64(d, "serialPorts", VM_QEMU_SERIAL_PORTS_MAX, &x, false) < 0)
		return -EINVAL;
	m->serial_ports = (uint32_t)x;
	if (get_u64(d, "stateSize", UINT64_MAX >> 1, &meta->state_size, false) < 0 ||
	    get_u64(d, "created", UINT64_MAX >> 1, &meta->created_unix, false) < 0)
		return -EINVAL;
	if (json_object_object_get_ex(d, "disks", &disks)) {
		if (!json_object_is_type(disks, json_type_array))
			return -EINVAL;
		size_t n = json_object_array_length(disks);
		if (n > VM_MAX_DISKS)
			return -E2BIG;
		for (size_t i = 0; i < n; i++) {
			json_object *e = json_object_array_get_idx(disks, i);
			if (!json_object_is_type(e, json_type_string) || json_object_get_string_len(e) == 0 ||
			    json_object_get_string_len(e) > 255)
				return -EINVAL;
			m->disks[m->n_disks++] = xstrdup(json_object_get_string(e));
		}
	}
	meta->has_drafter = true;
	return 0;
}

int vm_meta_parse(const char *buf, size_t len, struct vm_meta *meta)
{
	_cleanup_(json_object_putp) json_object *root = NULL;
	json_tokener *tok;
	json_object *d;
	uint64_t port = 26;
	size_t n;
	int r;

	memset(meta, 0, sizeof *meta);
	meta->machine.agent_port = 26;
	meta->machine.liveness_port = 25;
	n = strnlen(buf, len);
	if (n > META_MAX_BYTES)
		return -E2BIG;
	if (n == 0)
		return -EINVAL;
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, buf, (int)n);
	r = json_tokener_get_error(tok) == json_tokener_success ? 0 : -EINVAL;
	json_tokener_free(tok);
	if (r < 0 || !json_object_is_type(root, json_type_object))
		return -EINVAL;
	if (get_u64(root, "agentVSockPort", UINT32_MAX, &port, false) < 0)
		return -EINVAL;
	meta->machine.agent_port = (uint32_t)port;
	if (json_object_object_get_ex(root, "drafter", &d)) {
		r = parse_drafter(d, meta);
		if (r < 0) {
			vm_meta_free(meta);
			return r;
		}
	} else {
		/* The original's package: a Firecracker snapshot, nothing else known. */
		meta->machine.kind = VM_KIND_FIRECRACKER;
	}
	return 0;
}

static ssize_t fd_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	return pread_full(*(int *)ctx, buf, len, off);
}

int vm_meta_read_from(vm_read_fn rd, void *ctx, struct vm_meta *meta)
{
	_cleanup_free_ char *buf = xcalloc(1, META_MAX_BYTES + 1);
	ssize_t n;
	size_t len;

	/*
	 * The text ends at the first NUL (the padding of a config device),
	 * so reading stops there rather than going through the whole device
	 * (a megabyte or more, read through FUSE on a destination before its
	 * VM can resume). One byte past the limit tells a too long record.
	 */
	for (len = 0; len < META_MAX_BYTES + 1;) {
		size_t want = META_MAX_BYTES + 1 - len < META_READ_STEP ? META_MAX_BYTES + 1 - len : META_READ_STEP;
		n = rd(ctx, buf + len, want, len);
		if (n < 0)
			return (int)n;
		len += (size_t)n;
		if ((size_t)n < want || memchr(buf + len - (size_t)n, 0, (size_t)n))
			break;
	}
	if (strnlen(buf, len) > META_MAX_BYTES)
		return -E2BIG;
	return vm_meta_parse(buf, len, meta);
}

int vm_meta_read(const char *path, struct vm_meta *meta)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return vm_meta_read_from(fd_read, &fd, meta);
}

uint64_t vm_padded_size(uint64_t size)
{
	return (size + MIB - 1) / MIB * MIB + MIB;
}

int vm_pad_file(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	if (truncate(path, (off_t)vm_padded_size((uint64_t)st.st_size)) < 0)
		return -errno;
	return 0;
}

int vm_meta_write(const char *path, const struct vm_meta *meta)
{
	_cleanup_free_ char *json = vm_meta_to_json(meta);
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -EBADF;
	size_t len = strlen(json);
	int r;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	r = write_all(fd, json, len);
	if (r == 0 && ftruncate(fd, (off_t)vm_padded_size(len)) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
	return r;
}

int vm_new_id(char id[VM_ID_LEN + 1])
{
	uint8_t raw[VM_ID_LEN / 2];
	int r = random_bytes(raw, sizeof raw);

	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

static int digest_hex(EVP_MD_CTX *ctx, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		return -EIO;
	for (unsigned int i = 0; i < mdlen && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int vm_sha256_fd(int fd, uint64_t len, char hex[65])
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	_cleanup_free_ uint8_t *buf = xcalloc(1, 1 << 16);
	uint64_t off = 0;

	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	while (off < len) {
		size_t want = len - off > (1 << 16) ? (1 << 16) : (size_t)(len - off);
		int r = pread_exact(fd, buf, want, off); /* -ENODATA: shorter than recorded */
		if (r < 0)
			return r;
		if (EVP_DigestUpdate(ctx, buf, want) != 1)
			return -EIO;
		off += want;
	}
	return digest_hex(ctx, hex);
}

static int sha256_buf(const void *buf, uint64_t len, char hex[65])
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	if (EVP_DigestUpdate(ctx, buf, len) != 1)
		return -EIO;
	return digest_hex(ctx, hex);
}

void vm_hash_prepare(void)
{
	char hex[65];

	(void)sha256_buf("", 0, hex);
}

int vm_state_check(const struct vm_meta *meta, const void *state)
{
	char hex[65];
	int r = sha256_buf(state, meta->state_size, hex);

	if (r < 0)
		return r;
	return str_eq(hex, meta->state_sha256) ? 0 : -EBADE;
}

static void stamp_record(char rec[VM_STAMP_LEN], const char *snapshot_id)
{
	memset(rec, 0, VM_STAMP_LEN);
	snprintf(rec, VM_STAMP_LEN, "%s %s\n", STAMP_MAGIC, snapshot_id);
}

int vm_memory_stamp_with(vm_write_fn wr, void *ctx, uint64_t ram_bytes, const char *snapshot_id)
{
	char rec[VM_STAMP_LEN];
	ssize_t n;

	stamp_record(rec, snapshot_id);
	n = wr(ctx, rec, sizeof rec, ram_bytes);
	if (n < 0)
		return (int)n;
	return n == (ssize_t)sizeof rec ? 0 : -EFBIG;
}

int vm_memory_stamp(const char *path, uint64_t ram_bytes, const char *snapshot_id)
{
	_cleanup_close_ int fd = -EBADF;
	char rec[VM_STAMP_LEN];
	struct stat st;
	ssize_t n;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < ram_bytes)
		return -EINVAL;
	if ((uint64_t)st.st_size < vm_padded_size(ram_bytes) &&
	    ftruncate(fd, (off_t)vm_padded_size(ram_bytes)) < 0)
		return -errno;
	stamp_record(rec, snapshot_id);
	n = pwrite(fd, rec, sizeof rec, (off_t)ram_bytes);
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof rec)
		return -EIO;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

static int stamp_check(vm_read_fn rd, void *ctx, uint64_t ram_bytes, const char *snapshot_id)
{
	char rec[VM_STAMP_LEN] = { 0 }, want[VM_STAMP_LEN];
	ssize_t n = rd(ctx, rec, sizeof rec, ram_bytes);

	if (n < 0)
		return (int)n;
	stamp_record(want, snapshot_id);
	if (n != (ssize_t)sizeof rec || memcmp(rec, want, sizeof rec) != 0)
		return -ESTALE;
	return 0;
}

int vm_memory_check(const char *path, uint64_t ram_bytes, const char *snapshot_id)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return stamp_check(fd_read, &fd, ram_bytes, snapshot_id);
}

int vm_memory_check_from(const struct vm_meta *meta, vm_read_fn rd, void *ctx)
{
	return stamp_check(rd, ctx, (uint64_t)meta->machine.memory_mib * MIB, meta->snapshot_id);
}

/* Copy [FROM, END) of IN to the same offsets of OUT with read and write. */
static int copy_range_rw(int in, int out, off_t from, off_t end)
{
	char buf[65536];

	while (from < end) {
		size_t want = end - from < (off_t)sizeof buf ? (size_t)(end - from) : sizeof buf;
		ssize_t n = pread_full(in, buf, want, (uint64_t)from);
		if (n <= 0)
			return (int)n; /* 0: the file ends here */
		int r = pwrite_all(out, buf, (size_t)n, (uint64_t)from);
		if (r < 0)
			return r;
		from += n;
	}
	return 0;
}

/* Copy the data ranges of SRC into DST, leaving holes as holes. */
static int copy_sparse(int in, int out, uint64_t size)
{
	uint64_t pos = 0, data, end;
	int r;

	while ((r = next_data(in, pos, size, &data, &end)) > 0) {
		off_t o_in = (off_t)data, o_out = (off_t)data, hole = (off_t)end;
		while (o_in < hole) {
			ssize_t n = copy_file_range(in, &o_in, out, &o_out, (size_t)(hole - o_in), 0);
			if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS)) {
				/* between file systems that cannot do it in the kernel (FUSE to a disk) */
				int c = copy_range_rw(in, out, o_in, hole);
				if (c < 0)
					return c;
				break;
			}
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			if (n == 0)
				break;
		}
		pos = end;
	}
	return r;
}

int vm_copy_file(const char *src, const char *dst)
{
	_cleanup_close_ int in = -EBADF, out = -EBADF;
	struct stat st;
	int r;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	if (fstat(in, &st) < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return -errno;
	if (ioctl(out, FICLONE, in) == 0)
		return 0;
	if (ftruncate(out, st.st_size) < 0)
		return -errno;
	r = copy_sparse(in, out, (uint64_t)st.st_size);
	if (r < 0)
		return r;
	return 0;
}

int vm_fsync_path(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

/* The rest of a seal, once the state is hashed: the record's fields (the memory's stamp follows). */
static void seal_fields(uint64_t state_size, struct vm_meta *meta)
{
	meta->state_size = state_size;
	meta->created_unix = (uint64_t)time(NULL);
	meta->has_drafter = true;
}

int vm_seal_snapshot(const char *state, uint64_t state_size, bool pad_state, const char *memory,
		     uint64_t ram_bytes, struct vm_meta *meta)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	r = vm_new_id(meta->snapshot_id);
	if (r < 0)
		return r;
	fd = open(state, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = vm_sha256_fd(fd, state_size, meta->state_sha256);
	if (r < 0)
		return r;
	if (pad_state && ftruncate(fd, (off_t)vm_padded_size(state_size)) < 0)
		return -errno;
	if (fsync(fd) < 0)
		return -errno;
	seal_fields(state_size, meta);
	return vm_memory_stamp(memory, ram_bytes, meta->snapshot_id);
}

int vm_seal_state(const void *state, uint64_t state_size, vm_write_fn stamp, void *ctx, uint64_t ram_bytes,
		  struct vm_meta *meta)
{
	int r = vm_new_id(meta->snapshot_id);

	if (r == 0)
		r = sha256_buf(state, state_size, meta->state_sha256);
	if (r < 0)
		return r;
	seal_fields(state_size, meta);
	return vm_memory_stamp_with(stamp, ctx, ram_bytes, meta->snapshot_id);
}

int vm_check_snapshot(const struct vm_meta *meta, const char *state, const char *memory)
{
	_cleanup_close_ int fd = -EBADF;
	char sha[65];
	int r;

	fd = open(state, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = vm_sha256_fd(fd, meta->state_size, sha);
	if (r == -ENODATA)
		return -EBADE;
	if (r < 0)
		return r;
	if (!str_eq(sha, meta->state_sha256))
		return -EBADE;
	r = vm_memory_check(memory, (uint64_t)meta->machine.memory_mib * MIB, meta->snapshot_id);
	if (r == -ESTALE)
		return -ESTALE;
	return r;
}

bool vm_state_paddable(const struct vm_machine *m)
{
	/* QEMU gets exactly state_size bytes from drafter; the fork reads a length prefix. */
	return m->kind == VM_KIND_QEMU || m->fc_fork;
}

int vm_copy_prepare(const char *src, const char *dst)
{
	_cleanup_close_ int out = -EBADF;
	struct stat st;

	if (stat(src, &st) < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return -errno;
	if (ftruncate(out, st.st_size) < 0)
		return -errno;
	return 0;
}

int vm_copy_data(const char *src, const char *dst)
{
	_cleanup_close_ int in = -EBADF, out = -EBADF;
	struct stat st;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	if (fstat(in, &st) < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CLOEXEC);
	if (out < 0)
		return -errno;
	return copy_sparse(in, out, (uint64_t)st.st_size);
}
