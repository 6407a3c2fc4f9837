#!/bin/bash
# drafter nat for real, in namespaces of the test's own: guests reach the
# uplink through NAT (IPv4 and IPv6), namespaces cannot reach each other,
# SIGINT removes everything, and a run after SIGKILL cleans up first.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/net-lib.sh"
tmpdir

net_topology || skip_all "cannot build the test topology"
before=$(host_snapshot)

# The uplink answers with the address it sees the connection come from.
spawn ip netns exec "$U" socat TCP-LISTEN:8080,bind=$UPLINK4,reuseaddr,fork SYSTEM:'echo uplink4 peer=$SOCAT_PEERADDR'
spawn ip netns exec "$U" socat TCP6-LISTEN:8080,bind=[$UPLINK6],reuseaddr,fork SYSTEM:'echo uplink6 peer=$SOCAT_PEERADDR'

wait_port "$U" tcp 8080
ok "nat starts and reports ready" start_nat "$T/nat.log" --namespace-count 2
like "the host interface is the default route's" "$(cat "$T/nat.log")" "host interface '$HUP'"
is "namespaces are visible to ip netns" "$(ip netns list | awk '{print $1}' | grep "^$P[0-9]" | sort | tr '\n' ' ')" "${P}0 ${P}1 "
tap=$(ip -n "${P}0" addr show tap0)
like "tap0 has the gateway address" "$tap" 'inet 172\.100\.100\.1/30'
like "tap0 has the reference MAC" "$tap" '02:0e:d9:fd:68:3d'
like "tap0 has the IPv6 gateway address" "$tap" 'inet6 fd00:100:100::1/64'
like "ns0's veth has the first /30's first address" "$(ip -n "${P}0" addr show ${P}0-veth0)" 'inet 10\.0\.8\.1/30'
like "ns1's host veth has the second /30's second address" "$(ip -n "$H" addr show ${P}1-veth1)" 'inet 10\.0\.8\.6/30'
is "IPv4 forwarding is on while running" "$(in_host cat /proc/sys/net/ipv4/ip_forward)" 1
like "rules are in drafter's own table" "$(in_host nft list tables)" "table inet drafter_nat_$P"

ok "guest stand-in 0 attaches to tap0" guest_standin 0
ok "guest stand-in 1 attaches to tap0" guest_standin 1

out=$(ip netns exec "${P}g0" socat -T5 -t5 - TCP:$UPLINK4:8080,connect-timeout=5 2>&1)
like "guest 0 reaches the uplink over IPv4, masqueraded" "$out" "uplink4 peer=$HOST4"
out=$(ip netns exec "${P}g1" socat -T5 -t5 - TCP:$UPLINK4:8080,connect-timeout=5 2>&1)
like "guest 1 reaches the uplink over IPv4" "$out" "uplink4 peer=$HOST4"
out=$(ip netns exec "${P}g0" socat -T5 -t5 - TCP6:[$UPLINK6]:8080,connect-timeout=5 2>&1)
like "guest 0 reaches the uplink over IPv6 (NAT66)" "$out" 'uplink6 peer=\[2001:0?db8:0?0?0?1:'

# Blocked subnet: guest 0 cannot reach namespace 1's addresses, which the
# host itself can reach (so the target is there and answering).
spawn ip netns exec "${P}g1" socat TCP-LISTEN:9000,reuseaddr,fork SYSTEM:'echo guest1'
spawn ip netns exec "${P}g1" socat TCP6-LISTEN:9001,reuseaddr,fork SYSTEM:'echo guest1-v6'
wait_port "${P}g1" tcp 9000 9001
like "the host reaches guest 1 through ns1's veth address" \
	"$(in_host socat -T5 -t5 - TCP:10.0.8.5:9000,connect-timeout=5 2>&1)" guest1
like "the host reaches guest 1 through ns1's unique address" \
	"$(in_host socat -T5 -t5 - TCP:10.0.15.2:9000,connect-timeout=5 2>&1)" guest1
fails "guest 0 cannot reach ns1's veth address" \
	ip netns exec "${P}g0" socat -T2 -t2 - TCP:10.0.8.5:9000,connect-timeout=2
fails "guest 0 cannot reach ns1's unique address" \
	ip netns exec "${P}g0" socat -T2 -t2 - TCP:10.0.15.2:9000,connect-timeout=2
fails "guest 0 cannot reach ns1's host-side veth address" \
	ip netns exec "${P}g0" socat -T2 -t2 - TCP:10.0.8.6:9000,connect-timeout=2
