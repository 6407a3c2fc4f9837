# Helpers shared by the tests that run real guests (sourced after
# tests/functions.sh; not a test itself). Brings tests/xfer-lib.sh along
# (wait_log, hash_of, $XFER_TOOL...).
#
#   vm_blueprint              $bp: the test blueprint, built (cached) under tests/tmp
#   vm_prepare                skip unless QEMU guests can run here; $T (the working
#                             directory, readable by a VMM of another user), $bp
#   netns_private             a private network namespace: $nspid, inns CMD...
#   ask NS [ADDR:PORT [SECONDS [CONNECT-SECONDS]]]
#                             one attempt at the guest's test service from namespace
#                             NS ("" for this one); prints its line when it answered
#   query NS [ADDR:PORT]      ask, retried for 20 s while the guest comes up
#   field LINE KEY            the value of KEY in a line of the test service
#   vm_devs KEY DIR [DEVICE...]
#                             the VM's devices for --devices: each file in DIR under
#                             KEY (base, path, output), the DEVICEs (JSON objects)
#                             after the disk; devs, run_devs: with base and path;
#                             snap_devs: outputs, the blueprint's files as inputs
#   vm_snapshot NS DEVICES [OPTION...]
#                             drafter-snapshotter of the test blueprint in NS
#   peer LOG NS DEVICES RADDR LADDR [OPTION...]
#                             drafter peer in the background, mounts under $T/mnt; $LAST
#   vm_nat PREFIX COUNT N     drafter nat in the background (log nat-PREFIX.log), address
#                             ranges 10.N.0.0/22, 10.N.7.0/24, fd00:N:N::/64; fails
#                             unless its COUNT namespaces PREFIX0... are ready in 30 s
#   start_client [-n FUNC] LOG NS...
#                             ask every 50 ms in the background ($client) until killed,
#                             in the NS that answered last first; LOG gets "TIME NS
#                             LINE [FUNC's output]" per answer
#   client_summary LOG        "BACK OTHER SWITCHES GAP FIRST-NS LAST-NS" of a client log
#   client_lost LOG           how many answers of a client log report lost writes (stale=)
#   no_mount_of PID           the drafter PID has nothing mounted under $T/mnt
#   vm_nat_end                end the drafter nat processes (TERM, KILL after 30 s)
#   vm_end_all                end $pids (TERM, then KILL), unmount $T/mnt, vm_nat_end

. "$top_srcdir/tests/xfer-lib.sh"

vm_guest=172.100.100.2:8080
vm_bootargs='console=ttyS0 panic=-1 quiet root=/dev/vda rw'
pids=
natpids=

vm_blueprint() {
	bp=$top_builddir/tests/tmp/blueprint
	if ! bp_out=$("$top_srcdir/guest/build-blueprint" --bindir "$top_builddir/guest" -o "$bp" 2>&1); then
		printf '%s\n' "$bp_out" | sed 's/^/# /'
		skip_all "cannot build the test blueprint (is linux-image-amd64 installed?)"
	fi
}

vm_prepare() {
	requires qemu-system-x86_64 mkfs.ext4 cpio socat ip
	requires_root
	[ -x "$top_builddir/guest/drafter-agent" ] || skip_all "guest programs are not built"
	tmpdir
	chmod 755 "$T"
	cd "$T" || exit 1
	# No KVM on the CI machine; where /dev/kvm exists it may be nested and unusable.
	export DRAFTER_QEMU_ACCEL=tcg
	vm_blueprint
}

netns_private() {
	local i
	unshare --net -- sleep 600 &
	nspid=$!
	cleanup_fn "kill $nspid"
	# $! exists before unshare has switched namespaces: wait for the switch
	for i in $(seq 200); do
		[ "$(readlink "/proc/$nspid/ns/net")" != "$(readlink /proc/self/ns/net)" ] && break
		sleep 0.01
	done
	inns ip link set lo up
}
inns() { nsenter -t "$nspid" -n -- "$@"; }

in_netns() { # in_netns NS CMD...: CMD in network namespace NS, or here when NS is ""
	local ns=$1
	shift
	if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi
}

# ask NS [ADDR [TIMEOUT [CONNECT_TIMEOUT]]]: the guest service's answer, asked from namespace NS.
ask() {
	local line
	line=$(ask_stamped "$@") || return 1
	printf '%s\n' "${line#* }"
}

# ask_stamped NS [ADDR [TIMEOUT [CONNECT_TIMEOUT]]]: ask's answer preceded by the time it came
# (not the time the connection ended: a VM paused between its answer and its FIN leaves
# socat waiting for TIMEOUT, and the clients' answers are put in order by these times).
ask_stamped() {
	in_netns "$1" socat -T "${3:-2}" - "TCP:${2:-$vm_guest},connect-timeout=${4:-1}" </dev/null 2>/dev/null | {
		IFS= read -r line || [ -n "$line" ] || exit 1
		t=$(date +%s.%N)
		cat >/dev/null
		case "$line" in
		boot_id=*) printf '%s %s\n' "$t" "$line" ;;
		*) exit 1 ;;
		esac
	}
}

query() {
	local i
	for i in $(seq 1 100); do
		ask "$1" "${2:-}" && return 0
		sleep 0.2
	done
	return 1
}

