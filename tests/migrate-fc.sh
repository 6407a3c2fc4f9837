#!/bin/bash
# Live migration of a Firecracker VM between two `drafter peer` processes,
# against Firecracker's documented interface: Firecracker cannot run here (no
# KVM), so tests/fc-contract-jailer stands in for the jailer and Firecracker
# (every API request checked against the OpenAPI file of the live-migration
# fork; its guest keeps boot id and counters in the memory file). Checked:
# the source loads its snapshot with shared memory, msyncs before the dirty
# cycles, pauses and writes its state into the state device; the destination
# starts its Firecracker ahead of the handover and loads the state the source
# sealed (same guest, one more suspend in its memory) with shared memory;
# both summaries; the destination suspends into its files on SIGTERM and
# `drafter run` resumes them; nothing stays mounted; a snapshot of upstream
# Firecracker (private memory) is refused in one line.
. "$top_srcdir/tests/functions.sh"

requires ip
requires_root
[ -e /dev/fuse ] || skip_all "no /dev/fuse"
. "$top_srcdir/tests/fc-lib.sh"
diag "real Firecracker skipped (needs KVM and the binaries): migrating against the contract server"

tmpdir
# two namespaces, as two hosts would have
ns0=dmf$$a ns1=dmf$$b
ip netns add $ns0 || skip_all "cannot create a network namespace"
cleanup_fn "ip netns del $ns0"
ip netns add $ns1 || skip_all "cannot create a network namespace"
cleanup_fn "ip netns del $ns1"
pids=
cleanup_fn 'for p in $pids; do pkill -KILL -P $p; kill -KILL $p; done 2>/dev/null; true'
cleanup_fn 'grep -o "$T/mnt[^ ]*" /proc/mounts | xargs -r -n1 umount -l'

cd "$T"
mkdir -p bp a b mnt
fc_binaries bin
head -c 300000 /dev/urandom >bp/vmlinux
head -c 100000 /dev/urandom >bp/initramfs
truncate -s 8M bp/rootfs.ext4

fcopts=(--vmm firecracker --jailer-bin "$top_srcdir/tests/fc-contract-jailer"
	--firecracker-bin "$T/bin/firecracker" --chroot-base-dir "$T/vms" --enable-output=false)
