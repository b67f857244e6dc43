#!/bin/busybox sh
# /init of the VM's initramfs (xtask/src/vm/initramfs.rs fills in the @...@ values).
# It turns the host's root, shared read-only over 9p, into a writable root for one command:
# an overlay with a tmpfs upper layer, so the guest can write anywhere (/etc, /var, /root)
# without ever touching the host. Then it runs /cmd.sh there and reports on the console:
#   XTASK-VM-READY kernel=<uname -r> uptime=<s>   just before the command starts
#   XTASK-VM-EXIT=<status>                         after it ends
#   XTASK-VM-ERROR=<what>                          if the VM could not be set up

/bin/busybox mkdir -p /proc
/bin/busybox mount -t proc proc /proc
# Applet links need /proc/self/exe, hence after mounting /proc.
/bin/busybox --install -s /bin
export PATH=/bin

die() {
	echo "XTASK-VM-ERROR=$*"
	usleep 200000
	echo o >/proc/sysrq-trigger
	poweroff -f
}

mkdir -p /sys /dev /lower /upper /newroot
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in /modules/*.ko; do
	insmod "$module" || die "insmod $module"
done

# cache=loose: the share is read-only and lives for one command, so caching is safe and makes
# exec and library loading over 9p much faster. msize: fewer round trips per read (512000 is
# the most virtio allows).
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower ||
	die "cannot mount the host's root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /upper
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot ||
	die "cannot mount the overlay root"

# Fresh /run (the host's holds its own netns files and pids), /tmp and /var/tmp.
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=1777 tmpfs /newroot/var/tmp
# A checkout under one of them (CI may clone into /tmp) is the host's, seen through the fresh
# tmpfs: the tracer binary and the caller's directory live there.
case "@WORKSPACE@" in
/tmp/* | /var/tmp/* | /run/*)
	mkdir -p "/newroot@WORKSPACE@"
	mount --bind "/lower@WORKSPACE@" "/newroot@WORKSPACE@" || die "cannot bind the workspace"
	;;
esac
# The booted kernel's modules where modprobe looks; the directory is created in the overlay's
# upper layer (the host has no /lib/modules at all).
mkdir -p "/newroot/lib/modules/@KVER@"
mount --bind "/newroot@MODULES@" "/newroot/lib/modules/@KVER@" || die "cannot bind the modules"

mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t bpf bpf /newroot/sys/fs/bpf
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup
mount -t debugfs debugfs /newroot/sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /newroot/sys/kernel/tracing 2>/dev/null
# The writable share for results, at the same path as on the host.
mkdir -p "/newroot@OUT@"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmout "/newroot@OUT@" ||
	die "cannot mount the output share"

cp /cmd.sh /newroot/run/xtask-vm-cmd.sh
echo "XTASK-VM-READY kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
# chroot in a child: PID 1 keeps the initramfs as its root, and so do the kernel's usermode
# helpers (kthreadd shares PID 1's fs_struct), whose /sbin/modprobe is the wrapper that
# chroots into /newroot. stdin is /dev/null: nobody types on the serial console.
chroot /newroot /bin/sh /run/xtask-vm-cmd.sh </dev/null
status=$?
echo
echo "XTASK-VM-EXIT=$status"
# The serial driver sends queued bytes from interrupts: give it time before the power goes.
sync
usleep 200000
echo o >/proc/sysrq-trigger
poweroff -f
