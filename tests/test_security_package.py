"""Packages and static files stay inside their boundary (issue 11, items 1, 5 and 8).

Everything here is what an attacker holding a deploy token (or a malicious package) would send:
hand-made zips uploaded over the raw API, specs the CLI would never build.
"""

import hashlib
import io
import os
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests

from conftest import Node, write_project

INDEX = b"<?php echo 'front controller';"


def fpm_spec(service, handler="public/index.php", path="*"):
    """The JSON the CLI sends for one php-82-fpm web app (crates/manifest ServiceSpec)."""
    return {
        "service": service,
        "stage": "dev",
        "region": "us-east-1",
        "package_patterns": [],
        "functions": [
            {
                "name": "web",
                "handler": handler,
                "runtime": "php-82-fpm",
                "kind": "php-fpm",
                "php_version": "8.2",
                "memory_size": 1024,
                "timeout": 6,
                "environment": {},
                "events": [{"type": "httpApi", "method": "*", "path": path}],
                "reserved_concurrency": None,
                "provisioned_concurrency": 0,
                "ephemeral_storage_size": 512,
            }
        ],
        "queues": [],
    }


def make_zip(entries):
    """entries: [(name, data bytes, unix mode incl. type bits)]; mode 0o120777 makes a link."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix: external_attr carries the mode
            if stat.S_IFMT(mode) == 0:
                mode |= stat.S_IFDIR if name.endswith("/") else stat.S_IFREG
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_STORED if stat.S_ISLNK(mode) else zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


def upload(node, data):
    sha = hashlib.sha256(data).hexdigest()
    r = requests.put(f"{node.url}/_tusk/packages/{sha}", data=data, headers=node.auth(), timeout=120)
    assert r.status_code in (200, 201), r.text
    return sha


def raw_deploy(node, data, spec):
    sha = upload(node, data)
    return requests.post(
        f"{node.url}/_tusk/deployments",
        json={"spec": spec, "package": sha},
        headers=node.auth(),
        timeout=120,
    ), sha


def error_of(r):
    try:
        return r.json().get("error") or r.text
    except ValueError:
        return r.text


def leftovers(node):
    """Staging directories an unpack left under DATA_DIR/code."""
    code = node.data_dir / "code"
    return [p.name for p in code.iterdir() if p.name.startswith(".unpack-")] if code.exists() else []


def assert_not_leaked(node, path, secret=None):
    r = requests.get(f"{node.url}{path}", timeout=10)
    assert r.status_code != 200 or (secret is not None and secret not in r.text), (path, r.status_code, r.text[:200])
    if secret is not None:
        assert secret not in r.text


# --- item 1: handlers and the document root stay inside the package ---------------------------


def test_absolute_handler_is_refused_and_host_files_never_served(fresh_node, tmp_path):
    n = fresh_node()
    # The old check only asked whether code_dir.join(handler) exists: an absolute handler
    # replaces the code dir, so a file the attacker knows exists is enough.
    host_script = Path("/tmp/tusk-sec-x.php")
    host_script.write_text("<?php echo 'host';")
    try:
        r, _ = raw_deploy(n, make_zip([("public/index.php", INDEX, 0o644)]), fpm_spec("absh", handler=str(host_script)))
        assert r.status_code == 400, r.text
        msg = error_of(r)
        assert "function web" in msg and f"handler `{host_script}`" in msg and "absolute" in msg, msg
        shadow = Path("/etc/shadow").read_text().splitlines()[0]
        assert_not_leaked(n, "/etc/shadow", shadow)
        assert_not_leaked(n, "/etc/passwd", "root:x:0:0")
    finally:
        host_script.unlink()


def test_dotdot_handler_is_refused(fresh_node):
    n = fresh_node()
    depth = "../" * 12
    for handler in [f"{depth}etc/passwd", "public/../../../../../../../../../../etc/passwd", "../x.php"]:
        r, _ = raw_deploy(n, make_zip([("public/index.php", INDEX, 0o644)]), fpm_spec("dotdot", handler=handler))
        assert r.status_code == 400, (handler, r.text)
        msg = error_of(r)
        assert "function web" in msg and "`..`" in msg, msg
    assert_not_leaked(n, "/passwd", "root:x:0:0")
    assert_not_leaked(n, "/etc/passwd", "root:x:0:0")


def test_symlink_leaving_the_package_is_refused(fresh_node):
    n = fresh_node()
    shadow = Path("/etc/shadow").read_text().splitlines()[0]
    for target in ["/", "../../../../../..", "/etc/shadow"]:
        data = make_zip([("public/index.php", INDEX, 0o644), ("public/sym", target.encode(), 0o120777)])
        r, sha = raw_deploy(n, data, fpm_spec("symout"))
        assert r.status_code == 400, (target, r.text)
        msg = error_of(r)
        assert f"package entry `public/sym` is a symlink to `{target}`, outside the package" in msg, msg
        assert "packages may only link inside themselves" in msg
        assert not (n.data_dir / "code" / sha).exists()
        assert leftovers(n) == []
        for path in ["/sym/etc/shadow", "/sym", f"/sym{n.data_dir}/admin.token"]:
            assert_not_leaked(n, path, shadow)
            assert_not_leaked(n, path, n.token)


def test_link_chain_leading_out_is_refused(fresh_node):
    n = fresh_node()
    # Each link alone stays inside; together `public/a` is the package's parent.
    data = make_zip(
        [
            ("public/index.php", INDEX, 0o644),
            ("public/x/l", b"../..", 0o120777),
            ("public/a", b"x/l/..", 0o120777),
        ]
    )
    r, _ = raw_deploy(n, data, fpm_spec("chain"))
    assert r.status_code == 400, r.text
    assert "package entry `public/a` is a symlink to `x/l/..`, outside the package" in error_of(r)
    assert_not_leaked(n, f"/a{n.data_dir}/admin.token", n.token)


def test_link_inside_the_package_is_kept_and_served(fresh_node):
    n = fresh_node()
    data = make_zip(
        [
            ("public/index.php", INDEX, 0o644),
            ("styles/a.css", b"body{color:red}", 0o644),
            ("public/latest.css", b"../styles/a.css", 0o120777),
        ]
    )
    r, sha = raw_deploy(n, data, fpm_spec("linkin"))
    assert r.status_code == 200, r.text
    assert os.readlink(n.data_dir / "code" / sha / "public" / "latest.css") == "../styles/a.css"
    r = requests.get(f"{n.url}/latest.css", timeout=10)
    assert r.status_code == 200 and r.text == "body{color:red}"
    assert r.headers["content-type"].startswith("text/css")


def test_static_files_never_follow_links_out_of_a_code_dir(fresh_node):
    """A code dir unpacked before this check (or tampered with) still cannot serve host files:
    static files are opened beneath the package root."""
    n = fresh_node()
    r, sha = raw_deploy(n, make_zip([("public/index.php", INDEX, 0o644), ("public/ok.txt", b"ok", 0o644)]), fpm_spec("planted"))
    assert r.status_code == 200, r.text
    public = n.data_dir / "code" / sha / "public"
    os.symlink("/", public / "root")
    os.symlink("/etc/passwd", public / "passwd.txt")
    (public / "private.txt").write_text("only root")
    (public / "private.txt").chmod(0o600)
    assert requests.get(f"{n.url}/ok.txt", timeout=10).text == "ok"
    assert_not_leaked(n, "/root/etc/passwd", "root:x:0:0")
    assert_not_leaked(n, "/passwd.txt", "root:x:0:0")
    assert_not_leaked(n, f"/root{n.data_dir}/admin.token", n.token)
    # Not readable by an instance's uid: not served either.
    assert_not_leaked(n, "/private.txt", "only root")


# --- item 5: nothing planted for local users ---------------------------------------------------


def test_unpacked_modes_are_normalised(fresh_node):
    n = fresh_node()
    data = make_zip(
        [
            ("public/index.php", INDEX, 0o644),
            ("public/suid.php", b"<?php", 0o4777),
            ("public/shared.txt", b"w", 0o666),
            ("bin/tool", b"#!/bin/sh\n", 0o2775),
            ("tmp/", b"", 0o1777),
        ]
    )
    r, sha = raw_deploy(n, data, fpm_spec("modes"))
    assert r.status_code == 200, r.text
    code = n.data_dir / "code" / sha

    def mode(rel):
        st = (code / rel).lstat()
        assert st.st_uid == os.geteuid(), rel
        return stat.S_IMODE(st.st_mode)

    assert mode("public/suid.php") == 0o755
    assert mode("public/shared.txt") == 0o644
    assert mode("public/index.php") == 0o644
    assert mode("bin/tool") == 0o755
    assert mode("tmp") == 0o755
    assert mode("") == 0o755
    for p in [code, *code.rglob("*")]:
        m = stat.S_IMODE(p.lstat().st_mode)
        assert m & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | 0o022) == 0, (p, oct(m))


def test_data_dir_is_private_even_when_created_open(tmp_path):
    data = tmp_path / "node" / "data"
    data.mkdir(parents=True)
    data.chmod(0o755)
    # An operator copied a token in with a loose mode; a crash left a staging directory.
    (data / "admin.token").write_text("token-copied-in-by-an-operator-0123456789")
    (data / "admin.token").chmod(0o644)
    (data / "code" / ".unpack-crashed").mkdir(parents=True)
    n = Node(data).start()
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "admin.token").stat().st_mode) == 0o600
        assert leftovers(n) == []
        for sub in ["code", "packages"]:
            st = (data / sub).stat()
            assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o022 == 0, sub
        # A restart fixes a mode loosened since.
        n.stop()
        data.chmod(0o777)
        n.start()
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        n.stop()


# --- item 8: what a deployer can consume ------------------------------------------------------


def zeros_zip(name, size):
    buf = io.BytesIO()
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
    return buf.getvalue()


def test_zip_bomb_is_refused_with_the_limit(fresh_node):
    n = fresh_node()
    data = zeros_zip("public/zeros.bin", 300 << 20)
    assert len(data) < 2 << 20
    r, sha = raw_deploy(n, data, fpm_spec("bomb"))
    assert r.status_code == 400, r.text
    assert "package is 300 MB unpacked; the limit is 250 MB, set with --max-package-mb" in error_of(r)
    assert not (n.data_dir / "code" / sha).exists()
    assert leftovers(n) == []


def test_sizes_are_counted_not_trusted(fresh_node):
    """An archive that declares 4 KB and inflates to 300 MB stops early."""
    n = fresh_node()
    data = bytearray(zeros_zip("public/liar.bin", 300 << 20))
    # Rewrite the declared uncompressed size to 4 KB wherever it is written: 8 bytes in the
    # local header's zip64 field, 4 bytes in the central directory.
    count = 0
    for width in (8, 4):
        real = (300 << 20).to_bytes(width, "little")
        i = data.find(real)
        while i != -1:
            data[i : i + width] = (4096).to_bytes(width, "little")
            count += 1
            i = data.find(real, i + width)
    assert count >= 2
    r, sha = raw_deploy(n, bytes(data), fpm_spec("liar"))
    assert r.status_code == 400, r.text
    msg = error_of(r)
    assert "public/liar.bin" in msg and "more than it declares" in msg, msg
    assert not (n.data_dir / "code" / sha).exists()
    assert leftovers(n) == []


def test_max_package_mb_flag(fresh_node):
    n = fresh_node(extra_args=["--max-package-mb", "1"])
    data = make_zip([("public/index.php", INDEX, 0o644), ("public/blob.bin", os.urandom(2 << 20), 0o644)])
    r, sha = raw_deploy(n, data, fpm_spec("big"))
    assert r.status_code == 400, r.text
    assert "package is 2 MB unpacked; the limit is 1 MB, set with --max-package-mb" in error_of(r)
    assert leftovers(n) == []
    # The upload itself is cut off once it is larger than any package within the limit.
    big = os.urandom(20 << 20)
    sha = hashlib.sha256(big).hexdigest()
    r = requests.put(f"{n.url}/_tusk/packages/{sha}", data=big, headers=n.auth(), timeout=120)
    assert r.status_code == 400, r.text
    assert "package upload is over 17 MB; the limit is 1 MB unpacked" in error_of(r), r.text
    assert not any(p.name.startswith(sha) for p in (n.data_dir / "packages").iterdir())
    # Under the limit it deploys.
    r, _ = raw_deploy(n, make_zip([("public/index.php", INDEX, 0o644)]), fpm_spec("small"))
    assert r.status_code == 200, r.text


def test_too_many_entries_is_refused(fresh_node):
    n = fresh_node()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(100_001):
            z.writestr(f"f/{i}", b"")
    r, _ = raw_deploy(n, buf.getvalue(), fpm_spec("many"))
    assert r.status_code == 400, r.text
    assert "package has 100001 entries; the limit is 100000" in error_of(r)


# --- the CLI path ------------------------------------------------------------------------------

WEB_YML = """
service: %s
provider:
  name: aws
  runtime: php-82-fpm