# devs KEY DIR: the VM's devices as --devices JSON
devs() {
	local out='[' d
	for d in state:state.bin memory:memory.bin kernel:vmlinux initramfs:initramfs disk:rootfs.ext4 config:config.json; do
		out="$out{\"name\":\"${d%%:*}\",\"$1\":\"$2/${d#*:}\"},"
	done
	echo "${out%,}]"
}
# ev LOG EVENT KEY [SUBKEY]: the last EVENT's KEY (or KEY.SUBKEY)
ev() { /usr/bin/python3 -c '
import json, sys
v = None
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == sys.argv[2]:
        v = e.get(sys.argv[3])
        if len(sys.argv) > 4:
            v = (v or {}).get(sys.argv[4])
print("" if v is None else json.dumps(v).strip("\""))
' "$@"; }
mounts() { grep -c " $T/mnt" /proc/mounts; }

for flavor in fork upstream; do
	export FC_CONTRACT_FLAVOR=$flavor FC_CONTRACT_LOG=$T/$flavor-snap.jsonl
	mkdir -p $flavor
	sdevs=$(devs output "$T/$flavor" | sed "s|\"output\":\"$T/$flavor/vmlinux\"|\"input\":\"$T/bp/vmlinux\",&|;
		s|\"output\":\"$T/$flavor/initramfs\"|\"input\":\"$T/bp/initramfs\",&|;
		s|\"output\":\"$T/$flavor/rootfs.ext4\"|\"input\":\"$T/bp/rootfs.ext4\",&|")
	drafter snapshot "${fcopts[@]}" --netns $ns0 --memory-size 64 --devices "$sdevs" >$flavor-snap.out 2>&1
	is "$flavor: snapshot exits 0" "$?" 0
done

# refused NAME FLAVOR DIR WHY: a source peer on the files in DIR exits
# non-zero at once with "cannot start the VM: WHY", starting no Firecracker
refused() {
	local out rc
	export FC_CONTRACT_FLAVOR=$2 FC_CONTRACT_LOG=$T/$1-peer.jsonl
	out=$(timeout 60 drafter peer "${fcopts[@]}" --netns $ns0 --mount-dir "$T/mnt" --devices "$(devs base "$3")" \
		--raddr '' --laddr 127.0.0.1:1 2>&1)
	rc=$?
	ok "$1: the peer exits non-zero ($rc)" test $rc -ne 0 -a $rc -ne 124
	like "$1: refused in one line" "$(printf '%s\n' "$out" | grep -v "is at")" "^drafter: cannot start the VM: $4\$"
	ok "$1: Firecracker was never started" test ! -s "$T/$1-peer.jsonl"
	is "$1: nothing stays mounted" "$(mounts)" 0
}
refused upstream upstream "$T/upstream" \
	"the snapshot was made with upstream Firecracker, which maps guest memory privately: live migration needs the loopholelabs fork"
# a package in the original's format (its config is only the agent port)
mkdir -p orig
cp --sparse=always fork/* orig/
printf '{"agentVSockPort":26}' >orig/config.json
truncate -s 1M orig/config.json
refused original fork "$T/orig" \
	"the snapshot was made by the original drafter: resume it once with 'drafter run' before migrating it"

# --- the fork: A serves its VM, B migrates it in
cp --sparse=always fork/* a/
export FC_CONTRACT_FLAVOR=fork FC_CONTRACT_LOG=$T/a.jsonl
port=$((23000 + $$ % 8000))
drafter peer "${fcopts[@]}" --netns $ns0 --mount-dir "$T/mnt" --devices "$(devs base "$T/a")" \
	--raddr '' --laddr 127.0.0.1:$port >a.log 2>&1 &
A=$!
pids="$A $pids"
ok "A resumes the VM and waits for a destination" wait_for a.log "waiting for a migration on"
is "A: the snapshot is loaded with shared memory (the fork)" "$(ev a.jsonl load shared)" true
boot=$(ev a.jsonl load guest boot_id)
s0=$(ev a.jsonl load guest suspends)
ok "A's guest has a boot id ($boot)" test -n "$boot"

export FC_CONTRACT_LOG=$T/b.jsonl
drafter peer "${fcopts[@]}" --netns $ns1 --mount-dir "$T/mnt" --devices "$(devs base "$T/b")" --json \
	--raddr 127.0.0.1:$port --laddr '' >b.out 2>b.log &
B=$!
pids="$B $pids"
timeout 120 tail --pid=$A -f /dev/null
wait $A
is "A exits 0 after the migration" "$?" 0
like "A prints its summary" "$(cat a.log)" "VM migrated to '127.0.0.1:[0-9]+': .* downtime [0-9]+ms"
ok "B runs the VM" wait_for b.log "VM migrated from '127.0.0.1:$port': .* downtime [0-9]+ms"
like "B's JSON summary" "$(cat b.out)" '"role": ?"destination"'
want="GET /machine-config 200 
PUT /snapshot/load 204 
PUT /snapshot/create 204 Msync
PATCH /vm 204 Paused
PUT /snapshot/create 204 MsyncAndState
PUT /snapshot/create 204 Msync"
is "A: load, msync before the cycles, pause, state, msync (the fork's calls)" "$(calls a.jsonl | uniq)" "$want"
is "A: its guest got BeforeSuspend" "$(ev a.jsonl guest-call function)" BeforeSuspend
is "B: Firecracker loaded the state the source sealed" "$(calls b.jsonl)" "GET /machine-config 200 
PUT /snapshot/load 204 "
is "B: with shared memory" "$(ev b.jsonl load shared)" true
is "B: the state is the one A saved at its suspend" "$(ev b.jsonl load state_id)" "$(ev a.jsonl snapshot state_id)"
fails "A: no warning about the packet hold" grep -q "cannot hold" a.log
fails "B: no warning about the packet hold" grep -q "cannot hold" b.log
is "B: the same guest (boot id)" "$(ev b.jsonl load guest boot_id)" "$boot"
is "B: its memory carries the suspend of the migration" "$(ev b.jsonl load guest suspends)" $((s0 + 1))
ok "B: the guest got AfterResume" wait_for b.jsonl '"function": "AfterResume"' 100
is "A's Firecracker is gone: one instance left" "$(ls "$T/vms/firecracker" | wc -l)" 1

kill -TERM $B
wait $B
is "B: SIGTERM suspends the VM into its files, exit 0" "$?" 0
like "B: says so" "$(cat b.log)" "suspended"
is "nothing stays mounted" "$(mounts)" 0
ok "no chroot left" test -z "$(ls -A "$T/vms/firecracker" 2>/dev/null)"

# --- B's files hold a snapshot that drafter run resumes
export FC_CONTRACT_LOG=$T/run.jsonl
rdevs=$(devs path "$T/b")
drafter run "${fcopts[@]}" --netns $ns0 --devices "$rdevs" >run.out 2>run.err &
R=$!
pids="$R $pids"
ok "run resumes B's files" wait_for run.err 'VM resumed'
is "run: the same guest" "$(ev run.jsonl load guest boot_id)" "$boot"
is "run: the state B saved at its suspend" "$(ev run.jsonl load state_id)" "$(ev b.jsonl snapshot state_id)"
is "run: with both suspends in its memory" "$(ev run.jsonl load guest suspends)" $((s0 + 2))
kill -TERM $R
wait $R
is "run: SIGTERM suspends, exit 0" "$?" 0
ok "still no chroot left" test -z "$(ls -A "$T/vms/firecracker" 2>/dev/null)"
done_testing
