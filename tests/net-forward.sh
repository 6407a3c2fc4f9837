#!/bin/bash
# drafter forward for real: host loopback, a host address seen from the
# uplink, UDP, IPv6 and wildcard addresses reach a guest port; forwarders run
# side by side; bad forwards fail before any rule; SIGINT removes the rules.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/net-lib.sh"
tmpdir

net_topology || skip_all "cannot build the test topology"
start_nat "$T/nat.log" --namespace-count 2 || skip_all "drafter nat does not start: $(cat "$T/nat.log")"
guest_standin 0 || skip_all "no guest stand-in"
guest_standin 1 || skip_all "no guest stand-in"
spawn ip netns exec "${P}g0" socat TCP-LISTEN:9000,reuseaddr,fork SYSTEM:'echo guest0 tcp'
spawn ip netns exec "${P}g0" socat TCP6-LISTEN:9001,reuseaddr,fork SYSTEM:'echo guest0 tcp6'
spawn ip netns exec "${P}g0" socat UDP-RECVFROM:9002,reuseaddr,fork SYSTEM:'echo guest0 udp'
spawn ip netns exec "${P}g1" socat TCP-LISTEN:9000,reuseaddr,fork SYSTEM:'echo guest1 tcp'
wait_port "${P}g0" tcp 9000 9001
wait_port "${P}g0" udp 9002
wait_port "${P}g1" tcp 9000
nat_rules=$(in_host nft list ruleset)

fwd() { # fwd NETNS PORT PROTO ADDR
	printf '{"netns":"%s","internalPort":"%s","protocol":"%s","externalAddr":"%s"}' "$@"
}
# start_fwd LOG JSON: a forwarder in $H (legacy syntax); FWD_PID once ready.
start_fwd() {
	nsenter --net=/run/netns/$H drafter-forwarder --port-forwards "$2" 2>"$1" &
	FWD_PID=$!
	_bg_pids+=($FWD_PID)
	wait_for "$1" 'ready|drafter'
	grep -q ready "$1"
}

json="[$(fwd ${P}0 9000 tcp 127.0.0.1:3333),$(fwd ${P}0 9000 tcp $HOST4:3333),$(fwd ${P}0 9002 udp 127.0.0.1:3334),$(fwd ${P}0 9001 tcp [$HOST6]:3335)]"
ok "a forwarder with four forwards starts" start_fwd "$T/fwd1.log" "$json"
pid1=$FWD_PID
like "its rules are in a table of its own" "$(in_host nft list tables)" "table inet drafter_fwd_$pid1"
is "route_localnet is on for loopback forwards" "$(in_host cat /proc/sys/net/ipv4/conf/lo/route_localnet)" 1

like "127.0.0.1:3333 on the host reaches the guest's TCP port" \
	"$(in_host socat -T5 -t5 - TCP:127.0.0.1:3333,connect-timeout=5 2>&1)" 'guest0 tcp'
like "an uplink client reaches the guest through the host's address" \
	"$(ip netns exec "$U" socat -T5 -t5 - TCP:$HOST4:3333,connect-timeout=5 2>&1)" 'guest0 tcp'
like "the host itself reaches the guest through its own address" \
	"$(in_host socat -T5 -t5 - TCP:$HOST4:3333,connect-timeout=5 2>&1)" 'guest0 tcp'
# UDP may lose a datagram on a busy machine: up to three tries.
for try in 1 2 3; do
	out=$(echo ping | in_host socat -T2 -t2 - UDP:127.0.0.1:3334 2>&1)
	case $out in *'guest0 udp'*) break ;; esac
done
like "UDP on 127.0.0.1:3334 reaches the guest's UDP port" "$out" 'guest0 udp'
like "an uplink client reaches the guest over IPv6" \
	"$(ip netns exec "$U" socat -T5 -t5 - TCP6:[$HOST6]:3335,connect-timeout=5 2>&1)" 'guest0 tcp6'

