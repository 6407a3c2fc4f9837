#!/bin/bash
# drafter snapshot and drafter run with real QEMU guests (TCG): snapshot the
# test blueprint, resume it, query its service on port 8080 through the
# namespace, suspend it with SIGTERM, resume it again in another namespace
# and check that it continued (same boot id, counter and disk value go on, the
# before-suspend hook's effect is visible); then the failure paths: a killed
# VMM, a memory file of another snapshot, a missing device, a missing
# namespace, a guest that never reports.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/vm-lib.sh"

vm_prepare # $T, readable by a VMM run as another user: it reads the kernel from there

# Two namespaces with the guest network drafter nat would give them (tap0 = 172.100.100.1/30).
nsa=dvm$$a
nsb=dvm$$b
for ns in $nsa $nsb; do
	ip netns add $ns || skip_all "cannot create network namespaces"
	cleanup_fn "ip netns del $ns"
	ip -n $ns link set lo up
	# nsb's tap belongs to an unprivileged user: a VMM run as that user can open it.
	if [ $ns = $nsb ]; then
		ip netns exec $ns ip tuntap add dev tap0 mode tap user 65534 group 65534
	else
		ip netns exec $ns ip tuntap add dev tap0 mode tap
	fi
	ip -n $ns addr add 172.100.100.1/30 dev tap0
	ip -n $ns link set tap0 up
done
# Leave no VMM behind, whatever happens: every drafter started here, and its children.
pids=
cleanup_fn 'for p in $pids; do pkill -KILL -P $p; kill -KILL $p; done 2>/dev/null; true'

printf 'OCI-DISK-MARKER' >oci.img # an extra disk: attached after the root disk
truncate -s 4M oci.img
pkg=$T/package
devices_snap=$(snap_devs "$pkg" "{\"name\":\"oci\",\"input\":\"$T/oci.img\",\"output\":\"$pkg/oci.ext4\"}")
devices_run=$(run_devs "$pkg" "{\"name\":\"oci\",\"path\":\"$pkg/oci.ext4\"}")

# start_run NS LOG [OPTIONS]: drafter-runner in the background; sets $runpid.
start_run() {
	local ns=$1 log=$2
	shift 2
	drafter-runner --netns "$ns" --devices "$devices_run" --enable-output=false "$@" >"$log.out" 2>"$log" &
	runpid=$!
	pids="$pids $runpid"
}
vmm_of() { pgrep -P "$1" -f qemu-system | head -1; }
# refused NAME NS [OPTIONS]: a drafter-runner of the package that must fail; $out its output.
refused() {
	local name=$1 ns=$2
	shift 2
	out=$(drafter-runner --netns "$ns" --devices "$devices_run" "$@" 2>&1)
	ok "$name" test $? -ne 0
}

# --- snapshot -----------------------------------------------------------------------------------------
vm_snapshot $nsa "$devices_snap" >snap.out 2>snap.err
is "snapshot exits 0" "$?" 0
like "snapshot passes the guest console through (enable-output)" "$(cat snap.out)" 'drafter-init: ready'
is "snapshot: the VMM's console goes to stdout, drafter's messages to stderr" "$(grep -c '^drafter' snap.err)" \
	"$(grep -c '^drafter-snapshotter: ' snap.err)"
ok "package has state, memory, kernel, initramfs, disk, config" \
	test -s "$pkg/state.bin" -a -s "$pkg/memory.bin" -a -s "$pkg/vmlinux" -a -s "$pkg/initramfs" \
	-a -s "$pkg/rootfs.ext4" -a -s "$pkg/config.json"
cfg=$(tr -d '\0' <"$pkg/config.json")
like "config keeps the original's agentVSockPort and records the machine" "$cfg" \
	'^\{"agentVSockPort":26,"drafter":\{.*"vmm":"qemu".*"memorySize":256.*"snapshotId":"[0-9a-f]{32}"'
is "outputs are padded like the original's (config: 1 MiB + 1 MiB)" "$(stat -c %s "$pkg/config.json")" 2097152
is "no temporary files left next to the outputs" "$(ls -a "$pkg" | grep -c drafter-)" 0
like "the extra disk is recorded after the root disk" "$cfg" '"disks":\["disk","oci"\]'
like "the virtio-serial device's ports are recorded (console, liveness, agent)" "$cfg" '"serialPorts":3,'
is "the extra disk's content is in the package" "$(head -c 15 "$pkg/oci.ext4")" OCI-DISK-MARKER
cp "$pkg/memory.bin" "$T/memory.first"

# --- run 1 --------------------------------------------------------------------------------------------
start_run $nsa run1.err --enable-output=true
l1=$(query $nsa)
ok "run 1: the guest answers on port 8080 through namespace $nsa" test -n "$l1"
diag "run 1: $l1"
refused "a second run of the same package is refused" $nsb
like "a second run: clear error" "$out" "^drafter-runner: cannot run: package '.*config.json' is in use by another drafter$"
# Let the service's disk value move on, then stop.
sleep 2.2
l1b=$(query $nsa)
diag "run 1 later: $l1b"
kill -TERM $runpid
wait $runpid
is "run 1: SIGTERM suspends and exits 0" "$?" 0
like "run 1: the guest console is passed through (the agent ran AfterResume)" "$(cat run1.err.out)" 'AfterResume' 
like "run 1: reports the suspend" "$(cat run1.err)" 'suspended: snapshot [0-9a-f]{32}'
is "run 1: no working copies left" "$(ls -a "$pkg" | grep -c drafter-)" 0
is "run 1: no VMM left" "$(pgrep -f "mem-path=$pkg" | wc -l)" 0

