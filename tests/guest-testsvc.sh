#!/bin/bash
# drafter-testsvc on the host (no VM): the line format on port 8080, the
# memory counter, the disk counter persisted (and picked up again after a
# restart), the hook counters, -daemon returning only once listening, and
# the memory dirtier: its parameters, and a lost write counted as stale.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/vm-lib.sh"

requires unshare nsenter socat ss
requires_root
tmpdir
svc=$top_builddir/guest/drafter-testsvc
[ -x "$svc" ] || skip_all "drafter-testsvc is not built"

netns_private
fetch() { inns socat -T 5 - TCP:127.0.0.1:8080,connect-timeout=5 </dev/null; }
# the pid of the service listening on port 8080 in the namespace
svc_pid() { inns ss -Hltnp 'sport = :8080' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }

echo 41 >"$T/value"
echo 7 >"$T/suspends"
# -daemon: the parent exits once the socket listens, so no wait is needed
ok "-daemon returns once listening" inns "$svc" -daemon --state-dir "$T"
l1=$(fetch)
like "line format" "$l1" '^boot_id=[0-9a-f-]{36} counter=[0-9]+ disk=41 suspends=7 resumes=0$'
is "boot id is the kernel's" "$(field "$l1" boot_id)" "$(cat /proc/sys/kernel/random/boot_id)"
sleep 0.5
l2=$(fetch)
ok "memory counter increases ($(field "$l1" counter) -> $(field "$l2" counter))" \
	test "$(field "$l2" counter)" -gt "$(field "$l1" counter)"
d=41
for i in $(seq 40); do
	d=$(field "$(fetch)" disk)
	[ "$d" -gt 41 ] && break
	sleep 0.1
done
ok "disk counter steps from the file's value ($d)" test "$d" -gt 41
ok "the value file holds the new count" test "$(cat "$T/value")" -ge "$d"
ok "no temporary file left behind" test ! -e "$T/.value.tmp"
echo 3 >"$T/resumes"
is "hook counters are read per connection" "$(field "$(fetch)" resumes)" 3

pid=$(svc_pid)
ok "service process found" test -n "$pid"
kill "$pid" 2>/dev/null
timeout 10 tail --pid="$pid" -f /dev/null
v=$(cat "$T/value")
inns "$svc" -daemon --state-dir "$T"
l3=$(fetch)
is "after a restart the disk counter continues from the file" "$(field "$l3" disk)" "$v"
pid=$(svc_pid)
[ -n "$pid" ] && kill "$pid" && timeout 10 tail --pid="$pid" -f /dev/null

# the memory dirtier (bench/migrate): parameters from the kernel command line
printf 'console=ttyS0 drafter.dirty=64 drafter.dirty_set=4\n' >"$T/cl"
inns "$svc" -daemon --state-dir "$T" --cmdline "$T/cl"
l4=$(fetch)
like "with drafter.dirty the line reports what was dirtied and lost" "$l4" ' resumes=[0-9]+ dirtied=[0-9]+ stale=0$'
sleep 1
l5=$(fetch)
ok "... and it keeps dirtying ($(field "$l4" dirtied) -> $(field "$l5" dirtied) MiB)" \
	test "$(field "$l5" dirtied)" -gt "$(field "$l4" dirtied)"
is "... without losing a write" "$(field "$l5" stale)" 0
pid=$(svc_pid)
# A lost write, as a migration could lose one: the first page of the 4 MiB
# buffer (its only anonymous mapping of that size) gets a stamp the dirtier
# never wrote. Its next sweep (every 1/16 s) must count the page as stale.
buf=
while read -r range perm _ _ _ name; do
	lo=$((16#${range%-*})) hi=$((16#${range#*-}))
	[ "$perm" = rw-p ] && [ -z "$name" ] && [ $((hi - lo)) = 4194304 ] && buf="$buf $lo"
done <"/proc/$pid/maps"
set -- $buf
ok "the dirtier's buffer is found in the service's memory map" test $# = 1
printf '\377\377\377\377\377\377\377\377' | dd of="/proc/$pid/mem" bs=1 seek="${1:-0}" conv=notrunc status=none
sleep 0.3
is "a page whose last write was lost is counted as stale" "$(field "$(fetch)" stale)" 1
[ -n "$pid" ] && kill "$pid" && timeout 10 tail --pid="$pid" -f /dev/null
printf 'drafter.dirty=x\n' >"$T/cl"
# (stderr to a file: the daemon keeps it open)
inns "$svc" -daemon --state-dir "$T" --cmdline "$T/cl" 2>"$T/err"
like "a bad rate is reported" "$(cat "$T/err")" 'not dirtying memory'
like "... and the service runs with the plain line" "$(fetch)" ' resumes=[0-9]+$'
pid=$(svc_pid)
[ -n "$pid" ] && kill "$pid"

out=$("$svc" --port 0 2>&1)
like "port 0 refused" "$?:$out" '^2:drafter-testsvc: invalid port'
done_testing
