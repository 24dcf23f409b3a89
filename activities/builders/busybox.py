"""Build a tiny LXD container image (split format) from Debian's busybox-static .deb.

A plain function, no Temporal: the activity that wraps it runs it in a thread.
The rootfs holds the static busybox binary, an inittab whose init stops cleanly
on the SIGPWR that `lxc stop` sends, and an rcS that brings up lo and (unless the
image asks for no network) eth0 with udhcpc. With SOURCE_DATE_EPOCH set, the same
inputs give byte-identical files.
"""

import tempfile
from pathlib import Path

from activities.builders.base import BuildJob, Built, HostDirs
from activities.builders.errors import BuildError
from activities.builders.image_files import checked_inputs, package, run_tool

# Applets linked at build time so `lxc exec` works before rcS has run;
# rcS adds the rest with `busybox --install -s` (the binary may not run on the build host).
_APPLETS = [
    "[",
    "[[",
    "ash",
    "awk",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "dirname",
    "du",
    "echo",
    "env",
    "false",
    "find",
    "free",
    "grep",
    "gunzip",
    "gzip",
    "halt",
    "head",
    "hostname",
    "id",
    "ifconfig",
    "ip",
    "kill",
    "killall",
    "ln",
    "ls",
    "mkdir",
    "mktemp",
    "more",
    "mount",
    "mountpoint",
    "mv",
    "nc",
    "netstat",
    "nslookup",
    "ping",
    "poweroff",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "reboot",
    "rm",
    "rmdir",
    "route",
    "sed",
    "seq",
    "sh",
    "sleep",
    "sort",
    "stat",
    "sync",
    "tail",
    "tar",
    "tee",
    "test",
    "timeout",
    "touch",
    "tr",
    "true",
    "udhcpc",
    "umount",
    "uname",
    "uptime",
    "vi",
    "wc",
    "wget",
    "which",
    "xargs",
]

_INITTAB = """\
# busybox init. `lxc stop` sends SIGPWR, which busybox init treats as halt:
# it runs the shutdown actions, signals every process and exits.
::sysinit:/etc/init.d/rcS
::ctrlaltdel:/bin/busybox reboot
::shutdown:/etc/init.d/rcK
::restart:/sbin/init
"""

_RCS = """\
#!/bin/sh
# Boot: applet links, kernel filesystems, hostname, lo, DHCP on eth0.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
NETWORK={network}
/bin/busybox --install -s 2>/dev/null
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mkdir -p /run /tmp /var/run
[ -s /etc/hostname ] && hostname -F /etc/hostname
ip link set lo up
if [ "$NETWORK" = dhcp ] && [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    # -b: go to the background if no lease at once, keep renewing; -R: release on exit.
    udhcpc -b -R -i eth0 -s /etc/udhcpc.script -p /run/udhcpc.eth0.pid \\
        -T 1 -t 5 -A 3 -x hostname:"$(hostname)" >/dev/null 2>&1
fi
"""

_RCK = """\
#!/bin/sh
# Shutdown: release the DHCP lease; init then signals everything and exits.
[ -s /run/udhcpc.eth0.pid ] && kill "$(cat /run/udhcpc.eth0.pid)" 2>/dev/null
sync
"""

_UDHCPC = """\
#!/bin/sh
# udhcpc event script: address, default route and resolv.conf for $interface.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$router" ]; then
        ip -4 route del default 2>/dev/null
        for r in $router; do
            ip -4 route add default via "$r" dev "$interface" && break
        done
    fi
    {
        [ -n "$domain" ] && echo "search $domain"
        for d in $dns; do echo "nameserver $d"; done
    } >/etc/resolv.conf.new && mv /etc/resolv.conf.new /etc/resolv.conf
    ;;
esac
exit 0
"""


def find_deb(deb_dir: Path, debian_arch: str) -> Path:
    """The newest busybox-static .deb for a Debian arch in deb_dir."""
    debs = sorted(Path(deb_dir).glob(f"busybox-static_*_{debian_arch}.deb"))
    if not debs:
        raise BuildError(
            f"no busybox-static_*_{debian_arch}.deb in {deb_dir}: "
            "run deploy/setup-host --role arch (as root) to download it"
        )
    return debs[-1]


def deb_version(deb: Path) -> str:
    """The package version a .deb's control file gives: the rootfs's one package."""
    return run_tool(
        ["dpkg-deb", "--field", str(deb), "Version"], f"reading {deb.name}"
    ).stdout.strip()


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


def write_boot_scripts(etc: Path, network: str) -> None:
    """init's table and the scripts it runs: boot, shutdown, DHCP events.

    bench/baseline.sh writes its rootfs with this too, so both boot the same way.
    """
    _write(etc / "inittab", _INITTAB)
    _write(etc / "init.d" / "rcS", _RCS.format(network=network), 0o755)
    _write(etc / "init.d" / "rcK", _RCK, 0o755)
    _write(etc / "udhcpc.script", _UDHCPC, 0o755)


def _make_rootfs(root: Path, busybox: Path, hostname: str, network: str) -> None:
    for d, mode in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc/init.d", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("var/run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
    ]:
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d).chmod(mode)
    (root / "usr").chmod(0o755)
    (root / "var").chmod(0o755)
    (root / "etc").chmod(0o755)

    target = root / "bin" / "busybox"
    target.write_bytes(busybox.read_bytes())
    target.chmod(0o755)
    for applet in _APPLETS:
        (root / "bin" / applet).symlink_to("/bin/busybox")
    (root / "sbin" / "init").symlink_to("/bin/busybox")

    etc = root / "etc"
    write_boot_scripts(etc, network)
    _write(etc / "hostname", hostname + "\n")
    _write(etc / "hosts", f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n")
    _write(etc / "passwd", "root:x:0:0:root:/root:/bin/sh\n")
    _write(etc / "group", "root:x:0:\n")
    _write(etc / "shadow", "root:*:0:0:99999:7:::\n", 0o600)
    _write(etc / "resolv.conf", "")


def build_busybox(job: BuildJob, dirs: HostDirs) -> Built:
    """Build `lxd.tar.xz`, `rootfs.squashfs` and the package manifest (busybox-static and
    its version: no package database in the rootfs) for one arch into the job's out_dir.

    An existing file there is replaced. Returns (BuiltFile, path) for the metadata tarball,
    the rootfs, then the manifest. Raises BuildError with a one-line message on any failure.
    """
    image, arch, serial, progress = job.spec, job.arch, job.serial, job.progress
    debian_arch = checked_inputs(arch, serial)
    deb = find_deb(dirs.debs, debian_arch)
    out_dir = job.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix=".build-busybox-", dir=out_dir) as tmp:
        work = Path(tmp)
        progress(f"{arch}: extracting {deb.name}")
        run_tool(["dpkg-deb", "-x", str(deb), str(work / "deb")], f"extracting {deb.name}")
        busybox = work / "deb" / "bin" / "busybox"
        if not busybox.is_file():
            raise BuildError(f"{deb.name} has no bin/busybox: is it really busybox-static?")

        progress(f"{arch}: assembling rootfs")
        root = work / "rootfs"
        root.mkdir(mode=0o755)
        root.chmod(0o755)
        _make_rootfs(root, busybox, hostname=image.os, network=image.network)
        packages = {"busybox-static": deb_version(deb)}
        return package(image, arch, serial, root, work, out_dir, progress, packages)
