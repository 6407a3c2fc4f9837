#!/bin/bash
# Live migration of a running QEMU (TCG) guest between two "hosts", each a
# `drafter nat` of its own (own prefix, own address ranges, one namespace),
# while a client asks the guest's port 8080 every 50 ms in both namespaces:
#  - mutual TLS: destinations with a certificate from another CA, without a
#    client certificate, or trusting another CA are refused (each exits
#    non-zero with one clear line, the source logs the refusal and its VM
#    keeps serving); then a correct destination on host 2 takes the VM over
#    (same boot id in every answer, counter never back, both summaries);
#  - post-copy: a proxy that follows the frames throttles the source's
#    traffic after AUTHORITY, so the destination resumes with blocks still
#    to come and serves correct answers while post-copy runs; the state and
#    config devices end up equal to the source's at its suspend (SHA-256);
#  - a connection cut right after AUTHORITY: the source does not resume its
#    VM (it exits non-zero, its VMM gone), the destination either serves the
#    same guest or exits non-zero naming the lost source; no mount and no
#    QEMU of the test remain.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/xfer-lib.sh"

requires qemu-system-x86_64 mkfs.ext4 cpio socat ip nft sha256sum timeout openssl
requires_root
[ -e /dev/fuse ] || skip_all "no /dev/fuse"
[ -x "$top_builddir/guest/drafter-agent" ] || skip_all "guest programs are not built"
[ -x "$XFER_TOOL" ] || skip_all "tests/xfer-tool is not built"

tmpdir
chmod 755 "$T"
cd "$T" || exit 1
export DRAFTER_QEMU_ACCEL=tcg
make_certs certs || skip_all "openssl cannot make test certificates"

bp=$top_builddir/tests/tmp/blueprint
if ! out=$("$top_srcdir/guest/build-blueprint" --bindir "$top_builddir/guest" -o "$bp" 2>&1); then
	diag "$out"
	skip_all "cannot build the test blueprint (is linux-image-amd64 installed?)"
fi

# Two hosts, each with address ranges no other test uses.
h1=hx$(($$ % 10000))
h2=hy$(($$ % 10000))
ns1=${h1}0
ns2=${h2}0
guest=172.100.100.2
port=$((30000 + ($$ % 270) * 10)) # ten ports of our own from here
pids=
natpids=
leftovers() { # mounts and processes of the test that are still there
	grep -F "$T/mnt" /proc/mounts
	ps -eo pid=,args= | grep -F "$T/mnt" | grep -v grep
}
# A FUSE server that died leaves its VMM waiting on the mount: abort the connection first.
unmount_all() {
	local m dev
	for m in $(grep -o "$T/mnt[^ ]*" /proc/mounts); do
		dev=$(awk -v m="$m" '$5 == m { print $3 }' /proc/self/mountinfo)
		[ -n "$dev" ] && echo 1 >"/sys/fs/fuse/connections/${dev#*:}/abort"
		umount -l "$m"
	done
}
cleanup_fn 'for p in $pids; do kill -TERM $p; done 2>/dev/null; sleep 2; for p in $pids; do kill -KILL $p; done 2>/dev/null; unmount_all; for p in $natpids; do kill -TERM $p; wait $p; done 2>/dev/null; true'

