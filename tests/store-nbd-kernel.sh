#!/bin/bash
# The kernel NBD exposure for real. The host kernel has no nbd module, so
# this boots the Debian kernel from /boot under QEMU (TCG) with its nbd.ko
# and runs tests/store-nbd-guest inside: netlink connect, I/O on /dev/nbdN,
# MAP_SHARED + flush, on-demand blocks for a destination, disconnect. The
# guest's TAP lines are passed on here. Skips where no such kernel exists.
. "$top_srcdir/tests/functions.sh"

requires qemu-system-x86_64 busybox cpio xz ldd
tmpdir

guest=$top_builddir/tests/store-nbd-guest
[ -x "$guest" ] || skip_all "tests/store-nbd-guest is not built"

# newest kernel image that comes with an nbd module
kernel= kver=
for k in $(ls -1v /boot/vmlinuz-* 2>/dev/null | sort -rV); do
	v=${k#/boot/vmlinuz-}
	if [ -f "/lib/modules/$v/kernel/drivers/block/nbd.ko" ]; then
		kernel=$k kver=$v
		break
	fi
done
[ -n "$kernel" ] || skip_all "no /boot/vmlinuz-* with an nbd module (install linux-image-amd64)"
diag "guest kernel $kver"

# The XZ bzImage is slow to unpack under TCG; its ELF inside boots directly (PVH).
cache=$top_builddir/tests/tmp/store-nbd
mkdir -p "$cache"
vmlinux=$cache/vmlinux-$kver
if [ ! -s "$vmlinux" ]; then
	off=$(grep -abo $'\xfd7zXZ\x00' "$kernel" | head -1 | cut -d: -f1)
	[ -n "$off" ] || skip_all "cannot find the XZ payload in $kernel"
	tail -c +$((off + 1)) "$kernel" | xz -dc --single-stream >"$vmlinux.tmp" 2>/dev/null || true
	[ "$(head -c 4 "$vmlinux.tmp" | od -An -c | tr -d ' ')" = '177ELF' ] ||
		skip_all "cannot unpack $kernel"
	mv "$vmlinux.tmp" "$vmlinux"
fi

# initramfs: busybox, the nbd module, the test and the libraries it needs
root=$T/root
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
cp "/lib/modules/$kver/kernel/drivers/block/nbd.ko" "$root/nbd.ko"
cp "$guest" "$root/store-nbd-guest"
for lib in $(ldd "$guest" | grep -o '/[^ ]*'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
if insmod /nbd.ko nbds_max=4; then
	/store-nbd-guest 2>&1 | sed 's/^/GUEST: /'
	echo "GUEST-DONE"
else
	echo "GUEST-NO-MODULE"
fi
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --owner=0:0 2>/dev/null) >"$T/initrd.cpio"

# bounded, so that a guest that hangs fails the test instead of the run
timeout 300 qemu-system-x86_64 -accel tcg -machine q35 -m 512 -smp 1 -nodefaults \
	-display none -no-reboot -serial "file:$T/serial.log" \
	-kernel "$vmlinux" -initrd "$T/initrd.cpio" \
	-append "console=ttyS0 quiet panic=-1 loglevel=3" </dev/null
rc=$?
is "the guest ran and powered off" "$rc" 0

if grep -q GUEST-NO-MODULE "$T/serial.log"; then
	fail "the nbd module loads in the guest"
fi
# the guest's TAP lines, renumbered here
seen=0
while IFS= read -r line; do
	line=${line%$'\r'}
	case "$line" in
	"GUEST: ok "*) seen=$((seen + 1)); pass "guest: $(printf '%s' "${line#GUEST: ok }" | sed 's/^[0-9]* - //')" ;;
	"GUEST: not ok "*) seen=$((seen + 1)); fail "guest: $(printf '%s' "${line#GUEST: not ok }" | sed 's/^[0-9]* - //')" ;;
	"GUEST: #"*) diag "guest:${line#GUEST: #}" ;;
	"GUEST: 1.."*) plan=${line#GUEST: 1..} ;;
	esac
done <"$T/serial.log"
ok "the guest test ran to its end" grep -q GUEST-DONE "$T/serial.log"
is "the guest ran its whole plan" "$seen" "${plan:-none}"
if [ "$seen" = 0 ] || grep -q 'GUEST: not ok' "$T/serial.log"; then
	diag "serial log:"
	sed 's/^/#   /' "$T/serial.log" | tail -60
fi
done_testing
