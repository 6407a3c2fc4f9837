#!/bin/bash
# Man pages: one per command, and each lists exactly the options that
# "drafter X --help" lists and the legacy flags that "drafter-X -h" lists.
. "$top_srcdir/tests/functions.sh"

man=$top_srcdir/man
declare -A legacy=(
	[nat]=drafter-nat [forward]=drafter-forwarder [snapshot]=drafter-snapshotter
	[package]=drafter-packager [run]=drafter-runner [registry]=drafter-registry
	[peer]=drafter-peer [terminate]=drafter-terminator
)

# Option names in the tag lines (.TP) of one section of a page.
man_options() { # page section
	awk -v sec="$2" '
		/^\.SH / { insec = ($0 == ".SH " sec || $0 == ".SH \"" sec "\""); next }
		insec && /^\.TP/ { tag = 1; next }
		insec && tag { print; tag = 0 }' "$1" |
		sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' |
		grep -oE '(^|[ ,])--?[a-z][a-z0-9-]*' | sed 's/^[ ,]*//' | sort -u | tr '\n' ' '
}
# Option names in the spec column of "--help".
help_options() {
	sed -n '/^Options:/,$p' | grep -E '^ +-' | sed -E 's/^ +//; s/ {2,}.*$//' |
		grep -oE '(^|[ ,])--?[a-z][a-z0-9-]*' | sed 's/^[ ,]*//' | sort -u | tr '\n' ' '
}

for p in drafter.1 drafter.conf.5 drafter-config.1; do
	ok "man/$p exists" test -s "$man/$p"
done

for c in nat forward snapshot package run registry peer terminate; do
	page=$man/drafter-$c.1
	ok "man page for $c exists" test -s "$page"
	[ -s "$page" ] || continue
	for s in NAME SYNOPSIS DESCRIPTION OPTIONS FILES "SEE ALSO"; do
		ok "drafter-$c.1 has $s" grep -qE "^\.SH \"?$s\"?$" "$page"
	done
	ok "drafter-$c.1 shows both forms" grep -q "^\.B ${legacy[$c]//-/\\\\-}$" "$page"
	want=$(drafter "$c" --help | help_options)
	got=$(man_options "$page" OPTIONS)
	is "drafter-$c.1 OPTIONS = drafter $c --help" "$got" "$want"
	want=$("${legacy[$c]}" -h | grep -oE '^  -[a-z0-9-]+' | sed 's/^ *//' | sort -u | tr '\n' ' ')
	got=$(man_options "$page" "LEGACY FLAGS")
	is "drafter-$c.1 LEGACY FLAGS = ${legacy[$c]} -h" "$got" "$want"
done

want=$(drafter config --help | help_options)
got=$(man_options "$man/drafter-config.1" OPTIONS)
is "drafter-config.1 OPTIONS = drafter config --help" "$got" "$want"

# drafter.conf(5) documents every key that drafter config check prints.
tmpdir
: > "$T/empty.conf"
keys=$(drafter config check --tool peer -c "$T/empty.conf" 2>/dev/null | grep -oE '^ *[a-z_0-9]+ =' | tr -d ' =' | sort -u)
ok "drafter config check prints the keys" test "$(wc -w <<<"$keys")" -gt 60
missing=
for k in $keys; do
	grep -qE "^\.BR $k |^\.BR [a-z_]+ \", \" $k |^\.BR $k\$" "$man/drafter.conf.5" || missing="$missing $k"
done
is "drafter.conf.5 documents every key" "$missing" ""

# The legacy names that differ from the page names point to the pages.
for l in forwarder:forward snapshotter:snapshot packager:package runner:run terminator:terminate; do
	is "man drafter-${l%%:*} shows drafter-${l##*:}" "$(cat "$man/drafter-${l%%:*}.1")" ".so man1/drafter-${l##*:}.1"
done

if command -v groff >/dev/null; then
	for p in "$man"/*.[15]; do
		grep -q '^\.so ' "$p" && continue
		out=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$p" 2>&1 | grep -v 'cannot adjust line')
		is "$(basename "$p") formats without warnings" "$out" ""
	done
else
	skip "groff is not installed; pages not formatted"
fi

done_testing