query() { # query NS: one answer of the guest's service, retried while it comes up
	local i line
	for i in $(seq 1 100); do
		line=$(ip netns exec "$1" socat -T 2 - TCP:$guest:8080,connect-timeout=1 </dev/null 2>/dev/null)
		case "$line" in boot_id=*) echo "$line"; return 0 ;; esac
		sleep 0.2
	done
	return 1
}
query_once() { ip netns exec "$1" socat -T 2 - TCP:$guest:8080,connect-timeout=1 </dev/null 2>/dev/null | grep '^boot_id='; }
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
sha() { sha256sum <"$1" | cut -d' ' -f1; }
devs() { # devs DIR [DEVICE]: the VM's devices with their files in DIR, and one more
	echo "[${2:+$2,}{\"name\":\"state\",\"base\":\"$1/state.bin\"},{\"name\":\"memory\",\"base\":\"$1/memory.bin\"},
 {\"name\":\"kernel\",\"base\":\"$1/vmlinux\"},{\"name\":\"initramfs\",\"base\":\"$1/initramfs\"},
 {\"name\":\"disk\",\"base\":\"$1/rootfs.ext4\"},{\"name\":\"config\",\"base\":\"$1/config.json\"}]"
}
peer() { # peer LOG NS DEVICES RADDR LADDR [OPTION...]: sets $LAST
	local log=$1 ns=$2 d=$3 raddr=$4 laddr=$5
	shift 5
	drafter peer --netns "$ns" --enable-output=false --mount-dir "$T/mnt" --devices "$d" \
		--raddr "$raddr" --laddr "$laddr" "$@" >"$log" 2>&1 &
	LAST=$!
	pids="$LAST $pids"
}
exited() { ! kill -0 "$1" 2>/dev/null; }
reap() { # reap PID [SECONDS]: its exit status; one still running by then is killed (137)
	timeout "${2:-120}" tail --pid="$1" -f /dev/null || kill -KILL "$1" 2>/dev/null
	wait "$1"
}
bail() { # bail WHY LOG...: what follows cannot work; show the logs and stop
	local why=$1
	shift
	diag "$(tail -n 20 "$@")"
	echo "Bail out! $why"
	exit 1
}
no_mount_of() { ! grep -q "$T/mnt/drafter-$1" /proc/mounts; }
no_vmm_of() { ! ps -eo args= | grep -v grep | grep -qF "$T/mnt/drafter-$1/"; }
nat() { # nat PREFIX N: one "host", address ranges 10.23N.0.0/22, 10.23N.7.0/24, fd00:23N:23N::/64
	drafter nat --namespace-prefix "$1" --namespace-count 1 --host-veth-cidr 10.23$2.0.0/22 \
		--namespace-veth-cidr 10.23$2.7.0/24 --blocked-subnet-cidr 10.23$2.7.0/24 \
		--ipv6-prefix fd00:23$2:23$2::/64 >"nat-$1.log" 2>&1 &
	natpids="$! $natpids"
	wait_log "nat-$1.log" "ready" 30 && [ -e "/run/netns/${1}0" ]
}
if ! nat $h1 1 || ! nat $h2 3; then
	diag "$(cat nat-*.log)"
	skip_all "drafter nat did not set up its namespaces"
fi

mkdir -p a b c d e mnt
drafter-snapshotter --netns $ns1 --memory-size 256 --boot-args 'console=ttyS0 panic=-1 quiet root=/dev/vda rw' \
	--enable-output=false --chroot-base-dir "$T/vms" --devices "[
 {\"name\":\"state\",\"output\":\"$T/a/state.bin\"},{\"name\":\"memory\",\"output\":\"$T/a/memory.bin\"},
 {\"name\":\"kernel\",\"input\":\"$bp/vmlinux\",\"output\":\"$T/a/vmlinux\"},
 {\"name\":\"initramfs\",\"input\":\"$bp/initramfs\",\"output\":\"$T/a/initramfs\"},
 {\"name\":\"disk\",\"input\":\"$bp/rootfs.ext4\",\"output\":\"$T/a/rootfs.ext4\"},
 {\"name\":\"config\",\"output\":\"$T/a/config.json\"}]" 2>snap.err
is "snapshot of the blueprint on host 1 ($ns1)" "$?" 0

# ---------------------------------------------------------------- mutual TLS
pa=$port
SRV_TLS="--tls-cert certs/server.pem --tls-key certs/server.key --tls-ca certs/ca.pem --tls-verify-peer"
CLI_TLS="--tls-cert certs/client.pem --tls-key certs/client.key --tls-ca certs/ca.pem --tls-verify-peer"
peer a.log $ns1 "$(devs a)" '' 127.0.0.1:$pa $SRV_TLS
A=$LAST
l0=$(query $ns1)
ok "A resumes the VM on host 1 and serves it" test -n "$l0"
[ -n "$l0" ] || bail "no VM on host 1" a.log snap.err
like "... and waits for a migration over TLS" "$(cat a.log)" "waiting for a migration on '127.0.0.1:$pa' \(TLS\)"
boot=$(field "$l0" boot_id)
diag "A: $l0"

# The client asks every 50 ms, first where the last answer came from.
(
	cur=$ns1 other=$ns2
	while :; do
		for ns in $cur $other; do
			line=$(ip netns exec $ns socat -T 1 - TCP:$guest:8080,connect-timeout=0.3 </dev/null 2>/dev/null)
			case "$line" in boot_id=*) ;; *) continue ;; esac
			echo "$(date +%s.%N) $ns $line"
			[ $ns = $cur ] || { other=$cur; cur=$ns; }
			break
		done
		sleep 0.05
	done >client.log
) &
client=$!
pids="$client $pids"

refused=0
bad_dest() { # bad_dest NAME TLS-OPTIONS...: a destination on host 2 that must be refused
	local name=$1 rc
	shift
	peer $name.log $ns2 "$(devs b)" 127.0.0.1:$pa '' "$@"
	reap $LAST
	rc=$?
	diag "$name: $(cat $name.log)"
	ok "$name: the destination exits non-zero ($rc)" test "$rc" -ne 0
	is "... with one line (warnings aside)" "$(grep -vc 'warning:' $name.log)" 1
	like "... naming the source and TLS" "$(cat $name.log)" "^drafter: cannot (connect to|migrate from) '127.0.0.1:$pa': .*(TLS|tlsv)"
	ok "... and leaves no mount" no_mount_of $LAST
	ok "... no file in its directory" test -z "$(ls b)"
}
source_refused() { # source_refused REGEX: A logged one more refusal, matching REGEX
	refused=$((refused + 1))
	ok "A logs the refusal" timeout 10 bash -c "until [ \$(grep -c \"refused '127.0.0.1:\" a.log) -ge $refused ]; do sleep 0.1; done"
	like "... saying why" "$(grep refused a.log | tail -n 1)" "$1"
	local l
	l=$(query $ns1)
	is "... and its VM keeps serving the same guest" "$(field "$l" boot_id)" "$boot"
	ok "... its counter going on ($(field "$LASTQ" counter) -> $(field "$l" counter))" \
		test "$(field "$l" counter)" -gt "$(field "$LASTQ" counter)"
	LASTQ=$l
}
LASTQ=$l0
bad_dest rogue --tls-cert certs/rogue.pem --tls-key certs/rogue.key --tls-ca certs/ca.pem --tls-verify-peer
like "... which says the source did not know its CA" "$(cat rogue.log)" "unknown ca"
source_refused "TLS handshake failed: certificate verification failed"
bad_dest nocert --tls-ca certs/ca.pem --tls-verify-peer
like "... which says a certificate was required" "$(cat nocert.log)" "certificate required"
source_refused "TLS handshake failed: peer did not return a certificate"
bad_dest otherca --tls-cert certs/client.pem --tls-key certs/client.key --tls-ca certs/otherca.pem --tls-verify-peer
like "... which could not verify the source" "$(cat otherca.log)" "certificate verification failed"
source_refused "TLS handshake failed: .*unknown ca"
ok "A did not start a migration for any of them" test "$(grep -c 'migrating' a.log)" = 0

peer b.log $ns2 "$(devs b)" 127.0.0.1:$pa '' $CLI_TLS --json
B=$LAST
reap $A
is "A -> B over mutual TLS: A exits 0 after the handover" "$?" 0
ok "B resumed the VM on host 2" wait_log b.log "VM migrated from" 90
grep -q "VM migrated from" b.log || bail "no migration to host 2" a.log b.log
like "B says it resumed" "$(cat b.log)" "VM resumed here"
like "A prints its summary" "$(cat a.log)" "VM migrated to '127.0.0.1:[0-9]+': .* on the wire, [0-9]+ blocks pre-copied, [0-9]+ post-copied"
like "B prints its summary" "$(cat b.log)" "VM migrated from '127.0.0.1:$pa': .* on the wire, [0-9]+ blocks pre-copied, [0-9]+ post-copied .*downtime [0-9]+ms"
diag "$(grep -h 'VM migrated' a.log b.log | sed 's/^drafter: //')"
ok "B's JSON summary is there" grep -q '^{"role":"destination"' b.log
for f in state.bin config.json; do
	is "$f at B equals A's at its suspend (sha256)" "$(sha b/$f)" "$(sha a/$f)"
done
lb=$(query $ns2)
is "B serves the same guest on host 2" "$(field "$lb" boot_id)" "$boot"
ok "... with its counter beyond A's last answer" test "$(field "$lb" counter)" -gt "$(field "$LASTQ" counter)"
sleep 1
kill $client
wait $client 2>/dev/null

client_summary() { # client_summary LOG: back other switches gap first-ns last-ns
	awk '{ split($3, b, "="); split($4, c, "=");
		 if (NR > 1 && c[2] + 0 < last) back++;
		 if (NR == 1) { boot0 = b[2]; first = $2 } else if (b[2] != boot0) other++;
		 if (NR > 1 && $1 - lt > gap) gap = $1 - lt;
		 if (NR > 1 && $2 != prevns) switches++;
		 prevns = $2; last = c[2] + 0; lt = $1 }
		END { printf "%d %d %d %.2f %s %s", back + 0, other + 0, switches + 0, gap, first, prevns }' "$1"
}
read -r back other switches gap first lastns <<<"$(client_summary client.log)"
n=$(wc -l <client.log)
diag "client: $n answers, longest gap ${gap}s, namespace switches $switches"
ok "the client got answers throughout ($n)" test "$n" -gt 20
is "the counter never went back" "$back" 0
is "every answer came from the same guest" "$other" 0
is "answers came from host 1, then from host 2" "$first $switches $lastns" "$ns1 1 $ns2"

kill -TERM $B
reap $B
is "B suspends the VM into its files on SIGTERM, exit 0" "$?" 0
ok "no mount and no VMM of A or B is left" sh -c "! grep -q '$T/mnt/drafter-\($A\|$B\)' /proc/mounts && ! ps -eo args= | grep -v grep | grep -q '$T/mnt/drafter-\($A\|$B\)/'"

# ------------------------------------- post-copy through a throttled link
# C (host 2) resumes B's files and serves in plaintext, so that a proxy can
# follow the frames. Besides the VM, C has a scratch device without dirty
# cycles that a writer keeps writing until the handover: all of it is
# post-copied, so post-copy lasts long enough to ask the VM meanwhile. After
# AUTHORITY the proxy passes $rate bytes/s, blocks D asks for included.
pc=$((port + 1))
pp=$((port + 2))
pd=$((port + 3))
pq=$((port + 4))
rate=1048576
scratch() { echo "{\"name\":\"scratch\",\"base\":\"$1/scratch.img\",\"minCycles\":0,\"maxCycles\":0}"; }
truncate -s 16M b/scratch.img
peer c.log $ns2 "$(devs b "$(scratch b)")" '' 127.0.0.1:$pc
C=$LAST
lc=$(query $ns2)
is "C resumes B's files: the same guest" "$(field "$lc" boot_id)" "$boot"
[ "$(field "$lc" boot_id)" = "$boot" ] || bail "C does not serve" c.log
"$XFER_TOOL" writer "$(sed -n "s/.*device 'scratch' is at '\([^']*\)'.*/\1/p" c.log)" 7 65536 >writer.out 2>writer.err &
writer=$!
pids="$writer $pids"
"$XFER_TOOL" proxy $pp $pc 0 auth-rate=$rate >proxy-rate.out 2>&1 &
px=$!
pids="$px $pids"
wait_log proxy-rate.out listening 10
(
	while :; do
		line=$(ip netns exec $ns1 socat -T 1 - TCP:$guest:8080,connect-timeout=0.3 </dev/null 2>/dev/null)
		case "$line" in boot_id=*) echo "$(date +%s.%N) $ns1 $line $(grep -c 'done forwarded' proxy-rate.out)" ;; esac
		sleep 0.05
	done >client-d.log
) &
client=$!
pids="$client $pids"
peer d.log $ns1 "$(devs d "$(scratch d)")" 127.0.0.1:$pp 127.0.0.1:$pd --json
D=$LAST
ok "D on host 1 resumes the VM" wait_log d.log "VM resumed here" 120
grep -q "VM resumed here" d.log || bail "D did not resume" c.log d.log proxy-rate.out
ok "the proxy throttles after authority ($rate bytes/s)" grep -q "authority forwarded" proxy-rate.out
ld=$(query $ns1)
done_before=$(grep -c "done forwarded" proxy-rate.out)
is "D serves the same guest" "$(field "$ld" boot_id)" "$boot"
ok "... with its counter beyond C's ($(field "$lc" counter) -> $(field "$ld" counter))" test "$(field "$ld" counter)" -gt "$(field "$lc" counter)"
is "... while post-copy still runs (the source's DONE has not passed the proxy)" "$done_before" 0
is "... (D has not printed its summary yet)" "$(grep -c 'VM migrated from' d.log)" 0
ok "post-copy ends: D prints its summary" wait_log d.log "VM migrated from" 180
reap $C
is "C exits 0 after the handover" "$?" 0
reap $writer 30
ok "the writer wrote C's scratch device until the handover ($(cat writer.out) writes)" test "$(cat writer.out)" -gt 0
sleep 0.5
kill $client
wait $client 2>/dev/null
js=$(grep '^{' d.log)
diag "D: $js"
diag "$(grep -h 'VM migrated\|resumed here' c.log d.log | sed 's/^drafter: //')"
post=$(printf '%s' "$js" | sed -n 's/.*"blocks_postcopied":\([0-9]*\).*/\1/p')
ok "D resumed with $post blocks still to come" test "${post:-0}" -gt 0
for f in state.bin config.json scratch.img; do
	is "$f at D equals C's at its suspend (sha256)" "$(sha d/$f)" "$(sha b/$f)"
done
read -r back other switches gap first lastns <<<"$(client_summary client-d.log)"
during=$(awk '$NF == 0' client-d.log | wc -l)
diag "client on host 1: $(wc -l <client-d.log) answers, $during before post-copy ended, longest gap ${gap}s"
ok "D answered while post-copy was running ($during answers)" test "$during" -gt 0
is "... the counter never went back" "$back" 0
is "... every answer from the same guest" "$other" 0

# ------------------------------------- the connection cut right after AUTHORITY
# E (host 2) takes over from D through a proxy that cuts both sides once E
# answered AUTHORITY: the final dirty blocks (state and config among them)
# never arrive.
"$XFER_TOOL" proxy $pq $pd 0 auth-cut >proxy-cut.out 2>&1 &
px=$!
pids="$px $pids"
wait_log proxy-cut.out listening 10
peer e.log $ns2 "$(devs e "$(scratch e)")" 127.0.0.1:$pq ''
E=$LAST
reap $D
rc=$?
reap $px 30
diag "proxy: $(tr '\n' ' ' <proxy-cut.out)"
ok "the proxy cut the connection after E answered AUTHORITY" grep -q "the destination answered" proxy-cut.out
diag "D: $(grep -v 'is at' d.log | tail -n 2 | tr '\n' ' ')"
ok "the source D exits non-zero ($rc)" test "$rc" -ne 0
like "... saying the migration failed after the handover" "$(cat d.log)" "migration to '127.0.0.1:[0-9]+' failed after the handover"
fails "... without resuming its VM" grep -q "VM running again here" d.log
ok "... its VMM is gone" no_vmm_of $D
ok "... and its mount" no_mount_of $D
# The destination: serving the same guest, or gone with a clear line.
outcome=
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ]; do
	if exited $E; then
		outcome=exited
		break
	fi
	le=$(query_once $ns2) && { outcome=serving; break; }
	sleep 0.5
