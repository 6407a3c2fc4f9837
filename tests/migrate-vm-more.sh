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
. "$top_srcdir/tests/vm-lib.sh"

requires nft sha256sum timeout openssl
[ -e /dev/fuse ] || skip_all "no /dev/fuse"
[ -x "$XFER_TOOL" ] || skip_all "tests/xfer-tool is not built"
vm_prepare
make_certs certs || skip_all "openssl cannot make test certificates"

# Two hosts, each with address ranges no other test uses.
h1=hx$(($$ % 10000))
h2=hy$(($$ % 10000))
ns1=${h1}0
ns2=${h2}0
port=$((30000 + ($$ % 270) * 10)) # ten ports of our own from here
leftovers() { # mounts and processes of the test that are still there
	grep -F "$T/mnt" /proc/mounts
	ps -eo pid=,args= | grep -F "$T/mnt" | grep -v grep
}
cleanup_fn vm_end_all

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
no_vmm_of() { ! ps -eo args= | grep -v grep | grep -qF "$T/mnt/drafter-$1/"; }
# One namespace a "host", address ranges 10.231 and 10.233.
if ! vm_nat $h1 1 231 || ! vm_nat $h2 1 233; then
	diag "$(cat nat-*.log)"
	skip_all "drafter nat did not set up its namespaces"
fi

mkdir -p a b c d e mnt
vm_snapshot $ns1 "$(snap_devs "$T/a")" --enable-output=false 2>snap.err
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

# The client asks every 50 ms in both namespaces.
start_client client.log $ns1 $ns2

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
	is "$f at B equals A's at its suspend (sha256)" "$(hash_of b/$f)" "$(hash_of a/$f)"
done
lb=$(query $ns2)
is "B serves the same guest on host 2" "$(field "$lb" boot_id)" "$boot"
ok "... with its counter beyond A's last answer" test "$(field "$lb" counter)" -gt "$(field "$LASTQ" counter)"
sleep 1
kill $client
wait $client 2>/dev/null

read -r back other switches gap first lastns <<<"$(client_summary client.log)"
n=$(wc -l <client.log)
diag "client: $n answers, longest gap ${gap}s, namespace switches $switches"
ok "the client got answers throughout ($n)" test "$n" -gt 20
is "the counter never went back" "$back" 0
[ "$back" = 0 ] || diag "went back: $(client_backs client.log)"
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
dones() { grep -c 'done forwarded' proxy-rate.out; } # the source's DONE frames past the proxy
start_client -n dones client-d.log $ns1
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
	is "$f at D equals C's at its suspend (sha256)" "$(hash_of d/$f)" "$(hash_of b/$f)"
done
read -r back other switches gap first lastns <<<"$(client_summary client-d.log)"
during=$(awk '$NF == 0' client-d.log | wc -l)
diag "client on host 1: $(wc -l <client-d.log) answers, $during before post-copy ended, longest gap ${gap}s"
ok "D answered while post-copy was running ($during answers)" test "$during" -gt 0
is "... the counter never went back" "$back" 0
[ "$back" = 0 ] || diag "went back: $(client_backs client-d.log)"
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
	le=$(ask $ns2) && { outcome=serving; break; }
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

vm_nat_end
ok "both drafter nat removed their namespaces" test ! -e /run/netns/$ns1 -a ! -e /run/netns/$ns2

done_testing
