"""The Kubernetes values (``images/helm/values.yaml``) and the two Dockerfiles, read closely.

No cluster, ``helm`` binary or Docker engine is needed: the values are loaded with PyYAML
and checked setting by setting (network policy, security context, limits, storage,
image), and the Python the values embed in ``hub.extraConfig`` is executed as the Zero to
JupyterHub chart executes it, against a traitlets ``Config`` prepared the way the chart's
own ``jupyterhub_config.py`` (4.x) prepares it, then its spawn hook is run on a stand-in
spawner carrying what a KubeSpawner carries at that point (user, volumes, mounts,
environment). The Dockerfiles are parsed into instructions and checked against the
repository (every COPY source exists and is in the build context) and against the
spawner and the values (image tag, user, command).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from tornado import web
from traitlets.config import Config

from shuyu_platform.core import roles
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.dashboards.service import voila_config
from shuyu_platform.data.policy import load_policies
from shuyu_platform.isolation.docker import (
    CONTAINER_IMPORTS,
    CONTAINER_LOCAL,
    CONTAINER_SYNTHETIC,
    CONTAINER_VIEWS,
    CONTAINER_WORK,
    IMAGE,
    SINGLEUSER_CMD,
    ShuyuDockerSpawner,
)

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
VALUES_FILE = IMAGES / "helm" / "values.yaml"
DASHBOARDS_INGRESS = IMAGES / "helm" / "dashboards-ingress.yaml"
HUB_IP = "10.96.0.15"
POD_IP = "10.244.1.9"


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    """The Helm values, as PyYAML (and so Helm) reads them."""
    return yaml.safe_load(VALUES_FILE.read_text())


def _walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside a YAML tree."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def project_version() -> str:
    """The project's version, which is the images' tag."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# ------------------------------------------------------------------- network policy
