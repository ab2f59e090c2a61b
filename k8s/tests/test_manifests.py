"""The manifests in k8s/: they render, they are valid Kubernetes objects of the target version,
and they keep cola's policies (every workload spread across nodes, bounded, probed, non-root,
read-only; least-privilege RBAC; default-deny networking; no secret values anywhere)."""

import json
import os
import pathlib
import re
import subprocess

import kubernetes_validate
import pytest

from conftest import OVERLAYS

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Custom resources: validated against their project's schema (validate_crds.mjs), not
# Kubernetes'.
CUSTOM_API_GROUPS = ("keda.sh/",)
COLA_SERVICES = ("cola-gateway", "cola-middleware")


def objects(rendered, overlay, kind=None, name=None):
    return [
        o
        for o in rendered[overlay]
        if (kind is None or o["kind"] == kind) and (name is None or o["metadata"]["name"] == name)
    ]


def one(rendered, overlay, kind, name):
    found = objects(rendered, overlay, kind, name)
    assert len(found) == 1, f"{overlay}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(rendered, overlay):
    found = [o for o in rendered[overlay] if o["kind"] in WORKLOAD_KINDS]
    assert found, f"{overlay} renders no workload"
    return found


def ident(o):
    return f"{o['kind']}/{o['metadata'].get('namespace', '-')}/{o['metadata']['name']}"


def env_of(container, rendered, overlay):
    """A container's environment: its env values and every key of the ConfigMaps it loads."""
    env = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(one(rendered, overlay, "ConfigMap", ref["name"])["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


# --- rendering and schema ---------------------------------------------------------------------


def is_custom(o):
    return o["apiVersion"].startswith(CUSTOM_API_GROUPS)


def validate_custom(objects_):
    """validate_crds.mjs on `objects_`: its exit code and what it said."""
    done = subprocess.run(
        ["node", str(pathlib.Path(__file__).parent / "validate_crds.mjs")],
        input=json.dumps(objects_),
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_the_target_version(rendered, overlay, k8s_version):
    assert len(rendered[overlay]) > 20
    for o in rendered[overlay]:
        if is_custom(o):
            continue
        try:
            kubernetes_validate.validate(o, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{overlay}: {ident(o)}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_custom_resource_is_valid_for_its_project(rendered, overlay):
    custom = [o for o in rendered[overlay] if is_custom(o)]
    code, said = validate_custom(custom)
    assert code == 0, f"{overlay}: {said}"


def test_the_custom_resource_check_refuses_what_keda_would():
    # A trigger without its type, and a replica count of the wrong type.
    broken = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "broken", "namespace": "cola"},
        "spec": {
            "scaleTargetRef": {"name": "cola-middleware"},
            "maxReplicaCount": "ten",
            "triggers": [{"metadata": {"stream": "COLA"}}],
        },
    }
    code, said = validate_custom([broken])
    assert code == 1, said
    assert "ScaledObject/cola/broken" in said


def test_the_keda_overlay_scales_the_middleware_on_the_jobs_waiting(rendered):
    scaled = one(rendered, "keda", "ScaledObject", "cola-middleware")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cola-middleware"}
    assert spec["minReplicaCount"] >= 2
    jetstream = [t for t in spec["triggers"] if t["type"] == "nats-jetstream"]
    assert len(jetstream) == 1
    meta = jetstream[0]["metadata"]
    # The stream and consumer the middleware pulls from (wire/src/names.rs), in the global
    # account, through the monitoring port of every NATS node (the headless Service).
    names = (pathlib.Path(__file__).resolve().parents[2] / "wire/src/names.rs").read_text()
    assert f'pub const STREAM: &str = "{meta["stream"]}";' in names
    assert f'pub const CONSUMER: &str = "{meta["consumer"]}";' in names
    assert meta["account"] == "$G"
    host, port = meta["natsServerMonitoringEndpoint"].rsplit(":", 1)
    headless = one(rendered, "keda", "Service", "cola-nats-headless")
    assert host == "cola-nats-headless.cola.svc.cluster.local"
    assert int(port) in [p["port"] for p in headless["spec"]["ports"]]
    nats_config = one(rendered, "keda", "ConfigMap", "cola-nats-config")["data"]["nats.conf"]
    assert f"http: 0.0.0.0:{port}" in nats_config
    assert "accounts" not in nats_config
    assert int(meta["lagThreshold"]) > 0
    assert [t["type"] for t in spec["triggers"]].count("cpu") == 1
    # KEDA makes its own HPA: the CPU one of the base is gone, the gateway's stays.
    assert objects(rendered, "keda", "HorizontalPodAutoscaler", "cola-middleware") == []
    one(rendered, "keda", "HorizontalPodAutoscaler", "cola-gateway")
    # KEDA's namespace reaches NATS's monitoring port, and nothing else of NATS.
    policy = one(rendered, "keda", "NetworkPolicy", "cola-nats-monitoring-keda")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "cola-nats"}}
    assert policy["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}],
        "ports": [{"protocol": "TCP", "port": int(port)}],
    }]


