# Helpers shared by the transfer, registry, terminate and migration tests
# (sourced after tests/functions.sh; not a test itself).

XFER_TOOL=$top_builddir/tests/xfer-tool

# Run the rest of the test in a private network namespace, so that ports on
# its loopback never collide with other tests running at the same time.
xfer_private_net() {
	if [ -z "${XFER_IN_NETNS:-}" ]; then
		command -v unshare >/dev/null || skip_all "unshare is not installed"
		XFER_IN_NETNS=1 exec unshare -n -- "$BASH" "$0" "$@"
	fi
	ip link set lo up
}

# xfer_fuse_test "$@" [COMMAND...]: the start of a test of FUSE-exposed
# devices: root, the commands it needs, /dev/fuse, a private network
# namespace, $T as the working directory, its mounts removed at the end.
# "$@" are the script's arguments (for the re-run inside the namespace),
# followed by "--" and the commands to require.
xfer_fuse_test() {
	local args=() need=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	need=("$@")
	requires_root
	requires timeout unshare "${need[@]}"
	[ -e /dev/fuse ] || skip_all "no /dev/fuse"
	xfer_private_net "${args[@]}"
	tmpdir
	cd "$T" || exit 1
	cleanup_fn "grep -o '$T[^ ]*' /proc/mounts | xargs -r -n1 umount -l"
}

# wait_log FILE REGEX [SECONDS]: wait until FILE has a line matching REGEX.
wait_log() {
	local file=$1 re=$2 t=${3:-20}
	timeout "$t" bash -c 'tail -n +1 -F "$1" 2>/dev/null | grep -q -m1 -E -- "$2"' _ "$file" "$re"
}

# start_bg LOG CMD...: run CMD in the background with its output in LOG; sets $BGPID.
start_bg() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	BGPID=$!
	cleanup_fn "kill $BGPID 2>/dev/null; wait $BGPID 2>/dev/null"
}

# stop_bg PID: SIGTERM and wait; the exit status goes to $RC.
stop_bg() {
	kill -TERM "$1" 2>/dev/null
	RC=0
	wait "$1" 2>/dev/null || RC=$?
}

# Make a test CA, a server certificate for "localhost"/127.0.0.1 and a client
# certificate, plus a second unrelated CA, under DIR.
make_certs() {
	local d=$1
	mkdir -p "$d"
	(
		cd "$d" || exit 1
		for ca in ca otherca; do
			openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-keyout $ca.key -out $ca.pem -days 2 -subj "/CN=drafter test $ca" 2>/dev/null || exit 1
		done
		for who in server client rogue; do
			local ca=ca
			[ $who = rogue ] && ca=otherca
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-keyout $who.key -out $who.csr -subj "/CN=$who" 2>/dev/null || exit 1
			printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >$who.ext
			openssl x509 -req -in $who.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial \
				-out $who.pem -days 2 -extfile $who.ext 2>/dev/null || exit 1
		done
	)
}

# sha256 of a file
hash_of() { sha256sum "$1" | cut -d' ' -f1; }
