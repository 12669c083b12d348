#!/usr/bin/env bash
# Tries the runtime stage of deploy/container/Containerfile without a container engine:
# debootstraps Debian bookworm with the packages the Containerfile installs (read from it),
# adds the tusk binary and the entrypoint where the image has them, and starts the node in it
# the way the production pod starts it: its own mount and PID namespaces, pivot_root into the
# image's filesystem, a cgroup of its own bound read-only at /sys/fs/cgroup/<controller> (as
# a container runtime does on cgroup v1; the node must not see other nodes' cgroups: from its
# PID namespace it cannot tell that they are alive, and would reap them), only the
# capabilities of deploy/kubernetes/base/tusk/deployment.yaml, TUSK_SANDBOX=full, the
# entrypoint as PID 1's parent (tusk then runs as PID 1). Then deploys and invokes
# examples/hello-function and examples/web-app through it, and stops it with SIGTERM.
#
# Not a build of the image (no build stage: it uses TUSK_BIN, default target/debug/tusk, built
# on this Debian 12 machine), and the network is the host's (the node listens on loopback).
# Needs root, debootstrap and Debian's package mirror; takes a few minutes the first time.
# Usage: deploy/container/try-rootfs.sh [ROOTFS_DIR]   (kept and reused; default under /tmp)
set -euo pipefail
cd "$(dirname "$0")/../.."

