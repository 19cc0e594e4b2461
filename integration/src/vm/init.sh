#!/bin/busybox sh
# /init of the VM tier's initramfs (integration/src/vm.rs): load the modules,
# mount the host's root read-only over 9p with a tmpfs overlay on top, run
# /vm/cmd.sh from the host's share in it, hand its status back through
# /vm/rc and isa-debug-exit (port 0xf4: the VM writes status + 1).

/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "vm: $*"; }

# Exit through isa-debug-exit with $1 (0..100) + 1; poweroff if that fails.
leave() {
    value=$(($1 + 1))
    sync
    printf "\\$(printf %o "$value")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    poweroff -f
}

fail() {
    say "FAILED: $*"
    leave 100
}

# KVM probe (integration/src/vm.rs, kvm_works): the kernel got here.
if grep -q gateway_vm_probe /proc/cmdline; then leave 42; fi

say "kernel $(uname -r) up after $(cut -d' ' -f1 /proc/uptime)s"
while read -r name kind; do
    if ! insmod "/modules/$name.ko" 2>/tmp/insmod.err; then
        if [ "$kind" = required ] && ! grep -q 'File exists' /tmp/insmod.err; then
            say "insmod $name failed: $(cat /tmp/insmod.err)"
        fi
    fi
done </modules/order

msize=512000
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=$msize hostroot /host ||
    fail "cannot mount the host's root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    fail "cannot mount the overlay on the host's root"

r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts
mount -t tmpfs tmpfs $r/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $r/tmp
mount -t tmpfs -o mode=0755 tmpfs $r/run
mount -t cgroup2 cgroup2 $r/sys/fs/cgroup 2>/dev/null
mount -t bpf bpf $r/sys/fs/bpf 2>/dev/null
mount -t debugfs debugfs $r/sys/kernel/debug 2>/dev/null
mkdir -p $r/vm
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=$msize vmshare $r/vm ||
    fail "cannot mount the results share (9p tag vmshare)"
[ -f $r/vm/cmd.sh ] || fail "no /vm/cmd.sh in the share"

hostname gateway-vm
echo gateway-vm >$r/etc/hostname
ip link set lo up
sysctl -qw kernel.panic_on_oops=1

say "running the command after $(cut -d' ' -f1 /proc/uptime)s"
chroot $r /bin/sh /vm/cmd.sh </dev/null >$r/vm/output 2>&1
rc=$?
echo $rc >$r/vm/rc
say "command exited with status $rc after $(cut -d' ' -f1 /proc/uptime)s"
[ $rc -gt 100 ] && rc=100
umount $r/vm 2>/dev/null
leave $rc