def test_user_pods_reach_only_the_hub_api_and_the_platform_service(values: dict) -> None:
    policy = values["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    # every egress allowance of the chart, each switched off (no Internet, no private
    # ranges, no cloud metadata, no DNS server of any kind)
    assert policy["egressAllowRules"] == {
        "cloudMetadataServer": False,
        "dnsPortsCloudMetadataServer": False,
        "dnsPortsKubeSystemNamespace": False,
        "dnsPortsPrivateIPs": False,
        "nonPrivateIPs": False,
        "privateIPs": False,
    }
    assert policy["egress"] == [
        {
            "to": [{"podSelector": {"matchLabels": {"app": "jupyterhub", "component": "hub"}}}],
            "ports": [{"port": 8081, "protocol": "TCP"}, {"port": 10101, "protocol": "TCP"}],
        }
    ]
    # no IP block or namespace anywhere in the user pods' policy
    for node in _walk(policy):
        if isinstance(node, dict):
            assert "ipBlock" not in node and "namespaceSelector" not in node
    # the iptables variant would add a privileged init container to every user pod
    assert values["singleuser"]["cloudMetadata"]["blockWithIptables"] is False


def test_user_pods_accept_connections_only_from_the_proxy_and_hub(values: dict) -> None:
    """Nothing added to the chart's own ingress rule (pods labelled network-access-singleuser,
    i.e. the proxy and the hub); user pods do not carry that label, so not each other."""
    policy = values["singleuser"]["networkPolicy"]
    assert not policy.get("ingress")
    assert not policy.get("allowedIngressPorts")
    assert policy["interNamespaceAccessLabels"] == "ignore"
    assert values["singleuser"]["extraLabels"] == {"hub.jupyter.org/network-access-hub": "true"}


def test_hub_exposes_the_platform_service_to_labelled_pods_only(values: dict) -> None:
    hub = values["hub"]
    assert hub["service"]["extraPorts"] == [
        {"name": "shuyu-api", "port": 10101, "targetPort": 10101},
        {"name": "shuyu-dashboards", "port": 10102, "targetPort": 10102},
    ]
    assert hub["networkPolicy"]["enabled"] is True
    assert hub["networkPolicy"]["ingress"] == [
        {
            "ports": [{"port": 10101}],
            "from": [
                {"podSelector": {"matchLabels": {"hub.jupyter.org/network-access-hub": "true"}}}
            ],
        },
        {"ports": [{"port": 10102}]},  # the dashboards' own host, from the Ingress
    ]
    assert not hub["networkPolicy"].get("allowedIngressPorts")
    proxy_egress = values["proxy"]["chp"]["networkPolicy"]["egress"]
    assert proxy_egress == [
        {
            "to": [{"podSelector": {"matchLabels": {"app": "jupyterhub", "component": "hub"}}}],
            "ports": [{"port": 10101, "protocol": "TCP"}],  # no dashboards via the proxy
        }
    ]


# ------------------------------------------------------------ security and limits
def test_user_container_is_non_root_without_privileges(values: dict) -> None:
    kube = values["hub"]["config"]["KubeSpawner"]
    container = kube["container_security_context"]
    assert container == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert kube["pod_security_context"] == {
        "runAsNonRoot": True,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert kube["automount_service_account_token"] is False
    singleuser = values["singleuser"]
    assert (singleuser["uid"], singleuser["fsGid"]) == (1000, 1000)
    assert singleuser["allowPrivilegeEscalation"] is False
    # the same non-root ids as the one-host spawner and the image
    default_user = ShuyuDockerSpawner.class_traits()["container_user"].default_value
    assert default_user == "1000:1000" == _last(_dockerfile("singleuser"), "USER")
    assert values["hub"]["config"]["JupyterHub"]["admin_access"] is False


def test_user_pods_have_resource_limits(values: dict) -> None:
    singleuser = values["singleuser"]
    assert singleuser["memory"] == {"limit": "4G", "guarantee": "1G"}
    assert singleuser["cpu"] == {"limit": 2, "guarantee": 0.5}
    assert singleuser["extraResource"]["limits"] == {"ephemeral-storage": "1Gi"}


def test_user_pod_environment_matches_the_container_layout(values: dict) -> None:
    env = values["singleuser"]["extraEnv"]
    assert env["HOME"] == "/home/jovyan"
    assert env["SHUYU_VIEWS"] == CONTAINER_VIEWS
    assert env["SHUYU_IMPORTS"] == CONTAINER_IMPORTS
    assert env["SHUYU_SYNTHETIC"] == CONTAINER_SYNTHETIC
    for name in ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "XDG_CONFIG_HOME"):
        assert env[name].startswith(CONTAINER_LOCAL + "/"), name
    assert values["singleuser"]["cmd"] == SINGLEUSER_CMD


# --------------------------------------------------------------------- storage
def test_static_storage_is_synthetic_read_only_and_memory_scratch(values: dict) -> None:
    storage = values["singleuser"]["storage"]
    assert storage["type"] == "none"
    volumes = {volume["name"]: volume for volume in storage["extraVolumes"]}
    assert volumes == {
        "shuyu-synthetic": {
            "name": "shuyu-synthetic",
            "persistentVolumeClaim": {"claimName": "shuyu-synthetic", "readOnly": True},
        },
        "tmp": {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}},
        "jupyter-state": {
            "name": "jupyter-state",
            "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"},
        },
    }
    assert storage["extraVolumeMounts"] == [
        {"name": "shuyu-synthetic", "mountPath": CONTAINER_SYNTHETIC, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "jupyter-state", "mountPath": CONTAINER_LOCAL},
    ]
    # the state volume (raw/, db/, hub/, outbox/) belongs to the hub pod alone
    assert "shuyu-state" not in json.dumps(values["singleuser"])
    assert {"name": "shuyu-state", "mountPath": "/srv/shuyu"} in values["hub"]["extraVolumeMounts"]


def test_extra_config_compiles(values: dict) -> None:
    extra = values["hub"]["extraConfig"]
    assert sorted(extra) == ["10-shuyu-storage", "20-shuyu"]
    for key, code in extra.items():
        compile(code, f"hub.extraConfig.{key}", "exec")


