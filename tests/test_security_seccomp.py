"""Issue 11, item 6: functions cannot reach kernel attack surface they do not need.

A `provided` function whose bootstrap (Python 3, ctypes) tries one kernel attack per invocation
with raw system calls and returns the errno it got; every one must fail with EPERM or ENOSYS
under the node's seccomp filter, while ordinary work (fork, exec, threads, loopback sockets,
/tmp) and a PHP function keep working. Runs a node of its own with `--sandbox full` (root).
"""

import errno
import json
import os
import subprocess

import pytest

from conftest import Node, tusk_bin, write_project

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="full isolation needs root")

REFUSED = {errno.EPERM, errno.ENOSYS}

# x86_64 system call numbers and the attacks, run inside the sandbox by the bootstrap below.
BOOTSTRAP = r'''#!/usr/bin/python3
import ctypes, errno, http.client, json, os, signal, socket, struct, subprocess, sys, threading, time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000


def sc(nr, *args):
    """A raw system call: (errno or 0, return value)."""
    conv = [a if not isinstance(a, int) else ctypes.c_long(a) for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *conv)
    return (ctypes.get_errno() if r < 0 else 0), r


def closing(res):
    e, r = res
    if e == 0 and r > 2:
        os.close(r)
    return e


def in_child(fn):
    """Runs fn in a forked child (namespace calls must not touch the runtime); its errno."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn() & 0xFF)
        except BaseException:
            os._exit(255)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def unshare():
    return {
        "user": in_child(lambda: sc(272, CLONE_NEWUSER)[0]),
        "pid": in_child(lambda: sc(272, CLONE_NEWUSER | CLONE_NEWPID)[0]),
        "net": in_child(lambda: sc(272, CLONE_NEWUSER | CLONE_NEWNET)[0]),
        # clone(CLONE_NEWUSER | SIGCHLD): a child in a new user namespace exits at once.
        "clone": in_child(lambda: clone_newuser()),
        # clone3 passes its flags in a struct the filter cannot read: refused outright.
        "clone3": sc(435, 0, 0)[0],
        # The x32 ABI (nr | 0x40000000) must not be a way around a deny-list.
        "x32": in_child(lambda: sc(272 | 0x40000000, CLONE_NEWUSER)[0]),
    }


def clone_newuser():
    e, r = sc(56, CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
    if e:
        return e
    if r == 0:
        os._exit(0)
    os.waitpid(r, 0)
    return 0


def unshare_cmd():
    p = subprocess.run(["/usr/bin/unshare", "-Ur", "id", "-u"], capture_output=True, text=True)
    return {"rc": p.returncode, "out": p.stdout.strip(), "err": p.stderr.strip()[-200:]}


def mount():
    os.makedirs("/tmp/m", exist_ok=True)
    def attempt():
        sc(272, CLONE_NEWUSER | CLONE_NEWNS)  # today this gives a namespace where mount works
        return sc(165, b"none", b"/tmp/m", b"tmpfs", 0, 0)[0]
    return {"tmpfs": in_child(attempt), "plain": sc(165, b"none", b"/tmp/m", b"tmpfs", 0, 0)[0]}


def ptrace():
    secret = ctypes.create_string_buffer(b"the child's secret", 32)
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    out = {}
    e, _ = sc(101, 16, pid, 0, 0)  # PTRACE_ATTACH
    out["attach"] = e
    if e == 0:
        os.waitpid(pid, 0)
        sc(101, 17, pid, 0, 0)  # PTRACE_DETACH
    got = ctypes.create_string_buffer(32)
    local = struct.pack("QQ", ctypes.addressof(got), 32)
    remote = struct.pack("QQ", ctypes.addressof(secret), 32)
    out["process_vm_readv"] = sc(310, pid, local, 1, remote, 1, 0)[0]
    out["process_vm_writev"] = sc(311, pid, local, 1, remote, 1, 0)[0]
    out["read"] = got.value.decode(errors="replace")
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return out


def perf():
    # A software CPU clock counting only this process in user mode: allowed without
    # privileges at perf_event_paranoid <= 2.
    attr = struct.pack("<IIQQQQQ", 1, 128, 0, 0, 0, 0, 1 | 1 << 5 | 1 << 6).ljust(128, b"\0")
    return closing(sc(298, attr, 0, -1, -1, 0))


def kernel():
    """Calls that need privileges the instance never has, plus two that work unprivileged."""
    bpf_attr = struct.pack("<IIII", 2, 4, 4, 1).ljust(72, b"\0")
    timex = ctypes.create_string_buffer(256)  # modes = 0: a read-only query
    return {
        "bpf": closing(sc(321, 0, bpf_attr, len(bpf_attr))),
        "init_module": sc(175, b"\0" * 64, 64, b"")[0],
        "finit_module": sc(313, 0, b"", 0)[0],
        "delete_module": sc(176, b"ext4", 0)[0],
        "kexec_load": sc(246, 0, 0, 0, 0)[0],
        "kexec_file_load": sc(320, -1, -1, 0, b"", 0)[0],
        "reboot": sc(169, 0, 0, 0, 0)[0],  # bad magic: EINVAL even for root
        "swapon": sc(167, b"/tmp/nope", 0)[0],
        "swapoff": sc(168, b"/tmp/nope")[0],
        "acct": sc(163, 0)[0],
        "settimeofday": sc(164, 0, 0)[0],  # no arguments: a no-op that succeeds unfiltered
        "clock_settime": sc(227, 0, struct.pack("qq", int(time.time()), 0))[0],
        "adjtimex": sc(159, timex)[0],
        "open_by_handle_at": sc(304, -100, b"\0" * 16, 0)[0],
        "pivot_root": sc(155, b"/tmp", b"/tmp")[0],
        "umount2": sc(166, b"/tmp", 0)[0],
        "fsopen": closing(sc(430, b"tmpfs", 0)),
        "move_mount": sc(429, -1, b"", -1, b"/tmp", 0)[0],
        "setns": sc(308, -1, 0)[0],
    }


def keyring():
    return {
        "keyctl": in_child(lambda: sc(250, 1, 0)[0]),  # KEYCTL_JOIN_SESSION_KEYRING
        "add_key": in_child(lambda: sc(248, b"user", b"tusk", b"x", 1, -2)[0]),
        "request_key": sc(249, b"user", b"tusk", 0, -2)[0],
    }


def io_uring():
    params = ctypes.create_string_buffer(120)
    return {
        "setup": closing(sc(425, 4, params)),
        "enter": sc(426, -1, 0, 0, 0, 0, 0)[0],
        "register": sc(427, -1, 0, 0, 0)[0],
    }


def userfaultfd():
    return closing(sc(323, os.O_CLOEXEC | 1))  # UFFD_USER_MODE_ONLY: allowed unprivileged


def personality():
    e, old = sc(135, 0xFFFFFFFF)  # a query stays allowed
    out = {"query": e, "addr_no_randomize": sc(135, 0x0040000)[0], "read_implies_exec": sc(135, 0x0400000)[0]}
    sc(135, old if e == 0 else 0)
    out["linux32"] = sc(135, 0x0008)[0]
    sc(135, old if e == 0 else 0)
    return out


def normal():
    """What an ordinary function does; all of it must keep working."""
    out = {}
    status = open("/proc/self/status").read()
    out["seccomp"] = [l.split(":", 1)[1].strip() for l in status.splitlines() if l.startswith("Seccomp")]
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out["exec"] = subprocess.run(["/bin/sh", "-c", "echo hi from $0"], capture_output=True, text=True).stdout.strip()
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(sum(range(i * 1000)))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["threads"] = len(results)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    c = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    c.sendall(b"ping")
    out["socket"] = conn.recv(4).decode()
    for s in (c, conn, srv):
        s.close()
    with open("/tmp/f", "w") as f:
        f.write("data")
    os.rename("/tmp/f", "/tmp/g")
    out["tmp"] = open("/tmp/g").read()
    os.unlink("/tmp/g")
    out["sleep"] = time.sleep(0.01) or "ok"
    return out


ATTACKS = {f.__name__: f for f in (unshare, unshare_cmd, mount, ptrace, perf, kernel, keyring, io_uring, userfaultfd, personality, normal)}

conn = http.client.HTTPConnection(API)
while True:
    conn.request("GET", BASE + "/invocation/next")
    resp = conn.getresponse()
    event = json.loads(resp.read() or b"{}")
    rid = resp.headers["Lambda-Runtime-Aws-Request-Id"]
    try:
        result = ATTACKS[event["attack"]]()
    except Exception as exc:
        result = {"exception": repr(exc)}
    conn.request("POST", f"{BASE}/invocation/{rid}/response", json.dumps(result))
    conn.getresponse().read()
'''