[[ $(id -u) == 0 ]] || { echo "needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
tusk_bin=${TUSK_BIN:-target/debug/tusk}
[[ -x $tusk_bin ]] || { echo "no tusk binary at $tusk_bin (cargo build --bin tusk)" >&2; exit 1; }
rootfs=${1:-/tmp/tusk-rootfs}

# The packages of the Containerfile's `apt-get install` line(s).
packages=$(sed -n '/apt-get install/,/&&/p' deploy/container/Containerfile |
  tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | grep -vE '^(apt-get|install|rm)$' | paste -sd, -)
if [[ ! -x $rootfs/usr/bin/php8.2 ]]; then
  echo "==> debootstrap bookworm into $rootfs with: $packages"
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1 ||
    { tail -20 "$rootfs.log" >&2; exit 1; }
fi
install -m 0755 "$tusk_bin" "$rootfs/usr/local/bin/tusk"
install -m 0755 deploy/container/entrypoint.sh "$rootfs/usr/local/bin/tusk-entrypoint"
rm -rf "$rootfs/var/lib/tusk"
mkdir -p "$rootfs/var/lib/tusk" "$rootfs/.oldroot"

# The container's capabilities, from the Deployment.
caps=$(python3 - <<'EOF'
import yaml
d = yaml.safe_load(open("deploy/kubernetes/base/tusk/deployment.yaml"))
c = d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
assert c["drop"] == ["ALL"]
print("-all," + ",".join("+" + x.lower() for x in c["add"]))
EOF
)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=$(openssl rand -hex 32)
log=$(mktemp)
# A cgroup of its own in each v1 hierarchy the sandbox uses, like a container's.
# (cgroup v2 hosts: not handled here; see the README's "Not verified".)
cg_name="tusk-try-$$"
cg_dirs=()
for ctrl in memory cpu cpuacct pids freezer; do
  mp="/sys/fs/cgroup/$ctrl"
  grep -qs " $mp cgroup " <(awk '{print "", $5, $(NF-2), ""}' /proc/self/mountinfo) || continue
  own=$(awk -F: -v c="$ctrl" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' /proc/self/cgroup)
  dir="$mp${own%/}/$cg_name"
  mkdir -p "$dir"
  cg_dirs+=("$ctrl:$dir")
done
[[ ${#cg_dirs[@]} -gt 0 ]] || { echo "no cgroup v1 hierarchies found (cgroup v2 host?)" >&2; exit 1; }
echo "==> starting the node in $rootfs (capabilities $caps), log in $log"
unshare --mount --pid --fork --propagation private bash -c '
  set -e
  rootfs=$1 caps=$2 port=$3 token=$4
  shift 4
  for d in "$@"; do echo $$ >"${d#*:}/cgroup.procs"; done
  mount --bind "$rootfs" "$rootfs"
  mount -t proc proc "$rootfs/proc"
  # A fresh sysfs, as a runtime mounts it (not the host /sys with its cgroup mounts).
  mount -t sysfs -o ro sysfs "$rootfs/sys"
  # Only this node'"'"'s cgroups, read-only, as the runtime mounts them.
  mount -t tmpfs -o mode=755 cgroup "$rootfs/sys/fs/cgroup"
  for d in "$@"; do
    mkdir -p "$rootfs/sys/fs/cgroup/${d%%:*}"
    mount --bind "${d#*:}" "$rootfs/sys/fs/cgroup/${d%%:*}"
    mount -o remount,bind,ro "$rootfs/sys/fs/cgroup/${d%%:*}"
  done
  mount --rbind /dev "$rootfs/dev"
  cd "$rootfs"
  pivot_root . .oldroot
  exec chroot . sh -c "umount -l /.oldroot && exec setpriv --bounding-set $caps -- env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TUSK_LISTEN=127.0.0.1:$port TUSK_DATA_DIR=/var/lib/tusk TUSK_SANDBOX=full \
    TUSK_ADMIN_TOKEN=$token RUST_LOG=info /usr/local/bin/tusk-entrypoint serve"
' try-rootfs "$rootfs" "$caps" "$port" "$token" "${cg_dirs[@]}" >"$log" 2>&1 &
runner=$!
node_pid() { pgrep -P "$runner" -x tusk || true; }
stop() {
  local pid
  pid=$(node_pid)
  [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$runner" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$runner" 2>/dev/null || true
  remove_cgroups
}
remove_cgroups() {
  local d sub
  for d in "${cg_dirs[@]}"; do
    for sub in "${d#*:}"/*/; do [[ -d $sub ]] && rmdir "$sub" 2>/dev/null; done
    for _ in $(seq 1 20); do rmdir "${d#*:}" 2>/dev/null && break; sleep 0.1; done
  done
  return 0
}
trap stop EXIT

export TUSK_SERVER=http://127.0.0.1:$port TUSK_TOKEN=$token
for _ in $(seq 1 80); do
  curl -sf "$TUSK_SERVER/_tusk/health" >/dev/null && break
  kill -0 "$runner" 2>/dev/null || { cat "$log" >&2; echo "FAIL: the node exited" >&2; exit 1; }
  sleep 0.25
done
grep -q "sandbox: full isolation" "$log" || { cat "$log" >&2; echo "FAIL: not fully isolated" >&2; exit 1; }
echo "    sandbox: full isolation; PHP: $(grep -o 'found PHP.*' "$log" | head -1)"
"$tusk_bin" deploy examples/hello-function >/dev/null
out=$("$tusk_bin" invoke hello-function-dev-hello --data '{"name":"image"}')
grep -q '"hello": "image"' <<<"$out" || { echo "FAIL: invoke said $out" >&2; exit 1; }
curl -sf "$TUSK_SERVER/hello?name=image" | grep -q 'Hello image!' || { echo "FAIL: /hello" >&2; exit 1; }
"$tusk_bin" deploy examples/web-app >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' "$TUSK_SERVER/")
[[ $code == 200 ]] || { echo "FAIL: web-app answered $code" >&2; exit 1; }
echo "    hello-function invoked, its route and the web app (php-cgi) answer"
pid=$(node_pid)
[[ -n $pid ]] && kill -TERM "$pid"
for _ in $(seq 1 40); do kill -0 "$runner" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$runner" 2>/dev/null; then echo "FAIL: SIGTERM did not stop the node" >&2; exit 1; fi
grep -q "shutting down" "$log" && echo "    SIGTERM: the node shut down"
trap - EXIT
remove_cgroups
echo "ok"
