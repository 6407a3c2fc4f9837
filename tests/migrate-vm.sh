#!/bin/bash
# Live migration of a running QEMU (TCG) guest between `drafter peer`
# processes over loopback, each VM in its own namespace made by `drafter nat`:
# a migration whose connection is cut before the authority transfer (the
# source keeps running its VM, the destination exits non-zero and leaves no
# mount), a registry serving a snapshot whose record claims more state than
# its state device holds (the destination refuses it in one line and leaves
# no mount and no VMM), then a chain A (ns0) -> B (ns1) -> C (ns0) while a client asks the
# guest's service on port 8080 every 50 ms: every answer has the same boot
# id, a counter that never goes back and no lost memory write (the guest's
# dirtier rewrites 2 MiB of its pages a second and checks each for its last
# write, docs/guest-agent.md), the state and snapshot record that
# arrive equal what the source wrote at its suspend (SHA-256), and the final
# peer suspends the VM into its files on SIGTERM; a peer resumes those files,
# `drafter terminate` pulls a backup of its running VM and `drafter run`
# resumes the backup.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/vm-lib.sh"

requires nft sha256sum timeout
[ -e /dev/fuse ] || skip_all "no /dev/fuse"
[ -x "$XFER_TOOL" ] || skip_all "tests/xfer-tool is not built"
vm_prepare

prefix=mv$(($$ % 10000))
cleanup_fn vm_end_all
# Address ranges of our own (10.219), so that other tests' namespaces never overlap.
if ! vm_nat $prefix 2 219; then
	diag "$(cat nat-$prefix.log)"
	skip_all "drafter nat did not set up its namespaces"
fi

mkdir -p a b c mnt
# 2 MiB/s in a 4 MiB buffer: every page is rewritten, and checked, every 2 s
vm_bootargs="$vm_bootargs drafter.dirty=2 drafter.dirty_set=4"
vm_snapshot ${prefix}0 "$(snap_devs "$T/a")" --enable-output=false 2>snap.err
is "snapshot of the blueprint in ${prefix}0" "$?" 0
# a hostile copy: its record claims far more state than its state device holds
mkdir -p h hd
cp --sparse=always a/* h/
sed -i 's/"stateSize":[0-9]*/"stateSize":99999999999/' h/config.json

p1=$((21000 + $$ % 8000))
p2=$((p1 + 1))
pcut=$((p1 + 2))
peer a.log ${prefix}0 "$(devs a)" '' 127.0.0.1:$p1
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
peer cut.log ${prefix}1 "$(devs c)" 127.0.0.1:$pcut ''
cutpid=$LAST
wait $cutpid
rc=$?
wait $px 2>/dev/null
diag "$(grep -v "is at" cut.log | tail -n 2)"
ok "a destination cut before authority exits non-zero ($rc)" test "$rc" -ne 0
like "... and says why" "$(cat cut.log)" "cannot migrate from"
ok "... and leaves no mount" no_mount_of $cutpid
wait_log a.log "failed, the devices stay here" 20
like "the source notices the failed migration" "$(cat a.log)" "failed, the devices stay here"
l1=$(query ${prefix}0)
is "the source's VM keeps serving: the same guest" "$(field "$l1" boot_id)" "$boot"
ok "... its counter goes on ($(field "$l0" counter) -> $(field "$l1" counter))" test "$(field "$l1" counter)" -gt "$(field "$l0" counter)"
rm -rf c
mkdir c

# --- a destination served that hostile record by a registry refuses it in one line
ph=$((p1 + 3))
drafter registry --devices "$(vm_devs input h)" --laddr 127.0.0.1:$ph >reg.log 2>&1 &
reg=$!
pids="$reg $pids"
wait_log reg.log "127.0.0.1:$ph" 10
peer hd.log ${prefix}1 "$(devs hd)" 127.0.0.1:$ph ''
hdpid=$LAST
for i in $(seq 1 600); do kill -0 $hdpid 2>/dev/null || break; sleep 0.1; done
ended=yes
kill -0 $hdpid 2>/dev/null && ended=no && kill -KILL $hdpid
wait $hdpid
rc=$?
kill $reg 2>/dev/null
wait $reg 2>/dev/null
diag "$(grep -v "is at" hd.log | tail -n 2)"
is "a record claiming more state than its device: the destination ends on its own" "$ended" yes
ok "... exits non-zero ($rc)" test "$rc" -ne 0
like "... saying the state does not belong to the record" "$(cat hd.log)" \
	"the state device does not belong to the snapshot config"
