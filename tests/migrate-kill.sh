#!/bin/bash
# The connection of a migration cut at seeded random points (a proxy resets
# both sides after N bytes), at least 20 times, while a writer keeps writing
# the source. Before the authority transfer the source keeps its devices
# and they stay writable, and the destination exits non-zero leaving no
# mount and no temporary file; after it the destination owns the devices
# and the source never writes again. Never are both sides writable.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/xfer-lib.sh"
xfer_fuse_test "$@" --
SEED=${XFER_KILL_SEED:-20261123}
RUNS=${XFER_KILL_RUNS:-22}
RANDOM=$SEED
diag "seed $SEED, $RUNS cuts"

KNOBS='"blockSize":65536,"minCycles":2,"maxCycles":4,"maxDirtyBlocks":20,"cycleThrottle":20000000'
devs() { echo "[{\"name\":\"disk\",\"base\":\"$1/disk.img\",$KNOBS},{\"name\":\"memory\",\"base\":\"$1/memory.img\",$KNOBS}]"; }
exposed() { sed -n "s/.*device '$2' is at '\([^']*\)'.*/\1/p" "$1" | tail -n 1; }
writable() { dd if=/dev/zero of="$1" bs=64K count=1 seek=1 conv=notrunc,fsync status=none 2>/dev/null; }

mkdir -p src
head -c 4M /dev/urandom >src/disk.img
truncate -s 4M src/memory.img
head -c 256K /dev/urandom | dd of=src/memory.img bs=64K seek=10 conv=notrunc status=none

SRC_PID=
WRITER=
start_source() {
	start_bg "src-$1.log" drafter peer --devices "$(devs src)" --raddr '' --laddr 127.0.0.1:1900 --mount-dir "$T/mnt"
	SRC_PID=$BGPID
	SRC_LOG=src-$1.log
	wait_log "$SRC_LOG" "waiting for a migration" || return 1
	SRC_DISK=$(exposed "$SRC_LOG" disk)
	WRITER_ERR=writer-$1.err
	"$XFER_TOOL" writer "$SRC_DISK" "$1" 4096 >"writer-$1.out" 2>"$WRITER_ERR" &
	WRITER=$!
}

# one uncut migration through the proxy to learn how many bytes it takes
start_source 0 || { fail "source starts"; done_testing; }
"$XFER_TOOL" proxy 1901 1900 0 >proxy-0.out &
PX=$!
wait_log proxy-0.out listening 10
drafter peer --devices "$(devs full)" --raddr 127.0.0.1:1901 --laddr '' --mount-dir "$T/mnt" >full.log 2>&1 &
FULL=$!
wait_log full.log "migrated 2 devices" 60
kill -TERM $FULL; wait $FULL
wait $PX
wait $SRC_PID
wait $WRITER
TOTAL=$(tail -n 1 proxy-0.out)
ok "an uncut migration moves $TOTAL bytes" test "$TOTAL" -gt 1000000
ok "the uncut migration copies the device" cmp -s src/disk.img full/disk.img
rm -rf full

before=0 after=0
# Where the even runs aim: the last eighth of a migration, where the
# handover happens. The writer makes each migration's size differ from the
# uncut one's (in one CI run every handover came after 102 % of TOTAL and no
# cut landed after it), so the aim follows what the cuts find: up a tenth
# after a cut before the handover, down a twentieth after one past the end.
END=$TOTAL
for ((i = 1; i <= RUNS; i++)); do
	[ -n "$SRC_PID" ] && kill -0 "$SRC_PID" 2>/dev/null || start_source "$i"
	# odd runs anywhere, even runs near the end
	r=$((RANDOM * 32768 + RANDOM))
	if ((i % 2)); then
		cut=$((r % TOTAL + 1))
	else
		cut=$((END - END / 8 + r % (END / 8 + END / 20) + 1))
	fi
	"$XFER_TOOL" proxy 1901 1900 "$cut" >"proxy-$i.out" &
	PX=$!
	wait_log "proxy-$i.out" listening 10
	drafter peer --devices "$(devs dst$i)" --raddr 127.0.0.1:1901 --laddr '' --mount-dir "$T/mnt" >"dst-$i.log" 2>&1 &
	DP=$!
	wait_log "dst-$i.log" "took over|cannot migrate" 60
	wait $PX
	if grep -q "took over" "dst-$i.log"; then
		after=$((after + 1))
		# the destination owns the devices; the source hands over and stops
		wait_log "dst-$i.log" "migrated 2 devices|lost '" 60
		wait "$SRC_PID"; src_rc=$?
		wait "$WRITER"
		DDISK=$(exposed "dst-$i.log" disk)
		if grep -q "migrated 2 devices" "dst-$i.log"; then
			((i % 2)) || END=$((END - END / 20))
			ok "cut $i at $cut/$TOTAL after completion: source exits 0" test "$src_rc" = 0
			[ "$src_rc" = 0 ] || diag "$(tail -n 3 "$SRC_LOG")"
			is "cut $i: destination has the source's content" "$(hash_of "$DDISK")" "$(hash_of src/disk.img)"
		else
			ok "cut $i at $cut/$TOTAL during post-copy: source exits with an error ($src_rc)" test "$src_rc" != 0
		fi
		like "cut $i: the source's writer was stopped" "$(cat "$WRITER_ERR")" "stopped after [0-9]+ writes"
		ok "cut $i: the destination's device is writable" writable "$DDISK"
		ok "cut $i: the source's device is not" bash -c "! test -e '$SRC_DISK' || ! dd if=/dev/zero of='$SRC_DISK' bs=64K count=1 conv=notrunc,fsync status=none 2>/dev/null"
		kill -TERM $DP; wait $DP
		SRC_PID=
		# the next source starts from the files the destination wrote back
		rm -rf src && mv "dst$i" src
	else
		before=$((before + 1))
		((i % 2)) || END=$((END + END / 10))
		wait $DP; drc=$?
		ok "cut $i at $cut/$TOTAL before authority: destination exits non-zero ($drc)" test "$drc" != 0
		like "cut $i: with one clear line" "$(tail -n 1 "dst-$i.log")" "^drafter: cannot (migrate from|connect to) '127.0.0.1:1901': "
		ok "cut $i: no mount of the destination left" bash -c "! grep -q 'mnt/drafter-$DP ' /proc/mounts"
		ok "cut $i: no temporary files left" bash -c "! find . -path './dst$i/*' -name '*.part-*' | grep -q ."
		ok "cut $i: the source still runs" kill -0 "$SRC_PID"
		ok "cut $i: the source's writer still writes" kill -0 "$WRITER"
		ok "cut $i: the source's device is writable" writable "$SRC_DISK"
		wait_log "$SRC_LOG" "failed, the devices stay here and writable" 10 || wait_log "$SRC_LOG" "refused" 1
		rm -rf "dst$i"
	fi
done
diag "$before cuts before the authority transfer, $after after"
ok "cuts landed on both sides of the handover" test "$before" -gt 0 -a "$after" -gt 0
[ -n "$SRC_PID" ] && { kill "$WRITER" 2>/dev/null; stop_bg "$SRC_PID"; }
ok "no FUSE mount is left" bash -c "! grep -q '$T' /proc/mounts"
done_testing
