#!/bin/bash
# drafter package from the command line: the original's tutorial commands
# verbatim, both option syntaxes, any-order extraction, one-line errors for
# missing devices and damaged packages with nothing left behind, a full disk
# (a small tmpfs), and the progress line on a terminal only.
. "$top_srcdir/tests/functions.sh"
requires zstd tar cmp du script
tmpdir
cd "$T" || exit 1

# Files named like the tutorial's blueprint.
mkdir -p out/blueprint
head -c 5000000 /dev/urandom >out/blueprint/vmlinux
truncate -s 256M out/blueprint/rootfs.ext4
dd if=/dev/urandom of=out/blueprint/rootfs.ext4 bs=1M count=2 seek=100 conv=notrunc status=none
truncate -s 64M out/blueprint/oci.ext4
dd if=/dev/urandom of=out/blueprint/oci.ext4 bs=64K count=3 conv=notrunc status=none
cp -a out/blueprint orig

# The tutorial's commands, as printed in the original's README.
ok "tutorial: package the DrafterOS blueprint" drafter-packager --package-path out/drafteros.tar.zst --devices '[
  {
    "name": "kernel",
    "path": "out/blueprint/vmlinux"
  },
  {
    "name": "disk",
    "path": "out/blueprint/rootfs.ext4"
  }
]'
ok "tutorial: package the Valkey OCI blueprint" drafter-packager --package-path out/oci-valkey.tar.zst --devices '[
  {
    "name": "oci",
    "path": "out/blueprint/oci.ext4"
  }
]'
is "entries are named after devices, in order" \
	"$(tar --zstd -tf out/drafteros.tar.zst | tr '\n' ' ')" "kernel disk "
rm -rf out/blueprint
ok "tutorial: extract the DrafterOS blueprint" drafter-packager --package-path out/drafteros.tar.zst --extract --devices '[
  {
    "name": "kernel",
    "path": "out/blueprint/vmlinux"
  },
  {
    "name": "disk",
    "path": "out/blueprint/rootfs.ext4"
  }
]'
ok "tutorial: extract the Valkey OCI blueprint" drafter-packager --package-path out/oci-valkey.tar.zst --extract --devices '[
  {
    "name": "oci",
    "path": "out/blueprint/oci.ext4"
  }
]'
for f in vmlinux rootfs.ext4 oci.ext4; do
	ok "$f round-trips byte for byte" cmp "orig/$f" "out/blueprint/$f"
done
is "rootfs keeps its size" "$(stat -c %s out/blueprint/rootfs.ext4)" 268435456
alloc=$(du -k out/blueprint/rootfs.ext4 | cut -f1)
ok "rootfs is extracted sparse (${alloc} KiB allocated)" test "$alloc" -lt 8192

# Any order, a subset, Go-style flag spellings.
rm -rf any
ok "extract in reverse order with -flag=value syntax" drafter-packager -extract \
	-package-path=out/drafteros.tar.zst \
	-devices='[{"name":"disk","path":"any/d/disk"},{"name":"kernel","path":"any/k/kernel"}]'
ok "reverse-order disk matches" cmp orig/rootfs.ext4 any/d/disk
ok "reverse-order kernel matches" cmp orig/vmlinux any/k/kernel
is "only requested paths are written" "$(cd any && find . -type f | sort | tr '\n' ' ')" "./d/disk ./k/kernel "

# The subcommand with a configuration file; options override it.
cat >pkg.conf <<'EOF'
package = {
  path = "cfg/app.tar.zst";
  level = 1;
  threads = 2;
};
devices = (
  { name = "kernel"; path = "orig/vmlinux"; },
  { name = "oci"; path = "orig/oci.ext4"; }
);
EOF
ok "drafter package -c FILE creates the package" drafter package -c pkg.conf
is "config-file package has the configured devices" \
	"$(tar --zstd -tf cfg/app.tar.zst | tr '\n' ' ')" "kernel oci "
ok "drafter package -x --package-path overrides the file" drafter package -c pkg.conf -x \
	--package-path cfg/app.tar.zst --devices '[{"name":"oci","path":"cfg/oci"}]'
ok "subcommand extraction matches" cmp orig/oci.ext4 cfg/oci
ok "--level 12 --threads 1 work" drafter package -c pkg.conf --level 12 --threads 1 \
	--package-path cfg/l12.tar.zst