fails "guest 0 cannot reach ns1's IPv6 veth address" \
	ip netns exec "${P}g0" socat -T2 -t2 - TCP6:[fd00:100:100:0:2::5]:9001,connect-timeout=2

stop $NAT_PID INT
is "SIGINT: nat exits 0" "$RC" 0
after=$(host_snapshot)
is "SIGINT: ruleset, links, routes, namespaces and forwarding as before" "$after" "$before"
[ "$after" = "$before" ] || diff <(echo "$before") <(echo "$after") | sed 's/^/# /'
ok "SIGINT: the state file is gone" test ! -e "/run/drafter/nat-$P.state"

# A run killed with SIGKILL leaves everything behind; the next run removes it.
ok "nat starts again" start_nat "$T/nat2.log" --namespace-count 2
kill -KILL $NAT_PID; wait $NAT_PID 2>/dev/null
ok "SIGKILL leaves the namespaces behind" ip netns exec "${P}0" true
ok "the next run starts" start_nat "$T/nat3.log" --namespace-count 2
like "the next run removed the leftovers first" "$(cat "$T/nat3.log")" 'removing the leftovers of an earlier run'
is "a second nat with the same prefix is refused" \
	"$(in_host_t drafter nat --namespace-prefix "$P" --namespace-count 2 2>&1 >/dev/null | grep -c 'already running')" 1
stop $NAT_PID TERM
is "SIGTERM: nat exits 0" "$RC" 0
is "after SIGKILL and a clean run: all as before" "$(host_snapshot)" "$before"

# --cleanup removes the leftovers and exits.
ok "nat starts (to be killed)" start_nat "$T/nat4.log" --namespace-count 2
kill -KILL $NAT_PID; wait $NAT_PID 2>/dev/null
ok "--cleanup exits 0" in_host_t drafter nat --namespace-prefix "$P" --namespace-count 2 --cleanup
is "--cleanup: all as before" "$(host_snapshot)" "$before"

# Namespaces that drafter did not create are not taken over silently.
ip netns add "${P}0"
out=$(in_host_t drafter nat --namespace-prefix "$P" --namespace-count 2 2>&1)
is "a foreign namespace with the prefix: refused" "$?" 1
like "and the message names --cleanup" "$out" 'cleanup'
ip netns del "${P}0"

# The original's flags (legacy name): an explicit host interface, no
# allow-incoming rule.
nsenter --net=/run/netns/$H drafter-nat --namespace-prefix "$P" --host-interface "$HUP" \
	--allow-incoming-traffic=false 2>"$T/legacy.log" &
NAT_PID=$!
_bg_pids+=($NAT_PID)
ok "drafter-nat (legacy flags) starts" wait_for "$T/legacy.log" 'ready'
n=$(ip netns list | awk '{print $1}' | grep -c "^$P[0-9]")
ok "it created its namespaces ($n)" test "$n" -ge 2
rules=$(ip netns exec "${P}0" nft list table inet drafter)
like "the guest's traffic is still SNATed" "$rules" 'snat ip to 10\.0\.15\.1'
fails "without allow-incoming, the veth address is not DNATed" grep -q 'daddr 10\.0\.8\.1 dnat' <<<"$rules"
stop $NAT_PID INT
is "SIGINT: drafter-nat exits 0" "$RC" 0
is "drafter-nat: all as before" "$(host_snapshot)" "$before"

# A failure half-way (a link of the name drafter needs already exists):
# one line, exit 1, and what was created is removed; the other link stays.
ip -n "$H" link add "${P}1-veth1" type veth peer name "${P}x"
out=$(in_host_t drafter nat --namespace-prefix "$P" --namespace-count 2 2>&1)
is "a failure half-way: exit 1" "$?" 1
like "with one line naming the step and the cause" "$out" "^drafter: cannot create veth pair '${P}1-veth1': File exists$"
ok "the existing link is left alone" ip -n "$H" link show "${P}1-veth1"
ip -n "$H" link del "${P}1-veth1"
is "a failure half-way: all as before" "$(host_snapshot)" "$before"

out=$(in_host_t drafter nat --namespace-prefix "$P" --namespace-count 2 --host-interface nosuchif0 2>&1)
is "an unknown host interface: non-zero exit" "$?" 1
like "with one line naming it" "$out" "^drafter: cannot use host interface 'nosuchif0': No such device$"
is "an unknown host interface: all as before" "$(host_snapshot)" "$before"

done_testing
