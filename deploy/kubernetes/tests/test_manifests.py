"""What deploy/kubernetes promises, checked on the rendered output of every overlay.

scripts/validate-k8s.sh renders the overlays (and the production overlay with each component)
into TUSK_K8S_RENDERED and runs this file; schema validation happens there, these tests check
the meaning: probes, the token Secret, the NATS cluster, disruption budgets, the sandbox.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RENDERED = os.environ.get("TUSK_K8S_RENDERED")
if not RENDERED:
    pytest.exit("run scripts/validate-k8s.sh (it renders the overlays into TUSK_K8S_RENDERED)", 2)

FILES = sorted(Path(RENDERED).glob("*.yaml"))
NAMES = [f.stem for f in FILES]
K8S_DIR = Path(__file__).resolve().parent.parent
OVERLAYS = sorted(p.name for p in (K8S_DIR / "overlays").iterdir() if p.is_dir())
COMPONENTS = sorted(p.name for p in (K8S_DIR / "components").iterdir() if p.is_dir())


def load(path):
    objs = [o for o in yaml.safe_load_all(path.read_text()) if o]
    return objs


@pytest.fixture(params=FILES, ids=NAMES)
def rendered(request):
    return request.param.stem, load(request.param)


def one(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def container(workload, name):
    cs = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(cs) == 1
    return cs[0]


def env(c):
    return {e["name"]: e for e in c.get("env", [])}


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"]["labels"]


def named_port(c, port):
    if isinstance(port, int):
        return port
    (p,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return p


def test_every_overlay_and_component_was_rendered():
    expected = set(OVERLAYS) | {f"production+{c}" for c in COMPONENTS}
    assert expected <= set(NAMES), f"not rendered: {expected - set(NAMES)}"
    assert {"dev", "production"} <= set(OVERLAYS)


def test_everything_in_one_namespace(rendered):
    _, objs = rendered
    (ns,) = of_kind(objs, "Namespace")
    for o in objs:
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == ns["metadata"]["name"], o["metadata"]["name"]


def test_tusk_probes_hit_the_health_endpoint_on_the_listen_port(rendered):
    _, objs = rendered
    dep = one(objs, "Deployment", "tusk")
    c = container(dep, "tusk")
    listen = env(c)["TUSK_LISTEN"]["value"]
    assert listen.startswith("0.0.0.0:"), "must listen on the pod IP, not loopback"
    paths = {"readinessProbe": "/_tusk/health/ready", "livenessProbe": "/_tusk/health", "startupProbe": "/_tusk/health"}
    for probe, path in paths.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert named_port(c, get["port"]) == int(listen.rsplit(":", 1)[1]), probe
    # Liveness must be more patient than readiness: a busy node is unready, not dead.
    live, ready = c["livenessProbe"], c["readinessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > ready["periodSeconds"] * ready["failureThreshold"]


def test_admin_token_comes_from_a_secret_and_no_secret_is_committed(rendered):
    _, objs = rendered
    c = container(one(objs, "Deployment", "tusk"), "tusk")
    token = env(c)["TUSK_ADMIN_TOKEN"]
    assert "value" not in token
    ref = token["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "tusk-admin-token", "key": "token"}
    assert not ref.get("optional"), "a node without the shared token must not start"
    assert of_kind(objs, "Secret") == [], "the operator creates Secrets; none may be rendered"


def test_nats_requires_the_token_tusk_reads_from_the_same_secret(rendered):
    _, objs = rendered
    sts = one(objs, "StatefulSet", "nats")
    nats = container(sts, "nats")
    conf = one(objs, "ConfigMap", "nats-config")["data"]["nats.conf"]
    m = re.search(r"^authorization\s*\{\s*token:\s*\$([A-Z_]+)\s*\}", conf, re.M)
    assert m, "nats.conf must require a client token: " + conf
    server_token = env(nats)[m.group(1)]
    assert "value" not in server_token
    ref = server_token["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "tusk-nats-token", "key": "token"}
    assert not ref.get("optional"), "NATS must not start without its token"
    tusk = container(one(objs, "Deployment", "tusk"), "tusk")
    client_token = env(tusk)["TUSK_CLUSTER_TOKEN"]
    assert "value" not in client_token
    assert client_token["valueFrom"]["secretKeyRef"] == ref
    # Credentials only through the environment, never in the URL of the manifests.
    assert "@" not in env(tusk)["TUSK_CLUSTER"]["value"]


def test_nats_is_three_jetstream_servers_with_volumes_and_routes(rendered):
    _, objs = rendered
    sts = one(objs, "StatefulSet", "nats")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    headless = one(objs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"].get("publishNotReadyAddresses") is True
    assert selects({"matchLabels": headless["spec"]["selector"]}, pod_labels(sts))

    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    c = container(sts, "nats")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    data_path = mounts[claim["metadata"]["name"]]

    (config_vol,) = [v for v in spec["template"]["spec"]["volumes"] if "configMap" in v]
    cm = one(objs, "ConfigMap", config_vol["configMap"]["name"])
    conf = cm["data"]["nats.conf"]
    assert mounts[config_vol["name"]] + "/nats.conf" in c["command"]
    assert re.search(r"jetstream\s*\{[^}]*store_dir:\s*" + re.escape(data_path), conf), \
        "JetStream must store on the PersistentVolume"
    routes = re.findall(r"nats://([\w.-]+):6222", conf)
    sts_name = sts["metadata"]["name"]
    assert sorted(routes) == [f"{sts_name}-{i}.{spec['serviceName']}" for i in range(3)]
    assert "server_name: $POD_NAME" in conf
    assert env(c)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for var in re.findall(r"\$([A-Z_]+)", conf):
        assert var in env(c), f"nats.conf uses ${var}, which the pod does not set"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["path"].startswith("/healthz")


def test_tusk_reaches_nats_through_the_client_service(rendered):
    _, objs = rendered
    c = container(one(objs, "Deployment", "tusk"), "tusk")
    urls = env(c)["TUSK_CLUSTER"]["value"].split(",")
    sts = one(objs, "StatefulSet", "nats")
    for url in urls:
        m = re.fullmatch(r"nats://([\w.-]+):(\d+)", url)
        assert m, url
        host, port = m.group(1), int(m.group(2))
        # `nats` (the client Service) or `nats-N.nats-headless` (a pod of the headless one)
        svc = one(objs, "Service", host.split(".")[1] if "." in host else host)
        assert port in [p["port"] for p in svc["spec"]["ports"]]
        assert selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(sts))


def test_disruption_budgets_cover_tusk_and_nats(rendered):
    _, objs = rendered
    pdbs = of_kind(objs, "PodDisruptionBudget")
    for name in ("tusk", "nats"):
        workload = one(objs, "Deployment" if name == "tusk" else "StatefulSet", name)
        covering = [p for p in pdbs if selects(p["spec"]["selector"], pod_labels(workload))]
        assert len(covering) == 1, name
    nats_pdb = [p for p in pdbs if selects(p["spec"]["selector"], pod_labels(one(objs, "StatefulSet", "nats")))][0]
    # Two of three keep the JetStream quorum: never allow more than one down.
    assert nats_pdb["spec"].get("maxUnavailable") == 1 or nats_pdb["spec"].get("minAvailable") == 2


def test_hpa_scales_the_deployment_on_cpu(rendered):
    _, objs = rendered
    hpa = one(objs, "HorizontalPodAutoscaler", "tusk")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tusk"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Utilization is relative to the request: the container must have one.
    c = container(one(objs, "Deployment", "tusk"), "tusk")
    assert c["resources"]["requests"]["cpu"]


def test_service_and_ingress_reach_the_tusk_pods(rendered):
    _, objs = rendered
    dep = one(objs, "Deployment", "tusk")
    c = container(dep, "tusk")
    svc = one(objs, "Service", "tusk")
    assert selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(dep))
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    for p in svc["spec"]["ports"]:
        named_port(c, p["targetPort"])
    ing = one(objs, "Ingress", "tusk")
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "tusk"
            assert backend["port"]["name"] in port_names


def test_every_container_has_requests_and_a_memory_limit(rendered):
    _, objs = rendered
    for w in of_kind(objs, "Deployment") + of_kind(objs, "StatefulSet"):
        for c in w["spec"]["template"]["spec"]["containers"]:
            res = c["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"], c["name"]
            assert res["limits"]["memory"], c["name"]


def test_sandbox_security_context(rendered):
    name, objs = rendered
    dep = one(objs, "Deployment", "tusk")
    pod = dep["spec"]["template"]["spec"]
    sc = container(dep, "tusk")["securityContext"]
    sandbox = env(container(dep, "tusk"))["TUSK_SANDBOX"]["value"]
    assert pod["automountServiceAccountToken"] is False
    (ns,) = of_kind(objs, "Namespace")
    level = ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    if name.endswith("+degraded"):
        assert level == "restricted"
        assert sandbox == "auto", "degraded must not ask for full isolation"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["allowPrivilegeEscalation"] is False
        return
    assert level == "privileged", "Pod Security admits CAP_SYS_ADMIN only at `privileged`"
    assert pod["securityContext"]["runAsUser"] == 0, "the sandbox is set up by root"
    if name.endswith("+privileged"):
        assert sc["privileged"] is True
    else:
        assert sc.get("privileged") is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert set(sc["capabilities"]["add"]) == {"SYS_ADMIN", "SETUID", "SETGID", "KILL", "NET_ADMIN", "DAC_OVERRIDE"}
        assert sc["appArmorProfile"]["type"] == "Unconfined"
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    if name.startswith("production"):
        assert sandbox == "full", "production refuses to run tenants unisolated"


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server not installed")
def test_rendered_nats_config_is_accepted_by_nats_server(rendered, tmp_path):
    _, objs = rendered
    sts = one(objs, "StatefulSet", "nats")
    c = container(sts, "nats")
    conf = one(objs, "ConfigMap", "nats-config")["data"]["nats.conf"]
    (tmp_path / "nats.conf").write_text(conf)
    variables = {k: e["value"] for k, e in env(c).items() if "value" in e}
    # Secrets as README.md tells the operator to generate them.
    secrets = {k: "tusk-" + "3e5f" * 16 for k, e in env(c).items() if "secretKeyRef" in e.get("valueFrom", {})}
    run_env = {"PATH": os.environ["PATH"], "POD_NAME": "nats-0", **variables, **secrets}
    out = subprocess.run(["nats-server", "-t", "-c", str(tmp_path / "nats.conf")],
                         env=run_env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pod_security_level_of_the_namespace_admits_every_pod(rendered):
    """The namespace's enforce label must admit what is in it; `restricted` is checked here
    (the rules a pod spec can break: non-root, no escalation, all capabilities dropped,
    a seccomp profile); `privileged` admits anything."""
    _, objs = rendered
    (ns,) = of_kind(objs, "Namespace")
    if ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] != "restricted":
        return
    for w in of_kind(objs, "Deployment") + of_kind(objs, "StatefulSet"):
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            where = f"{w['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged") in (None, False), where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert set(sc["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}, where
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
            assert seccomp in ("RuntimeDefault", "Localhost"), where
            assert sc.get("appArmorProfile", {}).get("type") != "Unconfined", where


def test_nats_network_policy_lets_tusk_in_and_the_servers_route(rendered):
    _, objs = rendered
    sts = one(objs, "StatefulSet", "nats")
    tusk = one(objs, "Deployment", "tusk")
    pol = one(objs, "NetworkPolicy", "nats")
    assert selects(pol["spec"]["podSelector"], pod_labels(sts))
    assert pol["spec"]["policyTypes"] == ["Ingress"]
    c = container(sts, "nats")

    def allowed(labels):
        ports = set()
        for rule in pol["spec"]["ingress"]:
            if any(selects(peer["podSelector"], labels) for peer in rule["from"]):
                ports |= {named_port(c, p["port"]) for p in rule["ports"]}
        return ports

    assert allowed(pod_labels(tusk)) == {4222}
    assert allowed(pod_labels(sts)) == {6222}
    assert allowed({"app": "something-else"}) == set()