def chart_config(values: dict) -> Config:
    """The ``Config`` the chart's ``jupyterhub_config.py`` (4.x) has built from these
    values by the time it runs ``hub.extraConfig``: the parts Shuyu's snippets touch."""
    c = Config()
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.ConfigurableHTTPProxy.api_url = "http://proxy-api:8001"
    c.ConfigurableHTTPProxy.should_start = False
    c.JupyterHub.hub_bind_url = "http://:8081"
    c.JupyterHub.hub_connect_url = "http://hub:8081"
    c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"
    singleuser = values["singleuser"]
    c.KubeSpawner.image = f"{singleuser['image']['name']}:{singleuser['image']['tag']}"
    c.KubeSpawner.uid = singleuser["uid"]
    c.KubeSpawner.fs_gid = singleuser["fsGid"]
    c.KubeSpawner.mem_limit = singleuser["memory"]["limit"]
    c.KubeSpawner.cpu_limit = singleuser["cpu"]["limit"]
    c.KubeSpawner.extra_labels = dict(singleuser["extraLabels"])
    c.KubeSpawner.environment = dict(singleuser["extraEnv"])
    storage = singleuser["storage"]
    c.KubeSpawner.volumes = {volume["name"]: volume for volume in storage["extraVolumes"]}
    c.KubeSpawner.volume_mounts = {
        f"{index}-{mount['name']}": mount
        for index, mount in enumerate(storage["extraVolumeMounts"])
    }
    c.JupyterHub.services = []
    c.JupyterHub.load_roles = []
    if values["cull"]["enabled"]:
        c.JupyterHub.services.append(
            {
                "name": "jupyterhub-idle-culler",
                "command": ["python3", "-m", "jupyterhub_idle_culler"],
            }
        )
        c.JupyterHub.load_roles.append(
            {
                "name": "jupyterhub-idle-culler",
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                "services": ["jupyterhub-idle-culler"],
            }
        )
    for key, service in copy.deepcopy(values["hub"]["services"]).items():
        service.setdefault("name", key)
        service["api_token"] = f"chart-generated-token-{key}"
        c.JupyterHub.services.append(service)
    c.Spawner.cmd = singleuser["cmd"]
    c.Spawner.default_url = singleuser["defaultUrl"]
    for section, settings in copy.deepcopy(values["hub"]["config"]).items():
        c[section].update(settings)
    return c


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, values: dict) -> Path:
    """The hub pod's environment (hub.extraEnv), with the state volume in a temp dir."""
    for name, value in values["hub"]["extraEnv"].items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("POD_IP", POD_IP)  # from the downward API (valueFrom)
    home = tmp_path / "srv-shuyu"
    monkeypatch.setenv("SHUYU_HOME", str(home))
    return home


def run_extra_config(values: dict, hub_service_host: str = HUB_IP) -> Config:
    """Execute hub.extraConfig in key order, in one namespace, as the chart does."""
    service_env = {"HUB_SERVICE_HOST": hub_service_host, "HUB_SERVICE_PORT": "8081"}

    def get_name_env(name: str, suffix: str = "") -> str:
        """The chart's helper (z2jh.py): a Service's environment variable."""
        return service_env[(name + suffix).upper().replace("-", "_")]

    c = chart_config(values)
    namespace: dict[str, Any] = {"c": c, "get_name_env": get_name_env}
    for key, code in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(code, f"hub.extraConfig.{key}", "exec"), namespace)
    return c


def stand_in_spawner(c: Config, name: str, groups: list[str], role: str) -> SimpleNamespace:
    """What a KubeSpawner holds when the pre-spawn hook runs (its config loaded)."""
    return SimpleNamespace(
        user=SimpleNamespace(
            name=name,
            groups=[SimpleNamespace(name=group) for group in groups],
            roles=[SimpleNamespace(name=role)],
        ),
        name="",
        volumes=copy.deepcopy(c.KubeSpawner.volumes),
        volume_mounts=copy.deepcopy(c.KubeSpawner.volume_mounts),
        environment=dict(c.KubeSpawner.environment),
        notebook_dir="",
    )


