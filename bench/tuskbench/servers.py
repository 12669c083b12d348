"""The servers under test: a Tusk node, and the rival nginx + php-fpm (plus bare php-cgi)."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .clients import HttpConn, http_request
from .procs import cmdline, descendants, free_port, rss_kb

IS_ROOT = os.geteuid() == 0

# The `-d` flags Tusk gives php-cgi (crates/instance/src/fcgi.rs). The suite reads the real ones
# from a running Tusk php-cgi (`flags_of`) and gives those to php-fpm; this is the fallback.
WEB_FLAGS = ["opcache.validate_timestamps=0", "expose_php=0", "cgi.fix_pathinfo=0"]


def which(*names):
    for n in names:
        p = shutil.which(n) or (shutil.which(n, path="/usr/sbin:/sbin") if not n.startswith("/") else None)
        if p:
            return p
    raise RuntimeError(f"none of {names} found in PATH")


def flags_of(pid):
    """The `-d name=value` settings on a process's command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
    out = []
    for i, a in enumerate(argv):
        if a == b"-d" and i + 1 < len(argv):
            out.append(argv[i + 1].decode())
        elif a.startswith(b"-d") and len(a) > 2:
            out.append(a[2:].decode())
    return out


def wait_for(predicate, timeout, what, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"{what}: the process exited ({proc.returncode}). Log tail:\n{tail}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.02)
    tail = Path(log).read_text(errors="replace")[-3000:] if log else ""
    raise RuntimeError(f"{what}: not ready after {timeout}s. Log tail:\n{tail}")


def _unix_ready(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
    return True


class TuskNode:
    def __init__(self, procs, tusk_bin, root, args=()):
        self.procs = procs
        self.bin = str(tusk_bin)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.log = self.root / "node.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [str(a) for a in args]
        self.proc = None

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
        env.setdefault("RUST_LOG", "info")
        self.proc = self.procs.start(
            "tusk",
            [self.bin, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data), *self.args],
            self.log,
            env=env,
        )

        def healthy():
            c = HttpConn("127.0.0.1", self.port, timeout=2)
            try:
                return c.request(http_request("GET", "/_tusk/health", "127.0.0.1")).status == 200
            except (OSError, ConnectionError):
                return False
            finally:
                c.close()

        wait_for(healthy, 30, "tusk serve", self.proc, self.log)
        return self

    def sandbox(self):
        """What the node's log says about instance isolation (its `=> sandbox ...` line), if anything."""
        for line in self.log.read_text(errors="replace").splitlines():
            if "=> sandbox" in line:
                return line.split("=>", 1)[1].strip()
        return None

    def stop(self):
        if self.proc:
            self.procs.stop(self.proc)
            self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def token(self):
        return (self.data / "admin.token").read_text().strip()

    def cli(self, *args, timeout=600):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
        env.update(TUSK_SERVER=self.url, TUSK_TOKEN=self.token)
        p = subprocess.run([self.bin, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"tusk {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p.stdout

    def deploy(self, project):
        return self.cli("deploy", project)

    def remove(self, project):
        return self.cli("remove", project)

    def functions(self):
        """GET /_tusk/functions: [FunctionInfo]."""
        c = HttpConn("127.0.0.1", self.port)
        try:
            r = c.request(http_request("GET", "/_tusk/functions", "127.0.0.1", {"Authorization": f"Bearer {self.token}"}))
        finally:
            c.close()
        if r.status != 200:
            raise RuntimeError(f"GET /_tusk/functions: {r.status} {r.body[:200]!r}")
        return json.loads(r.body)["functions"]

    def error_lines(self, function, limit=5):
        """The function's log lines other than START/END/REPORT (the last `limit` distinct ones)."""
        out = []
        after = None
        c = HttpConn("127.0.0.1", self.port)
        try:
            for _ in range(200):  # pages of up to 10,000 lines
                q = f"since_ms=0&limit=10000" + (f"&after_id={after}" if after is not None else "")
                r = c.request(http_request("GET", f"/_tusk/functions/{function}/logs?{q}", "127.0.0.1",
                                           {"Authorization": f"Bearer {self.token}"}))
                if r.status != 200:
                    return out[-limit:] + [f"(logs: HTTP {r.status})"]
                page = json.loads(r.body)
                lines = page.get("lines", [])
                for line in lines:
                    text = line.get("line", "")
                    if text.startswith(("START ", "END ", "REPORT ")):
                        continue
                    if "RequestId: " in text:  # drop the per-request id so equal errors collapse
                        text = " ".join(w for w in text.split() if not re.fullmatch(r"[0-9a-f-]{36}", w))
                    if text not in out:
                        out.append(text)
                if not lines or page.get("last_id") in (None, after):
                    break
                after = page.get("last_id")
        except (OSError, ConnectionError, ValueError) as e:
            out.append(f"(cannot read logs: {e})")
        finally:
            c.close()
        return out[-limit:]

    def metrics(self):
        """{(metric name, function label or None): value} from /_tusk/metrics."""
        c = HttpConn("127.0.0.1", self.port)
        try:
            text = c.request(http_request("GET", "/_tusk/metrics", "127.0.0.1",
                                          {"Authorization": f"Bearer {self.token}"})).body.decode()
        finally:
            c.close()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name, _, labels = name_labels.partition("{")
            fn = None
            if 'function="' in labels:
                fn = labels.split('function="', 1)[1].split('"', 1)[0]
            if "state=" in labels:
                name += "_" + labels.split('state="', 1)[1].split('"', 1)[0]
            if "_bucket" in name:
                continue
            out[(name, fn)] = out.get((name, fn), 0.0) + float(value)
        return out

    def metric(self, name, function=None):
        m = self.metrics()
        if function is not None:
            return m.get((name, function), 0.0)
        return sum(v for (n, _), v in m.items() if n == name)

    def instances(self):
        """[(pid, kind, cmdline)] of the node's descendant processes; kind is `php-cgi` (web
        instance), `php` (function runtime) or `other` (from the executable's name)."""
        out = []
        for pid, _ in descendants(self.pid):
            try:
                exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
            except OSError:
                exe = ""
            kind = "php-cgi" if exe.startswith("php-cgi") else "php" if exe.startswith("php") else "other"
            out.append((pid, kind, cmdline(pid)))
        return out

    def rss_kb(self):
        return rss_kb(self.pid)


class PhpFpm:
    """php-fpm with one pool on a Unix socket: pm=static N, or pm=ondemand up to N."""

    def __init__(self, procs, root, name, workers, flags, pm="static"):
        self.procs = procs
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock = self.root / f"{name}.sock"
        self.conf = self.root / f"{name}-fpm.conf"
        self.log = self.root / f"{name}-fpm.log"
        self.workers = workers
        self.flags = list(flags)
        self.pm = pm
        self.proc = None

    def start(self):
        pm_lines = [f"pm = {self.pm}", f"pm.max_children = {self.workers}"]
        if self.pm == "ondemand":
            pm_lines.append("pm.process_idle_timeout = 600s")
        self.conf.write_text(
            "\n".join(
                [
                    "[global]",
                    f"error_log = {self.log}",
                    "daemonize = no",
                    "[bench]",
                    f"listen = {self.sock}",
                    "listen.mode = 0666",
                    "listen.backlog = 4096",
                    *pm_lines,
                    "pm.max_requests = 0",
                    "",
                ]
            )
        )
        argv = [which("php-fpm8.2", "php-fpm"), "-F", "-y", str(self.conf)]
        if IS_ROOT:
            argv.append("-R")
        for f in self.flags:
            argv += ["-d", f]
        self.proc = self.procs.start("php-fpm", argv, self.root / f"{self.sock.stem}-fpm.out", cwd=self.root)
        wait_for(lambda: self.sock.exists() and _unix_ready(self.sock), 20, "php-fpm", self.proc, self.log)
        if self.pm == "static":
            wait_for(lambda: len(self.worker_pids()) >= self.workers, 20, "php-fpm workers", self.proc, self.log)
        return self

    def worker_pids(self):
        return [pid for pid, _ in descendants(self.proc.pid)]

    def stop(self):
        if self.proc:
            self.procs.stop(self.proc)
            self.proc = None


class Nginx:
    """nginx (worker_processes auto) with the given `location` blocks on a loopback port."""

    def __init__(self, procs, root, name, locations):
        self.procs = procs
        self.root = Path(root) / f"{name}-nginx"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.locations = locations
        self.proc = None

    def start(self):
        r = self.root
        conf = r / "nginx.conf"
        user = "user root;\n" if IS_ROOT else ""
        conf.write_text(
            f"""{user}worker_processes auto;
pid {r}/nginx.pid;
error_log {r}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {r}/body;
  fastcgi_temp_path {r}/fastcgi;
  proxy_temp_path {r}/proxy;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
{self.locations}
  }}
}}
"""
        )
        self.proc = self.procs.start(
            "nginx", [which("nginx"), "-e", str(r / "error.log"), "-p", str(r), "-c", str(conf), "-g", "daemon off;"], r / "nginx.out"
        )

        def up():
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_for(up, 20, "nginx", self.proc, r / "error.log")
        return self

    def stop(self):
        if self.proc:
            self.procs.stop(self.proc)
            self.proc = None


def fastcgi_location(path, sock, script):
    """An nginx location passing every request to `script` on php-fpm (Debian's fastcgi_params)."""
    return f"""    location {path} {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME {script};
      fastcgi_param SCRIPT_NAME /{Path(script).name};
      fastcgi_param DOCUMENT_ROOT {Path(script).parent};
      fastcgi_pass unix:{sock};
    }}"""


def php_cgi_env(extra=None):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC", "HOME": "/tmp",
           "PHP_FCGI_CHILDREN": "0", "PHP_FCGI_MAX_REQUESTS": "2000000000"}
    env.update(extra or {})
    return env


def spawn_php_cgi(procs, sock_path, flags, cwd, log, env_extra=None):
    """A php-cgi worker the way Tusk starts one: the listening Unix socket as its stdin."""
    sock_path = Path(sock_path)
    if sock_path.exists():
        sock_path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(64)
    argv = [which("php-cgi8.2", "php-cgi")]
    for f in flags:
        argv += ["-d", f]
    try:
        return procs.start("php-cgi", argv, log, env=php_cgi_env(env_extra), cwd=cwd, stdin=listener.fileno())
    finally:
        listener.close()
