# Shared setup for the networking tests (sourced after functions.sh).
#
# Builds, in namespaces of its own, a small world drafter can be tested in
# without touching the machine's real network:
#   $H  "the host": drafter nat/forward run here (nsenter, same mount ns)
#   $U  "the uplink", standing in for the internet: 203.0.113.1 and
#       2001:db8::1 on its loopback, joined to $H by veth $HUP (198.51.100.2,
#       2001:db8:1::2 on the host side), which is $H's default route
#   ${P}g<i>  guest stand-ins: 172.100.100.2 and fd00:100:100::2 on gveth0,
#       wired to tap0 of namespace ${P}<i> by the net-wire helper
# drafter's own namespaces are ${P}0, ${P}1, ...

requires_root
requires ip nft socat nsenter
[ -e /dev/net/tun ] || skip_all "no /dev/net/tun"

# Short unique prefix: interface names are at most 15 characters.
P=d$(($$ % 100000))
H=${P}h
U=${P}u
HUP=${P}up
GUEST4=172.100.100.2
GUEST6=fd00:100:100::2
UPLINK4=203.0.113.1
UPLINK6=2001:db8::1
HOST4=198.51.100.2
HOST6=2001:db8:1::2

in_host() { nsenter --net=/run/netns/$H "$@"; }
# For commands expected to fail: one that unexpectedly runs on is ended.
in_host_t() { timeout 60 nsenter --net=/run/netns/$H "$@"; }
in_ns() { local n=$1; shift; nsenter --net=/run/netns/$n "$@"; }

# wait_for FILE REGEX: until FILE has a line matching REGEX (30 s at most).
wait_for() {
	local i
	for ((i = 0; i < 300; i++)); do
		grep -Eq -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	diag "timed out waiting for /$2/ in $1:"
	sed 's/^/#   /' "$1" 2>/dev/null
	return 1
}

# wait_port NETNS tcp|udp PORT...: until something listens there (30 s at most).
wait_port() {
	local ns=$1 proto=$2 i p
	shift 2
	for p in "$@"; do
		for ((i = 0; i < 300; i++)); do
			ip netns exec "$ns" ss -lnH "--$proto" "sport = :$p" 2>/dev/null | grep -q . && break
			sleep 0.1
		done
	done
}

# Remove everything named after $P, whatever state a test left it in.
net_teardown() {
	local n
	for n in $(ip netns list | awk '{print $1}' | grep "^$P"); do
		ip netns del "$n" 2>/dev/null
	done
	rm -f "/run/drafter/nat-$P.state"
}

net_topology() {
	cleanup_fn net_teardown
	ip netns add "$H" && ip netns add "$U" || return 1
	ip link add "$HUP" netns "$H" type veth peer name dn netns "$U" || return 1
	ip -n "$H" link set lo up
	ip -n "$H" link set "$HUP" up
	ip -n "$H" addr add $HOST4/24 dev "$HUP"
	ip -n "$H" -6 addr add $HOST6/64 dev "$HUP" nodad
	ip -n "$H" route add default via 198.51.100.1
	ip -n "$H" -6 route add default via 2001:db8:1::1
	ip -n "$U" link set lo up
	ip -n "$U" link set dn up
	ip -n "$U" addr add 198.51.100.1/24 dev dn
	ip -n "$U" -6 addr add 2001:db8:1::1/64 dev dn nodad
	ip -n "$U" addr add $UPLINK4/32 dev lo
	ip -n "$U" -6 addr add $UPLINK6/128 dev lo
}

# A watchdog: a test that hangs is killed (and cleaned up) after 5 minutes.
(
	trap 'kill $s 2>/dev/null; exit 0' TERM
	sleep "${NET_TEST_TIMEOUT:-300}" &
	s=$!
	wait $s && kill -TERM $$
) >/dev/null 2>&1 &
cleanup_fn "kill $! 2>/dev/null"

# Background processes started by the tests, stopped on exit.
_bg_pids=()
_stop_bg() {
	local p
	for p in "${_bg_pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${_bg_pids[@]}"; do wait "$p" 2>/dev/null; done
}
cleanup_fn _stop_bg
spawn() { "$@" & _bg_pids+=($!); }

# start_nat LOG ARGS...: drafter nat in $H; sets NAT_PID once it is ready.
start_nat() {
	local log=$1
	shift
	# nsenter execs drafter, so $! is drafter's pid.
	nsenter --net=/run/netns/$H drafter nat --namespace-prefix "$P" "$@" 2>"$log" &
	NAT_PID=$!
	_bg_pids+=($NAT_PID)
	wait_for "$log" 'ready|error|cannot'
	grep -q ready "$log"
}

# stop PID SIGNAL: signal and reap a background process of this shell (not
# from a subshell); its exit status is left in $RC.
stop() {
	kill -"${2:-INT}" "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	RC=$?
}

# guest_standin I: a guest behind tap0 of ${P}I; WIRE_PID[I] is its wire
# (SIGSTOP it to suspend the guest's network like a paused VMM).
WIRE_PID=()
guest_standin() {
	local g=${P}g$1 log=$T/wire$1.log
	ip netns add "$g" || return 1
	ip -n "$g" link add gveth0 type veth peer name gveth1
	ip -n "$g" link set lo up
	ip netns exec "$g" sysctl -qw net.ipv6.conf.gveth1.disable_ipv6=1
	ip -n "$g" link set gveth0 address 02:00:00:00:00:02
	ip -n "$g" addr add $GUEST4/30 dev gveth0
	ip -n "$g" -6 addr add $GUEST6/64 dev gveth0 nodad
	ip -n "$g" link set gveth0 up
	ip -n "$g" link set gveth1 up
	ip -n "$g" route add default via 172.100.100.1
	ip -n "$g" -6 route add default via fd00:100:100::1
	spawn "$top_builddir/tests/net-wire" "${P}$1" tap0 "$g" gveth1 >"$log" 2>&1
	WIRE_PID[$1]=$!
	wait_for "$log" 'ready|cannot'
	grep -q ready "$log"
}

# What must be the same before and after a run.
host_snapshot() {
	{
		echo "== ruleset"; in_host nft list ruleset
		echo "== links"; ip -n "$H" -o link | awk '{print $2}'
		echo "== routes"; ip -n "$H" route; ip -n "$H" -6 route | grep -v '^fe80\|^multicast'
		echo "== netns"; ip netns list | awk '{print $1}' | grep "^$P[0-9]" | sort
		echo "== forwarding"; in_host cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding
	} 2>&1
}