@pytest.mark.parametrize(
    "service_host, hub_url",
    [(HUB_IP, f"http://{HUB_IP}:8081"), ("fd00:10:96::15", "http://[fd00:10:96::15]:8081")],
)
def test_extra_config_keeps_the_chart_and_adds_shuyu(
    values: dict, hub_env: Path, service_host: str, hub_url: str
) -> None:
    c = run_extra_config(values, service_host)
    hub = c.JupyterHub
    # what the chart set for the cluster survives configure()
    assert hub.hub_bind_url == "http://:8081"
    assert hub.hub_connect_url == "http://hub:8081"
    assert "bind_url" not in hub
    assert c.ConfigurableHTTPProxy.api_url == "http://proxy-api:8001"
    assert hub.spawner_class == "kubespawner.KubeSpawner"
    # one entry per service; the chart's culler kept, Shuyu's own culler off
    services = {service["name"]: service for service in hub.services}
    assert len(services) == len(hub.services)
    departments = {p.catalogue.department for p in load_policies(REPO / "policies").values()}
    assert set(services) == {
        "jupyterhub-idle-culler",
        roles.SERVICE_NAME,
        roles.OPERATOR_SERVICE,
        roles.DASHBOARDS_SERVICE,
        *(roles.supply_account(d) for d in departments),  # one per source department
    }
    # dashboards on an origin of their own: no proxy route, Voila on this pod's IP
    dashboards = services[roles.DASHBOARDS_SERVICE]
    assert "url" not in dashboards
    assert dashboards["environment"]["SHUYU_IP"] == POD_IP
    assert dashboards["environment"]["SHUYU_DASHBOARDS_URL"] == "https://shuyu-dashboards.example"
    assert dashboards["oauth_redirect_uri"] == (
        "https://shuyu-dashboards.example/services/dashboards/oauth_callback"
    )
    # sign-in links from published dashboards go to the platform's public host
    assert dashboards["environment"]["SHUYU_PUBLIC_HUB_URL"] == "https://shuyu.example"
    shuyu = services[roles.SERVICE_NAME]
    assert shuyu["url"] == f"http://{POD_IP}:10101"
    assert shuyu["command"] == ["python3", "-m", "shuyu_platform.service"]
    assert shuyu["api_token"] == "chart-generated-token-shuyu"
    assert shuyu["environment"]["SHUYU_HOME"] == str(hub_env)
    assert roles.ACCESS_SERVICE in shuyu["oauth_client_allowed_scopes"]
    role_names = [role["name"] for role in hub.load_roles]
    assert "jupyterhub-idle-culler" in role_names and roles.OPERATOR_SERVICE in role_names
    # user pods reach the hub by the Service's cluster IP (they have no DNS)
    assert c.KubeSpawner.hub_connect_url == hub_url


def test_spawn_hook_mounts_the_tenants_storage_only(values: dict, hub_env: Path) -> None:
    c = run_extra_config(values)
    hook = c.Spawner.pre_spawn_hook
    assert hook.__name__ == "shuyu_kube_pre_spawn"

    alice = stand_in_spawner(c, "alice", ["tenant-kangning"], "merchant")
    hook(alice)
    volumes = alice.volumes
    assert set(volumes) == {
        "shuyu-synthetic",
        "tmp",
        "jupyter-state",
        "shuyu-views",
        "shuyu-imports",
        "shuyu-work",
    }
    assert volumes["shuyu-views"] == {
        "name": "shuyu-views",
        "persistentVolumeClaim": {"claimName": "shuyu-views-kangning", "readOnly": True},
    }
    assert volumes["shuyu-imports"] == {
        "name": "shuyu-imports",
        "persistentVolumeClaim": {"claimName": "shuyu-imports-kangning", "readOnly": True},
    }
    assert volumes["shuyu-work"] == {
        "name": "shuyu-work",
        "persistentVolumeClaim": {"claimName": "shuyu-work-kangning"},
    }
    claims = sorted(
        volume["persistentVolumeClaim"]["claimName"]
        for volume in volumes.values()
        if "persistentVolumeClaim" in volume
    )
    assert claims == [
        "shuyu-imports-kangning",
        "shuyu-synthetic",
        "shuyu-views-kangning",
        "shuyu-work-kangning",
    ]
    mounts = {mount["mountPath"]: mount for mount in alice.volume_mounts.values()}
    assert set(mounts) == {
        CONTAINER_VIEWS,
        CONTAINER_IMPORTS,
        CONTAINER_SYNTHETIC,
        CONTAINER_WORK,
        "/tmp",
        CONTAINER_IMPORTS,
        CONTAINER_LOCAL,
    }
    assert mounts[CONTAINER_VIEWS] == {
        "name": "shuyu-views",
        "mountPath": CONTAINER_VIEWS,
        "readOnly": True,
    }
    assert mounts[CONTAINER_IMPORTS] == {
        "name": "shuyu-imports",
        "mountPath": CONTAINER_IMPORTS,
        "readOnly": True,
    }
    assert mounts[CONTAINER_SYNTHETIC]["readOnly"] is True
    assert mounts[CONTAINER_WORK] == {
        "name": "shuyu-work",
        "mountPath": CONTAINER_WORK,
        "subPath": "alice",
    }
    assert alice.notebook_dir == CONTAINER_WORK
    assert alice.environment["SHUYU_API_URL"] == f"http://{HUB_IP}:10101/services/shuyu/"
    assert alice.environment["SHUYU_TENANT"] == "kangning"
    spec = json.dumps([alice.volumes, alice.volume_mounts])
    assert "shuyu-state" not in spec and "huaxin" not in spec and "/srv/shuyu" not in spec

    bob = stand_in_spawner(c, "bob", ["tenant-huaxin"], "merchant")
    hook(bob)
    bob_spec = json.dumps([bob.volumes, bob.volume_mounts])
    assert "shuyu-views-huaxin" in bob_spec and "shuyu-work-huaxin" in bob_spec
    assert "shuyu-imports-huaxin" in bob_spec
    assert "kangning" not in bob_spec and '"subPath": "bob"' in bob_spec


