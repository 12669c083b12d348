#!/usr/bin/env bash
# Runs a rendered nats.conf the way the `nats` StatefulSet does, without a cluster: three
# nats-servers, each in a network namespace of its own (a pod), on a bridge, with the pods'
# DNS names (nats-N.nats-headless) in their /etc/hosts and POD_NAME set as the downward API
# does. Checks that the three form one cluster (2 routes each), that JetStream has a meta
# leader over 3 peers, that the probes' endpoints answer 200, that the client port takes the
# Secret's token and nothing else, and that the preStop command puts a server into lame duck
# mode. Only the data and pid paths are moved to a temporary directory.
# Needs root, iproute2 and nats-server; prints SKIP and exits 0 otherwise.
# Usage: nats-cluster.sh RENDERED.yaml      (scripts/validate-k8s.sh calls it)
set -euo pipefail

rendered=$1
skip() { echo "    SKIP nats cluster check: $*"; exit 0; }
[[ $(id -u) == 0 ]] || skip "needs root (network namespaces)"
command -v nats-server >/dev/null || skip "nats-server not installed"
command -v ip >/dev/null || skip "iproute2 not installed"
command -v curl >/dev/null || skip "curl not installed"

work=$(mktemp -d)
tag="tk$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for i in 0 1 2; do
    ip netns del "$tag-$i" 2>/dev/null || true
    rm -rf "/etc/netns/$tag-$i"
  done
  ip netns del "$tag-br" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The ConfigMap's nats.conf and the StatefulSet's environment, from the rendered objects.
python3 - "$rendered" "$work" <<'EOF'
import sys, yaml
objs = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
(cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-config"]
(sts,) = [o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats"]
(c,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "nats"]
open(f"{sys.argv[2]}/nats.conf", "w").write(cm["data"]["nats.conf"])
with open(f"{sys.argv[2]}/env", "w") as f:
    for e in c.get("env", []):
        if "value" in e:
            f.write(f"{e['name']}={e['value']}\n")
        elif "secretKeyRef" in e.get("valueFrom", {}):
            # The operator's Secret, generated as README.md says.
            f.write(f"{e['name']}=tusk-{'3e5f' * 16}\n")
EOF

ip netns add "$tag-br" 2>/dev/null || skip "cannot create network namespaces here"
ip -n "$tag-br" link add br0 type bridge
ip -n "$tag-br" link set br0 up
for i in 0 1 2; do
  ns="$tag-$i"
  ip netns add "$ns"
  ip link add v0 netns "$ns" type veth peer name "p$i" netns "$tag-br"
  ip -n "$tag-br" link set "p$i" master br0
  ip -n "$tag-br" link set "p$i" up
  # Addresses of these test hosts only: nothing else is on this bridge.
  ip -n "$ns" addr add "10.231.0.$((i + 1))/24" dev v0
  ip -n "$ns" link set v0 up
  ip -n "$ns" link set lo up
  mkdir -p "/etc/netns/$ns" "$work/data$i" "$work/run$i"
  {
    echo "127.0.0.1 localhost"
    for j in 0 1 2; do echo "10.231.0.$((j + 1)) nats-$j.nats-headless"; done
  } >"/etc/netns/$ns/hosts"
  sed -e "s|store_dir: /data|store_dir: $work/data$i|" -e "s|/var/run/nats/|$work/run$i/|" \
    "$work/nats.conf" >"$work/nats$i.conf"
  # shellcheck disable=SC2046
  ip netns exec "$ns" env $(cat "$work/env") POD_NAME="nats-$i" \
    nats-server -c "$work/nats$i.conf" >"$work/log$i" 2>&1 &
  pids+=($!)
done

get() { ip netns exec "$tag-$1" curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:8222$2" || true; }
routes() {
  ip netns exec "$tag-$1" curl -s -m 2 http://127.0.0.1:8222/routez |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["num_routes"])' 2>/dev/null || echo 0
}
ready=0
for _ in $(seq 1 60); do
  ready=0
  for i in 0 1 2; do
    if [[ $(get $i '/healthz') == 200 && $(get $i '/healthz?js-server-only=true') == 200 &&
      $(get $i '/healthz?js-enabled-only=true') == 200 && $(routes $i) == 2 ]]; then
      ready=$((ready + 1))
    fi
  done
  [[ $ready == 3 ]] && break
  sleep 0.5
done
if [[ $ready != 3 ]]; then
  echo "FAIL: only $ready of 3 nats servers became ready with 2 routes" >&2
  tail -n 20 "$work"/log* >&2
  exit 1
fi
meta_of() {
  ip netns exec "$tag-$1" curl -s -m 2 http://127.0.0.1:8222/jsz | python3 -c '
import json, sys
m = json.load(sys.stdin).get("meta_cluster", {})
if m.get("leader") and m.get("cluster_size"):
    print(m["leader"], m["cluster_size"])' 2>/dev/null || true
}
meta=$(meta_of 0)
[[ "$meta" == nats-?" 3" ]] || { echo "FAIL: no JetStream meta leader over 3 peers ($meta)" >&2; exit 1; }
echo "    nats cluster: 3 servers, 2 routes each, JetStream meta leader ${meta% *} of 3, probes 200"

# The client port requires the Secret's token (nats.conf `authorization`).
connect_as() {
  ip netns exec "$tag-0" python3 - "$1" <<'PY'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", 4222), timeout=5)
s.recv(4096)  # INFO
connect = {"verbose": False, "pedantic": False}
if sys.argv[1]:
    connect["auth_token"] = sys.argv[1]
s.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
print("ok" if s.recv(4096).startswith(b"PONG") else "refused")
PY
}
nats_token=$(sed -n 's/^NATS_TOKEN=//p' "$work/env")
[[ $(connect_as "$nats_token") == ok ]] || { echo "FAIL: NATS refused its own token" >&2; exit 1; }
[[ $(connect_as "") == refused ]] || { echo "FAIL: NATS accepted a client without the token" >&2; exit 1; }
[[ $(connect_as "wrong") == refused ]] || { echo "FAIL: NATS accepted a wrong token" >&2; exit 1; }
echo "    nats auth: the Secret's token accepted, none or a wrong one refused"

# The preStop hook's command (statefulset.yaml), against nats-1's pid file.
ip netns exec "$tag-1" nats-server --signal "ldm=$work/run1/nats.pid" >/dev/null
for _ in $(seq 1 20); do
  grep -q "Entering lame duck mode" "$work/log1" && break
  sleep 0.25
done
grep -q "Entering lame duck mode" "$work/log1" || { echo "FAIL: preStop did not start lame duck mode" >&2; exit 1; }
echo "    nats preStop: lame duck mode entered"