ok "... and leaves no mount" no_mount_of $hdpid
ok "... and no VMM" sh -c "! pgrep -f 'mnt/drafter-$hdpid[/]' >/dev/null"

# --- the chain A (ns0) -> B (ns1) -> C (ns0) while a client asks every 50 ms;
# B -> C is post-copy only (--postcopy on B: handover before any block)
start_client client.log ${prefix}0 ${prefix}1
sleep 1

peer b.log ${prefix}1 "$(devs b)" 127.0.0.1:$p1 127.0.0.1:$p2 --postcopy
B=$LAST
wait $A
is "A -> B: the source exits 0 after the handover" "$?" 0
wait_log b.log "VM migrated from" 60
like "B resumed the VM" "$(cat b.log)" "VM resumed here"
diag "$(grep -h 'VM migrated' a.log b.log | sed 's/^drafter: //')"
for f in state.bin config.json; do
	is "$f at B equals A's at its suspend (sha256)" "$(hash_of b/$f)" "$(hash_of a/$f)"
done
lb=$(query ${prefix}1)
is "B serves the same guest" "$(field "$lb" boot_id)" "$boot"

peer c.log ${prefix}0 "$(devs c)" 127.0.0.1:$p2 '' --json
C=$LAST
wait $B
is "B -> C: B exits 0 after the handover" "$?" 0
wait_log c.log "VM migrated from" 60
diag "$(grep -h 'VM migrated' c.log | sed 's/^drafter: //')"
diag "$(grep -h 'VM resumed here' b.log c.log | sed 's/^drafter: //')"
js=$(grep '^{' c.log)
diag "C: $js"
like "C prints its summary as JSON with --json" "$js" '^\{"role":"destination",.*"blocks_postcopied":[0-9]+,.*"cycles":(null|[0-9]+),"total_s":[0-9.]+,"downtime_ms":[0-9.]+,"paused_at":[0-9.]+,"resumed_at":[0-9.]+\}$'
if command -v python3 >/dev/null; then
	ok "... which is valid JSON" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$js"
	ok "... whose resumed_at - paused_at is its downtime_ms" python3 -c '
import json,sys
j = json.loads(sys.argv[1])
sys.exit(0 if abs((j["resumed_at"] - j["paused_at"]) * 1e3 - j["downtime_ms"]) < 0.2 else 1)' "$js"
fi
pc=$(printf '%s' "$js" | sed -n 's/.*"blocks_postcopied":\([0-9]*\).*/\1/p')
ok "C resumed the VM with $pc blocks still to come (post-copy: at least state and config)" test "${pc:-0}" -gt 0
pre=$(printf '%s' "$js" | sed -n 's/.*"blocks_precopied":\([0-9]*\).*/\1/p')
req=$(printf '%s' "$js" | sed -n 's/.*"blocks_requested":\([0-9]*\).*/\1/p')
# before AUTHORITY: its requests, and the few blocks of the record, the state and the stamp
ok "post-copy only: C got no block before the handover but what it asked for and the snapshot's ($pre; $req asked for)" \
	test -n "$pre" -a "${pre:-9}" -le "$((${req:-0} + 8))"
like "... and B reports the downtime C measured (RESUMED)" "$(grep 'VM migrated to' b.log)" 'wire, [0-9]+ blocks pre-copied, .* 0 cycles, .* downtime [0-9]+ms$'
for f in state.bin config.json; do
	is "$f at C (the final destination) equals B's at its suspend (sha256)" "$(hash_of c/$f)" "$(hash_of b/$f)"
