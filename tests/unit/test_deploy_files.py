"""Parse every deployment file and check what can be checked without a cluster.

systemd units: hardening present, flags known to ``tmemd``, ``MemoryMax``
at least the documented bound, ``systemd-analyze verify`` and ``security``
where systemd is installed.  Container file: non-root user, exposed ports,
health check, files it copies exist, its settings load.  Kubernetes: the
objects refer to each other consistently (selectors, ports, names), the pod
is locked down, and the memory limit follows the formula in deploy/README.md;
``kubectl kustomize`` builds them where kubectl is installed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from tmemd.cli import build_parser, make_config
from tmemd.config import (
    DEFAULT_MEMORY_BYTES,
    DaemonConfig,
    load_toml,
    parse_address,
    parse_size,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
CONTAINER = DEPLOY / "container"
K8S = DEPLOY / "kubernetes"
MIB = 1 << 20
#: Exposure score (x10) ``systemd-analyze security`` may give the units at most.
MAX_SYSTEMD_EXPOSURE = 20


def memory_bound(memory_bytes: int) -> int:
    """The process memory limit for an arena size: deploy/README.md's formula."""
    return int(1.125 * memory_bytes) + 48 * MIB


def test_readme_states_the_formula_used_here() -> None:
    text = (DEPLOY / "README.md").read_text()
    assert "process memory limit = 1.125 × --memory + 48 MiB" in text
    assert memory_bound(256 * MIB) == 336 * MIB and memory_bound(1024 * MIB) == 1200 * MIB


# --- systemd ----------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"{path.name}: bad line {raw!r}"
        sections[section][key].append(value)
    return sections


UNITS = sorted(SYSTEMD.glob("*.service"))
HARDENING = {
    "NoNewPrivileges": "yes",
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
}


def _systemd_bytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "": 1}
    match = re.fullmatch(r"(\d+)([KMGT]?)", text)
    assert match, text
    return int(match.group(1)) * units[match.group(2)]


