#!/bin/bash
# Migrations between drafter peers (devices only, no VM) over loopback:
# a writer keeps writing the exposed source device during the migration and
# the destination ends up with exactly the source's content at the suspend;
# a chain A -> B -> C -> A; copy-on-write over a shared base sends only the
# changed blocks; mutual TLS; a peer fed from a registry and drained by
# terminate (three processes); compression chosen by speed (terminate
# through a throttled proxy compresses); a peer that keeps its
# devices in temporary files (no base), removed at exit; a destination whose
# disk fills up fails with one line and leaves nothing, and the source serves
# the next one.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/xfer-lib.sh"
xfer_fuse_test "$@" -- openssl

KNOBS='"blockSize":65536,"minCycles":2,"maxCycles":6,"maxDirtyBlocks":50,"cycleThrottle":100000000'
devs() { # devs DIR: disk and memory devices with their files in DIR
	echo "[{\"name\":\"disk\",\"base\":\"$1/disk.img\",$KNOBS},{\"name\":\"memory\",\"base\":\"$1/memory.img\",$KNOBS}]"
}
exposed() { sed -n "s/.*device '$2' is at '\([^']*\)'.*/\1/p" "$1" | tail -n 1; }
no_mounts() { ! grep -q "$T" /proc/mounts; }

mkdir -p a
head -c 32M /dev/urandom >a/disk.img
truncate -s 16M a/memory.img
head -c 1M /dev/urandom | dd of=a/memory.img bs=1M seek=3 conv=notrunc 2>/dev/null

# ---- A -> B with a writer on A ----
start_bg a.log drafter peer --devices "$(devs a)" --raddr '' --laddr 127.0.0.1:1800 --mount-dir "$T/mnt"
A=$BGPID
ok "A exposes its devices" wait_log a.log "waiting for a migration"
ADISK=$(exposed a.log disk)
ok "A's disk is a FUSE file" test -f "$ADISK"
"$XFER_TOOL" writer "$ADISK" 7 >writer.out 2>writer.err &
WP=$!
timeout 10 bash -c "until [ -s '$T/writer.err' ] || [ \$(stat -c %Y '$ADISK') -gt 0 ]; do sleep 0.05; done"
start_bg b.log drafter peer --devices "$(devs b)" --raddr 127.0.0.1:1800 --laddr '' --mount-dir "$T/mnt"
B=$BGPID
ok "B takes over" wait_log b.log "took over 2 devices" 60
ok "B completes the migration" wait_log b.log "migrated 2 devices .* from '127.0.0.1:1800'" 60
wait $WP
like "the writer was stopped by the handover" "$(cat writer.err)" "stopped after [0-9]+ writes: (Read-only file system|Transport endpoint is not connected)"
writes=$(cat writer.out)
ok "the writer wrote during the migration ($writes writes)" test "$writes" -gt 0
wait $A
is "A exits 0 after handing over" "$?" 0
like "A reports the handover" "$(cat a.log)" "migrated 2 devices .* dirty cycles"
BDISK=$(exposed b.log disk)
BMEM=$(exposed b.log memory)
is "B's disk equals A's disk at the suspend" "$(hash_of "$BDISK")" "$(hash_of a/disk.img)"
is "B's memory equals A's memory" "$(hash_of "$BMEM")" "$(hash_of a/memory.img)"
ok "B's disk is writable" dd if=/dev/urandom of="$BDISK" bs=64K count=1 seek=3 conv=notrunc,fsync status=none
stop_bg $B
is "B exits 0 on SIGTERM" "$RC" 0
ok "B's files hold its devices" cmp -s b/memory.img a/memory.img
ok "no FUSE mount is left" no_mounts

# ---- chain A -> B -> C -> A, writing at every hop ----
cp -a b chain0
start_bg ca.log drafter peer --devices "$(devs chain0)" --raddr '' --laddr 127.0.0.1:1801 --mount-dir "$T/mnt"
CA=$BGPID
ok "chain: first peer ready" wait_log ca.log "waiting for a migration"
start_bg cb.log drafter peer --devices "$(devs c)" --raddr 127.0.0.1:1801 --laddr 127.0.0.1:1802 --mount-dir "$T/mnt"
CB=$BGPID
ok "chain: second peer took over" wait_log cb.log "waiting for a migration" 60
dd if=/dev/urandom of="$(exposed cb.log disk)" bs=64K count=2 seek=100 conv=notrunc,fsync status=none
start_bg cc.log drafter peer --devices "$(devs d)" --raddr 127.0.0.1:1802 --laddr 127.0.0.1:1803 --mount-dir "$T/mnt"
CC=$BGPID
ok "chain: third peer took over" wait_log cc.log "waiting for a migration" 60
dd if=/dev/urandom of="$(exposed cc.log memory)" bs=4K count=3 seek=7 conv=notrunc,fsync status=none
start_bg cd.log drafter peer --devices "$(devs a2)" --raddr 127.0.0.1:1803 --laddr '' --mount-dir "$T/mnt"
CD=$BGPID
ok "chain: back at the first host" wait_log cd.log "migrated 2 devices" 60
wait $CA; ra=$?
wait $CB; rb=$?
wait $CC; rc=$?
is "chain: every source exits 0" "$ra$rb$rc" 000
is "chain: disk made the round trip with B's writes" "$(hash_of "$(exposed cd.log disk)")" "$(hash_of c/disk.img)"
is "chain: memory made the round trip with C's writes" "$(hash_of "$(exposed cd.log memory)")" "$(hash_of d/memory.img)"
ok "chain: the writes are there" bash -c "! cmp -s b/disk.img c/disk.img && ! cmp -s c/memory.img d/memory.img"
stop_bg $CD
is "chain: last peer exits 0" "$RC" 0
ok "chain: no FUSE mount is left" no_mounts

