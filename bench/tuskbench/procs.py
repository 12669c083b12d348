"""Processes the suite starts (tusk, nginx, php-fpm, php-cgi), and their guaranteed cleanup.

Every process is started in its own session (own process group), so a group kill reaches
nginx's and php-fpm's workers. Tusk starts its PHP instances in process groups of their own,
so before stopping any process we also note its descendants (pid + start time, from /proc)
and kill the ones still alive afterwards. `Procs.stop_all()` runs from `finally`, `atexit`
and the SIGINT/SIGTERM/SIGHUP handlers installed by `install_signal_handlers()`.
"""

import atexit
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def _stat(pid):
    """(ppid, start time) of a live pid, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19])


def descendants(pid):
    """[(pid, start time)] of every live descendant of pid."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st:
            children.setdefault(st[0], []).append((int(entry), st[1]))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def _kill_if_same(pid, start, sig):
    st = _stat(pid)
    if st and st[1] == start:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """{(pid, start time): utime + stime in seconds} of the given live pids (threads included,
    children not). Compare two snapshots with `cpu_delta`."""
    out = {}
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        out[(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def cpu_delta(before, after):
    """CPU seconds used between two `cpu_seconds` snapshots by the processes alive at both."""
    return sum(after[k] - before[k] for k in before.keys() & after.keys())


def tree(pid):
    """pid and its live descendants."""
    return [pid] + [p for p, _ in descendants(pid)]


def rss_kb(pid):
    """VmRSS of pid in kB (0 when gone)."""
    return _status_kb(pid, "VmRSS")


def _status_kb(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    """Proportional set size of pid in kB (shared pages split between their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    """The processes of one suite run."""

    def __init__(self):
        self.items = []  # [(name, Popen)]
        atexit.register(self.stop_all)

    def start(self, name, argv, log_path, env=None, cwd=None, stdin=None):
        with open(log_path, "ab") as log:
            p = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.items.append((name, p))
        return p

    def stop(self, p, timeout=10.0):
        """SIGTERM the group, SIGKILL it after `timeout`, then kill leftover descendants."""
        left = descendants(p.pid)
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        else:
            try:  # the leader is gone; its group may not be
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_stat(pid) and _stat(pid)[1] == st for pid, st in left):
            time.sleep(0.05)
        for pid, st in left:
            _kill_if_same(pid, st, signal.SIGKILL)
        self.items = [(n, q) for n, q in self.items if q is not p]

    def stop_all(self):
        for _, p in reversed(list(self.items)):
            try:
                self.stop(p, timeout=5)
            except Exception:  # cleanup must go on
                pass


def install_signal_handlers():
    """Turn SIGINT/SIGTERM/SIGHUP into SystemExit so `finally` blocks and atexit run (SIGINT
    too, because a shell starts background jobs with SIGINT ignored)."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
