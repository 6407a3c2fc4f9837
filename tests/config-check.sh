#!/bin/bash
# drafter config check: the example file passes for every command (also with
# its commented settings enabled) and lists every key; bad files fail with
# file:line:key; the file lookup order; the printed settings read back.
. "$top_srcdir/tests/functions.sh"
tmpdir
cd "$T" || exit 1

ex=$top_srcdir/drafter.conf.example
tools="nat forward snapshot package run registry peer terminate"

out=$(drafter config check -c "$ex" 2>&1); rc=$?
is "drafter.conf.example passes" "$rc" 0
[ "$rc" = 0 ] || diag "$out"
for t in $tools; do
	drafter config check -c "$ex" --tool "$t" >/dev/null 2>&1
	is "drafter.conf.example passes for $t" "$?" 0
done

# "#key = value;" lines are settings with a command-dependent default; with
# all of them enabled the file must still pass.
sed -E 's/^#(\S|  )/\1/' "$ex" > all.conf
for t in $tools; do
	out=$(drafter config check -c all.conf --tool "$t" 2>&1)
	is "the example with every setting enabled passes for $t" "$?" 0
done

# Every key the program knows is in the example.
drafter config check -c all.conf --tool peer > dump.conf 2>/dev/null
missing=
for k in $(grep -oE '^ *[a-z_0-9]+ =' dump.conf | tr -d ' =' | sort -u); do
	grep -qE "^ *#? *$k =|[;{] *$k =" "$ex" || missing="$missing $k"
done
is "the example lists every key" "$missing" ""

# The printed settings are a valid file that prints the same again.
for t in $tools; do
	drafter config check -c all.conf --tool "$t" > a.conf 2>/dev/null
	drafter config check -c a.conf --tool "$t" > b.conf 2>/dev/null
	ok "$t: printed settings read back unchanged" diff <(tail -n +2 a.conf) <(tail -n +2 b.conf)
done

# Without --tool the common settings are printed; saved as a file, they
# still give each command its own defaults (laddr, devices, ...).
drafter config check -c "$ex" > common.conf 2>/dev/null
for t in $tools; do
	drafter config check -c common.conf --tool "$t" >/dev/null 2>&1
	is "the common settings, saved, pass for $t" "$?" 0
done
out=$(drafter config check -c common.conf --tool registry 2>/dev/null)
like "and keep the registry's own listen address" "$out" 'laddr = ":1600";'

# Errors: one line with file, line, key and what was expected; exit 1.
printf 'vm = {\n  cpu_count = "x";\n};\n' > bad.conf
out=$(drafter config check -c bad.conf 2>&1); rc=$?
is "a bad value exits 1" "$rc" 1
is "and says where and what" "$out" "drafter: bad.conf:2: 'vm.cpu_count': expected an integer between 1 and 255, got \"x\""
printf 'nat = {\n  namespace_prefx = "ark";\n};\n' > typo.conf
out=$(drafter config check -c typo.conf 2>&1); rc=$?
is "a typo exits 1" "$rc" 1
is "with a suggestion" "$out" "drafter: typo.conf:2: 'nat.namespace_prefx': unknown key (did you mean 'namespace_prefix'?)"
printf 'nat = {\n  cleanup = true;\n  namespace_count = = 3;\n};\n' > syntax.conf
out=$(drafter config check -c syntax.conf 2>&1); rc=$?
is "a syntax error exits 1" "$rc" 1
like "with file and line" "$out" "^drafter: syntax.conf:3: syntax error"
out=$(drafter config check -c missing.conf 2>&1); rc=$?
is "a missing file exits 1" "$rc" 1
is "and says so" "$out" "drafter: missing.conf: cannot read the file: No such file or directory"
printf 'devices = ( { name = "a"; base = "b"; } );\n' > dev.conf
out=$(drafter config check -c dev.conf 2>&1); rc=$?
is "a file wrong for one command fails without --tool" "$rc" 1
is "naming the command" "$out" "drafter: dev.conf: 'devices[0]': device 'a' has no output (or path) (checked for 'drafter snapshot')"
drafter config check -c dev.conf --tool peer >/dev/null 2>&1
is "and passes for the command it suits" "$?" 0
out=$(drafter config check --tool nope 2>&1); rc=$?
is "an unknown --tool exits 2" "$rc" 2
# A peer may keep a device nowhere (a temporary file) only when it migrates in, and not under an overlay.
printf 'transport = { raddr = "127.0.0.1:1"; };\ndevices = ( { name = "a"; } );\n' > nobase.conf
drafter config check -c nobase.conf --tool peer >/dev/null 2>&1
is "peer: no base with a raddr is fine (a temporary file)" "$?" 0
printf 'transport = { raddr = ""; };\ndevices = ( { name = "a"; } );\n' > nobase-local.conf
out=$(drafter config check -c nobase-local.conf --tool peer 2>&1); rc=$?
is "peer: no base and no raddr exits 1" "$rc" 1
is "naming the device" "$out" "drafter: nobase-local.conf: 'devices[0]': device 'a' has no base (or path)"
printf 'transport = { raddr = "127.0.0.1:1"; };\ndevices = ( { name = "a"; overlay = "o"; state = "s"; } );\n' > nobase-ov.conf
out=$(drafter config check -c nobase-ov.conf --tool peer 2>&1); rc=$?
is "peer: an overlay without a base exits 1" "$rc" 1
is "naming the device too" "$out" "drafter: nobase-ov.conf: 'devices[0]': device 'a' has no base (or path)"

# Lookup: -c, else ./drafter.conf, else /etc/drafter/drafter.conf.
printf 'nat = { namespace_count = 7; };\n' > drafter.conf
out=$(drafter config check --tool nat 2>/dev/null)
like "./drafter.conf is read" "$out" "namespace_count = 7;"
like "and named" "$out" "from drafter.conf"
printf 'nat = { namespace_count = 9; };\n' > other.conf
out=$(drafter config check -c other.conf --tool nat 2>/dev/null)
like "-c wins over ./drafter.conf" "$out" "namespace_count = 9;"
rm drafter.conf
if [ -e /etc/drafter/drafter.conf ]; then
	skip "/etc/drafter/drafter.conf exists on this machine; default lookup not checked"
else
	out=$(drafter config check --tool nat 2>/dev/null)
	like "without any file the defaults are printed" "$out" "namespace_count = 10;"
fi

done_testing