def test_units_found() -> None:
    assert {u.name for u in UNITS} == {"tmemd.service", "tmemd@.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_is_hardened_and_sized(unit: Path) -> None:
    service = parse_unit(unit)["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{unit.name}: {key}={service.get(key)}"
    assert "~@privileged @resources" in service["SystemCallFilter"]
    assert _systemd_bytes(service["MemoryMax"][0]) >= memory_bound(DEFAULT_MEMORY_BYTES)
    assert service["Restart"] == ["on-failure"]


def example_environment() -> dict[str, str]:
    lines = (SYSTEMD / "tmemd.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    """systemd's expansion: ``${VAR}`` is one word, a bare ``$VAR`` splits on spaces."""
    out: list[str] = []
    for word in argv:
        if re.fullmatch(r"\$[A-Z_]+", word):
            out.extend(env[word[1:]].split())
        else:
            out.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env[m.group(1)], word))
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_runs_tmemd_with_valid_flags(unit: Path) -> None:
    exec_start = parse_unit(unit)["Service"]["ExecStart"]
    assert len(exec_start) == 1
    argv = shlex.split(exec_start[0])
    assert argv[0] == "/usr/bin/tmemd"
    known = {opt for action in build_parser()._actions for opt in action.option_strings}
    for word in argv[1:]:
        if word.startswith("--"):
            assert word in known, f"{unit.name}: tmemd has no flag {word}"
    args = build_parser().parse_args(expand(argv[1:], example_environment()))
    if args.config is None:  # the instanced unit: flags only, so they must make a config
        config = make_config(args)
        assert config.memory == DEFAULT_MEMORY_BYTES  # MemoryMax is sized for it
        assert config.metrics is not None


def test_instance_environment_file_defines_every_variable() -> None:
    exec_start = parse_unit(SYSTEMD / "tmemd@.service")["Service"]["ExecStart"][0]
    used = set(re.findall(r"\$\{?([A-Z_]+)\}?", exec_start))
    assert used == set(example_environment())


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed")
    return path


def _units_in(tmp_path: Path) -> list[Path]:
    """Copies whose ExecStart points at a real executable (verify checks it)."""
    tmemd = Path(sys.executable).parent / "tmemd"
    exe = str(tmemd) if tmemd.exists() else "/bin/true"
    out = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/usr/bin/tmemd", exe))
        out.append(tmp_path / unit.name.replace("@.", "@test."))
    return out


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    for unit in _units_in(tmp_path):
        result = subprocess.run(
            [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_analyze_security(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    for unit in _units_in(tmp_path):
        result = subprocess.run(
            [tool, "security", "--offline=yes", f"--threshold={MAX_SYSTEMD_EXPOSURE}", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if "--offline" in result.stderr and "unrecognized" in result.stderr:
            pytest.skip("this systemd-analyze cannot judge unit files offline")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# --- container ----------------------------------------------------------------


def containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = (CONTAINER / "Containerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = containerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def container_config() -> DaemonConfig:
    return DaemonConfig(**load_toml(CONTAINER / "tmemd.toml"))


def test_container_runs_as_non_root() -> None:
    users = [args for word, args in final_stage() if word == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can check it


def test_container_exposes_the_configured_ports() -> None:
    exposed = {
        int(p.split("/")[0]) for word, args in final_stage() if word == "EXPOSE"
        for p in args.split()
    }  # fmt: skip
    config = container_config()
    assert config.metrics is not None
    assert exposed == {config.address[1], parse_address(config.metrics)[1]}


def test_container_health_check_asks_healthz_on_the_metrics_port() -> None:
    checks = [args for word, args in final_stage() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)  # exec form: no shell needed in the image
    config = container_config()
    assert config.metrics is not None
    port = parse_address(config.metrics)[1]
    assert f"127.0.0.1:{port}/healthz" in " ".join(argv)


def test_container_entrypoint_and_settings() -> None:
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["tmemd"]
    assert json.loads(stage["CMD"]) == ["--config", "/etc/tmemd/tmemd.toml"]
    config = container_config()
    assert config.auth_file is not None, "the image listens on all interfaces: require auth"
    assert config.log_format == "json"


def test_container_copies_files_that_exist() -> None:
    for word, args in containerfile():
        if word == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


# --- kubernetes ---------------------------------------------------------------


def k8s_objects() -> dict[str, dict[str, Any]]:
    """Kind -> object, from the files the kustomization lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    objects = {}
    for name in sorted(listed):
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), name
            objects[doc["kind"]] = doc
    return objects


def _quantity(text: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "": 1}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|)", str(text))
    assert match, text
    return int(match.group(1)) * units[match.group(2)]


def pod() -> tuple[dict[str, Any], dict[str, Any]]:
    spec = k8s_objects()["StatefulSet"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def k8s_config() -> DaemonConfig:
    text = k8s_objects()["ConfigMap"]["data"]["tmemd.toml"]
    values = {k.replace("-", "_"): v for k, v in tomllib.loads(text).items()}
    values["memory"] = parse_size(values["memory"])
    return DaemonConfig(**values)


def test_kubernetes_objects_refer_to_each_other() -> None:
    objs = k8s_objects()
    assert set(objs) == {
        "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "ServiceMonitor",
    }  # fmt: skip
    sts, svc = objs["StatefulSet"], objs["Service"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None"  # headless: one DNS name per server
    assert svc["spec"]["selector"].items() <= labels.items()
    assert objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    monitor = objs["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    _, container = pod()
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    service_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} <= set(service_ports)
    for name, port in service_ports.items():
        assert port["targetPort"] in port_names, name
    config = k8s_config()
    assert config.metrics is not None
    assert port_names == {"tmem": config.address[1], "metrics": parse_address(config.metrics)[1]}


def test_kubernetes_pod_is_locked_down() -> None:
    spec, container = pod()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_kubernetes_spreads_servers_over_nodes() -> None:
    spec, _ = pod()
    terms = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    labels = k8s_objects()["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname"
        and t["labelSelector"]["matchLabels"].items() <= labels.items()
        for t in terms
    )
    assert k8s_objects()["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_kubernetes_memory_limit_follows_the_formula() -> None:
    _, container = pod()
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]  # Guaranteed QoS
    limit = _quantity(resources["limits"]["memory"])
    assert limit >= memory_bound(k8s_config().memory)


def test_kubernetes_auth_secret_is_mounted_where_the_config_looks() -> None:
    spec, container = pod()
    config = k8s_config()
    assert config.auth_file is not None
    secret_volumes = {v["name"] for v in spec["volumes"] if "secret" in v}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    auth_dir = str(Path(config.auth_file).parent)
    assert mounts.get(auth_dir) in secret_volumes


def test_kubectl_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout)}
    assert "StatefulSet" in kinds


# --- prometheus and grafana files -----------------------------------------------


def test_prometheus_config_scrapes_the_metrics_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).exists()
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tmemd"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    metrics = container_config().metrics
    assert metrics is not None
    assert all(parse_address(t)[1] == parse_address(metrics)[1] for t in targets)


def test_grafana_provisioning_parses() -> None:
    data = yaml.safe_load((DEPLOY / "grafana" / "provisioning.yaml").read_text())
    assert data["providers"][0]["type"] == "file"
    json.loads((DEPLOY / "grafana" / "tmemd.json").read_text())
