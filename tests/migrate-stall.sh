#!/bin/bash
# Migration peers that stop answering (SIGSTOP), devices only, with
# --timeout 2s on both sides:
#  (a) the source stops during pre-copy: the destination exits non-zero with
#      one clear line and leaves no mount, no temporary file and no process;
#      continued, the source still runs and its devices are writable;
#  (c) the destination stops during pre-copy: the source gives up, keeps its
#      devices writable, and then migrates them to the next destination;
#  (b) the source stops after the authority transfer while post-copied blocks
#      are still missing (a proxy slows the source's bytes after AUTHORITY):
#      a reader of the destination's device gets EIO instead of hanging, the
#      destination reports the lost source, and a signal then ends it with a
#      non-zero status and no mount left.
# Waits are bounded only as hang guards; nothing here measures time.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/xfer-lib.sh"
xfer_fuse_test "$@" --

TIMEOUT=2s
# Pre-copy lasts seconds: 15 dirty cycles 200 ms apart.
SLOW='"blockSize":65536,"minCycles":15,"maxCycles":20,"maxDirtyBlocks":1000000,"cycleThrottle":200000000'
# No dirty cycles: every block written during the full pass is post-copied.
POST='"blockSize":65536,"minCycles":0,"maxCycles":0'
devs() { # devs DIR KNOBS
	echo "[{\"name\":\"disk\",\"base\":\"$1/disk.img\",$2},{\"name\":\"memory\",\"base\":\"$1/memory.img\",$2}]"
}
exposed() { sed -n "s/.*device '$2' is at '\([^']*\)'.*/\1/p" "$1" | tail -n 1; }
writable() { dd if=/dev/zero of="$1" bs=64K count=1 seek=1 conv=notrunc,fsync status=none 2>/dev/null; }
no_mount_of() { ! grep -q "mnt/drafter-$1 " /proc/mounts; }
gone() { ! kill -0 "$1" 2>/dev/null; }
# wait_after FILE LINES REGEX: wait (hang guard) for a line matching REGEX
# after the first LINES lines of FILE.
wait_after() { timeout 60 bash -c 'tail -n +"$(($2 + 1))" -F "$1" 2>/dev/null | grep -q -m1 -E -- "$3"' _ "$@"; }
# wait_exit PID: wait for PID to end, its status in $RC; a process still
# there after a minute (a hang) is killed and RC is "hung".
wait_exit() {
	local i
	for ((i = 0; i < 600; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		kill -CONT "$1"
		kill -KILL "$1"
		wait "$1" 2>/dev/null
		RC=hung
		return
	fi
	RC=0
	wait "$1" 2>/dev/null || RC=$?
}
# peer LOG ARGS...: a drafter peer in the background; its pid in $BGPID.
peer() {
	local log=$1
	shift
	start_bg "$log" drafter peer --mount-dir "$T/mnt" --timeout "$TIMEOUT" "$@"
	cleanup_fn "kill -CONT $BGPID 2>/dev/null"
}

mkdir -p a
head -c 16M /dev/urandom >a/disk.img
truncate -s 8M a/memory.img
head -c 1M /dev/urandom | dd of=a/memory.img bs=1M seek=2 conv=notrunc status=none

peer a.log --devices "$(devs a "$SLOW")" --raddr '' --laddr 127.0.0.1:1950
A=$BGPID
ok "the source exposes its devices" wait_log a.log "waiting for a migration"
ADISK=$(exposed a.log disk)
"$XFER_TOOL" writer "$ADISK" 11 65536 >writer-a.out 2>writer-a.err &
W=$!
cleanup_fn "kill $W 2>/dev/null"

# ---- (a) the source stops during pre-copy ----
peer b.log --devices "$(devs b "$SLOW")" --raddr 127.0.0.1:1950 --laddr ''
B=$BGPID
ok "(a) the migration starts" wait_log a.log "migrating 2 devices" 30
kill -STOP "$A"
wait_exit "$B"
ok "(a) the destination exits non-zero ($RC)" test "$RC" != 0 -a "$RC" != hung
like "(a) with one clear line" "$(tail -n 1 b.log)" \
	"^drafter: cannot migrate from '127.0.0.1:1950': no message for 2s: the peer stopped answering$"
ok "(a) no mount of the destination is left" no_mount_of "$B"
ok "(a) no temporary file is left" bash -c "! find b -name '*.part-*' 2>/dev/null | grep -q ."
kill -CONT "$A"
ok "(a) the source notices and keeps its devices" wait_log a.log "failed, the devices stay here and writable" 30
ok "(a) the source still runs" kill -0 "$A"
ok "(a) the source's writer still writes" kill -0 "$W"
ok "(a) the source's device is writable" writable "$ADISK"

# ---- (c) the destination stops during pre-copy ----
seen=$(wc -l <a.log)
peer c.log --devices "$(devs c "$SLOW")" --raddr 127.0.0.1:1950 --laddr ''
C=$BGPID
ok "(c) the migration starts" wait_after a.log "$seen" "migrating 2 devices"
kill -STOP "$C"
ok "(c) the source gives up" wait_after a.log "$seen" "failed, the devices stay here and writable"
like "(c) with a clear reason" "$(tail -n +$((seen + 1)) a.log | grep "failed, the devices stay")" \
	"migration to '127\.0\.0\.1:[0-9]+' failed, the devices stay here and writable: .* for 2s: .*stopped answering$"
ok "(c) the source still runs" kill -0 "$A"
ok "(c) the source's writer still writes" kill -0 "$W"
ok "(c) the source's device is writable" writable "$ADISK"
kill -CONT "$C"
wait_exit "$C"
ok "(c) the continued destination exits non-zero ($RC)" test "$RC" != 0 -a "$RC" != hung
ok "(c) and leaves no mount" no_mount_of "$C"
peer d.log --devices "$(devs d "$SLOW")" --raddr 127.0.0.1:1950 --laddr ''
D=$BGPID
ok "(c) the source still migrates to the next destination" \
	wait_log d.log "migrated 2 devices .* from '127.0.0.1:1950'" 60
wait_exit "$A"
is "(c) the source exits 0 after handing over" "$RC" 0
wait "$W"
is "(c) the destination has the source's disk" "$(hash_of "$(exposed d.log disk)")" "$(hash_of a/disk.img)"
stop_bg "$D"
ok "(c) the destination's mount is gone" no_mount_of "$D"

# ---- (b) the source stops after the authority transfer ----
stall_after_authority() {
	local F FDISK rc
	"$XFER_TOOL" writer "$(exposed e.log disk)" 12 65536 >writer-e.out 2>writer-e.err &
	W=$!
	cleanup_fn "kill $W 2>/dev/null"
	# After AUTHORITY the proxy passes the source's bytes at 256 KiB/s, so the
	# post-copy of the blocks written during the full pass takes many seconds.
	"$XFER_TOOL" proxy 1961 1960 0 auth-rate=262144 >proxy.out 2>proxy.err &
	PX=$!
	cleanup_fn "kill $PX 2>/dev/null"
	if ! wait_log proxy.out listening 10; then
		skip "(b) needs the proxy's auth-rate mode: $(cat proxy.err)"
		return
	fi
	peer f.log --devices "$(devs f "$POST")" --raddr 127.0.0.1:1961 --laddr ''
	F=$BGPID
	if ! wait_log f.log "took over 2 devices" 60; then
		fail "(b) the destination takes over"
		return
	fi
	pass "(b) the destination takes over"
	kill -STOP "$E"
	FDISK=$(exposed f.log disk)
	timeout 60 dd if="$FDISK" of=/dev/null bs=64K 2>reader.err
	rc=$?
	ok "(b) a reader of missing blocks fails instead of hanging ($rc)" test "$rc" != 0 -a "$rc" != 124
	like "(b) with an I/O error" "$(cat reader.err)" "Input/output error"
	ok "(b) the destination reports the lost source" wait_log f.log "lost '127.0.0.1:1961' after the handover" 30
	like "(b) with one clear line" "$(grep "lost '" f.log)" \
		"^drafter: lost '127.0.0.1:1961' after the handover, missing blocks fail with I/O errors: no message for 2s: the peer stopped answering$"
	ok "(b) the destination's device is still there" test -e "$FDISK"
	stop_bg "$F"
	ok "(b) on a signal the destination exits non-zero ($RC)" test "$RC" != 0
	ok "(b) and leaves no mount" no_mount_of "$F"
	ok "(b) and no process" gone "$F"
}
peer e.log --devices "$(devs a "$POST")" --raddr '' --laddr 127.0.0.1:1960
E=$BGPID
if wait_log e.log "waiting for a migration"; then
	pass "(b) the source exposes its devices"
	stall_after_authority
	kill -CONT "$E"
	wait_exit "$E"
	ok "(b) the continued source ends" test "$RC" != hung
	kill "$PX" "$W" 2>/dev/null
else
	fail "(b) the source exposes its devices"
fi
ok "no FUSE mount is left" bash -c "! grep -q '$T' /proc/mounts"
done_testing
