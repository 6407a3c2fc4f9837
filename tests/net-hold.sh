#!/bin/bash
# Holding a guest's inbound packets (the API the VM layer calls around a
# suspend): a TCP connection kept open across a hold window survives and
# loses no bytes; nothing reaches the guest while held; an overflowing queue
# drops instead of blocking; the window ends on its own at its maximum length.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/net-lib.sh"
tmpdir
requires head cmp

net_topology || skip_all "cannot build the test topology"
start_nat "$T/nat.log" --namespace-count 1 || skip_all "drafter nat does not start: $(cat "$T/nat.log")"
guest_standin 0 || skip_all "no guest stand-in"
HVI=10.0.8.1   # namespace 0's veth address: allow-incoming DNATs it to the guest
HOLD=$top_builddir/tests/net-hold

size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# wait_size FILE N: until FILE has N bytes (30 s at most).
wait_size() {
	local i
	for ((i = 0; i < 300; i++)); do
		[ "$(size "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
# start_hold ARGS...: net-hold on namespace 0, controlled through fd 8.
start_hold() {
	# The last hold's output must be gone before this one starts, or the
	# wait below could read it before the new process truncates the file.
	rm -f "$T/hctl" "$T/hold.out"
	mkfifo "$T/hctl"
	"$HOLD" "${P}0" "$@" <"$T/hctl" >"$T/hold.out" 2>&1 &
	HOLD_PID=$!
	_bg_pids+=($HOLD_PID)
	exec 8>"$T/hctl"
	wait_for "$T/hold.out" 'holding|cannot'
	grep -q holding "$T/hold.out"
}
release_hold() {
	echo release >&8
	exec 8>&-
	wait $HOLD_PID
}

# --- one TCP connection across a hold window ---
head -c 65536 /dev/urandom >"$T/a"
head -c 262144 /dev/urandom >"$T/b"
head -c 65536 /dev/urandom >"$T/c"
cat "$T/a" "$T/b" "$T/c" >"$T/sent"
spawn ip netns exec "${P}g0" socat -u TCP-LISTEN:9100,reuseaddr OPEN:"$T/recv",creat,trunc
wait_port "${P}g0" tcp 9100
mkfifo "$T/feed"
spawn in_host socat -u PIPE:"$T/feed" TCP:$HVI:9100
exec 7>"$T/feed"
cat "$T/a" >&7
ok "before the window: the first 64 KiB arrive" wait_size "$T/recv" 65536

# The VM layer's order: hold, pause the VM, ..., resume the VM, release.
ok "hold starts" start_hold
like "hold uses a queue rule in the namespace" "$(ip netns exec "${P}0" nft list ruleset)" 'queue (flags bypass )?(num|to)'
kill -STOP "${WIRE_PID[0]}"
# In the background: with nothing acknowledged, the sender soon blocks.
cat "$T/b" >&7 &
feeder=$!
sleep 1
kill -CONT "${WIRE_PID[0]}"
sleep 0.5
is "during the window (guest paused, then resumed): nothing more reaches the guest" "$(size "$T/recv")" 65536
release_hold
is "release succeeds" "$?" 0
like "release reports the held packets and no expiry" "$(cat "$T/hold.out")" 'released held=[1-9][0-9]* expired=0'
ok "after the window: the held data arrives" wait_size "$T/recv" $((65536 + 262144))
wait $feeder
cat "$T/c" >&7
exec 7>&-
ok "the connection carries on after the window" wait_size "$T/recv" $((2 * 65536 + 262144))
ok "not a byte lost or changed" cmp -s "$T/sent" "$T/recv"
fails "the hold rules are gone" sh -c "ip netns exec ${P}0 nft list tables | grep -q drafter_hold"

# --- overflow drops rather than blocks ---
spawn ip netns exec "${P}g0" socat -u UDP-RECV:9200 OPEN:"$T/udp",creat,trunc
wait_port "${P}g0" udp 9200
echo first | in_host socat -u - UDP:$HVI:9200
ok "UDP reaches the guest before holding" wait_size "$T/udp" 6
ok "hold starts with a queue of 8 packets" start_hold 8
for i in $(seq 1 50); do printf 'd%02d\n' "$i"; done >"$T/dgrams"
# One 4-byte line per datagram, sent as fast as socat can: it must never block.
ok "50 datagrams into a full queue: the sender completes" \
	timeout 20 nsenter --net=/run/netns/$H socat -u -b 4 OPEN:"$T/dgrams" UDP:$HVI:9200
release_hold
wait_size "$T/udp" 10 >/dev/null
sleep 0.5
got=$(( $(wc -l <"$T/udp") - 1 ))
ok "after release, some held datagrams arrive (got $got)" test "$got" -ge 1
ok "and no more than the queue held (got $got of 50, queue 8)" test "$got" -le 8

# --- the window's maximum length ---
rm -f "$T/recv"
spawn ip netns exec "${P}g0" socat -u TCP-LISTEN:9101,reuseaddr OPEN:"$T/recv",creat,trunc
wait_port "${P}g0" tcp 9101
ok "hold starts with a maximum window of 1s" start_hold 0 1s
head -c 4096 /dev/urandom >"$T/d"
spawn in_host socat -u OPEN:"$T/d" TCP:$HVI:9101
ok "without release, data arrives once the window has expired" wait_size "$T/recv" 4096
release_hold
like "release reports the expiry" "$(cat "$T/hold.out")" 'expired=1'
ok "data intact" cmp -s "$T/d" "$T/recv"

done_testing
