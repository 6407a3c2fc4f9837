#!/bin/bash
# One binary, many names: the command table, the legacy argv[0] names in the
# build tree, help and version, and what unknown names do.
. "$top_srcdir/tests/functions.sh"
tmpdir

cmds="nat forward snapshot package run registry peer terminate config"
declare -A legacy=(
	[nat]=drafter-nat [forward]=drafter-forwarder [snapshot]=drafter-snapshotter
	[package]=drafter-packager [run]=drafter-runner [registry]=drafter-registry
	[peer]=drafter-peer [terminate]=drafter-terminator
)
# The original's flags per legacy name (its command reference).
declare -A flags=(
	[drafter-nat]="allow-incoming-traffic blocked-subnet-cidr host-interface host-veth-cidr namespace-interface namespace-interface-gateway namespace-interface-ip namespace-interface-mac namespace-interface-netmask namespace-prefix namespace-veth-cidr"
	[drafter-forwarder]="host-veth-cidr port-forwards"
	[drafter-snapshotter]="agent-vsock-port boot-args cgroup-version chroot-base-dir cpu-count cpu-template devices enable-input enable-output firecracker-bin gid interface jailer-bin liveness-vsock-port mac memory-size netns numa-node resume-timeout uid"
	[drafter-packager]="devices extract package-path"
	[drafter-runner]="cgroup-version chroot-base-dir devices enable-input enable-output firecracker-bin gid jailer-bin netns numa-node rescue-timeout resume-timeout uid"
	[drafter-registry]="concurrency devices laddr"
	[drafter-peer]="cgroup-version chroot-base-dir concurrency devices enable-input enable-output firecracker-bin gid jailer-bin laddr netns numa-node raddr rescue-timeout resume-timeout uid"
	[drafter-terminator]="devices raddr"
)

cd "$T" || exit 1

out=$(drafter --help); rc=$?
is "drafter --help exits 0" "$rc" 0
for c in $cmds; do
	like "drafter --help lists '$c'" "$out" "^  $c "
done
for n in "${legacy[@]}"; do
	like "drafter --help lists '$n'" "$out" "$n"
done

out=$(drafter --version); rc=$?
is "drafter --version exits 0" "$rc" 0
like "drafter --version prints the version" "$out" '^drafter [0-9]+\.[0-9]+'

drafter >/dev/null 2>&1; rc=$?
is "drafter without a command exits 2" "$rc" 2
out=$(drafter --bogus 2>&1); rc=$?
is "drafter --bogus exits 2" "$rc" 2
like "drafter --bogus names the option" "$out" "^drafter: unknown option '--bogus'"

out=$(drafter bogus 2>&1); rc=$?
is "drafter bogus exits 127" "$rc" 127
like "drafter bogus says what is wrong" "$out" "unknown command 'bogus'"
like "drafter bogus lists the commands" "$out" "^  package "

ln -s "$top_builddir/drafter" "$T/drafter-bogus"
out=$("$T/drafter-bogus" 2>&1); rc=$?
ok "drafter-bogus exits non-zero" test "$rc" -ne 0
like "drafter-bogus says what is wrong" "$out" "unknown command name 'drafter-bogus'"
like "drafter-bogus lists the commands" "$out" "drafter-packager"

out=$(drafter help bogus 2>&1); rc=$?
ok "drafter help bogus exits non-zero" test "$rc" -ne 0

for c in $cmds; do
	a=$(drafter help "$c" 2>&1); ra=$?
	b=$(drafter "$c" --help 2>&1); rb=$?
	is "drafter help $c exits 0" "$ra" 0
	ok "drafter help $c = drafter $c --help" test "$a" = "$b"
	ok "drafter $c --help is not empty" test -n "$b"
done

for c in "${!legacy[@]}"; do
	n=${legacy[$c]}
	ok "$n is in the build tree" test -L "$top_builddir/$n"
	for h in -h -help --help; do
		out=$("$n" $h 2>/dev/null); rc=$?
		is "$n $h exits 0" "$rc" 0
	done
	out=$("$n" -h)
	is "$n -h starts the Go way" "$(head -n1 <<<"$out")" "Usage of $n:"
	got=$(grep -oE '^  -[a-z0-9-]+' <<<"$out" | sed 's/^  -//' | tr '\n' ' ' | sed 's/ $//')
	is "$n -h lists the original's flags" "$got" "${flags[$n]}"

	out=$("$n" -no-such-flag 2>&1); rc=$?
	is "$n -no-such-flag exits 2, as Go does" "$rc" 2
	is "$n -no-such-flag: one error line and a hint" "$out" \
		"$n: flag provided but not defined: -no-such-flag
Run '$n -h' for usage."
	out=$(drafter "$c" --no-such-option 2>&1); rc=$?
	is "drafter $c --no-such-option exits 2" "$rc" 2
	like "drafter $c --no-such-option names it" "$out" "unknown option '--no-such-option' for 'drafter $c'"
done

# A bad value is caught before anything runs, under both names.
out=$(drafter-packager --devices '[{"name":"state","path":}]' 2>&1); rc=$?
is "malformed --devices exits 2" "$rc" 2
like "and reports the offset" "$out" '^drafter-packager: invalid value for flag -devices: malformed JSON at offset 24: '
out=$(drafter snapshot --cpu-count x 2>&1); rc=$?
is "drafter snapshot --cpu-count x exits 2" "$rc" 2
like "and says what was expected" "$out" '^drafter: invalid value "x" for option --cpu-count: expected an integer between 1 and 255'

# Options of one command are refused by another.
out=$(drafter package --vmm qemu 2>&1); rc=$?
is "an option of another command exits 2" "$rc" 2

# A legacy name reads no config file, the subcommand does.
printf 'nat = { namespace_count = 0; };\n' > drafter.conf
out=$(drafter nat 2>&1); rc=$?
is "drafter nat with a bad ./drafter.conf exits 1" "$rc" 1
like "and names file, line and key" "$out" "^drafter: drafter.conf:1: 'nat.namespace_count': expected an integer between 1 and 256, got 0"
out=$(drafter-nat -h 2>&1); rc=$?
is "drafter-nat ignores ./drafter.conf" "$rc" 0
rm -f drafter.conf

done_testing