done
diag "E ($outcome): $(grep -v 'is at' e.log | tr '\n' ' ')"
case "$outcome" in
serving)
	is "E keeps the VM: the same guest" "$(field "$le" boot_id)" "$boot"
	ok "... beyond D's last answer" test "$(field "$le" counter)" -gt "$(field "$(tail -n 1 client-d.log | cut -d' ' -f3-)" counter)"
	like "... and says it lost the source" "$(cat e.log)" "lost '127.0.0.1:$pq' after the handover"
	fails "... without claiming the migration completed" grep -q "VM migrated from" e.log
	kill -TERM $E
	reap $E
	rc=$?
	ok "E exits non-zero on SIGTERM ($rc): the migration did not complete" test "$rc" -ne 0
	;;
exited)
	reap $E
	rc=$?
	ok "E exits non-zero ($rc)" test "$rc" -ne 0
	like "... naming the source it lost after the handover" "$(cat e.log)" "lost '127.0.0.1:$pq' after the handover"
	fails "... and does not claim the VM migrated" grep -q "VM migrated from" e.log
	;;
*)
	fail "E neither serves the guest nor exits within a minute"
	kill -TERM $E
	;;
esac
timeout 30 tail --pid=$E -f /dev/null
ok "E is gone" exited $E
ok "no mount and no QEMU of the test are left" test -z "$(leftovers)"
leftovers | sed 's/^/# /'

for p in $natpids; do
	kill -TERM $p
	reap $p 30
done
natpids=
ok "both drafter nat removed their namespaces" test ! -e /run/netns/$ns1 -a ! -e /run/netns/$ns2

done_testing