PROJECT = {
    "serverless.yml": """
service: kernel
provider:
  name: aws
  runtime: provided.al2023
  timeout: 20
functions:
  attack:
    handler: unused.handler
  php:
    handler: status.php
    runtime: php-82
""",
    "bootstrap": BOOTSTRAP,
    "status.php": r"""<?php return function ($e) {
    preg_match_all('/^Seccomp(?:_filters)?:\s*(\d+)/m', file_get_contents('/proc/self/status'), $m);
    return ['n' => $e['n'] ?? null, 'seccomp' => $m[1]];
};""",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    root = tmp_path_factory.mktemp("seccomp")
    n = Node(root / "data", extra_args=["--sandbox", "full"]).start()
    n.deploy(write_project(root / "kernel", PROJECT))
    yield n
    n.stop()


def attack(node, name):
    r = node.invoke("kernel-dev-attack", {"attack": name})
    assert r.status_code == 200, r.text
    assert "X-Amz-Function-Error" not in r.headers, r.text
    out = r.json()
    print(f"  {name}: {json.dumps(out)}")
    assert not (isinstance(out, dict) and "exception" in out), out
    return out


def refused(results: dict):
    """The calls that were not refused with EPERM/ENOSYS, with their errno (0: it worked)."""
    return {k: (v, errno.errorcode.get(v, v)) for k, v in results.items() if v not in REFUSED}


def test_user_namespaces_cannot_be_created(node):
    out = attack(node, "unshare")
    assert refused(out) == {}
    assert out["clone3"] == errno.ENOSYS  # glibc then falls back to clone, which is filtered


def test_unshare_command_fails(node):
    out = attack(node, "unshare_cmd")
    assert out["rc"] != 0 and out["out"] == "", out
    assert "Operation not permitted" in out["err"], out


def test_mount_is_refused_even_in_a_user_namespace(node):
    assert refused(attack(node, "mount")) == {}


def test_other_processes_cannot_be_traced_or_read(node):
    out = attack(node, "ptrace")
    assert out["read"] == "", out
    del out["read"]
    assert refused(out) == {}


def test_perf_events_are_refused(node):
    assert attack(node, "perf") in REFUSED


def test_privileged_kernel_calls_are_refused(node):
    assert refused(attack(node, "kernel")) == {}


def test_keyrings_are_refused(node):
    assert refused(attack(node, "keyring")) == {}


def test_io_uring_is_refused(node):
    assert refused(attack(node, "io_uring")) == {}


def test_userfaultfd_is_refused(node):
    assert attack(node, "userfaultfd") in REFUSED


def test_personality_only_the_safe_ones(node):
    out = attack(node, "personality")
    assert out["query"] == 0 and out["linux32"] == 0, out
    assert out["addr_no_randomize"] in REFUSED and out["read_implies_exec"] in REFUSED, out


def test_ordinary_work_runs_under_the_filter(node):
    out = attack(node, "normal")
    assert out["seccomp"][0] == "2" and int(out["seccomp"][1]) >= 1, out  # mode 2: filter
    assert out["fork"] == 7
    assert out["exec"] == "hi from /bin/sh"
    assert out["threads"] == 8
    assert out["socket"] == "ping"
    assert out["tmp"] == "data"
    assert out["sleep"] == "ok"


def test_php_keeps_answering_under_the_filter(node):
    for i in range(3):
        r = node.invoke("kernel-dev-php", {"n": i})
        assert r.status_code == 200 and "X-Amz-Function-Error" not in r.headers, r.text
        out = r.json()
        assert out["n"] == i
        assert out["seccomp"][0] == "2" and int(out["seccomp"][1]) >= 1, out


def test_doctor_reports_the_filter(node):
    r = subprocess.run([tusk_bin(), "doctor"], capture_output=True, text=True, timeout=60)
    line = next((l for l in r.stdout.splitlines() if "seccomp" in l), None)
    print(" ", line)
    assert line is not None, r.stdout
    assert line.split()[2] == "yes", line
