#!/bin/bash
# TLS 1.3 between drafter registry and drafter terminate, with certificates
# made at test time: server authentication, server name checks, mutual TLS,
# and every mismatch (wrong CA, wrong name, no client certificate, a rogue
# client certificate, plaintext against TLS both ways) failing with one clear
# line on both sides.
. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/tests/xfer-lib.sh"
requires_root
requires openssl timeout unshare
xfer_private_net "$@"
tmpdir
cd "$T" || exit 1
make_certs certs || skip_all "openssl cannot make test certificates"

head -c 2M /dev/urandom >state.bin
truncate -s 4M memory.bin
echo hello | dd of=memory.bin bs=1 seek=70000 conv=notrunc 2>/dev/null
DEV='[{"name":"state","input":"state.bin"},{"name":"memory","input":"memory.bin"}]'
out() { echo "[{\"name\":\"state\",\"output\":\"$1/state.bin\"},{\"name\":\"memory\",\"output\":\"$1/memory.bin\"}]"; }
exact() { cmp -s state.bin "$1/state.bin" && cmp -s memory.bin "$1/memory.bin"; }
last_line() { tail -n 1 "$1"; }

# server authentication only
start_bg tls.log drafter registry --devices "$DEV" --laddr 127.0.0.1:1700 \
	--tls-cert certs/server.pem --tls-key certs/server.key
ok "TLS registry listens" wait_log tls.log "serving 2 devices on '127.0.0.1:1700' \(TLS\)"
drafter terminate --devices "$(out o1)" --raddr localhost:1700 --tls-ca certs/ca.pem >t1.log 2>&1
is "TLS pull exits 0" "$?" 0
ok "TLS pull is exact" exact o1

drafter terminate --devices "$(out o2)" --raddr localhost:1700 --tls-ca certs/otherca.pem >t2.log 2>&1
is "wrong CA exits 1" "$?" 1
is "wrong CA: one line" "$(wc -l <t2.log)" 1
like "wrong CA: client says why" "$(cat t2.log)" "cannot connect to 'localhost:1700': TLS handshake failed: certificate verification failed: unable to get local issuer certificate"
ok "wrong CA: registry says why" wait_log tls.log "refused '127.0.0.1:[0-9]+': TLS handshake failed: .*unknown ca" 10

drafter terminate --devices "$(out o3)" --raddr 127.0.0.1:1700 --tls-ca certs/ca.pem --tls-server-name other.example >t3.log 2>&1
is "wrong server name exits 1" "$?" 1
like "wrong server name: client says why" "$(cat t3.log)" "TLS handshake failed: certificate verification failed: hostname mismatch"

drafter terminate --devices "$(out o4)" --raddr 127.0.0.1:1700 >t4.log 2>&1
is "plaintext client on a TLS listener exits 1" "$?" 1
is "plaintext client: one line" "$(wc -l <t4.log)" 1
like "plaintext client: client says why" "$(cat t4.log)" "cannot pull from '127.0.0.1:1700': .*TLS"
ok "plaintext client: registry says why" wait_log tls.log "refused '127.0.0.1:[0-9]+': TLS handshake failed: .*not speaking TLS" 10
ok "no output files from failed pulls" bash -c '! ls o2 o3 o4 2>/dev/null | grep -q .'

# A client certificate without a CA must not switch server verification off:
# the server's private CA is unknown to the system store, so this must fail.
drafter terminate --devices "$(out o4b)" --raddr localhost:1700 \
	--tls-cert certs/client.pem --tls-key certs/client.key >t4b.log 2>&1
is "client certificate without a CA still verifies the server: exits 1" "$?" 1
like "client certificate without a CA: client says why" "$(cat t4b.log)" "certificate verification failed"
# verify_peer alone is TLS with the system's CAs, which do not know our CA either.
drafter terminate --devices "$(out o4c)" --raddr localhost:1700 --tls-verify-peer >t4c.log 2>&1
is "--tls-verify-peer alone speaks TLS and verifies: exits 1" "$?" 1
like "--tls-verify-peer alone: client says why" "$(cat t4c.log)" "certificate verification failed"
ok "no output files from unverified pulls" bash -c '! ls o4b o4c 2>/dev/null | grep -q .'