# A second forwarder, side by side, to the other namespace.
ok "a second forwarder starts next to the first" start_fwd "$T/fwd2.log" "[$(fwd ${P}1 9000 tcp 127.0.0.1:4444)]"
pid2=$FWD_PID
like "the second forwarder's port reaches guest 1" \
	"$(in_host socat -T5 -t5 - TCP:127.0.0.1:4444,connect-timeout=5 2>&1)" 'guest1 tcp'
stop $pid1 INT
is "SIGINT: the first forwarder exits 0" "$RC" 0
fails "its table is gone" sh -c "nsenter --net=/run/netns/$H nft list tables | grep -q drafter_fwd_$pid1"
like "the second forwarder still works" \
	"$(in_host socat -T5 -t5 - TCP:127.0.0.1:4444,connect-timeout=5 2>&1)" 'guest1 tcp'
fails "the first forwarder's port is closed" in_host socat -T2 -t2 - TCP:127.0.0.1:3333,connect-timeout=2

# A forwarder killed with SIGKILL leaves its table; the next one removes it.
kill -KILL $pid2; wait $pid2 2>/dev/null
like "SIGKILL leaves the table behind" "$(in_host nft list tables)" "drafter_fwd_$pid2"

# Wildcard addresses forward from every local address (the original refused
# them), through the legacy flags as well.
json="[$(fwd ${P}0 9000 tcp 0.0.0.0:5555),$(fwd ${P}0 9001 tcp [::]:5556)]"
ok "a forwarder with wildcard addresses starts" start_fwd "$T/fwd3.log" "$json"
wild=$FWD_PID
like "the next forwarder removed the dead one's table" "$(cat "$T/fwd3.log")" 'removed the rules of 1 forwarder'
fails "the dead forwarder's table is gone" sh -c "nsenter --net=/run/netns/$H nft list tables | grep -q drafter_fwd_$pid2"
like "0.0.0.0:5555: reached on 127.0.0.1" "$(in_host socat -T5 -t5 - TCP:127.0.0.1:5555,connect-timeout=5 2>&1)" 'guest0 tcp'
like "0.0.0.0:5555: reached on the host's address from the uplink" \
	"$(ip netns exec "$U" socat -T5 -t5 - TCP:$HOST4:5555,connect-timeout=5 2>&1)" 'guest0 tcp'
like "[::]:5556: reached on the host's IPv6 address from the uplink" \
	"$(ip netns exec "$U" socat -T5 -t5 - TCP6:[$HOST6]:5556,connect-timeout=5 2>&1)" 'guest0 tcp6'
stop $wild TERM
is "the wildcard forwarder exits 0" "$RC" 0
is "all forwarders gone: only nat's rules are left" "$(in_host nft list ruleset)" "$nat_rules"

# Bad forwards: one line (and, from the flag parser, Go's usage hint),
# non-zero exit, no rule added.
bad() { # bad NAME REGEX JSON
	local out rc
	out=$(in_host_t drafter-forwarder --port-forwards "$3" 2>&1)
	rc=$?
	out=$(printf '%s\n' "$out" | grep -v "^Run 'drafter-forwarder -h' for usage")
	if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && printf '%s' "$out" | grep -Eq -- "$2" &&
		[ "$(in_host nft list ruleset)" = "$nat_rules" ]; then
		pass "$1"
	else
		fail "$1"
		diag "exit $rc: $out"
	fi
}
bad "an unknown namespace is refused" "no such namespace|${P}9" "[$(fwd ${P}0 9000 tcp 127.0.0.1:6001),$(fwd ${P}9 9000 tcp 127.0.0.1:6002)]"
bad "an invalid namespace is refused" "netns|namespace" "[$(fwd ../x 9000 tcp 127.0.0.1:6001)]"
bad "an external port out of range is refused" "70000|range|port" "[$(fwd ${P}0 9000 tcp 127.0.0.1:70000)]"
bad "an internal port out of range is refused" "70000|range|port" "[$(fwd ${P}0 70000 tcp 127.0.0.1:6001)]"
bad "an address that is not local is refused" "192\.0\.2\.99" "[$(fwd ${P}0 9000 tcp 192.0.2.99:6001)]"
bad "::1 is refused with the reason" "::1" "[$(fwd ${P}0 9001 tcp [::1]:6001)]"

done_testing
