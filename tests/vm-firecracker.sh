#!/bin/bash
# The Firecracker driver against its documented interface. Firecracker cannot
# run here (no KVM): tests/fc-contract-jailer stands in for the jailer and
# Firecracker, checks every API request against the OpenAPI files (fork and
# upstream flavours) and plays Firecracker's observable behaviour, including a
# guest on the hybrid vsock (liveness, agent RPC). Checked: the jailer's
# arguments and chroot layout, the original's call sequences for boot, pause,
# snapshot and load, Msync/MsyncAndState/shared with the fork and full
# snapshots with upstream, continuity of the guest across runs, Firecracker's
# errors reaching the user, and a dying VMM.
. "$top_srcdir/tests/functions.sh"

requires ip
requires_root
. "$top_srcdir/tests/fc-lib.sh"
diag "real Firecracker skipped (needs KVM and the binaries): testing against the contract server"

tmpdir
ns=dvf$$
ip netns add $ns || skip_all "cannot create a network namespace"
cleanup_fn "ip netns del $ns"
# Leave nothing behind: every drafter started here, and its children (the stand-in).
pids=
cleanup_fn 'for p in $pids; do pkill -KILL -P $p; kill -KILL $p; done 2>/dev/null; true'

cd "$T"
mkdir -p bp
fc_binaries bin
head -c 300000 /dev/urandom >bp/vmlinux
head -c 100000 /dev/urandom >bp/initramfs
truncate -s 8M bp/rootfs.ext4
truncate -s 4M bp/extra.ext4

fcopts=(--vmm firecracker --jailer-bin "$top_srcdir/tests/fc-contract-jailer"
	--firecracker-bin "$T/bin/firecracker" --netns $ns --chroot-base-dir "$T/vms" --no-enable-output)