def test_secret_templates_are_valid_for_the_target_version(secret_templates, k8s_version):
    assert len(secret_templates) >= 4
    for path, o in secret_templates:
        assert o["kind"] == "Secret", path
        kubernetes_validate.validate(o, k8s_version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_names_are_unique(rendered, overlay):
    seen = [ident(o) for o in rendered[overlay]]
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaced_objects_live_in_colas_namespaces(rendered, overlay):
    for o in rendered[overlay]:
        if o["kind"] == "Namespace":
            continue
        assert o["metadata"].get("namespace") in ("cola", "cola-executors"), ident(o)


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_rendered(rendered, overlay):
    # Secrets are created from the templates; applying an overlay never overwrites one.
    assert objects(rendered, overlay, "Secret") == []


def test_no_secret_template_carries_a_value(secret_templates):
    for path, o in secret_templates:
        assert "data" not in o, f"{path}: use stringData with empty values"
        values = o.get("stringData", {})
        assert values, f"{path}: a template names its keys"
        for key, value in values.items():
            assert value == "", f"{path}: {key} carries a value"


def test_every_secret_a_workload_reads_has_a_template(rendered, secret_templates):
    templates = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for _, o in secret_templates}
    for overlay in OVERLAYS:
        for w in workloads(rendered, overlay):
            ns = w["metadata"]["namespace"]
            for c in w["spec"]["template"]["spec"]["containers"]:
                for var in c.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        t = templates.get((ns, ref["name"]))
                        assert t, f"{ident(w)} reads Secret {ref['name']} with no template"
                        assert ref["key"] in t["stringData"], f"{ref['name']} has no {ref['key']}"
    # The one the middleware's executor Pods read, in the executor namespace.
    executor = templates[("cola-executors", "cola-executor-nats")]
    config = one(rendered, "prod", "ConfigMap", "cola-config")["data"]
    assert config["COLA_KUBE_NATS_SECRET"] == "cola-executor-nats"
    assert config["COLA_KUBE_NATS_SECRET_KEY"] in executor["stringData"]


