# Shared by the tests that drive the Firecracker driver against its contract
# server (tests/fc-contract-jailer): finding Firecracker's OpenAPI files, and
# reading the server's log. Source it after functions.sh.

/usr/bin/python3 -c 'import yaml' 2>/dev/null || skip_all "python3-yaml is not installed"
# Firecracker's OpenAPI files are not vendored: they come from
# $FC_CONTRACT_SPECS, or from the project's shared reference beside the checkout.
if [ -z "${FC_CONTRACT_SPECS:-}" ]; then
	for d in "$top_srcdir/../shared/reference/firecracker" /usr/share/doc/firecracker; do
		[ -f "$d/firecracker-upstream.yaml" ] && FC_CONTRACT_SPECS=$(cd "$d" && pwd) && break
	done
fi
[ -f "${FC_CONTRACT_SPECS:-}/firecracker-upstream.yaml" ] ||
	skip_all "Firecracker's OpenAPI files not found (set FC_CONTRACT_SPECS to the directory holding firecracker-upstream.yaml)"
export FC_CONTRACT_SPECS

# fc_binaries DIR: DIR/firecracker, which the jailer is told to exec; the stand-in never runs it.
fc_binaries() {
	mkdir -p "$1"
	printf '#!/bin/sh\nexit 1\n' >"$1/firecracker"
	chmod +x "$1/firecracker"
}

# calls LOG: "METHOD PATH STATUS TYPE-OR-STATE" per API request, in order.
calls() { /usr/bin/python3 -c '
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if "method" in e:
        print(e["method"], e["path"], e["status"], (e.get("body") or {}).get("snapshot_type", "") or (e.get("body") or {}).get("state", ""))
' "$1"; }

# wait_for FILE REGEX [TENTHS]: until the file matches (default 30 s)
wait_for() {
	local i
	for i in $(seq 1 "${3:-300}"); do grep -Eq "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