ok "level 12 package is valid zstd" zstd -tq cfg/l12.tar.zst
err=$(drafter package -c pkg.conf --level 40 --package-path cfg/bad.tar.zst 2>&1)
fails "an out-of-range level is an error" test "$?" = 0
ok "no package for a bad level" test ! -e cfg/bad.tar.zst

# Missing devices: one line, non-zero exit, nothing written.
mkdir -p miss
err=$(drafter-packager --package-path miss/app.tar.zst \
	--devices '[{"name":"kernel","path":"orig/vmlinux"},{"name":"disk","path":"orig/nope.ext4"}]' 2>&1)
rc=$?
fails "create with a missing device fails" test "$rc" = 0
is "one error line" "$(printf '%s\n' "$err" | wc -l)" 1
like "it names the device, the path and the cause" "$err" \
	"^drafter-packager: cannot open device 'disk' at 'orig/nope.ext4': No such file or directory$"
is "no package and no temporary file left" "$(ls -A miss)" ""

err=$(drafter-packager --package-path out/drafteros.tar.zst --extract \
	--devices '[{"name":"kernel","path":"miss/k"},{"name":"oci","path":"miss/oci"}]' 2>&1)
rc=$?
fails "extracting a device the package lacks fails" test "$rc" = 0
is "one error line" "$(printf '%s\n' "$err" | wc -l)" 1
like "it names the missing device" "$err" "device 'oci' is not in package 'out/drafteros.tar.zst'"
is "nothing extracted" "$(ls -A miss)" ""

# A truncated package: refused, existing outputs untouched, no temporary files.
mkdir -p trunc
echo old >trunc/disk
size=$(stat -c %s out/drafteros.tar.zst)
head -c $((size - 100)) out/drafteros.tar.zst >trunc.tar.zst
err=$(drafter-packager --package-path trunc.tar.zst --extract \
	--devices '[{"name":"kernel","path":"trunc/kernel"},{"name":"disk","path":"trunc/disk"}]' 2>&1)
rc=$?
fails "a truncated package fails" test "$rc" = 0
like "the error says truncated" "$err" "truncated package"
is "the old output file is untouched" "$(cat trunc/disk)" old
is "no other file appeared" "$(ls -A trunc)" disk

# A full disk: a 4 MiB tmpfs, a device with 5 MB of data.
mkdir -p full
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=4m drafter-test full 2>/dev/null; then
	cleanup_fn "umount '$T/full'"
	err=$(drafter-packager --package-path out/drafteros.tar.zst --extract \
		--devices '[{"name":"kernel","path":"full/vmlinux"}]' 2>&1)
	rc=$?
	fails "extracting onto a full disk fails" test "$rc" = 0
	like "the error says why" "$err" "No space left on device"
	is "no file left on the full disk" "$(ls -A full)" ""
	is "its space is free again" "$(df -k --output=used full | tail -1 | tr -d ' ')" 0
	err=$(drafter-packager --package-path full/app.tar.zst \
		--devices '[{"name":"kernel","path":"orig/vmlinux"}]' 2>&1)
	rc=$?
	fails "creating a package on a full disk fails" test "$rc" = 0
	like "the error says why" "$err" "No space left on device"
	is "no partial package left" "$(ls -A full)" ""
	umount full
else
	skip "full disk: cannot mount a tmpfs here (needs root)"
fi

# Progress: on a terminal only.
err=$(drafter-packager --package-path out/p.tar.zst \
	--devices '[{"name":"disk","path":"orig/rootfs.ext4"}]' 2>&1 >/dev/null)
fails "no progress line when stderr is not a terminal" grep -q "packaging:" <<<"$err"
tty_out=$(script -qec "drafter-packager --package-path out/p.tar.zst --devices '[{\"name\":\"disk\",\"path\":\"orig/rootfs.ext4\"}]'" /dev/null)
like "a scanning line on a terminal" "$tty_out" "scanning: .* / 2\.0 MiB \([0-9]+%\), .*/s, ETA"
like "a packaging line on a terminal" "$tty_out" "packaging: .* / 2\.0 MiB \([0-9]+%\), .*/s, ETA"
like "the summary follows" "$tty_out" "packaged 1 device"
tty_out=$(script -qec "drafter-packager --extract --package-path out/p.tar.zst --devices '[{\"name\":\"disk\",\"path\":\"tty/disk\"}]'" /dev/null)
like "an extracting line on a terminal" "$tty_out" "extracting: .* / [0-9.]+ [KM]iB \([0-9]+%\)"
ok "  and the device is there" cmp orig/rootfs.ext4 tty/disk

done_testing
