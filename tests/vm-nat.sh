#!/bin/bash
# The VM commands with the networking commands, as a user runs them: `drafter
# nat` makes the namespaces, the test blueprint is snapshotted in the first,
# resumed in the second and reached from the host through `drafter forward`,
# then resumed in the first again: the same guest (boot id) answers each time.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/vm-lib.sh"

requires nft
vm_prepare

prefix=dv$(($$ % 10000)) # at most 6 characters
cleanup_fn vm_end_all
# Address ranges of our own (10.213), so that other tests' namespaces never overlap.
if ! vm_nat $prefix 2 213; then
	diag "$(cat nat-$prefix.log)"
	skip_all "drafter nat did not set up its namespaces"
fi
pass "drafter nat made ${prefix}0 and ${prefix}1"

pkg=$T/package
vm_snapshot ${prefix}0 "$(snap_devs "$pkg")" --enable-output=false 2>snap.err
is "snapshot in ${prefix}0" "$?" 0
devices=$(run_devs "$pkg")

port=$((20000 + $$ % 20000))
drafter-runner --netns ${prefix}1 --enable-output=false --devices "$devices" 2>run1.err &
runpid=$!
pids="$pids $runpid"
drafter-forwarder --host-veth-cidr 10.213.0.0/22 \
	--port-forwards "[{\"netns\":\"${prefix}1\",\"internalPort\":\"8080\",\"protocol\":\"tcp\",\"externalAddr\":\"127.0.0.1:$port\"}]" \
	>fwd.log 2>&1 &
fwdpid=$!
pids="$pids $fwdpid"
l1=$(query "" 127.0.0.1:$port)
diag "through the host: $l1"
ok "the resumed guest answers on the host through drafter forward" test -n "$l1"
kill -INT $fwdpid
wait $fwdpid
kill -TERM $runpid
wait $runpid
is "run in ${prefix}1 suspends, exit 0" "$?" 0

# What the resumed VM puts on its TAP: QEMU announces a migrated or restored
# guest by default (RARP frames of its own, then gratuitous ARP from the
# guest, several rounds), drafter turns that off (docs/vm.md).
ip netns exec ${prefix}0 python3 -c '
import signal, socket, struct, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("tap0", 0))
print("listening", flush=True)
try:
    while True:
        f = s.recv(2048)
        t = struct.unpack("!H", f[12:14])[0]
        if t == 0x8035:
            print("rarp", flush=True)
        elif t == 0x0806 and len(f) >= 42 and f[28:32] == f[38:42]:
            print("gratuitous-arp", flush=True)
        else:
            print("frame %04x" % t, flush=True)
finally:
    s.close()
' >sniff.log 2>&1 &
sniffpid=$!
pids="$pids $sniffpid"
for _ in $(seq 50); do grep -q listening sniff.log && break; sleep 0.1; done
drafter-runner --netns ${prefix}0 --enable-output=false --devices "$devices" 2>run2.err &
runpid=$!
pids="$pids $runpid"
l2=$(query ${prefix}0)
diag "in ${prefix}0: $l2"
sleep 1 # QEMU's announce rounds come 50, 150, 250 and 350 ms after the first
kill -TERM $sniffpid
wait $sniffpid
ok "the resumed VM answered over its TAP (frames seen)" grep -q "^frame" sniff.log
is "no announce frames on the TAP after the resume" "$(grep -c -E '^(rarp|gratuitous-arp)' sniff.log)" 0
is "back in ${prefix}0: the same guest" "$(field "$l2" boot_id)" "$(field "$l1" boot_id)"
ok "back in ${prefix}0: its counter went on" test "$(field "$l2" counter)" -gt "$(field "$l1" counter)"
kill -TERM $runpid
wait $runpid
is "run in ${prefix}0 suspends, exit 0" "$?" 0

vm_nat_end
ok "drafter nat removed its namespaces" test ! -e /run/netns/${prefix}0 -a ! -e /run/netns/${prefix}1

done_testing