@pytest.mark.parametrize(
    "groups, role",
    [(["tenant-kangning"], "visitor"), (["tenant-kangning"], "reviewer"), ([], "merchant")],
)
def test_spawn_hook_refuses_before_adding_storage(
    values: dict, hub_env: Path, groups: list[str], role: str
) -> None:
    c = run_extra_config(values)
    spawner = stand_in_spawner(c, "mallory", groups, role)
    before = copy.deepcopy(spawner.volumes)
    with pytest.raises(web.HTTPError) as refused:
        c.Spawner.pre_spawn_hook(spawner)
    assert refused.value.status_code == 403
    assert spawner.volumes == before


@pytest.mark.parametrize(
    "tenant, username",
    [("Kangning", "alice"), ("kangning", "../alice"), ("kangning", "a/b"), ("k", "alice")],
)
def test_storage_helper_refuses_unsafe_names(values: dict, tenant: str, username: str) -> None:
    namespace: dict[str, Any] = {}
    exec(values["hub"]["extraConfig"]["10-shuyu-storage"], namespace)
    with pytest.raises(ValueError, match="no storage"):
        namespace["shuyu_tenant_storage"](tenant, username)


# -------------------------------------------------------------------- images
def _dockerfile(name: str) -> list[tuple[str, str]]:
    """``images/<name>.Dockerfile`` as (INSTRUCTION, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (IMAGES / f"{name}.Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, f"{name}.Dockerfile ends inside a continued line"
    return instructions


def _last(instructions: list[tuple[str, str]], keyword: str) -> str:
    """Arguments of the last instruction of a kind."""
    return [arguments for kind, arguments in instructions if kind == keyword][-1]


def _exec_form(arguments: str) -> list[str]:
    """A JSON ("exec form") argument list."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value


def _copies(instructions: list[tuple[str, str]]) -> list[tuple[list[str], str, dict[str, str]]]:
    """Every COPY/ADD as (sources, destination, flags)."""
    copies = []
    for kind, arguments in instructions:
        assert kind != "ADD", "use COPY: ADD fetches URLs and unpacks archives"
        if kind != "COPY":
            continue
        words = _exec_form(arguments) if arguments.startswith("[") else shlex.split(arguments)
        flags = {}
        while words[0].startswith("--"):
            flag, _, value = words.pop(0)[2:].partition("=")
            flags[flag] = value
        copies.append((words[:-1], words[-1], flags))
    return copies


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (or a folder above it) out of the context."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(pattern.startswith("!") for pattern in patterns), "exceptions not handled"
    parts = Path(path).parts
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern) for pattern in patterns for prefix in prefixes)


