#!/bin/bash
# drafter registry and drafter terminate over TCP (IPv4, IPv6, all
# addresses) and UNIX sockets: exact copies with sparse outputs, concurrent
# clients, clients sending garbage or vanishing, version mismatches, missing
# devices, and no temporary files left behind on failure.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/xfer-lib.sh"
requires_root
requires openssl socat timeout unshare
xfer_private_net "$@"
tmpdir
cd "$T" || exit 1

mkdir -p pkg
head -c 3M /dev/urandom >pkg/state.bin
truncate -s 8M pkg/memory.bin
for off in 1 17 100; do head -c 4096 /dev/urandom | dd of=pkg/memory.bin bs=4096 seek=$off conv=notrunc 2>/dev/null; done
head -c 100 /dev/urandom >pkg/config.json
REGDEV='[{"name":"state","input":"pkg/state.bin","blockSize":65536},{"name":"memory","input":"pkg/memory.bin","blockSize":65536},{"name":"config","input":"pkg/config.json","blockSize":4096}]'
termdev() { echo "[{\"name\":\"state\",\"output\":\"$1/state.bin\"},{\"name\":\"memory\",\"output\":\"$1/memory.bin\"},{\"name\":\"config\",\"output\":\"$1/config.json\"}]"; }
same_as_pkg() {
	cmp -s pkg/state.bin "$1/state.bin" && cmp -s pkg/memory.bin "$1/memory.bin" && cmp -s pkg/config.json "$1/config.json"
}
no_part_files() { ! find . -name '*.part-*' | grep -q .; }

start_bg reg.log drafter-registry --devices "$REGDEV" --laddr 127.0.0.1:1600
REG=$BGPID
ok "registry listens" wait_log reg.log "serving 3 devices on '127.0.0.1:1600'"

drafter-terminator --devices "$(termdev out1)" --raddr 127.0.0.1:1600 >t1.log 2>&1
is "terminate (legacy flags) exits 0" "$?" 0
ok "pulled devices equal the package" same_as_pkg out1
like "one-line summary" "$(cat t1.log)" "pulled 3 devices .* from '127.0.0.1:1600' in .*checksums verified"
is "summary is one line" "$(wc -l <t1.log)" 1
mem_kb=$(du -k out1/memory.bin | cut -f1)
ok "mostly-zero output stays sparse (${mem_kb} KiB on disk for 8 MiB)" test "$mem_kb" -lt 1024
ok "no temporary files" no_part_files

drafter terminate --devices "$(termdev out2)" --raddr 127.0.0.1:1600 >t2.log 2>&1
is "terminate (subcommand form) exits 0" "$?" 0
ok "subcommand form pulls the same" same_as_pkg out2

# several clients at once
pids=()
for i in 1 2 3 4; do
	drafter-terminator --devices "$(termdev par$i)" --raddr 127.0.0.1:1600 >par$i.log 2>&1 &
	pids+=($!)
done
rcs=0
for p in "${pids[@]}"; do wait "$p" || rcs=$((rcs + 1)); done
is "four concurrent terminates succeed" "$rcs" 0
ok "all four copies are exact" bash -c 'for i in 1 2 3 4; do cmp -s pkg/state.bin par$i/state.bin && cmp -s pkg/memory.bin par$i/memory.bin || exit 1; done'

# a client sending random bytes, one that speaks another version, one that vanishes
# (both directions: a client that closes with the registry's hello unread
# resets the connection, and the registry would see that before the bytes).
# The garbage starts with a fixed byte: a random first byte 0x15 or 0x16 (one
# run in 128) reads as a TLS record and gets the TLS message instead.
{ printf 'G'; head -c 200000 /dev/urandom; } | timeout 10 socat -t 1 - TCP:127.0.0.1:1600 >/dev/null 2>&1
ok "registry logs the garbage client" wait_log reg.log "refused '127.0.0.1:[0-9]+': peer does not speak the drafter protocol" 10
printf 'DRFTXFER\x07\x00\x02\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00' |
	timeout 10 socat -t 2 - TCP:127.0.0.1:1600 >hello.bin 2>/dev/null
ok "registry answers a version-7 client with its own hello" bash -c 'head -c 8 hello.bin | grep -q DRFTXFER'
ok "registry logs the version mismatch" wait_log reg.log "peer speaks protocol version 7, this drafter speaks version 1" 10
timeout 10 socat -u /dev/null TCP:127.0.0.1:1600 2>/dev/null
ok "registry survives clients" kill -0 $REG
drafter-terminator --devices "$(termdev out3)" --raddr 127.0.0.1:1600 >t3.log 2>&1
is "terminate after the bad clients exits 0" "$?" 0
ok "and its copy is exact" same_as_pkg out3

# a terminate interrupted in the middle leaves no output and no temporary
# file; the registry is stopped meanwhile so the pull cannot finish first
head -c 256M /dev/urandom >pkg/big.bin
start_bg regbig.log drafter-registry --devices '[{"name":"disk","input":"pkg/big.bin","blockSize":65536}]' --laddr 127.0.0.1:1601
RB=$BGPID
ok "second registry listens" wait_log regbig.log "serving 1 devices"
drafter-terminator --devices '[{"name":"disk","output":"big/disk.img"}]' --raddr 127.0.0.1:1601 >tbig.log 2>&1 &
TP=$!
timeout 10 bash -c 'until ls big/disk.img.part-* >/dev/null 2>&1; do sleep 0.01; done'
kill -STOP $RB
kill -TERM $TP
wait $TP
rc=$?
kill -CONT $RB
ok "interrupted terminate exits non-zero ($rc)" test "$rc" -ne 0
ok "interrupted terminate leaves no file" bash -c '! ls big/ 2>/dev/null | grep -q .'
ok "registry logs the vanished client" wait_log regbig.log "session with .* failed: (destination closed the connection|Connection reset by peer|Broken pipe)" 10 ||
	diag "$(tail -n 5 regbig.log)"
