#!/bin/bash
# Live migration of a running QEMU (TCG) guest between `drafter peer`
# processes over loopback, each VM in its own namespace made by `drafter nat`:
# a migration whose connection is cut before the authority transfer (the
# source keeps running its VM, the destination exits non-zero and leaves no
# mount), then a chain A (ns0) -> B (ns1) -> C (ns0) while a client asks the
# guest's service on port 8080 every 50 ms: every answer has the same boot
# id and a counter that never goes back, the state and snapshot record that
# arrive equal what the source wrote at its suspend (SHA-256), and the final
# peer suspends the VM into its files on SIGTERM; a peer resumes those files,
# `drafter terminate` pulls a backup of its running VM and `drafter run`
# resumes the backup.
. "$top_srcdir/tests/functions.sh"

requires qemu-system-x86_64 mkfs.ext4 cpio socat ip nft sha256sum timeout
requires_root
[ -e /dev/fuse ] || skip_all "no /dev/fuse"
[ -x "$top_builddir/guest/drafter-agent" ] || skip_all "guest programs are not built"
XFER_TOOL=$top_builddir/tests/xfer-tool
[ -x "$XFER_TOOL" ] || skip_all "tests/xfer-tool is not built"

tmpdir
chmod 755 "$T"
cd "$T" || exit 1
export DRAFTER_QEMU_ACCEL=tcg

bp=$top_builddir/tests/tmp/blueprint
if ! out=$("$top_srcdir/guest/build-blueprint" --bindir "$top_builddir/guest" -o "$bp" 2>&1); then
	diag "$out"
	skip_all "cannot build the test blueprint (is linux-image-amd64 installed?)"
fi

prefix=mv$(($$ % 10000))
# Address ranges of our own, so that other tests' namespaces never overlap.
veth=10.219.0.0/22
nsveth=10.219.7.0/24
guest=172.100.100.2
pids=
cleanup_fn 'for p in $pids; do kill -TERM $p; done 2>/dev/null; sleep 2; for p in $pids; do kill -KILL $p; done 2>/dev/null; grep -o "$T/mnt[^ ]*" /proc/mounts | xargs -r -n1 umount -l; true'