# TLS client on a plaintext listener
start_bg plain.log drafter registry --devices "$DEV" --laddr 127.0.0.1:1701
ok "plaintext registry listens" wait_log plain.log "serving 2 devices"
drafter terminate --devices "$(out o5)" --raddr localhost:1701 --tls-ca certs/ca.pem >t5.log 2>&1
is "TLS client on a plaintext listener exits 1" "$?" 1
like "TLS client: client says why" "$(cat t5.log)" "TLS handshake failed: .*not speaking TLS"
ok "TLS client: registry says why" wait_log plain.log "refused '127.0.0.1:[0-9]+': peer speaks TLS but this side is plaintext" 10

# mutual TLS
start_bg mtls.log drafter registry --devices "$DEV" --laddr 127.0.0.1:1702 \
	--tls-cert certs/server.pem --tls-key certs/server.key --tls-ca certs/ca.pem --tls-verify-peer
ok "mTLS registry listens" wait_log mtls.log "serving 2 devices"
drafter terminate --devices "$(out o6)" --raddr localhost:1702 --tls-ca certs/ca.pem \
	--tls-cert certs/client.pem --tls-key certs/client.key >t6.log 2>&1
is "mutual TLS pull exits 0" "$?" 0
ok "mutual TLS pull is exact" exact o6

drafter terminate --devices "$(out o7)" --raddr localhost:1702 --tls-ca certs/ca.pem >t7.log 2>&1
is "missing client certificate exits 1" "$?" 1
is "missing client certificate: one line" "$(wc -l <t7.log)" 1
like "missing client certificate: client says why" "$(cat t7.log)" "certificate required"
ok "missing client certificate: registry says why" wait_log mtls.log "refused '127.0.0.1:[0-9]+': TLS handshake failed: peer did not return a certificate" 10

drafter terminate --devices "$(out o8)" --raddr localhost:1702 --tls-ca certs/ca.pem \
	--tls-cert certs/rogue.pem --tls-key certs/rogue.key >t8.log 2>&1
is "client certificate from another CA exits 1" "$?" 1
like "rogue client: client says why" "$(cat t8.log)" "unknown ca"
ok "rogue client: registry says why" wait_log mtls.log "refused '127.0.0.1:[0-9]+': TLS handshake failed: certificate verification failed" 10

# the same settings from configuration files (drafter.conf(5)) instead of options
cat >reg.conf <<CONF
transport = {
  laddr = "127.0.0.1:1704";
  tls = { certificate = "certs/server.pem"; key = "certs/server.key"; ca = "certs/ca.pem"; verify_peer = true; };
};
devices = ( { name = "state"; path = "state.bin"; }, { name = "memory"; path = "memory.bin"; } );
CONF
cat >term.conf <<CONF
transport = {
  raddr = "127.0.0.1:1704";
  tls = { certificate = "certs/client.pem"; key = "certs/client.key"; ca = "certs/ca.pem"; server_name = "localhost"; };
};
devices = ( { name = "state"; path = "oc/state.bin"; }, { name = "memory"; path = "oc/memory.bin"; } );
CONF
start_bg conf.log drafter registry -c reg.conf
ok "registry configured by file listens with TLS" wait_log conf.log "serving 2 devices on '127.0.0.1:1704' \(TLS\)"
drafter terminate -c term.conf >tc.log 2>&1
is "terminate configured by file pulls over mutual TLS" "$?" 0
ok "and its copy is exact" exact oc

# bad files are reported before anything is sent
drafter registry --devices "$DEV" --laddr 127.0.0.1:1703 --tls-cert certs/nope.pem --tls-key certs/server.key >t9.log 2>&1
is "missing certificate file exits 1" "$?" 1
like "missing certificate file message" "$(cat t9.log)" "cannot load certificate 'certs/nope.pem'"
drafter registry --devices "$DEV" --laddr 127.0.0.1:1703 --tls-cert certs/server.pem --tls-key certs/client.key >t10.log 2>&1
is "mismatched key exits 1" "$?" 1
like "mismatched key message" "$(cat t10.log)" "private key 'certs/client.key' does not match certificate 'certs/server.pem'"
ok "no output files from failed pulls" bash -c '! ls o5 o7 o8 2>/dev/null | grep -q .'
done_testing