@pytest.mark.parametrize("name", ["singleuser", "hub"])
def test_dockerfile_copies_only_what_the_context_has(name: str) -> None:
    instructions = _dockerfile(name)
    assert instructions[0][0] == "FROM"
    copies = _copies(instructions)
    assert copies
    bases = [arguments for kind, arguments in instructions if kind == "FROM"]
    python = next(match for base in bases if (match := re.match(r"python:(\d+\.\d+)", base)))
    for sources, destination, flags in copies:
        if "from" in flags:  # from another build stage, not the context
            continue
        for source in sources:
            assert source not in (".", "./", "*"), "copy named paths, not the whole context"
            assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
            assert not _ignored(source), f"COPY {source}: excluded by .dockerignore"
        if "site-packages" in destination:
            assert f"/python{python[1]}/site-packages/" in destination


def test_singleuser_image_carries_no_hub_side_and_runs_as_non_root() -> None:
    instructions = _dockerfile("singleuser")
    sources = {
        source
        for sources, _, flags in _copies(instructions)
        if "from" not in flags
        for source in sources
    }
    assert sources == {
        "constraints.txt",
        "kernels/shuyu",
        "kernels/matplotlibrc",  # the CJK font for charts' Chinese labels
        "extensions/shuyu_server",
        "labextension",  # sources of the JupyterLab extension, built in its own stage
    }
    for source in sources:
        assert not source.startswith(("hub", "policies", "jupyterhub_config", "tests", ".shuyu"))
    user = _last(instructions, "USER")
    assert re.fullmatch(r"(\d+):(\d+)", user) and "0" not in user.split(":")
    assert [kind for kind, _ in instructions].index("USER") > max(
        index for index, (kind, _) in enumerate(instructions) if kind in ("RUN", "COPY")
    ), "USER must come after the last RUN/COPY"
    assert _exec_form(_last(instructions, "CMD")) == SINGLEUSER_CMD
    assert _exec_form(_last(instructions, "ENTRYPOINT"))[0] == "tini"
    assert ShuyuDockerSpawner(config=Config()).cmd == SINGLEUSER_CMD


@pytest.mark.parametrize("name", ["singleuser", "hub"])
def test_images_carry_the_built_jupyterlab_extension_enabled(name: str) -> None:
    instructions = _dockerfile(name)
    stages = {args.split()[-1]: i for i, (kind, args) in enumerate(instructions) if kind == "FROM"}
    assert "labext" in stages, "the extension is built in a stage of its own"
    stage = instructions[stages["labext"] + 1 :]
    stage = stage[: next((i for i, (kind, _) in enumerate(stage) if kind == "FROM"), None)]
    build = " ".join(args for kind, args in stage if kind == "RUN")
    for step in ("npm ci", "tsc", "jupyter-builder build", "-c constraints.txt jupyterlab"):
        assert step in build, f"the extension's build misses {step!r}"
    copied = {
        destination: sources
        for sources, destination, flags in _copies(instructions)
        if flags.get("from") == "labext"
    }
    runs = " ".join(args for kind, args in instructions if kind == "RUN")
    if name == "singleuser":  # the assets in the image's prefix, where JupyterLab looks
        assert copied == {
            "/usr/local/share/jupyter/labextensions/shuyu-lab": [
                "/opt/labext/labextension/dist/shuyu-lab"
            ]
        }
        assert "[jupyterlab.locale]\\nshuyu_lab = shuyu_server" in runs  # Chinese labels
        assert "jupyterlab-language-pack-zh-CN" in runs
    else:  # pip install puts dist/ into share/jupyter/labextensions (shared-data)
        assert copied == {"./labextension/dist": ["/opt/labext/labextension/dist"]}
        shared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]
        wheel = shared["build"]["targets"]["wheel"]["shared-data"]
        assert wheel["labextension/dist/shuyu-lab"] == "share/jupyter/labextensions/shuyu-lab"
    assert 'jupyter labextension list 2>&1 | grep -q "shuyu-lab.*enabled"' in runs
    assert not _ignored("labextension/src/index.ts") and _ignored("labextension/node_modules/x")


def test_dockerignore_keeps_state_and_secrets_out() -> None:
    for path in (
        ".shuyu",
        ".venv",
        ".git",
        "node_modules",
        "tests",
        "hub/shuyu_platform/__pycache__",
    ):
        assert _ignored(path), path


