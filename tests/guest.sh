#!/bin/bash
# The guest side for real: build the test blueprint (cached), boot it under
# QEMU (TCG) in a private network namespace with a tap, and check from the
# host what docs/guest-agent.md promises: liveness on its virtio-serial port,
# the agent answering BeforeSuspend/AfterResume (and running the hooks),
# the test service on 172.100.100.2:8080, its file on the disk; then save
# the VM, restore it in a new QEMU process and check continuity and that
# the agent is reachable again. vsock cannot run here (no vhost-vsock).
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/vm-lib.sh"

requires qemu-system-x86_64 mkfs.ext4 cpio modprobe unshare nsenter socat debugfs readelf
requires_root
[ -c /dev/net/tun ] || skip_all "no /dev/net/tun"
tmpdir

client=$top_builddir/tests/unit/test-guest-client

# --- blueprint ---
# tests/tmp is removed by "make clean"; the build is cached and shared with other tests
vm_blueprint
diag "$bp_out"
ok "blueprint has vmlinux, initramfs, rootfs.ext4" \
	test -s "$bp/vmlinux" -a -s "$bp/initramfs" -a -s "$bp/rootfs.ext4"
is "vmlinux is an uncompressed ELF" "$(head -c 4 "$bp/vmlinux" | od -An -c | tr -d ' ')" '177ELF'
before=$(stat -c %Y.%i "$bp/rootfs.ext4")
again=$("$top_srcdir/guest/build-blueprint" --bindir "$top_builddir/guest" -o "$bp" 2>&1)
like "second build is a cache hit" "$again" "up to date"
is "cache hit leaves the disk alone" "$(stat -c %Y.%i "$bp/rootfs.ext4")" "$before"
like "agent is installed in the root file system" \
	"$(debugfs -R 'stat /usr/bin/drafter-agent' "$bp/rootfs.ext4" 2>/dev/null | head -1)" "Type: regular"
for b in drafter-agent drafter-liveness drafter-testsvc; do
	fails "$b is linked statically (no program interpreter)" \
		sh -c "readelf -l '$top_builddir/guest/$b' | grep -q INTERP"
done

# --- a private network namespace with the original's tap addressing ---
netns_private
inns ip tuntap add dev tap0 mode tap
inns ip addr add 172.100.100.1/30 dev tap0
inns ip link set tap0 up

cp --sparse=always "$bp/rootfs.ext4" "$T/disk"
truncate -s 256M "$T/memory"

qemu_args() {
	echo -accel tcg -machine microvm,memory-backend=mem -m 256M -smp 1 \
		-nodefaults -display none -no-reboot \
		-object memory-backend-file,id=mem,size=256M,mem-path=$T/memory,share=on \
		-kernel "$bp/vmlinux" -initrd "$bp/initramfs" \
		-drive file=$T/disk,if=none,id=disk,format=raw -device virtio-blk-device,drive=disk \
		-device virtio-serial-device,id=vser0 \
		-chardev socket,id=liveness,path=$T/liveness.sock,server=on,wait=off \
		-device virtserialport,bus=vser0.0,chardev=liveness,name=org.drafter.liveness \
		-chardev socket,id=agent,path=$T/agent.sock,server=on,wait=off \
		-device virtserialport,bus=vser0.0,chardev=agent,name=org.drafter.agent \
		-netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
		-device virtio-net-device,netdev=n0,mac=02:0e:d9:fd:68:3d \
		-qmp unix:$T/qmp.sock,server=on,wait=off
}
# shellcheck disable=SC2046
start_qemu() { # $1: serial log; rest: extra args
	local log=$1
	shift
	# nsenter execs QEMU, so $! is QEMU itself (a backgrounded function would be a subshell)
	nsenter -t "$nspid" -n -- qemu-system-x86_64 $(qemu_args) -serial "file:$log" "$@" &
	qpid=$!
	cleanup_fn "kill $qpid"
	# QEMU creates its sockets before it runs the guest
	local i
	for i in $(seq 100); do [ -S "$T/qmp.sock" ] && return 0; sleep 0.05; done
	return 1
}
# waits (bounded) for a QEMU we started to exit
wait_exit() { timeout 30 tail --pid="$1" -f /dev/null; wait "$1" 2>/dev/null; }
fetch() { inns socat -T 10 - TCP:172.100.100.2:8080,connect-timeout=10 </dev/null; }

# TCG's guest TSC runs at the host's TSC rate: tell the kernel that rate and
# keep the TSC as clocksource (see docs/guest-agent.md 4.2).
khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
append="console=ttyS0 panic=-1 quiet tsc_early_khz=${khz:-2000000} tsc=reliable root=/dev/vda rw"