# a destination that says hello, reads a little and goes away
{ "$XFER_TOOL" hello dest; sleep 1; } | timeout 10 socat - TCP:127.0.0.1:1601 2>/dev/null | head -c 100000 >/dev/null
ok "registry logs the client that went away" timeout 10 bash -c 'until [ "$(grep -c "session with .* failed" regbig.log)" = 2 ]; do sleep 0.1; done' ||
	diag "$(tail -n 5 regbig.log)"
ok "registry still serves" kill -0 $RB
drafter-terminator --devices '[{"name":"disk","output":"big/disk.img"}]' --raddr 127.0.0.1:1601 >tbig2.log 2>&1
is "next terminate of the big device exits 0" "$?" 0
ok "big device is exact" cmp -s pkg/big.bin big/disk.img
rm -f pkg/big.bin big/disk.img

# the remote offers a device we have no output for
drafter-terminator --devices '[{"name":"state","output":"o4/state.bin"}]' --raddr 127.0.0.1:1600 >t4.log 2>&1
is "unknown remote device exits 1" "$?" 1
like "and names the device" "$(cat t4.log)" "cannot pull from '127.0.0.1:1600': the source offers device 'memory', which has no output here"
ok "no partial files for the refused pull" bash -c '! ls o4 2>/dev/null | grep -q .'

# a configured device the registry does not have is reported, the rest pulled
drafter-terminator --devices "[{\"name\":\"state\",\"output\":\"o5/state.bin\"},{\"name\":\"memory\",\"output\":\"o5/memory.bin\"},{\"name\":\"config\",\"output\":\"o5/config.json\"},{\"name\":\"oci\",\"output\":\"o5/oci.ext4\"}]" \
	--raddr 127.0.0.1:1600 >t5.log 2>&1
is "missing remote device is not fatal" "$?" 0
like "missing remote device is reported" "$(cat t5.log)" "the source did not offer device 'oci'"

# nothing listening, and a server of another version
drafter-terminator --devices "$(termdev o6)" --raddr 127.0.0.1:1699 >t6.log 2>&1
is "connection refused exits 1" "$?" 1
is "connection refused message" "$(cat t6.log)" "drafter-terminator: cannot connect to '127.0.0.1:1699': Connection refused"
printf 'DRFTXFER\x09\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00' >v9.bin
timeout 20 socat -u FILE:v9.bin TCP-LISTEN:1698,reuseaddr 2>/dev/null &
SP=$!
timeout 5 bash -c 'until ss -ltn | grep -q ":1698 "; do sleep 0.05; done'
drafter-terminator --devices "$(termdev o7)" --raddr 127.0.0.1:1698 >t7.log 2>&1
is "version mismatch exits 1" "$?" 1
is "version mismatch message" "$(cat t7.log)" "drafter-terminator: cannot pull from '127.0.0.1:1698': peer speaks protocol version 9, this drafter speaks version 1"
kill $SP 2>/dev/null; wait $SP 2>/dev/null

# UNIX socket, IPv6, and every address
start_bg regu.log drafter registry --devices "$REGDEV" --laddr "unix:$T/reg.sock"
ok "registry on a UNIX socket" wait_log regu.log "serving 3 devices on 'unix:"
drafter terminate --devices "$(termdev ou)" --raddr "unix:$T/reg.sock" >tu.log 2>&1
is "terminate over a UNIX socket exits 0" "$?" 0
ok "UNIX socket copy is exact" same_as_pkg ou
if [ -e /proc/net/if_inet6 ]; then
	start_bg reg6.log drafter registry --devices "$REGDEV" --laddr "[::1]:1600"
	ok "registry on [::1]" wait_log reg6.log "serving 3 devices on '\[::1\]:1600'"
	drafter terminate --devices "$(termdev o6b)" --raddr "[::1]:1600" >t6b.log 2>&1
	is "terminate over IPv6 exits 0" "$?" 0
	ok "IPv6 copy is exact" same_as_pkg o6b
	start_bg rega.log drafter registry --devices "$REGDEV" --laddr ":1610"
	ok "registry on every address" wait_log rega.log "serving 3 devices on ':1610'"
	drafter terminate --devices "$(termdev oa4)" --raddr "127.0.0.1:1610" >ta4.log 2>&1
	is "':1610' reached over IPv4" "$?" 0
	drafter terminate --devices "$(termdev oa6)" --raddr "[::1]:1610" >ta6.log 2>&1
	is "':1610' reached over IPv6" "$?" 0
	ok "both copies exact" bash -c "$(declare -f same_as_pkg); same_as_pkg oa4 && same_as_pkg oa6"
else
	skip "no IPv6 on this machine"
fi

stop_bg $REG
is "registry stops cleanly on SIGTERM" "$RC" 0
ok "no temporary files at the end" no_part_files
done_testing