done
lc=$(query ${prefix}0)
is "C serves the same guest" "$(field "$lc" boot_id)" "$boot"
sleep 1
kill $client
wait $client 2>/dev/null

n=$(wc -l <client.log)
read -r back other switches gap first lastns <<<"$(client_summary client.log)"
diag "client: $n answers, longest gap between answers ${gap}s, namespace switches $switches"
diag "client: gaps over 0.2 s: $(client_gaps client.log)"
ok "the client got answers throughout ($n)" test "$n" -gt 20
# the longest downtime either destination measured (pause to its VM running), plus 1 s
down=$(sed -n 's/.*VM migrated from .*downtime \([0-9]*\)ms$/\1/p' b.log c.log | sort -n | tail -n 1)
ok "no gap between answers (${gap}s) longer than the measured downtime (${down:-?}ms) plus 1 s" \
	awk -v g="$gap" -v d="${down:-x}" 'BEGIN { exit !(d ~ /^[0-9]+$/ && g <= d / 1000 + 1) }'
is "the counter never went back" "$back" 0
[ "$back" = 0 ] || diag "went back: $(client_backs client.log)"
is "every answer came from the same guest" "$other" 0
ok "the guest's memory dirtier ran throughout ($n answers with stale=)" test "$(grep -c ' stale=' client.log)" = "$n"
lost=$(client_lost client.log)
is "no answer says the guest lost a memory write" "$lost" 0
[ "$lost" = 0 ] || diag "lost writes: $(grep -v ' stale=0$' client.log | head -n 3)"
ok "answers came from ns0, then ns1, then ns0 again" test "$first $lastns" = "${prefix}0 ${prefix}0" -a "$switches" -ge 2
ok "... the last one from C, with a counter beyond A's" test "$(tail -n 1 client.log | awk '{split($4,c,"="); print c[2]}')" -gt "$(field "$l1" counter)"

kill -TERM $C
wait $C
is "C suspends the VM into its files on SIGTERM, exit 0" "$?" 0
like "... and says so" "$(cat c.log)" "VM suspended into its devices"
ok "no mount is left" sh -c "! grep -q '$T/mnt/drafter-$C' /proc/mounts"

# --- a backup of the running VM: D resumes C's files, terminate pulls it, run resumes the backup
mkdir -p d
peer d.log ${prefix}1 "$(devs c)" '' 127.0.0.1:$p2
D=$LAST
ld=$(query ${prefix}1)
is "D resumes the VM C suspended into its files" "$(field "$ld" boot_id)" "$boot"
ok "... with its counter beyond C's last answer" test "$(field "$ld" counter)" -gt "$(tail -n 1 client.log | awk '{split($4,c,"="); print c[2]}')"
drafter terminate --raddr 127.0.0.1:$p2 --devices "$(vm_devs output "$T/d")" >term.log 2>&1
is "drafter terminate pulls a backup of the running VM" "$?" 0
wait $D
is "... and D exits 0 after handing it over" "$?" 0
drafter-runner --netns ${prefix}1 --enable-output=false --devices "$(run_devs d)" >run.log 2>&1 &
R=$!
pids="$R $pids"
lr=$(query ${prefix}1)
is "drafter run resumes the backup: the same guest" "$(field "$lr" boot_id)" "$boot"
ok "... its counter beyond D's ($(field "$ld" counter) -> $(field "$lr" counter))" test "$(field "$lr" counter)" -gt "$(field "$ld" counter)"
is "... and over the migrations, a suspend, a backup and two resumes the guest lost no memory write ($(field "$lr" dirtied) MiB dirtied)" \
	"$(field "$lr" stale)" 0
kill -TERM $R
wait $R
is "the runner suspends on SIGTERM, exit 0" "$?" 0

vm_nat_end
ok "drafter nat removed its namespaces" test ! -e /run/netns/${prefix}0 -a ! -e /run/netns/${prefix}1

done_testing