# jq-free field lookup in the log: the last event EV's KEY.
last() { /usr/bin/python3 -c '
import json, sys
v = None
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == sys.argv[2] and (len(sys.argv) < 5 or e.get("function") == sys.argv[4]):
        v = e
print("" if v is None else json.dumps(v.get(sys.argv[3]) if not isinstance(v.get(sys.argv[3]), dict) else v[sys.argv[3]], sort_keys=True).strip("\""))
' "$@"; }

for flavor in fork upstream; do
	export FC_CONTRACT_FLAVOR=$flavor
	pkg=$T/$flavor
	export FC_CONTRACT_LOG=$T/$flavor-snap.jsonl
	devs="[{\"name\":\"state\",\"output\":\"$pkg/state.bin\"},{\"name\":\"memory\",\"output\":\"$pkg/memory.bin\"},
	 {\"name\":\"kernel\",\"input\":\"$T/bp/vmlinux\",\"output\":\"$pkg/vmlinux\"},
	 {\"name\":\"initramfs\",\"input\":\"$T/bp/initramfs\",\"output\":\"$pkg/initramfs\"},
	 {\"name\":\"disk\",\"input\":\"$T/bp/rootfs.ext4\",\"output\":\"$pkg/rootfs.ext4\"},
	 {\"name\":\"extra\",\"input\":\"$T/bp/extra.ext4\",\"output\":\"$pkg/extra.ext4\"},
	 {\"name\":\"config\",\"output\":\"$pkg/config.json\"}]"
	drafter snapshot "${fcopts[@]}" --memory-size 64 --cpu-count 2 --devices "$devs" >$flavor-snap.out 2>&1
	is "$flavor: snapshot exits 0" "$?" 0
	got=$(/usr/bin/python3 -c 'import json,sys; print(" ".join(json.loads(open(sys.argv[1]).readline())["args"]))' "$FC_CONTRACT_LOG")
	like "$flavor: jailer gets the original's arguments in order" "$got" \
		"^--id [0-9a-f]{16} --uid 0 --gid 0 --exec-file $T/bin/firecracker( --cgroup cpuset.mems=0 --cgroup cpuset.cpus=[0-9,-]+)? --cgroup-version 2 --chroot-base-dir $T/vms --netns /var/run/netns/$ns -- --api-sock firecracker.sock$"
	probe=$([ $flavor = fork ] && echo 204 || echo 400)
	want="GET /machine-config 200 
PUT /boot-source 204 
PUT /drives/disk 204 
PUT /drives/extra 204 
PUT /machine-config 204 
PUT /vsock 204 
PUT /network-interfaces/tap0 204 
PUT /actions 204 
PUT /snapshot/create $probe Msync
PATCH /vm 204 Paused
PUT /snapshot/create 204 Full"
	is "$flavor: boot, probe, pause and snapshot calls in the original's order" "$(calls "$FC_CONTRACT_LOG")" "$want"
	is "$flavor: the guest reported liveness and got BeforeSuspend" "$(last "$FC_CONTRACT_LOG" guest-call function)" BeforeSuspend
	cfg=$(tr -d '\0' <"$pkg/config.json")
	like "$flavor: config records Firecracker and the flavour" "$cfg" "\"vmm\":\"firecracker\",\"firecrackerFork\":$([ $flavor = fork ] && echo true || echo false)"
	ok "$flavor: memory file holds the guest memory (64 MiB + stamp)" test "$(stat -c %s "$pkg/memory.bin")" -ge $((65 * 1048576))
	if [ $flavor = fork ]; then
		is "fork: state is padded like the original's" "$(($(stat -c %s "$pkg/state.bin") % 1048576))" 0
	else
		ok "upstream: state is not padded (upstream reads the whole file)" test "$(stat -c %s "$pkg/state.bin")" -lt 1048576
	fi
	ok "$flavor: the chroot is removed" test -z "$(ls -A "$T/vms/firecracker" 2>/dev/null)"

	# --- run: load, resume, AfterResume; SIGTERM: BeforeSuspend, pause, save -----------------------
	rdevs="[{\"name\":\"state\",\"path\":\"$pkg/state.bin\"},{\"name\":\"memory\",\"path\":\"$pkg/memory.bin\"},
	 {\"name\":\"kernel\",\"path\":\"$pkg/vmlinux\"},{\"name\":\"initramfs\",\"path\":\"$pkg/initramfs\"},
	 {\"name\":\"disk\",\"path\":\"$pkg/rootfs.ext4\"},{\"name\":\"extra\",\"path\":\"$pkg/extra.ext4\"},
	 {\"name\":\"config\",\"path\":\"$pkg/config.json\"}]"
	boot_id=$(last "$FC_CONTRACT_LOG" guest-call boot_id)
	for n in 1 2; do
		export FC_CONTRACT_LOG=$T/$flavor-run$n.jsonl
		drafter run "${fcopts[@]}" --devices "$rdevs" >$flavor-run$n.out 2>$flavor-run$n.err &
		pid=$!
		pids="$pids $pid"
		ok "$flavor run $n: resumed" wait_for $flavor-run$n.err 'VM resumed'
		ok "$flavor run $n: an agent connection is waiting on vsock.sock_26" \
			test -S "$(ls -d "$T"/vms/firecracker/*/root)/vsock.sock_26"
		kill -TERM $pid
		wait $pid
		is "$flavor run $n: SIGTERM suspends, exit 0" "$?" 0
		if [ $flavor = fork ]; then
			want="GET /machine-config 200 
PUT /snapshot/load 204 
PATCH /vm 204 Paused
PUT /snapshot/create 204 MsyncAndState
PUT /snapshot/create 204 Msync"
		else
			want="GET /machine-config 200 
PUT /snapshot/load 204 
PATCH /vm 204 Paused
PUT /snapshot/create 204 Full"
		fi
		is "$flavor run $n: load, resume, pause, snapshot calls" "$(calls "$FC_CONTRACT_LOG")" "$want"
		is "$flavor run $n: memory loaded shared only with the fork" "$(last "$FC_CONTRACT_LOG" load shared)" \
			"$([ $flavor = fork ] && echo true || echo false)"
		is "$flavor run $n: same guest (boot id) after load" "$(last "$FC_CONTRACT_LOG" guest-call boot_id)" "$boot_id"
		is "$flavor run $n: the guest's memory carries the suspends of every earlier run" \
			"$(last "$FC_CONTRACT_LOG" guest-call suspends AfterResume)" "$n"
		is "$flavor run $n: no working copies left" "$(ls -a "$pkg" | grep -c drafter-)" 0
	done
done

# --- the fork's package through FUSE exposure: the chroot gets bind mounts of the exposed files ----
if [ -e /dev/fuse ]; then
	export FC_CONTRACT_FLAVOR=fork FC_CONTRACT_LOG=$T/fuse.jsonl
	fdevs=${rdevs//$T\/upstream/$T/fork}
	drafter run "${fcopts[@]}" --exposure fuse --mount-dir "$T/mnt" --devices "$fdevs" >fuse-run.out 2>fuse-run.err &
	pid=$!
	pids="$pids $pid"
	ok "fuse: resumed" wait_for fuse-run.err 'VM resumed'
	like "fuse: memory and disks are bind mounts of the FUSE files in the chroot" \
		"$(grep " $T/vms/firecracker/" /proc/mounts | awk '{print $2}' | sed 's|.*/||' | sort | tr '\n' ' ')" '^disk extra memory $'
	kill -TERM $pid
	wait $pid
	is "fuse: SIGTERM suspends, exit 0" "$?" 0
	is "fuse: the guest's memory went through FUSE and back (suspends of every run)" \
		"$(last "$FC_CONTRACT_LOG" guest-call suspends AfterResume)" 3
	is "fuse: nothing stays mounted" "$(grep -c " $T/" /proc/mounts)" 0
else
	skip "fuse: no /dev/fuse"
fi

# --- a package made by the original (config = {"agentVSockPort":26} only) --------------------------
export FC_CONTRACT_FLAVOR=fork FC_CONTRACT_LOG=$T/orig.jsonl
cp -r "$T/fork" "$T/orig"
printf '{"agentVSockPort":26}' >"$T/orig/config.json"
truncate -s 2M "$T/orig/config.json"
odevs=${rdevs//$T\/upstream/$T/orig}
out=$(drafter run "${fcopts[@]}" --vmm qemu --devices "$odevs" 2>&1)
like "original's package with QEMU: refused in one line" "$out" "^drafter: cannot run '.*' with QEMU: the package was made by the original drafter for Firecracker$"
drafter run "${fcopts[@]}" --devices "$odevs" >orig-run.out 2>orig-run.err &
pid=$!
pids="$pids $pid"
ok "original's package: resumed with the fork" wait_for orig-run.err 'VM resumed'
kill -TERM $pid
wait $pid
is "original's package: suspended, exit 0" "$?" 0
is "original's package: loaded shared, as the original does" "$(last "$FC_CONTRACT_LOG" load shared)" true
cfg=$(tr -d '\0' <"$T/orig/config.json")
like "original's package: its config now carries drafter's record, agentVSockPort first" "$cfg" \
	'^\{"agentVSockPort":26,"drafter":\{.*"memorySize":64,.*"disks":\["disk","extra"\]'

# --- the same from a configuration file: one device list serves snapshot and run -------------------
export FC_CONTRACT_FLAVOR=fork FC_CONTRACT_LOG=$T/conf.jsonl
# Other vsock ports than the defaults: the guest dials these.
export FC_CONTRACT_AGENT_PORT=27 FC_CONTRACT_LIVENESS_PORT=24
cat >drafter.conf <<EOF
vm = {
  vmm = "firecracker";
  jailer_bin = "$top_srcdir/tests/fc-contract-jailer";
  firecracker_bin = "$T/bin/firecracker";
  chroot_base_dir = "$T/vms";
  netns = "$ns";
  enable_output = false;
  memory_size = 32;
  cpu_count = 3;
  cpu_template = "T2";
  boot_args = "console=ttyS0 from-the-config-file";
  agent_vsock_port = 27;
  liveness_vsock_port = 24;
};
devices = (
  { name = "state"; path = "$T/conf/state.bin"; },
  { name = "memory"; path = "$T/conf/memory.bin"; },
  { name = "kernel"; input = "$T/bp/vmlinux"; path = "$T/conf/vmlinux"; },
  { name = "disk"; input = "$T/bp/rootfs.ext4"; path = "$T/conf/rootfs.ext4"; },
  { name = "config"; path = "$T/conf/config.json"; }
);
EOF
drafter snapshot -c drafter.conf >conf-snap.out 2>&1
is "config file: snapshot exits 0" "$?" 0
like "config file: machine settings reach Firecracker" "$(grep -o '"cpu_template": "T2", "mem_size_mib": 32, "vcpu_count": 3' conf.jsonl)" 'vcpu_count": 3'
like "config file: boot args reach Firecracker" "$(grep -o 'from-the-config-file' conf.jsonl | head -1)" 'from-the-config-file'
like "config file: the agent port is recorded where the original reads it" "$(tr -d '\0' <"$T/conf/config.json")" '^\{"agentVSockPort":27,'
drafter run -c drafter.conf >conf-run.out 2>conf-run.err &
pid=$!
pids="$pids $pid"
ok "config file: run resumes the package" wait_for conf-run.err 'VM resumed'
kill -INT $pid
wait $pid
is "config file: SIGINT suspends, exit 0" "$?" 0
like "config file: the package was written back" "$(cat conf-run.err)" 'suspended: snapshot [0-9a-f]{32}'
unset FC_CONTRACT_AGENT_PORT FC_CONTRACT_LIVENESS_PORT

# --- Firecracker's own errors reach the user; nothing is left behind ---------------------------------
export FC_CONTRACT_FLAVOR=fork FC_CONTRACT_LOG=$T/err.jsonl
out=$(drafter snapshot "${fcopts[@]}" --memory-size 64 --cpu-count 64 --devices "${devs//$T\/upstream/$T/bad}" 2>&1)
rc=$?
ok "too many vCPUs: snapshot fails" test $rc -ne 0
like "too many vCPUs: Firecracker's fault message in one line" "$(printf '%s\n' "$out" | grep -v booting)" \
	'^drafter: cannot boot the VM: PUT /machine-config: .*vcpu_count: above maximum 32 \(HTTP 400\)$'
ok "too many vCPUs: no outputs, no chroot left" test ! -e "$T/bad/config.json" -a -z "$(ls -A "$T/vms/firecracker" 2>/dev/null)"

# --- a Firecracker that dies while running ------------------------------------------------------------
export FC_CONTRACT_FLAVOR=upstream FC_CONTRACT_LOG=$T/die.jsonl
pkg=$T/upstream
cp "$pkg/config.json" config.before
drafter run "${fcopts[@]}" --devices "${rdevs//$T\/fork/$T/upstream}" >die.out 2>die.err &
pid=$!
pids="$pids $pid"
wait_for die.err 'VM resumed'
pkill -KILL -P $pid
wait $pid
rc=$?
ok "killed Firecracker: drafter exits non-zero" test $rc -ne 0
like "killed Firecracker: one clear line" "$(grep -v 'VM resumed' die.err)" \
	'^drafter: VM stopped unexpectedly: firecracker was killed by signal 9.*package keeps its last snapshot$'
ok "killed Firecracker: config unchanged" cmp -s "$pkg/config.json" config.before
ok "killed Firecracker: no chroot, no working copies left" \
	test -z "$(ls -A "$T/vms/firecracker" 2>/dev/null)" -a "$(ls -a "$pkg" | grep -c drafter-)" = 0

done_testing