# ConfigMap keys that name a Secret (never hold one).
SECRET_REFERENCES = {"COLA_KUBE_NATS_SECRET", "COLA_KUBE_NATS_SECRET_KEY"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_spelled_out_in_plain_configuration(rendered, overlay):
    for cm in objects(rendered, overlay, "ConfigMap"):
        for key, value in cm.get("data", {}).items():
            if key not in SECRET_REFERENCES:
                assert not any(w in key.lower() for w in ("secret", "password", "token")), f"{ident(cm)}: {key}"
            assert not ("://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]), (
                f"{ident(cm)}: {key} holds credentials"
            )
    for w in workloads(rendered, overlay):
        for c in w["spec"]["template"]["spec"]["containers"]:
            for var in c.get("env", []):
                if any(s in var["name"] for s in ("PASSWORD", "SECRET", "NATS_URL")):
                    assert "value" not in var, f"{ident(w)}: {var['name']} must come from a Secret"


# --- workloads --------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_spread_across_nodes(rendered, overlay):
    for w in workloads(rendered, overlay):
        pod = w["spec"]["template"]
        constraints = pod["spec"].get("topologySpreadConstraints", [])
        by_host = [c for c in constraints if c["topologyKey"] == "kubernetes.io/hostname"]
        assert by_host, f"{ident(w)} has no spread across nodes"
        c = by_host[0]
        assert c["maxSkew"] == 1, ident(w)
        # The stateless Deployments never share a node while another one has room; NATS (3 on
        # fewer nodes, and a node's loss must not leave a replica unscheduled) spreads softly.
        hard = "DoNotSchedule" if w["kind"] == "Deployment" else "ScheduleAnyway"
        assert c["whenUnsatisfiable"] == hard, ident(w)
        selector = c["labelSelector"]["matchLabels"]
        labels = pod["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{ident(w)}: the spread selects other Pods"
        if w["kind"] == "Deployment":
            # A rollout's new Pods are spread among themselves, not skewed by the old ones.
            assert c.get("matchLabelKeys") == ["pod-template-hash"], ident(w)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(rendered, overlay):
    for w in workloads(rendered, overlay):
        spec = w["spec"]["template"]["spec"]
        for c in spec["containers"] + spec.get("initContainers", []):
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(kind, {}), f"{ident(w)}/{c['name']}: {kind}.{resource}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_liveness_and_readiness_probes(rendered, overlay):
    for w in workloads(rendered, overlay):
        for c in w["spec"]["template"]["spec"]["containers"]:
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in c, f"{ident(w)}/{c['name']}: no {probe}"
                assert c[probe].get("httpGet") or c[probe].get("exec") or c[probe].get("tcpSocket")
            if w["metadata"]["name"] in COLA_SERVICES:
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", ident(w)
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", ident(w)
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                for probe in ("livenessProbe", "readinessProbe"):
                    assert c[probe]["httpGet"]["port"] in ports, f"{ident(w)}: {probe} port"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_runs_non_root_read_only_and_unprivileged(rendered, overlay):
    for w in workloads(rendered, overlay):
        spec = w["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, ident(w)
        assert pod_sc.get("runAsUser", 0) != 0, ident(w)
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", ident(w)
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), f"{ident(w)}: {flag}"
        for v in spec.get("volumes", []):
            assert "hostPath" not in v, f"{ident(w)}: hostPath volume {v['name']}"
            if "emptyDir" in v:
                assert "sizeLimit" in v["emptyDir"], f"{ident(w)}: unbounded emptyDir {v['name']}"
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            where = f"{ident(w)}/{c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert not sc.get("privileged"), where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_middleware_gets_an_api_token(rendered, overlay):
    for w in workloads(rendered, overlay):
        spec = w["spec"]["template"]["spec"]
        name = w["metadata"]["name"]
        assert spec.get("serviceAccountName") == name, f"{ident(w)} runs as its own account"
        mounted = spec.get("automountServiceAccountToken")
        assert mounted is (name == "cola-middleware"), ident(w)
    for sa in objects(rendered, overlay, "ServiceAccount"):
        assert sa.get("automountServiceAccountToken") is (sa["metadata"]["name"] == "cola-middleware"), ident(sa)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_disruption_budget(rendered, overlay):
    budgets = objects(rendered, overlay, "PodDisruptionBudget")
    for w in workloads(rendered, overlay):
        labels = w["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets
            if b["metadata"]["namespace"] == w["metadata"]["namespace"]
            and b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, f"{ident(w)}: {len(covering)} budgets"
        b = covering[0]["spec"]
        assert b.get("minAvailable", 1) >= 1 or b.get("maxUnavailable") == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_run_as_the_architecture_says(rendered, overlay):
    gateway = one(rendered, overlay, "Deployment", "cola-gateway")
    middleware = one(rendered, overlay, "Deployment", "cola-middleware")
    assert gateway["spec"]["replicas"] == 2
    assert middleware["spec"]["replicas"] == 2
    assert gateway["spec"]["template"]["spec"]["containers"][0]["args"] == ["gateway"]
    container = middleware["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["middleware", "--backend", "kubernetes"]
    env = env_of(container, rendered, overlay)
    assert env["COLA_KUBE_NAMESPACE"] == "cola-executors"
    assert env["COLA_HEALTH_LISTEN"].endswith(":8081")
    # The gateway Service the README port-forwards to.
    service = one(rendered, overlay, "Service", "cola-gateway")
    assert service["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in service["spec"]["ports"]] == [80]
    # Both services scale themselves: on CPU, or the middleware with KEDA in its overlay.
    for name in COLA_SERVICES:
        if overlay == "keda" and name == "cola-middleware":
            continue
        hpa = one(rendered, overlay, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert hpa["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_ask_to_be_scraped_where_they_serve_their_metrics(rendered, overlay):
    gateway = one(rendered, overlay, "Deployment", "cola-gateway")["spec"]["template"]
    middleware = one(rendered, overlay, "Deployment", "cola-middleware")["spec"]["template"]
    env = env_of(middleware["spec"]["containers"][0], rendered, overlay)
    health_port = env["COLA_HEALTH_LISTEN"].rsplit(":", 1)[1]
    for template, port in [(gateway, "8080"), (middleware, health_port)]:
        annotations = template["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": port,
                               "prometheus.io/path": "/metrics"}
        ports = [p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]]
        assert int(port) in ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_is_a_three_node_jetstream_cluster_on_volumes(rendered, overlay):
    nats = one(rendered, overlay, "StatefulSet", "cola-nats")
    assert nats["spec"]["replicas"] == 3
    headless = one(rendered, overlay, "Service", "cola-nats-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert nats["spec"]["serviceName"] == "cola-nats-headless"
    claims = nats["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    mounts = nats["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/data"} in mounts
    conf = one(rendered, overlay, "ConfigMap", "cola-nats-config")["data"]["nats.conf"]
    assert "store_dir: /data/jetstream" in conf
    for i in range(3):
        assert f"cola-nats-{i}.cola-nats-headless.cola.svc.cluster.local:6222" in conf
    one(rendered, overlay, "Service", "cola-nats")
    # The volume holds what JetStream may store.
    gib = {"Gi": 1, "Ti": 1024}
    volume = claims[0]["spec"]["resources"]["requests"]["storage"]
    volume_gib = int(volume[:-2]) * gib[volume[-2:]]
    store = re.search(r"max_file_store: (\d+)GB", conf)
    assert store, "JetStream's file store is bounded"
    assert int(store.group(1)) * 10**9 <= volume_gib * 2**30 * 0.9, (volume, store.group(0))


def test_the_stream_has_three_replicas_in_prod_and_one_in_dev(rendered):
    assert one(rendered, "prod", "ConfigMap", "cola-config")["data"]["COLA_REPLICAS"] == "3"
    assert one(rendered, "dev", "ConfigMap", "cola-config")["data"]["COLA_REPLICAS"] == "1"


def test_prod_pins_its_images_and_serves_tls(rendered):
    for w in workloads(rendered, "prod"):
        for c in w["spec"]["template"]["spec"]["containers"]:
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
    config = one(rendered, "prod", "ConfigMap", "cola-config")["data"]
    assert config["COLA_KUBE_IMAGE_TAG"] not in ("", "latest")
    assert config["COLA_PUBLIC_URL"].startswith("https://")
    ingress = one(rendered, "prod", "Ingress", "cola-gateway")
    hosts = [h for t in ingress["spec"]["tls"] for h in t["hosts"]]
    assert [r["host"] for r in ingress["spec"]["rules"]] == hosts
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "cola-gateway"
    assert objects(rendered, "dev", "Ingress") == []


# --- namespaces, RBAC, network ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_both_namespaces_enforce_the_restricted_pod_security_standard(rendered, overlay):
    names = {}
    for ns in objects(rendered, overlay, "Namespace"):
        names[ns["metadata"]["name"]] = ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    assert names == {"cola": "restricted", "cola-executors": "restricted"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_middleware_may_do_exactly_what_its_backend_needs(rendered, overlay):
    assert objects(rendered, overlay, "ClusterRole") == []
    assert objects(rendered, overlay, "ClusterRoleBinding") == []
    roles = objects(rendered, overlay, "Role")
    assert [ident(r) for r in roles] == ["Role/cola-executors/cola-executor-launcher"]
    rules = sorted(
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in roles[0]["rules"]
    )
    assert rules == [
        (("",), ("pods",), ("create", "delete", "get", "list", "patch", "watch")),
        (("",), ("pods/log",), ("get",)),
    ]
    bindings = objects(rendered, overlay, "RoleBinding")
    assert len(bindings) == 1
    b = bindings[0]
    assert b["metadata"]["namespace"] == "cola-executors"
    assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cola-executor-launcher"}
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": "cola-middleware", "namespace": "cola"}]


def policies(rendered, overlay, namespace):
    return {p["metadata"]["name"]: p["spec"] for p in objects(rendered, overlay, "NetworkPolicy") if p["metadata"]["namespace"] == namespace}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_networking_is_denied_by_default_in_both_namespaces(rendered, overlay):
    for ns in ("cola", "cola-executors"):
        deny = policies(rendered, overlay, ns)["default-deny"]
        assert deny["podSelector"] == {}
        assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
        assert "ingress" not in deny and "egress" not in deny


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_executors_reach_nats_and_nothing_else(rendered, overlay):
    executor_policies = policies(rendered, overlay, "cola-executors")
    assert set(executor_policies) == {"default-deny", "cola-executor"}
    p = executor_policies["cola-executor"]
    assert p["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "cola-executor"}}
    assert p.get("ingress", []) == []
    assert p["egress"] == [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cola"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "cola-nats"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 4222}],
        }
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_reach_only_what_they_use(rendered, overlay):
    cola = policies(rendered, overlay, "cola")
    nats_port = {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cola-nats"}}}],
                 "ports": [{"protocol": "TCP", "port": 4222}]}
    gateway = cola["cola-gateway"]
    assert gateway["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    assert nats_port in gateway["egress"]
    middleware = cola["cola-middleware"]
    # Prometheus's namespace, to the metrics on the health port: nothing else.
    assert middleware["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 8081}],
    }]
    assert nats_port in middleware["egress"]
    api = [e for e in middleware["egress"] if {"protocol": "TCP", "port": 6443} in e.get("ports", [])]
    assert api, "the middleware reaches the API server"
    # NATS accepts clients from the services and the executors only, routes from itself.
    nats = cola["cola-nats"]
    client = [i for i in nats["ingress"] if i["ports"] == [{"protocol": "TCP", "port": 4222}]][0]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cola-executors"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "cola-executor"}}} in client["from"]
    for peer in client["from"]:
        assert "ipBlock" not in peer
    # Every Pod of the namespace is selected by some allowing policy, or it could talk to nothing.
    for w in workloads(rendered, overlay):
        labels = w["spec"]["template"]["metadata"]["labels"]
        selected = [
            n for n, spec in policies(rendered, overlay, w["metadata"]["namespace"]).items()
            if n != "default-deny" and matches(spec["podSelector"], labels)
        ]
        assert selected, f"{ident(w)} is cut off"


def matches(selector, labels):
    ok = selector.get("matchLabels", {}).items() <= labels.items()
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In":
            ok = ok and labels.get(e["key"]) in e["values"]
        else:
            raise AssertionError(f"unexpected operator {e['operator']}")
    return ok


def test_the_readme_commands_name_real_objects(rendered):
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "kubectl apply -k k8s/overlays/dev" in readme
    assert "port-forward svc/cola-gateway 8080:80" in readme
    assert "http://localhost:8080/auth/callback" in readme
    for name in ("cola-nats-auth", "cola-nats", "cola-executor-nats", "cola-oidc"):
        assert name in readme, name


# --- the executor Pod the middleware creates --------------------------------------------------

EXECUTOR_POD = pathlib.Path(__file__).resolve().parent / "executor-pod.json"
# Volume types the restricted Pod Security Standard allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


@pytest.fixture(scope="session")
def executor_pod():
    # Written by the kube backend's test (middleware/tests/kube.rs), which checks it is current.
    import json

    return json.loads(EXECUTOR_POD.read_text())


def test_the_executor_pod_is_valid_for_the_target_version(executor_pod, k8s_version):
    kubernetes_validate.validate(executor_pod, k8s_version, strict=True)


def test_the_executor_pod_meets_the_restricted_standard(executor_pod):
    spec = executor_pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        assert spec.get(flag) is not True, flag
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for v in spec["volumes"]:
        assert set(v) - {"name"} <= RESTRICTED_VOLUMES, v
        assert "sizeLimit" in v["emptyDir"], v
    # A compiled language's Pod: the compile step's container beside the run step's.
    assert "initContainers" not in spec
    compile, container = spec["containers"]
    for c in (compile, container):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc.get("privileged") is not True
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory", "ephemeral-storage"):
                assert resource in c["resources"][kind], f"{kind}.{resource}"
        # No source in the Pod: the job's inputs are in the object store.
        for job in [e["value"] for e in c["env"] if e["name"] == "COLA_JOB"]:
            assert '"input_object"' in job and '"inputs"' not in job
    assert compile["args"][-2:] == ["--step", "compile"]
    assert container["args"][-3:] == ["--step", "run", "--job-from-handoff"]
    spread = spec["topologySpreadConstraints"][0]
    assert (spread["maxSkew"], spread["topologyKey"], spread["whenUnsatisfiable"]) == (
        1,
        "kubernetes.io/hostname",
        "ScheduleAnyway",
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_manifests_provide_what_the_executor_pod_needs(rendered, overlay, executor_pod, secret_templates):
    meta, spec = executor_pod["metadata"], executor_pod["spec"]
    namespace = meta["namespace"]
    config = one(rendered, overlay, "ConfigMap", "cola-config")["data"]
    assert config["COLA_KUBE_NAMESPACE"] == namespace
    one(rendered, overlay, "Namespace", namespace)
    # Its ServiceAccount exists there and mounts no token.
    account = one(rendered, overlay, "ServiceAccount", spec["serviceAccountName"])
    assert account["metadata"]["namespace"] == namespace
    assert config["COLA_KUBE_SERVICE_ACCOUNT"] == spec["serviceAccountName"]
    # The executor NetworkPolicy selects it (and so lets it reach NATS).
    selector = policies(rendered, overlay, namespace)["cola-executor"]["podSelector"]
    assert matches(selector, meta["labels"])
    # The NATS URL Secret it reads has a template in its namespace.
    templates = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for _, o in secret_templates}
    for container in spec["containers"]:
        (nats,) = [e for e in container["env"] if e["name"] == "COLA_NATS_URL"]
        ref = nats["valueFrom"]["secretKeyRef"]
        assert ref["key"] in templates[(namespace, ref["name"])]["stringData"]
    # The Role lets the middleware do what the backend does to it.
    role = one(rendered, overlay, "Role", "cola-executor-launcher")
    assert role["metadata"]["namespace"] == namespace
