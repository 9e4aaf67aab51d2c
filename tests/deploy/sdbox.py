"""A real systemd manager as PID 1 of fresh namespaces, over a throwaway overlay of ``/``.

Recipe: ../shared/docs/systemd-testing.md. The host's files are the overlay's lower layer and are
never written (the upper layer is a tmpfs); the manager shares the host's network, so services
are reached on 127.0.0.1 at free ports. ``down()`` powers the box off and, if that fails, kills
its PID 1 (which ends every process of the PID namespace); the mount namespace goes with them.

    box = SystemdBox(tmp_path).up()
    box.run("systemctl", "start", "x")          # nsenter into every namespace of the manager
    box.down()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

CGROUP_PARENT = Path("/sys/fs/cgroup/unified")
REPO = Path(__file__).resolve().parents[2]
MASKED = ("systemd-timesyncd", "systemd-modules-load", "systemd-pstore", "systemd-firstboot", "systemd-repart",
          "systemd-binfmt", "systemd-random-seed", "getty@tty1", "postgresql", "e2scrub_reap",
          "systemd-journald-audit.socket")
BOOT_TIMEOUT_S = 30.0

INNER = r"""
set -eu
B="$1"; R="$B/root"
mkdir -p "$B/ovl" "$R"
mount -t tmpfs t "$B/ovl"; mkdir "$B/ovl/upper" "$B/ovl/work"
mount -t overlay o -o lowerdir=/,upperdir="$B/ovl/upper",workdir="$B/ovl/work" "$R"
mount -t proc proc "$R/proc"; mount --bind "$R/proc/sys" "$R/proc/sys"; mount -o remount,bind,ro "$R/proc/sys"
mount -t sysfs -o ro sysfs "$R/sys"; mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=755 tmpfs "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir "$R/dev/pts" "$R/dev/shm"; mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs tmpfs "$R/run"; mount -t tmpfs tmpfs "$R/tmp"
# The checkout (with its .venv) must be visible inside wherever it lives, /tmp included.
for p in $4; do mkdir -p "$R$p"; mount --bind "$p" "$R$p"; done
rm -f "$R/etc/machine-id"; echo "$2" > "$R/etc/machine-id"
for u in $3; do case "$u" in *.*) n="$u";; *) n="$u.service";; esac; ln -sf /dev/null "$R/etc/systemd/system/$n"; done
printf '[Unit]\nDescription=sdbox\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n' \
  > "$R/etc/systemd/system/sdbox.target"
cd "$R"; mkdir -p .oldroot; pivot_root . .oldroot; umount -l /.oldroot
export container=sdbox
exec capsh --drop=cap_sys_module,cap_sys_time,cap_sys_rawio,cap_wake_alarm,cap_sys_pacct -- -c \
  'exec /lib/systemd/systemd --unit=sdbox.target --show-status=false'
"""


def available() -> str | None:
    """Why a box cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "nsenter", "capsh"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not Path("/lib/systemd/systemd").exists() or not CGROUP_PARENT.is_dir():
        return "needs systemd and a cgroup2 hierarchy at /sys/fs/cgroup/unified"
    return None


class SystemdBox:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.name = f"sdbox-{uuid.uuid4().hex[:8]}"
        self.cgroup = CGROUP_PARENT / self.name
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.console = base / "sdbox-console.log"

    def up(self) -> SystemdBox:
        self.cgroup.mkdir()
        script = self.base / "sdbox-inner.sh"
        script.write_text(INNER)
        out = open(self.console, "wb")  # noqa: SIM115 - owned by the process
        # Join the new cgroup first so the manager's cgroup namespace is rooted there.
        # --kill-child plus a parent-death signal: if the test process dies without down(), unshare gets
        # SIGKILL, then PID 1, and with it every process of the box.
        cmd = ["sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec unshare --kill-child --pid --fork '
               f'--mount --uts --cgroup --propagation private sh {script} {self.base} {uuid.uuid4().hex} '
               f'"{" ".join(MASKED)}" "{REPO}"']
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        out.close()
        try:
            self.pid1 = self._wait_pid1()
            self._wait_running()
        except BaseException:
            self.down()
            raise
        return self

    def _wait_pid1(self) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sdbox exited {self.proc.returncode}: {self.console.read_text()}")
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and Path(f"/proc/{pids[0]}/exe").resolve().name == "systemd":
                return int(pids[0])
            time.sleep(0.05)
        raise RuntimeError(f"no systemd PID 1 after {BOOT_TIMEOUT_S}s: {self.console.read_text()}")

    def _wait_running(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"box not running after {BOOT_TIMEOUT_S}s: {state}")

    def run(self, *cmd: str, check: bool = True, timeout: float = 60, input: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run a command inside every namespace of the box (as root, in its root directory)."""
        res = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", *cmd], capture_output=True, text=True,
                             timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def sh(self, script: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, check=check, timeout=timeout)

    def host_pid(self, box_pid: int) -> int:
        """The host's PID of a process the box calls ``box_pid`` (NSpid's first field)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) >= 2 and ids[-1] == str(box_pid) and self._in_box(int(entry.name)):
                        return int(entry.name)
        raise LookupError(box_pid)

    def _in_box(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{self.pid1}/ns/pid_for_children")
        except OSError:
            return False

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "cat", check=False).stdout

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.pid1:
                with _suppress():
                    os.kill(self.pid1, signal.SIGRTMIN + 4)  # systemd: poweroff
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                if self.pid1:
                    with _suppress():
                        os.kill(self.pid1, signal.SIGKILL)  # takes the whole PID namespace with it
                self.proc.wait(15)
        self._remove_cgroups()

    def _remove_cgroups(self) -> None:
        if not self.cgroup.exists():
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            dirs = sorted((p for p in self.cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            try:
                for d in [*dirs, self.cgroup]:
                    d.rmdir()
                return
            except OSError:
                time.sleep(0.1)  # processes still leaving
        raise RuntimeError(f"could not remove {self.cgroup}")


def _die_with_parent() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)  # type: ignore[arg-type]