# --- run 2, in the other namespace ----------------------------------------------------------------
start_run $nsb run2.err
l2=$(query $nsb)
diag "run 2: $l2"
ok "run 2: the package resumes in another namespace ($nsb)" test -n "$l2"
is "run 2: same boot id (resumed, not booted)" "$(field "$l2" boot_id)" "$(field "$l1" boot_id)"
c1=$(field "$l1b" counter) c2=$(field "$l2" counter)
ok "run 2: in-memory counter continues ($c1 -> $c2)" test "${c2:-0}" -ge "${c1:-1}" -a "${c2:-0}" -lt $((${c1:-0} + 600))
d1=$(field "$l1b" disk) d2=$(field "$l2" disk)
ok "run 2: disk value continues ($d1 -> $d2)" test "${d2:-0}" -ge "${d1:-1}" -a "${d1:-0}" -ge 1
s1=$(field "$l1b" suspends) s2=$(field "$l2" suspends)
ok "run 2: the before-suspend hook's effect is visible ($s1 -> $s2)" test "${s2:-0}" -gt "${s1:-0}"
r1=$(field "$l1b" resumes) r2=$(field "$l2" resumes)
ok "run 2: the after-resume hook ran ($r1 -> $r2)" test "${r2:-0}" -gt "${r1:-0}"

# --- a VMM that dies: the package keeps its last snapshot ---------------------------------------
cp "$pkg/config.json" "$T/config.before"
vmm=$(vmm_of $runpid)
ok "run 2: QEMU runs as a child of drafter" test -n "$vmm"
like "run 2: restored with the recorded virtio-serial ports" "$(tr '\0' ' ' </proc/$vmm/cmdline)" \
	'virtio-serial-device,id=vser0,max_ports=3 '
# QEMU advises huge pages on guest RAM; drafter refuses that advice (a seccomp filter), which
# on a file mapping would only make each page fault read 2-4 MiB around it (docs/vm.md).
mem=$(tr '\0' '\n' </proc/$vmm/cmdline | sed -n 's/.*mem-path=\([^,]*\).*/\1/p' | head -1)
flags=$(awk -v f="$mem" '/^[0-9a-f]+-[0-9a-f]+ / { m = $NF == f; next } m && /^VmFlags:/ { print; exit }' \
	/proc/$vmm/smaps)
like "run 2: guest RAM is a shared mapping of its file ($mem)" "$flags" ' sh '
fails "run 2: ... without the huge-page advice ($flags)" grep -q ' hg' <<<"$flags"
kill -KILL $vmm
wait $runpid
rc=$?
ok "killed VMM: drafter exits non-zero" test $rc -ne 0
err=$(cat run2.err | grep -v '^drafter-runner: VM resumed')
like "killed VMM: one clear line" "$err" '^drafter-runner: VM stopped unexpectedly: qemu was killed by signal 9.*package keeps its last snapshot$'
ok "killed VMM: config unchanged" cmp -s "$pkg/config.json" "$T/config.before"
is "killed VMM: no working copies left" "$(ls -a "$pkg" | grep -c drafter-)" 0

# This one through the subcommand syntax, with the devices shown through FUSE when possible,
# and QEMU's opens of files traced (strace, when there is one).
expose=() traced=()
[ -e /dev/fuse ] && expose=(--exposure fuse --mount-dir "$T/mnt")
if command -v strace >/dev/null; then
	printf '#!/bin/sh\nexec strace -f -qq --seccomp-bpf -e trace=openat -o %s/qemu-opens qemu-system-x86_64 "$@"\n' \
		"$T" >"$T/qemu-traced"
	chmod +x "$T/qemu-traced"
	traced=(--qemu-bin "$T/qemu-traced")
	# strace killed by a failed run would leave its QEMU running
	cleanup_fn "pkill -KILL -f 'qemu-system-x86_64 .*$T/mnt' || true"
fi
drafter run --netns $nsa --devices "$devices_run" --no-enable-output --log-level debug "${expose[@]}" \
	"${traced[@]}" >run3.err.out 2>run3.err &
