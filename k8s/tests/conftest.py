"""Fixtures of the manifest tests: the overlays rendered once with `kubectl kustomize`.

Run through scripts/test-k8s-manifests.sh, which installs the tools; `KUBECTL` names the
kubectl to render with and `COLA_K8S_VERSION` the Kubernetes version to validate against.
"""

import os
import pathlib
import subprocess

import pytest
import yaml

K8S = pathlib.Path(__file__).resolve().parent.parent
OVERLAYS = ("dev", "prod", "keda")


def render(overlay: str) -> list[dict]:
    kubectl = os.environ.get("KUBECTL", "kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def secret_templates() -> list[tuple[pathlib.Path, dict]]:
    templates = []
    for path in sorted((K8S / "secrets").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                templates.append((path, doc))
    return templates


@pytest.fixture(scope="session")
def k8s_version() -> str:
    return os.environ.get("COLA_K8S_VERSION", "1.33.0")