functions:
  web:
    handler: public/index.php
    events:
      - httpApi: '*'
"""


def test_cli_keeps_vendor_bin_links(fresh_node, tmp_path):
    n = fresh_node()
    project = write_project(
        tmp_path / "vb",
        {
            "serverless.yml": WEB_YML % "vendorbin",
            "public/index.php": "<?php echo 'hi';",
            "vendor/pkg/bin/tool": "#!/bin/sh\necho tool\n",
        },
    )
    (project / "vendor/pkg/bin/tool").chmod(0o755)
    (project / "vendor/bin").mkdir()
    os.symlink("../pkg/bin/tool", project / "vendor/bin/tool")
    os.symlink("../vendor/pkg/bin/tool", project / "public/tool.txt")
    n.deploy(project)
    (code,) = [p for p in (n.data_dir / "code").iterdir() if not p.name.startswith(".")]
    assert os.readlink(code / "vendor/bin/tool") == "../pkg/bin/tool"
    assert os.access(code / "vendor/bin/tool", os.X_OK)
    assert requests.get(f"{n.url}/tool.txt", timeout=10).text == "#!/bin/sh\necho tool\n"


def test_cli_refuses_links_leaving_the_project(fresh_node, tmp_path):
    n = fresh_node()
    project = write_project(
        tmp_path / "out",
        {"serverless.yml": WEB_YML % "linkout", "public/index.php": "<?php echo 'hi';"},
    )
    os.symlink("/etc", project / "public/etc")
    r = n.cli("deploy", str(project), check=False)
    assert r.returncode != 0
    assert "package entry `public/etc` is a symlink to `/etc`, outside the package" in r.stderr, r.stderr
    assert_not_leaked(n, "/etc/passwd", "root:x:0:0")


def test_full_disk_says_so(tmp_path):
    """ENOSPC while storing an upload or unpacking it names the cause and where to free space."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    n = Node(mnt / "data")
    try:
        n.start()
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize

        # Unpacking: the package fits, its unpacked copy does not.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            z.writestr("public/index.php", INDEX)
            z.writestr("public/blob.bin", os.urandom(int(free * 0.6)))
        data = buf.getvalue()
        r, sha = raw_deploy(n, data, fpm_spec("full"))
        assert r.status_code == 500, r.text
        msg = error_of(r)
        assert msg.startswith("the node's disk is full") and f"free space under the data directory ({n.data_dir})" in msg, msg
        assert leftovers(n) == []
        assert not (n.data_dir / "code" / sha).exists()

        # Uploading: more than is left.
        (n.data_dir / "packages" / f"{sha}.zip").unlink()
        big = os.urandom(int(free * 1.2))
        sha = hashlib.sha256(big).hexdigest()
        r = requests.put(f"{n.url}/_tusk/packages/{sha}", data=big, headers=n.auth(), timeout=120)
        assert r.status_code == 500, r.text
        assert error_of(r).startswith("the node's disk is full"), r.text
        assert [p.name for p in (n.data_dir / "packages").iterdir()] == []
    finally:
        n.stop()
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
