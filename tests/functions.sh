# Shared helpers for drafter's shell tests (sourced, TAP output).
#
#   requires CMD...        skip the whole test ("1..0 # SKIP") unless CMD exists
#   requires_root          skip unless running as root
#   cleanup_fn CMD...      run CMD on exit, last registered first
#   ok COND-CMD NAME       run a command, print "ok N - NAME" or "not ok"
#   tmpdir                 $T: a fresh directory removed on exit
#   done_testing           print the plan and exit with the result

set -u
: "${top_builddir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_srcdir:=$top_builddir}"
PATH=$top_builddir:$PATH
export PATH

_tap_n=0
_tap_failed=0
_cleanups=()

_run_cleanups() {
	local i
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[$i]}" >/dev/null 2>&1 || true
	done
}
trap _run_cleanups EXIT

cleanup_fn() { _cleanups+=("$*"); }

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

requires() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip_all "$c is not installed"
	done
}

requires_root() {
	[ "$(id -u)" = 0 ] || skip_all "needs root"
}

pass() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $*"; }
fail() { _tap_n=$((_tap_n + 1)); _tap_failed=$((_tap_failed + 1)); echo "not ok $_tap_n - $*"; }
skip() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP $*"; }
diag() { echo "# $*"; }

# ok NAME CMD...: pass when CMD succeeds.
ok() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

# not_ok NAME CMD...: pass when CMD fails.
fails() {
	local name=$1
	shift
	if "$@"; then fail "$name"; else pass "$name"; fi
}

# is NAME GOT WANT
is() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1"; diag "got '$2', want '$3'"; fi
}

# like NAME GOT REGEX
like() {
	if printf '%s' "$2" | grep -Eq -- "$3"; then pass "$1"; else fail "$1"; diag "'$2' does not match /$3/"; fi
}

tmpdir() {
	T=$(mktemp -d "${TMPDIR:-/tmp}/drafter-test.XXXXXX")
	cleanup_fn "rm -rf '$T'"
}

done_testing() {
	echo "1..$_tap_n"
	[ "$_tap_failed" = 0 ]
	exit $?
}