runpid=$!
pids="$pids $runpid"
l3=$(query $nsa)
diag "run 3: $l3"
is "after the killed VMM the package still resumes (same boot id)" "$(field "$l3" boot_id)" "$(field "$l1" boot_id)"
if [ ${#expose[@]} -gt 0 ]; then
	like "run 3: memory and disk exposed through FUSE" "$(tr '\0' ' ' </proc/$(vmm_of $runpid)/cmdline)" "mem-path=$T/mnt/[^,]*/memory,"
else
	skip "run 3: no /dev/fuse"
fi
if [ ${#traced[@]} -gt 0 ]; then
	# With QEMU's default auto-read-only the disk would be opened read-only while QEMU waits
	# for the state and again for writing as the state loads: a round trip to the exposure
	# inside a migration's pause. Opened for writing at the start, it is not opened again.
	opens=$(grep 'openat(.*/mnt/[^"]*/disk", ' "$T/qemu-opens" | grep -v O_NONBLOCK)
	like "run 3: QEMU opens the disk for writing from its start" "$(echo "$opens" | head -1)" \
		'^[0-9]+ +openat\(.*O_RDWR'
	is "run 3: ... and not again as the state loads" "$(echo "$opens" | grep -c .)" 1
else
	skip "run 3: no strace to trace QEMU's opens"
	skip "run 3: no strace to trace QEMU's opens"
fi
kill -INT $runpid
wait $runpid
is "run 3: SIGINT suspends and exits 0" "$?" 0
is "run 3: nothing stays mounted" "$(grep -c " $T/mnt" /proc/mounts)" 0

# --- refused restores ---------------------------------------------------------------------------------
cp "$pkg/memory.bin" "$T/memory.good"
cp "$T/memory.first" "$pkg/memory.bin"
refused "memory of another snapshot: refused" $nsa
like "memory of another snapshot: clear error" "$out" "^drafter-runner: cannot run: memory '.*memory.bin' does not belong to snapshot [0-9a-f]{32}"
cp "$T/memory.good" "$pkg/memory.bin"

mv "$pkg/state.bin" "$T/state.bin"
refused "missing state: refused" $nsa
is "missing state: one clear line" "$out" "drafter-runner: cannot open state '$pkg/state.bin': No such file or directory"
mv "$T/state.bin" "$pkg/state.bin"

refused "missing namespace: refused" dvm-none-$$
like "missing namespace: clear error" "$out" "network namespace 'dvm-none-$$' does not exist"

# The package still resumes after all this.
start_run $nsb run4.err --uid 65534 --gid 65534
l4=$(query $nsb)
is "the package resumes after the refused attempts" "$(field "$l4" boot_id)" "$(field "$l1" boot_id)"
like "run 4: the VMM runs as the configured uid/gid" "$(grep -E '^(Uid|Gid):' /proc/$(vmm_of $runpid)/status | tr '\t\n' '  ' | tr -s ' ')" \
	'^Uid: 65534 65534 65534 65534 Gid: 65534 65534 65534 65534 $'
c3=$(field "$l3" counter) c4=$(field "$l4" counter)
ok "the counter continued across the FUSE run ($c3 -> $c4)" test "${c4:-0}" -gt "${c3:-0}"
kill -TERM $runpid
wait $runpid
is "run 4: exits 0" "$?" 0

# --- drafter itself killed: its VMM goes with it, the package keeps its last snapshot -------------
cp "$pkg/config.json" "$T/config.before"
start_run $nsa run5.err
l5=$(query $nsa)
vmm=$(vmm_of $runpid)
kill -KILL $runpid
wait $runpid 2>/dev/null
for i in $(seq 1 50); do kill -0 "$vmm" 2>/dev/null || break; sleep 0.1; done
fails "killed drafter: its VMM does not outlive it" kill -0 "$vmm" 2>/dev/null
ok "killed drafter: config unchanged" cmp -s "$pkg/config.json" "$T/config.before"
start_run $nsb run6.err
l6=$(query $nsb)
is "killed drafter: the package resumes (same boot id)" "$(field "$l6" boot_id)" "$(field "$l1" boot_id)"
kill -TERM $runpid
wait $runpid
is "killed drafter: the next run suspends cleanly" "$?" 0
is "killed drafter: the next run removed the stale working copies" "$(ls -a "$pkg" | grep -c drafter-)" 0

# --- a guest agent that does not answer AfterResume in time: one line, package unchanged ---------
cp "$pkg/config.json" "$T/config.before"
refused "AfterResume not answered: refused" $nsa --enable-output=false --resume-timeout 1ms
like "AfterResume not answered: clear error" "$out" 'cannot resume the VM: the guest agent did not answer AfterResume within the resume timeout'
ok "AfterResume not answered: package unchanged" cmp -s "$pkg/config.json" "$T/config.before"
is "AfterResume not answered: no working copies, no VMM" "$(ls -a "$pkg" | grep -c drafter-)$(pgrep -f "mem-path=$pkg" | wc -l)" 00

# --- a guest that never reports within the timeout: no package written -------------------------
out=$(vm_snapshot $nsa "${devices_snap//$pkg/$T/pkg2}" --enable-output=false --resume-timeout 300ms 2>&1)
rc=$?
ok "guest never reports: snapshot fails" test $rc -ne 0
like "guest never reports: clear error" "$out" 'did not report that it booted within the resume timeout'
ok "guest never reports: no outputs, no temporary files" test ! -e "$T/pkg2/config.json" -a -z "$(ls -A "$T/pkg2" 2>/dev/null)"
is "no VMM left at the end" "$(pgrep -f "mem-path=$T/" | wc -l)" 0

done_testing