field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# The snapshot's inputs come from $snap_from, for the devices marked ":in".
vm_devs() {
	local key=$1 dir=$2 d name file in out='['
	shift 2
	for d in state:state.bin memory:memory.bin kernel:vmlinux:in initramfs:initramfs:in \
		disk:rootfs.ext4:in "$@" config:config.json; do
		case $d in
		'{'*) out="$out$d,"; continue ;;
		esac
		IFS=: read -r name file in <<<"$d"
		in=${in:+${snap_from:+\"input\":\"$snap_from/$file\",}}
		out="$out{\"name\":\"$name\",$in\"$key\":\"$dir/$file\"},"
	done
	echo "${out%,}]"
}
devs() { vm_devs base "$@"; }
run_devs() { vm_devs path "$@"; }
snap_devs() { snap_from=$bp vm_devs output "$@"; }

vm_snapshot() {
	local ns=$1 d=$2
	shift 2
	drafter-snapshotter --netns "$ns" --memory-size 256 --boot-args "$vm_bootargs" \
		--chroot-base-dir "$T/vms" --devices "$d" "$@"
}

peer() {
	local log=$1 ns=$2 d=$3 raddr=$4 laddr=$5
	shift 5
	drafter peer --netns "$ns" --enable-output=false --mount-dir "$T/mnt" --devices "$d" \
		--raddr "$raddr" --laddr "$laddr" "$@" >"$log" 2>&1 &
	LAST=$!
	pids="$LAST $pids"
}

vm_nat() {
	drafter nat --namespace-prefix "$1" --namespace-count "$2" --host-veth-cidr "10.$3.0.0/22" \
		--namespace-veth-cidr "10.$3.7.0/24" --blocked-subnet-cidr "10.$3.7.0/24" \
		--ipv6-prefix "fd00:$3:$3::/64" >"nat-$1.log" 2>&1 &
	natpids="$! $natpids"
	wait_log "nat-$1.log" ready 30 && [ -e "/run/netns/$1$(($2 - 1))" ]
}

# A client of the guest's service in each namespace given, every 50 ms: one
# loop per namespace, so that a guest that does not answer (paused, or gone
# with the source) holds up no other, and a gap between answers is the
# service's, not the client's timeouts. Answers go to LOG, one line each,
# "<time it came> <namespace> <answer>[ <output of NOTE>]", sorted by time
# once the client is stopped (kill $client; wait $client).
start_client() {
	local note=
	if [ "$1" = -n ]; then
		note=$2
		shift 2
	fi
	local log=$1
	shift
	: >"$log"
	(
		local ns
		# set before the loops start: a TERM that came first would leave them running
		trap 'kill $(jobs -p) 2>/dev/null; wait; sort -n -o "$log" "$log"; exit 0' TERM
		for ns in "$@"; do
			(
				local line
				while :; do
					if line=$(ask_stamped "$ns" "" 1 0.3); then
						echo "${line%% *} $ns ${line#* }${note:+ $($note)}" >>"$log"
					fi
					sleep 0.05
				done
			) &
		done
		wait
	) &
	client=$!
	pids="$client $pids"
}

client_summary() {
	awk '{ split($3, b, "="); split($4, c, "=");
		 if (NR > 1 && c[2] + 0 < last) back++;
		 if (NR == 1) { boot0 = b[2]; first = $2 } else if (b[2] != boot0) other++;
		 if (NR > 1 && $1 - lt > gap) gap = $1 - lt;
		 if (NR > 1 && $2 != prevns) switches++;
		 prevns = $2; last = c[2] + 0; lt = $1 }
		END { printf "%d %d %d %.2f %s %s", back + 0, other + 0, switches + 0, gap, first, prevns }' "$1"
}

# The client's gaps longer than 0.2 s, each with the namespaces it went from and to.
client_gaps() {
	awk 'NR > 1 && $1 - lt > 0.2 { printf "%s%.2fs (%s -> %s)", n++ ? ", " : "", $1 - lt, prevns, $2 }
		{ lt = $1; prevns = $2 }' "$1"
}

# The client's answers whose counter is below the one before, each with
# the answer before it (time, namespace, counter).
client_backs() {
	awk '{ split($4, c, "=") }
		NR > 1 && c[2] + 0 < last { printf "%s%s %s %s -> %s %s %s", n++ ? "; " : "", lt, prevns, last, $1, $2, c[2] }
		{ lt = $1; prevns = $2; last = c[2] + 0 }' "$1"
}

# How many of the client's answers report lost memory writes (a stale=
# other than 0; drafter.dirty on the guest's command line, docs/guest-agent.md).
client_lost() {
	awk '{ for (i = 5; i <= NF; i++) if ($i ~ /^stale=/ && $i != "stale=0") { n++; break } }
		END { print n + 0 }' "$1"
}

no_mount_of() { ! grep -q "$T/mnt/drafter-$1" /proc/mounts; }

# A FUSE server that died leaves its VMM waiting on the mount: abort the connection first.
unmount_all() {
	local m dev
	for m in $(grep -o "$T/mnt[^ ]*" /proc/mounts); do
		dev=$(awk -v m="$m" '$5 == m { print $3 }' /proc/self/mountinfo)
		[ -n "$dev" ] && echo 1 >"/sys/fs/fuse/connections/${dev#*:}/abort"
		umount -l "$m"
	done
}

vm_nat_end() {
	local p
	for p in $natpids; do
		kill -TERM "$p"
		timeout 30 tail --pid="$p" -f /dev/null || kill -KILL "$p"
		wait "$p"
	done
	natpids=
}

vm_end_all() {
	local p
	for p in $pids; do kill -TERM "$p"; done 2>/dev/null
	sleep 2
	for p in $pids; do kill -KILL "$p"; done 2>/dev/null
	unmount_all
	vm_nat_end 2>/dev/null
	true
}