wait_log() { # wait_log FILE REGEX [SECONDS]
	timeout "${3:-60}" bash -c 'tail -n +1 -F "$1" 2>/dev/null | grep -q -m1 -E -- "$2"' _ "$1" "$2"
}
query() { # query NS: one answer of the guest's service, retried while it comes up
	local i line
	for i in $(seq 1 100); do
		line=$(ip netns exec "$1" socat -T 2 - TCP:$guest:8080,connect-timeout=1 </dev/null 2>/dev/null)
		case "$line" in boot_id=*) echo "$line"; return 0 ;; esac
		sleep 0.2
	done
	return 1
}
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
devs() { # devs DIR: the VM's devices with their files in DIR
	echo "[{\"name\":\"state\",\"base\":\"$1/state.bin\"},{\"name\":\"memory\",\"base\":\"$1/memory.bin\"},
 {\"name\":\"kernel\",\"base\":\"$1/vmlinux\"},{\"name\":\"initramfs\",\"base\":\"$1/initramfs\"},
 {\"name\":\"disk\",\"base\":\"$1/rootfs.ext4\"},{\"name\":\"config\",\"base\":\"$1/config.json\"}]"
}
peer() { # peer LOG NS DIR RADDR LADDR [OPTION...]
	local log=$1 ns=$2 dir=$3 raddr=$4 laddr=$5
	shift 5
	drafter peer --netns "$ns" --enable-output=false --mount-dir "$T/mnt" --devices "$(devs "$dir")" \
		--raddr "$raddr" --laddr "$laddr" "$@" >"$log" 2>&1 &
	LAST=$!
	pids="$LAST $pids"
}

drafter nat --namespace-prefix $prefix --namespace-count 2 --host-veth-cidr $veth \
	--namespace-veth-cidr $nsveth --blocked-subnet-cidr $nsveth --ipv6-prefix fd00:219:219::/64 >nat.log 2>&1 &
natpid=$!
for i in $(seq 1 100); do
	[ -e /run/netns/${prefix}1 ] && grep -q . nat.log 2>/dev/null && break
	kill -0 $natpid 2>/dev/null || break
	sleep 0.1
done
[ -e /run/netns/${prefix}1 ] || { diag "$(cat nat.log)"; kill $natpid; skip_all "drafter nat did not set up its namespaces"; }

mkdir -p a b c mnt
drafter-snapshotter --netns ${prefix}0 --memory-size 256 --boot-args 'console=ttyS0 panic=-1 quiet root=/dev/vda rw' \
	--enable-output=false --chroot-base-dir "$T/vms" --devices "[
 {\"name\":\"state\",\"output\":\"$T/a/state.bin\"},{\"name\":\"memory\",\"output\":\"$T/a/memory.bin\"},
 {\"name\":\"kernel\",\"input\":\"$bp/vmlinux\",\"output\":\"$T/a/vmlinux\"},
 {\"name\":\"initramfs\",\"input\":\"$bp/initramfs\",\"output\":\"$T/a/initramfs\"},
 {\"name\":\"disk\",\"input\":\"$bp/rootfs.ext4\",\"output\":\"$T/a/rootfs.ext4\"},
 {\"name\":\"config\",\"output\":\"$T/a/config.json\"}]" 2>snap.err
is "snapshot of the blueprint in ${prefix}0" "$?" 0

p1=$((21000 + $$ % 8000))
p2=$((p1 + 1))
pcut=$((p1 + 2))
peer a.log ${prefix}0 a '' 127.0.0.1:$p1
A=$LAST
l0=$(query ${prefix}0)
ok "peer A resumes the VM from its files and serves it" test -n "$l0"
diag "A: $l0"
boot=$(field "$l0" boot_id)

# --- the connection cut before authority (a proxy resets it after 2 MB)
"$XFER_TOOL" proxy $pcut $p1 2000000 >proxy.out 2>&1 &
px=$!
pids="$px $pids"
wait_log proxy.out listening 10
peer cut.log ${prefix}1 c 127.0.0.1:$pcut ''
cutpid=$LAST
wait $cutpid
rc=$?
wait $px 2>/dev/null
diag "$(grep -v "is at" cut.log | tail -n 2)"
ok "a destination cut before authority exits non-zero ($rc)" test "$rc" -ne 0
like "... and says why" "$(cat cut.log)" "cannot migrate from"
ok "... and leaves no mount" sh -c "! grep -q '$T/mnt/drafter-$cutpid' /proc/mounts"
wait_log a.log "failed, the devices stay here" 20
like "the source notices the failed migration" "$(cat a.log)" "failed, the devices stay here"
l1=$(query ${prefix}0)
is "the source's VM keeps serving: the same guest" "$(field "$l1" boot_id)" "$boot"
ok "... its counter goes on ($(field "$l0" counter) -> $(field "$l1" counter))" test "$(field "$l1" counter)" -gt "$(field "$l0" counter)"
rm -rf c
mkdir c

# --- the chain A (ns0) -> B (ns1) -> C (ns0) while a client asks every 50 ms
(
	while :; do
		for ns in ${prefix}0 ${prefix}1; do
			line=$(ip netns exec $ns socat -T 1 - TCP:$guest:8080,connect-timeout=0.3 </dev/null 2>/dev/null)
			case "$line" in boot_id=*) echo "$(date +%s.%N) $ns $line"; break ;; esac
		done
		sleep 0.05
	done >client.log
) &
client=$!
pids="$client $pids"
sleep 1

peer b.log ${prefix}1 b 127.0.0.1:$p1 127.0.0.1:$p2
B=$LAST
wait $A
is "A -> B: the source exits 0 after the handover" "$?" 0
wait_log b.log "VM migrated from" 60
like "B resumed the VM" "$(cat b.log)" "VM resumed here"
diag "$(grep -h 'VM migrated' a.log b.log | sed 's/^drafter: //')"
for f in state.bin config.json; do
	is "$f at B equals A's at its suspend (sha256)" "$(sha256sum <b/$f | cut -d' ' -f1)" "$(sha256sum <a/$f | cut -d' ' -f1)"
done
lb=$(query ${prefix}1)
is "B serves the same guest" "$(field "$lb" boot_id)" "$boot"

peer c.log ${prefix}0 c 127.0.0.1:$p2 '' --json
C=$LAST
wait $B
is "B -> C: B exits 0 after the handover" "$?" 0
wait_log c.log "VM migrated from" 60
diag "$(grep -h 'VM migrated' c.log | sed 's/^drafter: //')"
diag "$(grep -h 'VM resumed here' b.log c.log | sed 's/^drafter: //')"
js=$(grep '^{' c.log)
diag "C: $js"
like "C prints its summary as JSON with --json" "$js" '^\{"role":"destination",.*"blocks_postcopied":[0-9]+,.*"cycles":(null|[0-9]+),"total_s":[0-9.]+,"downtime_ms":[0-9.]+\}$'
if command -v python3 >/dev/null; then
	ok "... which is valid JSON" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$js"
fi
pc=$(printf '%s' "$js" | sed -n 's/.*"blocks_postcopied":\([0-9]*\).*/\1/p')
ok "C resumed the VM with $pc blocks still to come (post-copy: at least state and config)" test "${pc:-0}" -gt 0
lc=$(query ${prefix}0)
is "C serves the same guest" "$(field "$lc" boot_id)" "$boot"
sleep 1
kill $client
wait $client 2>/dev/null

n=$(wc -l <client.log)
summary=$(awk '{ split($3, b, "="); split($4, c, "=");
		 if (NR > 1 && c[2] + 0 < last) back++;
		 if (b[2] != boot0 && NR > 1) other++;
		 if (NR == 1) boot0 = b[2];
		 if (NR > 1 && $1 - lt > gap) gap = $1 - lt;
		 if ($2 != prevns) switches++;
		 prevns = $2; last = c[2] + 0; lt = $1 }
		END { printf "%d %d %d %.2f", back + 0, other + 0, switches + 0, gap }' client.log)
read -r back other switches gap <<<"$summary"
diag "client: $n answers, longest gap between answers ${gap}s, namespace switches $switches"
ok "the client got answers throughout ($n)" test "$n" -gt 20
is "the counter never went back" "$back" 0
is "every answer came from the same guest" "$other" 0
ok "answers came from ns0, then ns1, then ns0 again" test "$switches" -ge 3
ok "... the last one from C, with a counter beyond A's" test "$(tail -n 1 client.log | awk '{split($4,c,"="); print c[2]}')" -gt "$(field "$l1" counter)"

kill -TERM $C
wait $C
is "C suspends the VM into its files on SIGTERM, exit 0" "$?" 0
like "... and says so" "$(cat c.log)" "VM suspended into its devices"
ok "no mount is left" sh -c "! grep -q '$T/mnt/drafter-$C' /proc/mounts"

# --- a backup of the running VM: D resumes C's files, terminate pulls it, run resumes the backup
mkdir -p d
peer d.log ${prefix}1 c '' 127.0.0.1:$p2
D=$LAST
ld=$(query ${prefix}1)
is "D resumes the VM C suspended into its files" "$(field "$ld" boot_id)" "$boot"
ok "... with its counter beyond C's last answer" test "$(field "$ld" counter)" -gt "$(tail -n 1 client.log | awk '{split($4,c,"="); print c[2]}')"
out='['
for n in state:state.bin memory:memory.bin kernel:vmlinux initramfs:initramfs disk:rootfs.ext4 config:config.json; do
	out="$out{\"name\":\"${n%%:*}\",\"output\":\"$T/d/${n#*:}\"},"
done
out="${out%,}]"
drafter terminate --raddr 127.0.0.1:$p2 --devices "$out" >term.log 2>&1
is "drafter terminate pulls a backup of the running VM" "$?" 0
wait $D
is "... and D exits 0 after handing it over" "$?" 0
runner_devs=$(devs d | sed 's/"base"/"path"/g')
drafter-runner --netns ${prefix}1 --enable-output=false --devices "$runner_devs" >run.log 2>&1 &
R=$!
pids="$R $pids"
lr=$(query ${prefix}1)
is "drafter run resumes the backup: the same guest" "$(field "$lr" boot_id)" "$boot"
ok "... its counter beyond D's ($(field "$ld" counter) -> $(field "$lr" counter))" test "$(field "$lr" counter)" -gt "$(field "$ld" counter)"
kill -TERM $R
wait $R
is "the runner suspends on SIGTERM, exit 0" "$?" 0

kill -TERM $natpid
wait $natpid
ok "drafter nat removed its namespaces" test ! -e /run/netns/${prefix}0 -a ! -e /run/netns/${prefix}1

done_testing
