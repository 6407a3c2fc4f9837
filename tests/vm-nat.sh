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

drafter-runner --netns ${prefix}0 --enable-output=false --devices "$devices" 2>run2.err &
runpid=$!
pids="$pids $runpid"
l2=$(query ${prefix}0)
diag "in ${prefix}0: $l2"
is "back in ${prefix}0: the same guest" "$(field "$l2" boot_id)" "$(field "$l1" boot_id)"
ok "back in ${prefix}0: its counter went on" test "$(field "$l2" counter)" -gt "$(field "$l1" counter)"
kill -TERM $runpid
wait $runpid
is "run in ${prefix}0 suspends, exit 0" "$?" 0

vm_nat_end
ok "drafter nat removed its namespaces" test ! -e /run/netns/${prefix}0 -a ! -e /run/netns/${prefix}1

done_testing