# --- cold boot ---
start_qemu "$T/serial1" -append "$append"
ok "qemu started" test -S "$T/qmp.sock"
# A host that connects and calls before the guest has even booted: QEMU
# keeps the request in the socket until the agent opens its port.
"$client" call "$T/agent.sock" AfterResume 90 >"$T/early.out" 2>&1 &
early=$!
t0=$(date +%s%N)
live=$("$client" liveness "$T/liveness.sock" 90)
t1=$(date +%s%N)
like "liveness line arrives on org.drafter.liveness" "$live" '^ready [0-9a-f-]{36}$'
diag "liveness $(((t1 - t0) / 1000000)) ms after the sockets appeared"
boot_id=${live#ready }

wait "$early"
is "a call made before the guest booted is answered once it has" "$?:$(cat "$T/early.out")" "0:"
l1=$(fetch)
like "port 8080 answers with the documented line" "$l1" \
	'^boot_id=[0-9a-f-]{36} counter=[0-9]+ disk=[0-9]+ suspends=0 resumes=1$'
is "boot id from the service matches liveness" "$(field "$l1" boot_id)" "$boot_id"
sleep 1
l2=$(fetch)
c1=$(field "$l1" counter) c2=$(field "$l2" counter)
ok "memory counter increases ($c1 -> $c2)" test "${c2:-0}" -gt "${c1:-0}"

# the disk counter is rewritten every second; wait for a step
d1=$(field "$l1" disk) d2=$d1
for i in $(seq 50); do
	d2=$(field "$(fetch)" disk)
	[ "${d2:-0}" -gt "${d1:-0}" ] && break
	sleep 0.2
done
ok "disk counter increases ($d1 -> $d2)" test "${d2:-0}" -gt "${d1:-0}"

err=$("$client" call "$T/agent.sock" BeforeSuspend 60)
rc=$?
is "BeforeSuspend answers without error" "$rc:$err" "0:"
is "before-suspend hook ran before the answer" "$(field "$(fetch)" suspends)" 1
err=$("$client" call "$T/agent.sock" AfterResume 60)
rc=$?
is "AfterResume on a new connection answers" "$rc:$err" "0:"
is "after-resume hook ran" "$(field "$(fetch)" resumes)" 2
ok "guest logged the agent calls" grep -q "drafter-agent: AfterResume" "$T/serial1"

# --- save (device state only, RAM stays in the shared file), restore in a new process ---
l3=$(fetch)
"$client" call "$T/agent.sock" BeforeSuspend 60 >/dev/null
ok "saved the VM (stop, migrate to file, quit)" "$client" qmp "$T/qmp.sock" 60 \
	'{"execute":"qmp_capabilities"}' \
	'{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true},{"capability":"events","state":true}]}}' \
	'{"execute":"stop"}' \
	"{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > $T/state\"}}" \
	wait-migration '{"execute":"quit"}'
wait_exit "$qpid" || kill "$qpid"
ok "state file written" test -s "$T/state"
d_disk=$(debugfs -R 'cat /var/lib/testsvc/value' "$T/disk" 2>/dev/null)
like "the service's file is on the disk image ($d_disk)" "$d_disk" '^[0-9]+$'

rm -f "$T/qmp.sock"
start_qemu "$T/serial2" -incoming defer -append "$append"
ok "restored the VM in a new QEMU process" "$client" qmp "$T/qmp.sock" 60 \
	'{"execute":"qmp_capabilities"}' \
	'{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true},{"capability":"events","state":true}]}}' \
	"{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"exec:cat $T/state\"}}" \
	wait-migration '{"execute":"cont"}'
err=$("$client" call "$T/agent.sock" AfterResume 60)
rc=$?
is "agent answers AfterResume after the restore" "$rc:$err" "0:"
l4=$(fetch)
is "same boot id after the restore" "$(field "$l4" boot_id)" "$boot_id"
ok "memory counter continued ($(field "$l3" counter) -> $(field "$l4" counter))" \
	test "$(field "$l4" counter)" -ge "$(field "$l3" counter)"
is "suspend count survived the restore" "$(field "$l4" suspends)" 2
is "resume count continued" "$(field "$l4" resumes)" 3
ok "restored guest did not boot again" test ! -s "$T/serial2" -o "$(grep -c 'root mounted' "$T/serial2")" = 0

kill "$qpid" 2>/dev/null
wait_exit "$qpid"

# --- drafter.hooks=0: the agent answers both calls and runs no command ---
rm -f "$T/qmp.sock"
cp --sparse=always "$bp/rootfs.ext4" "$T/disk"
start_qemu "$T/serial3" -append "$append drafter.hooks=0"
"$client" liveness "$T/liveness.sock" 90 >/dev/null
err=$("$client" call "$T/agent.sock" BeforeSuspend 60)
is "hooks=0: BeforeSuspend answers without error" "$?:$err" "0:"
err=$("$client" call "$T/agent.sock" AfterResume 60)
is "hooks=0: AfterResume answers without error" "$?:$err" "0:"
l5=$(fetch)
is "hooks=0: no hook ran (suspends, resumes)" "$(field "$l5" suspends),$(field "$l5" resumes)" "0,0"
ok "hooks=0: the guest logged the calls" grep -q "drafter-agent: AfterResume" "$T/serial3"
kill "$qpid" 2>/dev/null
wait_exit "$qpid"

# --- vsock: cannot run on this machine ---
skip "real vsock transport (no vhost-vsock on this host; the agent's vsock path is unit-tested for flags and framing only)"
out=$("$top_builddir/guest/drafter-liveness" --transport vsock --vsock-port 25 --vsock-timeout 1s 2>&1)
rc=$?
like "liveness over vsock without a host fails with one line" "$rc:$out" '^1:drafter-liveness: cannot connect to vsock port 25: '

done_testing