# ---- copy-on-write over a shared base: only changed blocks travel ----
mkdir -p base
head -c 16M /dev/urandom >base/rootfs.img
COW='"blockSize":65536,"minCycles":1,"maxCycles":2,"cycleThrottle":10000000,"sharedbase":true'
cow() { echo "[{\"name\":\"disk\",\"base\":\"base/rootfs.img\",\"overlay\":\"$1/overlay.img\",\"state\":\"$1/state.bin\",$COW}]"; }
start_bg sa.log drafter peer --devices "$(cow sa)" --raddr '' --laddr 127.0.0.1:1804 --mount-dir "$T/mnt"
SA=$BGPID
ok "COW: source ready" wait_log sa.log "waiting for a migration"
SDISK=$(exposed sa.log disk)
for blk in 5 77 200; do
	dd if=/dev/urandom of="$SDISK" bs=64K count=1 seek=$blk conv=notrunc,fsync status=none
done
cp "$SDISK" expected-disk.img
start_bg sb.log drafter peer --devices "$(cow sb)" --raddr 127.0.0.1:1804 --laddr '' --mount-dir "$T/mnt"
SB=$BGPID
ok "COW: destination completes" wait_log sb.log "migrated 1 devices" 60
wait $SA
like "COW: only the 3 changed blocks were sent" "$(cat sa.log)" "migrated 1 devices \(192.0 KiB in 3 blocks, 253 blocks already there\)"
is "COW: destination content is right" "$(hash_of "$(exposed sb.log disk)")" "$(hash_of expected-disk.img)"
ok "COW: the base was not written" bash -c "! cmp -s base/rootfs.img expected-disk.img"
stop_bg $SB
overlay_kb=$(du -k sb/overlay.img | cut -f1)
ok "COW: the destination overlay holds only the changed blocks (${overlay_kb} KiB)" test "$overlay_kb" -le 512

# ---- mutual TLS between peers ----
make_certs certs
start_bg ta.log drafter peer --devices "$(devs b)" --raddr '' --laddr 127.0.0.1:1805 --mount-dir "$T/mnt" \
	--tls-cert certs/server.pem --tls-key certs/server.key --tls-ca certs/ca.pem --tls-verify-peer
TA=$BGPID
ok "TLS: source ready" wait_log ta.log "waiting for a migration on '127.0.0.1:1805' \(TLS\)"
drafter peer --devices "$(devs tlsbad)" --raddr localhost:1805 --laddr '' --mount-dir "$T/mnt" \
	--tls-ca certs/ca.pem >tbad.log 2>&1
is "TLS: a destination without a client certificate exits 1" "$?" 1
like "TLS: and says why" "$(cat tbad.log)" "cannot migrate from 'localhost:1805': .*certificate required"
ok "TLS: it left no files" bash -c '! ls tlsbad 2>/dev/null | grep -q .'
ok "TLS: the source keeps waiting" kill -0 $TA
start_bg tb.log drafter peer --devices "$(devs tls)" --raddr localhost:1805 --laddr '' --mount-dir "$T/mnt" \
	--tls-ca certs/ca.pem --tls-cert certs/client.pem --tls-key certs/client.key
TB=$BGPID
ok "TLS: migration completes" wait_log tb.log "migrated 2 devices" 60
wait $TA
is "TLS: content equal" "$(hash_of "$(exposed tb.log disk)")" "$(hash_of b/disk.img)"
stop_bg $TB

# ---- registry -> peer (post-copy from the start) -> terminate ----
start_bg r.log drafter registry --devices '[{"name":"disk","input":"a/disk.img"},{"name":"memory","input":"a/memory.img"}]' --laddr 127.0.0.1:1806
ok "registry ready" wait_log r.log "serving 2 devices"
start_bg rp.log drafter peer --devices "$(devs rp)" --raddr 127.0.0.1:1806 --laddr 127.0.0.1:1807 --mount-dir "$T/mnt"
RP=$BGPID
ok "peer fed by the registry takes over at once" wait_log rp.log "took over 2 devices" 60
is "peer reads the registry's content" "$(hash_of "$(exposed rp.log disk)")" "$(hash_of a/disk.img)"
ok "peer completes" wait_log rp.log "waiting for a migration on '127.0.0.1:1807'" 60
drafter terminate --devices '[{"name":"disk","output":"term/disk.img"},{"name":"memory","output":"term/memory.img"}]' \
	--raddr 127.0.0.1:1807 >term.log 2>&1