def test_images_are_tagged_with_the_project_version(values: dict) -> None:
    version = project_version()
    singleuser_build = re.search(
        r"docker build -f images/singleuser\.Dockerfile -t (\S+) \.",
        (IMAGES / "singleuser.Dockerfile").read_text(),
    )
    hub_build = re.search(
        r"docker build -f images/hub\.Dockerfile --target k8s -t (\S+) \.",
        (IMAGES / "hub.Dockerfile").read_text(),
    )
    assert singleuser_build is not None and hub_build is not None
    image = values["singleuser"]["image"]
    assert singleuser_build[1] == f"{image['name']}:{image['tag']}" == IMAGE
    assert f"shuyu/singleuser:{version}" == IMAGE
    assert ShuyuDockerSpawner(config=Config()).image == IMAGE
    hub_image = values["hub"]["image"]
    assert hub_build[1] == f"{hub_image['name']}:{hub_image['tag']}" == f"shuyu/hub:{version}-k8s"
    # and the READMEs tell the same story
    for readme in (IMAGES / "README.md", IMAGES / "helm" / "README.md"):
        text = readme.read_text()
        assert set(re.findall(r"shuyu/singleuser:([\w.-]+)", text)) == {version}, readme
        assert set(re.findall(r"shuyu/hub:([\w.-]+)", text)) <= {version, f"{version}-k8s"}


# --------------------------------------------------------------------- ingress
def test_each_origin_has_an_ingress_of_its_own(values: dict) -> None:
    """The platform's host goes to the proxy (the chart's Ingress); the dashboards' host,
    a registrable domain of its own, to Voila on the hub Service's port 10102 only."""
    env = values["hub"]["extraEnv"]
    platform_host = urlparse(env["SHUYU_PUBLIC_HUB_URL"]).hostname
    dashboards_host = urlparse(env["SHUYU_DASHBOARDS_URL"]).hostname
    assert platform_host and dashboards_host
    # not the same host, and neither under the other (no cookies set for a parent domain)
    assert dashboards_host != platform_host
    assert not dashboards_host.endswith("." + platform_host)
    assert not platform_host.endswith("." + dashboards_host)
    ingress = values["ingress"]
    assert ingress["enabled"] is True and ingress["hosts"] == [platform_host]
    assert dashboards_host not in json.dumps(ingress)
    assert ingress["tls"] == [{"hosts": [platform_host], "secretName": "shuyu-tls"}]

    (second,) = list(yaml.safe_load_all(DASHBOARDS_INGRESS.read_text()))
    assert (second["apiVersion"], second["kind"]) == ("networking.k8s.io/v1", "Ingress")
    (rule,) = second["spec"]["rules"]
    assert rule["host"] == dashboards_host
    assert second["spec"]["tls"][0]["hosts"] == [dashboards_host]
    (path,) = rule["http"]["paths"]
    assert path["path"] == f"/services/{roles.DASHBOARDS_SERVICE}/"
    assert path["pathType"] == "Prefix"
    assert path["backend"] == {"service": {"name": "hub", "port": {"name": "shuyu-dashboards"}}}
    ports = {p["name"]: p["port"] for p in values["hub"]["service"]["extraPorts"]}
    assert ports["shuyu-dashboards"] == Shuyu().dashboards_port == 10102


def test_dashboards_send_viewers_to_the_public_hub_to_sign_in(
    values: dict, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Kubernetes the hub's pod address is no use to a browser: Voila's sign-in goes
    to c.Shuyu.public_hub_url, from the hub pod's environment."""
    monkeypatch.setenv("SHUYU_IP", POD_IP)  # what the dashboards service is given
    settings = Shuyu.from_environment()
    prefix = f"/services/{roles.DASHBOARDS_SERVICE}/"
    config = voila_config(settings, prefix)
    assert config.HubOAuth.hub_host == "https://shuyu.example"
    assert config.HubOAuth.oauth_redirect_uri == (
        f"https://shuyu-dashboards.example{prefix}oauth_callback"
    )
    assert settings.service_environment()["SHUYU_PUBLIC_HUB_URL"] == "https://shuyu.example"
