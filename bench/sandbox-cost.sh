#!/usr/bin/env bash
# What the sandbox costs: cold starts and warm invocations with the sandbox off, on (full
# isolation; idle instances frozen after 50 ms, the default), on with instances frozen right
# after each invocation, on without the freezer, and on without the seccomp filter.
#
#   bench/sandbox-cost.sh [WARM_N] [COLD_N]      (run as root: full isolation needs it)
#   SANDBOX_COST_ONLY=seccomp bench/sandbox-cost.sh [WARM_N] [COLD_N]
#                                 (only the two nodes that differ by the seccomp filter)
#
# The four nodes run side by side and the samples are interleaved (off, on, ..., off, ...), so
# load from other work on the machine hits all of them alike.
# Cold: a function with BREF_LOOP_MAX=1, so every invocation starts a fresh instance; we report
# the REPORT line's Init Duration and the client's round trip. Warm: one instance, sequential
# invocations; we report the REPORT Duration and the client's round trip (Invoke API over
# keep-alive HTTP), plus a php-82-fpm web request. Medians and p90 over the samples.
set -euo pipefail
cd "$(dirname "$0")/.."
WARM_N=${1:-3000}
COLD_N=${2:-150}

cargo build --release --quiet --bin tusk
TUSK="$PWD/target/release/tusk"
work=$(mktemp -d /tmp/tusk-sandbox-cost.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/app/public"
cat >"$work/app/serverless.yml" <<'EOF'
service: cost
provider:
  name: aws
  runtime: php-82
functions:
  hello:
    handler: hello.php
  syscalls:
    handler: syscalls.php
  cold:
    handler: hello.php
    environment:
      BREF_LOOP_MAX: '1'
  web:
    handler: public/index.php
    runtime: php-82-fpm
    events:
      - httpApi: '*'
EOF
echo '<?php return fn ($event) => ["hello" => $event["name"] ?? "world"];' >"$work/app/hello.php"
echo '<?php echo "hello";' >"$work/app/public/index.php"
# 20,000 stat() calls: what a system call filter would cost, if it cost per call.
echo '<?php return function () { for ($i = 0; $i < 20000; $i++) { clearstatcache(); file_exists("/tmp"); } return 1; };' \
  >"$work/app/syscalls.php"

nodes=()
start() {
  local label=$1 mode=$2 freeze=$3 seccomp=${4:-on} port data
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  data="$work/data-$mode-${freeze:-default}-$seccomp"
  TUSK_FREEZE_AFTER_MS=$freeze TUSK_SECCOMP=$seccomp "$TUSK" serve --listen "127.0.0.1:$port" \
    --data-dir "$data" --sandbox "$mode" >"$work/node-$mode-${freeze:-default}-$seccomp.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/_tusk/health" >/dev/null && break; sleep 0.1; done
  TUSK_SERVER="http://127.0.0.1:$port" TUSK_TOKEN=$(cat "$data/admin.token") "$TUSK" deploy "$work/app" >/dev/null
  nodes+=("$label|http://127.0.0.1:$port|$data/admin.token")
}
if [ "${SANDBOX_COST_ONLY:-}" != seccomp ]; then
  start "--sandbox off" off ""
fi
start "--sandbox auto (full isolation; frozen after 50 ms idle)" auto ""
if [ "${SANDBOX_COST_ONLY:-}" != seccomp ]; then
  start "--sandbox auto, TUSK_FREEZE_AFTER_MS=0 (freeze at once)" auto 0
  start "--sandbox auto, TUSK_FREEZE_AFTER_MS=never" auto never
fi
# Everything of full isolation except the system call filter (the node reports itself degraded).
start "--sandbox auto, TUSK_SECCOMP=off (no seccomp filter)" auto "" off

echo "sandbox cost: $WARM_N warm, $COLD_N cold samples; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WARM_N" "$COLD_N" "${nodes[@]}" <<'EOF'
import base64, re, statistics, sys, time, requests
warm_n, cold_n = int(sys.argv[1]), int(sys.argv[2])
nodes = []
for spec in sys.argv[3:]:
    label, url, token = spec.split("|")
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {open(token).read().strip()}", "X-Amz-Log-Type": "Tail"})
    nodes.append({"label": label, "url": url, "s": s, "warm": [], "web": [], "cold": [], "sys": []})

def invoke(n, fn):
    t = time.perf_counter()
    r = n["s"].post(f"{n['url']}/2015-03-31/functions/{fn}/invocations", data=b'{"name":"b"}')
    dt = (time.perf_counter() - t) * 1000
    assert r.status_code == 200 and "X-Amz-Function-Error" not in r.headers, r.text
    log = base64.b64decode(r.headers["X-Amz-Log-Result"]).decode()
    d = float(re.search(r"\tDuration: ([\d.]+) ms", log).group(1))
    i = re.search(r"Init Duration: ([\d.]+) ms", log)
    return dt, d, float(i.group(1)) if i else None

def web(n):
    t = time.perf_counter()
    r = n["s"].get(n["url"] + "/")
    assert r.text == "hello"
    return (time.perf_counter() - t) * 1000

for n in nodes:
    for _ in range(50):
        invoke(n, "cost-dev-hello"); web(n)
for _ in range(warm_n):
    for n in nodes:
        n["warm"].append(invoke(n, "cost-dev-hello"))
        n["web"].append(web(n))
for _ in range(max(warm_n // 10, 20)):
    for n in nodes:
        n["sys"].append(invoke(n, "cost-dev-syscalls"))
for _ in range(cold_n):
    for n in nodes:
        n["cold"].append(invoke(n, "cost-dev-cold"))

def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(len(v) * p))]
def show(name, v):
    print(f"  {name:<34} median {statistics.median(v):8.3f} ms   p90 {q(v, 0.9):8.3f} ms")
for n in nodes:
    print(n["label"])
    show("warm invoke, client round trip", [w[0] for w in n["warm"]])
    show("warm invoke, REPORT Duration", [w[1] for w in n["warm"]])
    show("warm web request (php-cgi)", n["web"])
    show("warm, 20k stat(), REPORT Duration", [w[1] for w in n["sys"]])
    show("cold start, client round trip", [c[0] for c in n["cold"]])
    show("cold start, REPORT Init Duration", [c[2] for c in n["cold"] if c[2] is not None])
EOF
