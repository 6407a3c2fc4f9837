#!/bin/bash
# The VM commands with the networking commands, as a user runs them: `drafter
# nat` makes the namespaces, the test blueprint is snapshotted in the first,
# resumed in the second and reached from the host through `drafter forward`,
# then resumed in the first again: the same guest (boot id) answers each time.
. "$top_srcdir/tests/functions.sh"

requires qemu-system-x86_64 mkfs.ext4 cpio socat ip nft
requires_root
[ -x "$top_builddir/guest/drafter-agent" ] || skip_all "guest programs are not built"

tmpdir
chmod 755 "$T"
cd "$T"
export DRAFTER_QEMU_ACCEL=tcg

bp=$top_builddir/tests/tmp/blueprint
if ! out=$("$top_srcdir/guest/build-blueprint" --bindir "$top_builddir/guest" -o "$bp" 2>&1); then
	diag "$out"
	skip_all "cannot build the test blueprint (is linux-image-amd64 installed?)"
fi

prefix=dv$(($$ % 10000)) # at most 6 characters
# Address ranges of our own, so that other tests' namespaces never overlap.
veth=10.213.0.0/22
nsveth=10.213.7.0/24
pids=
cleanup_fn 'for p in $pids; do pkill -KILL -P $p; kill -TERM $p; done 2>/dev/null; sleep 1; true'

drafter nat --namespace-prefix $prefix --namespace-count 2 --host-veth-cidr $veth \
	--namespace-veth-cidr $nsveth --blocked-subnet-cidr $nsveth >nat.log 2>&1 &
natpid=$!
pids="$pids $natpid"
for i in $(seq 1 100); do
	[ -e /run/netns/${prefix}1 ] && grep -q . nat.log 2>/dev/null && break
	kill -0 $natpid 2>/dev/null || break
	sleep 0.1
done
[ -e /run/netns/${prefix}1 ] || { diag "$(cat nat.log)"; skip_all "drafter nat did not set up its namespaces"; }
pass "drafter nat made ${prefix}0 and ${prefix}1"

pkg=$T/package
bootargs='console=ttyS0 panic=-1 quiet root=/dev/vda rw'
drafter-snapshotter --netns ${prefix}0 --memory-size 256 --boot-args "$bootargs" --enable-output=false \
	--chroot-base-dir "$T/vms" --devices "[
 {\"name\":\"state\",\"output\":\"$pkg/state.bin\"},{\"name\":\"memory\",\"output\":\"$pkg/memory.bin\"},
 {\"name\":\"kernel\",\"input\":\"$bp/vmlinux\",\"output\":\"$pkg/vmlinux\"},
 {\"name\":\"initramfs\",\"input\":\"$bp/initramfs\",\"output\":\"$pkg/initramfs\"},
 {\"name\":\"disk\",\"input\":\"$bp/rootfs.ext4\",\"output\":\"$pkg/rootfs.ext4\"},
 {\"name\":\"config\",\"output\":\"$pkg/config.json\"}]" 2>snap.err
is "snapshot in ${prefix}0" "$?" 0
devices="[
 {\"name\":\"state\",\"path\":\"$pkg/state.bin\"},{\"name\":\"memory\",\"path\":\"$pkg/memory.bin\"},
 {\"name\":\"kernel\",\"path\":\"$pkg/vmlinux\"},{\"name\":\"initramfs\",\"path\":\"$pkg/initramfs\"},
 {\"name\":\"disk\",\"path\":\"$pkg/rootfs.ext4\"},{\"name\":\"config\",\"path\":\"$pkg/config.json\"}]"

# query ADDR PORT: one line from the guest's service, retried while things come up.
query() {
	local i line
	for i in $(seq 1 50); do
		line=$(socat -T 2 - TCP:$1:$2,connect-timeout=1 </dev/null 2>/dev/null)
		case "$line" in boot_id=*) echo "$line"; return 0 ;; esac
		sleep 0.2
	done
	return 1
}
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

port=$((20000 + $$ % 20000))
drafter-runner --netns ${prefix}1 --enable-output=false --devices "$devices" 2>run1.err &
runpid=$!
pids="$pids $runpid"
drafter-forwarder --host-veth-cidr $veth \
	--port-forwards "[{\"netns\":\"${prefix}1\",\"internalPort\":\"8080\",\"protocol\":\"tcp\",\"externalAddr\":\"127.0.0.1:$port\"}]" \
	>fwd.log 2>&1 &
fwdpid=$!
pids="$pids $fwdpid"
l1=$(query 127.0.0.1 $port)
diag "through the host: $l1"
ok "the resumed guest answers on the host through drafter forward" test -n "$l1"
kill -INT $fwdpid
wait $fwdpid
kill -TERM $runpid
wait $runpid
is "run in ${prefix}1 suspends, exit 0" "$?" 0

drafter-runner --netns ${prefix}0 --enable-output=false --devices "$devices" 2>run2.err &
runpid=$!
pids="$pids $runpid"
l2=$(ip netns exec ${prefix}0 bash -c "$(declare -f query); query 172.100.100.2 8080")
diag "in ${prefix}0: $l2"
is "back in ${prefix}0: the same guest" "$(field "$l2" boot_id)" "$(field "$l1" boot_id)"
ok "back in ${prefix}0: its counter went on" test "$(field "$l2" counter)" -gt "$(field "$l1" counter)"
kill -TERM $runpid
wait $runpid
is "run in ${prefix}0 suspends, exit 0" "$?" 0

kill -TERM $natpid
wait $natpid
ok "drafter nat removed its namespaces" test ! -e /run/netns/${prefix}0 -a ! -e /run/netns/${prefix}1

done_testing