is "terminate drains the peer" "$?" 0
ok "terminate's copy equals the package" bash -c 'cmp -s a/disk.img term/disk.img && cmp -s a/memory.img term/memory.img'
wait $RP
is "the drained peer exits 0" "$?" 0

# ---- compression is chosen by what moves the data faster: zstd over a slow link ----
mkdir -p z
seq 1 2000000 | head -c 8M >z/text.img
start_bg zr.log drafter registry --devices '[{"name":"text","input":"z/text.img","blockSize":4096}]' --laddr 127.0.0.1:1808
ZR=$BGPID
ok "compression: registry ready" wait_log zr.log "serving 1 devices"
"$XFER_TOOL" proxy 1809 1808 0 rate=4194304 >zp.out 2>zp.err &
ZP=$!
ok "compression: a proxy passes 4 MiB/s" wait_log zp.out listening 10
drafter terminate --devices '[{"name":"text","output":"z/out.img"}]' --raddr 127.0.0.1:1809 >zt.log 2>&1
is "compression: terminate through the slow link" "$?" 0
wait $ZP
ok "compression: the copy is exact" cmp -s z/text.img z/out.img
raw=$(sed -n 's/.* \([0-9]*\) raw, .*/\1/p' zt.log)
zst=$(sed -n 's/.* \([0-9]*\) compressed blocks.*/\1/p' zt.log)
diag "$(tail -n 1 zt.log)"
ok "compression: over the slow link most blocks travel compressed ($zst compressed, $raw raw)" \
	test "${zst:-0}" -gt "${raw:-0}"
stop_bg $ZR

# ---- a peer with no files for its devices: temporary ones, discarded at exit ----
mkdir -p tmpd
TMPDIR="$T/tmpd" start_bg nb.log drafter peer --devices '[{"name":"disk"},{"name":"memory"}]' \
	--raddr 127.0.0.1:1806 --laddr '' --mount-dir "$T/mnt"
NB=$BGPID
ok "no files: the peer says the changes will be discarded" wait_log nb.log "device 'disk' is kept in a temporary file"
ok "no files: the migration completes" wait_log nb.log "migrated 2 devices" 60
is "no files: the peer has the registry's content" "$(hash_of "$(exposed nb.log disk)")" "$(hash_of a/disk.img)"
ok "no files: the devices live in TMPDIR" bash -c "ls tmpd | grep -q '^drafter-disk-' && ls tmpd | grep -q '^drafter-memory-'"
ok "no files: the device is writable" dd if=/dev/urandom of="$(exposed nb.log disk)" bs=64K count=1 conv=notrunc,fsync status=none
stop_bg $NB
is "no files: the peer exits 0" "$RC" 0
is "no files: nothing is left in TMPDIR" "$(ls -A tmpd)" ""
# ---- a destination whose disk fills up: it fails, the source keeps serving ----
mkdir -p full
if mount -t tmpfs -o size=8m tmpfs full 2>/dev/null; then
	start_bg fa.log drafter peer --devices "$(devs a)" --raddr '' --laddr 127.0.0.1:1810 --mount-dir "$T/mnt"
	FA=$BGPID
	ok "full disk: source ready" wait_log fa.log "waiting for a migration"
	rc=0
	err=$(drafter peer --devices "$(devs full)" --raddr 127.0.0.1:1810 --laddr '' --mount-dir "$T/mnt" 2>&1) || rc=$?
	is "full disk: the destination fails" "$rc" 1
	like "full disk: with one line that says why" "$err" "^drafter: cannot migrate from '127.0.0.1:1810': cannot write block [0-9]+ of device '(disk|memory)': No space left on device$"
	is "full disk: and leaves nothing on that disk" "$(ls -A full)" ""
	ok "full disk: the source says it keeps its devices" wait_log fa.log "the devices stay here and writable"
	start_bg fb.log drafter peer --devices "$(devs fb)" --raddr 127.0.0.1:1810 --laddr '' --mount-dir "$T/mnt"
	FB=$BGPID
	ok "full disk: the source serves the next destination" wait_log fb.log "migrated 2 devices" 60
	is "full disk: which gets the source's disk" "$(hash_of "$(exposed fb.log disk)")" "$(hash_of a/disk.img)"
	wait $FA
	is "full disk: the source exits 0 after that handover" "$?" 0
	stop_bg $FB
	umount full
else
	skip "full disk: cannot mount a tmpfs here (needs root)"
fi

ok "no FUSE mount is left at the end" no_mounts
done_testing
