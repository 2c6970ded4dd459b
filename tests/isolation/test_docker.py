"""What ShuyuDockerSpawner asks Docker for, request field by request field.

There is no Docker engine on the machines that run this suite, so the engine is the one
thing replaced: :class:`EngineStub` is docker-py's real ``APIClient`` (which turns the
spawner's keyword arguments into the Engine API's JSON exactly as in production) with
only the calls that would go over the socket answered here, and any other request
failing the test. Everything else is real: the spawner is built by JupyterHub's own
``User`` wrapper from ORM rows, with a traitlets ``Config`` as the hub would load it,
and ``start()`` runs DockerSpawner's whole code path (pull check, create, start, IP).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests
from docker.utils.proxy import ProxyConfig
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from jupyterhub.objects import Hub
from jupyterhub.user import User
from tornado import web
from traitlets.config import Config

from harness import run_async
from shuyu_platform.core import db
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.isolation.docker import ShuyuDockerSpawner, listen_on_sandbox_network
from shuyu_platform.isolation.spawner import SPAWNERS, SpawnPolicy

NETWORK = "shuyu-sandbox"
GIB = 1024**3
#: Zones that no container may ever see (settings.ZONES minus views/imports/synthetic/work;
#: of imports, only the tenant's own folder).
FORBIDDEN_ZONES = ("raw", "outbox", "released", "published", "db", "hub", "run", "logs")


def _not_found(what: str) -> docker.errors.NotFound:
    """The error docker-py raises for an engine's 404."""
    response = requests.Response()
    response.status_code = 404
    return docker.errors.NotFound(f"{what} not found", response=response)


class EngineStub(docker.APIClient):
    """docker-py's client with the Docker engine replaced (none exists on this machine).

    ``create_host_config`` and ``create_container`` are docker-py's own (pure functions
    of their arguments, recorded here); the calls that would reach the engine are
    answered from memory, and any other request to the engine fails the test.
    """

    def __init__(self, *, network_internal: bool = True, network_exists: bool = True) -> None:
        super().__init__(base_url="unix:///nonexistent/docker.sock", version="1.44")
        # A proxy configured for the Docker CLI of whoever runs the tests stays out.
        self._proxy_configs = ProxyConfig()
        self.network_internal = network_internal
        self.network_exists = network_exists
        self.calls: list[tuple[str, Any]] = []
        self.host_config_kwargs: list[dict[str, Any]] = []
        self.create_kwargs: list[dict[str, Any]] = []
        self.created: dict[str, dict[str, Any]] = {}  # container name -> Engine API body

    # -- docker-py's translation, recorded
    def create_host_config(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Record the keyword arguments, then build the Engine API HostConfig as usual."""
        self.host_config_kwargs.append(kwargs)
        return super().create_host_config(*args, **kwargs)

    def create_container(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Record the keyword arguments, then build the Engine API body as usual."""
        self.create_kwargs.append(kwargs)
        return super().create_container(*args, **kwargs)

    # -- what the engine would answer
    def create_container_from_config(
        self, config: dict[str, Any], name: str | None, platform: str | None = None
    ) -> dict[str, Any]:
        """The ``POST /containers/create`` request: kept, answered with an id.

        The body is kept as docker-py would send it: ``_post_json`` drops top-level nulls.
        """
        self.calls.append(("create", name))
        self.created[str(name)] = {key: value for key, value in config.items() if value is not None}
        return {"Id": f"id-{name}", "Warnings": []}

    def inspect_network(self, net_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``GET /networks/<id>``: the sandbox network, internal or not as configured."""
        self.calls.append(("inspect_network", net_id))
        if not self.network_exists:
            raise _not_found(f"network {net_id}")
        return {"Name": net_id, "Driver": "bridge", "Internal": self.network_internal}

    def inspect_image(self, image: str) -> dict[str, Any]:
        """``GET /images/<name>/json``: the image is present (pull_policy is never)."""
        self.calls.append(("inspect_image", image))
        return {"Id": "sha256:0", "RepoTags": [image]}

    def inspect_container(self, container: str) -> dict[str, Any]:
        """``GET /containers/<id>/json``: 404 before creation, then an address on the net."""
        self.calls.append(("inspect_container", container))
        for name in self.created:
            if container in (name, f"id-{name}"):
                networks = {NETWORK: {"IPAddress": "172.30.0.7"}}
                return {"Id": f"id-{name}", "NetworkSettings": {"Networks": networks}}
        raise _not_found(f"container {container}")

    def start(self, container: str, *args: Any, **kwargs: Any) -> None:
        """``POST /containers/<id>/start``."""
        self.calls.append(("start", container))

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Any request not answered above would need a Docker engine: fail loudly."""
        raise AssertionError(f"unexpected Docker engine request: {request.method} {request.url}")


# --------------------------------------------------------------------- fixtures
@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A state root with every zone, as ``Shuyu.ensure_zones`` makes it."""
    settings = Shuyu(config=_config(tmp_path / "state"))
    settings.ensure_zones()
    return Path(settings.home)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> EngineStub:
    """The stub engine, installed as DockerSpawner's (class-wide) client."""
    stub = EngineStub()
    monkeypatch.setattr(ShuyuDockerSpawner, "_client", stub)
    return stub


@pytest.fixture
def hub_db() -> Iterator[Any]:
    """JupyterHub's own ORM in an in-memory database."""
    session = orm.new_session_factory("sqlite://")()
    yield session
    session.close()


def _config(home: Path) -> Config:
    """The hub configuration that matters here, as ``configure(c)`` leaves it."""
    c = Config()
    c.Shuyu.home = str(home)
    c.JupyterHub.spawner_class = SPAWNERS["docker"]
    c.Spawner.mem_limit = "2G"
    c.Spawner.cpu_limit = 1.5
    return c


MakeSpawner = Callable[..., ShuyuDockerSpawner]


@pytest.fixture
def make_spawner(hub_db: Any, home: Path) -> MakeSpawner:
    """Build a spawner the way the hub does: ORM user and groups, ``User``, its spawner."""

    def make(
        name: str = "alice",
        groups: tuple[str, ...] = ("tenant-kangning",),
        roles: tuple[str, ...] = ("merchant",),
        config: Config | None = None,
    ) -> ShuyuDockerSpawner:
        orm_user = orm.User(name=name)
        hub_db.add(orm_user)
        for group_name in groups:
            group = orm.Group.find(hub_db, group_name) or orm.Group(name=group_name)
            orm_user.groups.append(group)
        for role_name in roles:
            role = orm.Role.find(hub_db, role_name) or orm.Role(name=role_name)
            orm_user.roles.append(role)
        hub_db.commit()
        settings = {
            "hub": Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
            "config": config if config is not None else _config(home),
            "spawner_class": ShuyuDockerSpawner,
        }
        spawner = User(orm_user, settings=settings).spawners[""]
        assert type(spawner) is ShuyuDockerSpawner
        return spawner

    return make


def _env(body: dict[str, Any]) -> dict[str, str]:
    """The container's environment from the Engine API body ("KEY=value" list)."""
    return dict(item.split("=", 1) for item in body["Env"])


def _host_paths(body: dict[str, Any]) -> list[str]:
    """Host sides of the body's binds."""
    return [bind.split(":", 1)[0] for bind in body["HostConfig"]["Binds"]]


# ------------------------------------------------------------ the exact request
def test_start_requests_exactly_the_isolated_container(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path
) -> None:
    spawner = make_spawner()
    ip, port = run_async(spawner.start())
    assert (ip, port) == ("172.30.0.7", 8888)

    # the calls DockerSpawner made, in order: network check, image present, no old
    # container, create, start, address
    assert engine.calls == [
        ("inspect_network", NETWORK),
        ("inspect_image", "shuyu/singleuser:0.1.0"),
        ("inspect_container", "shuyu-alice"),
        ("create", "shuyu-alice"),
        ("start", "id-shuyu-alice"),
        ("inspect_container", "id-shuyu-alice"),
    ]

    # docker-py keyword arguments
    assert len(engine.create_kwargs) == 1 and len(engine.host_config_kwargs) == 1
    create = engine.create_kwargs[0]
    assert create["image"] == "shuyu/singleuser:0.1.0"
    assert create["user"] == "1000:1000"
    assert create["command"] == ["python", "-I", "-m", "shuyu_server.singleuser"]
    assert create["networking_config"] is None
    hc = engine.host_config_kwargs[0]
    assert hc["cap_drop"] == ["ALL"] and hc["cap_add"] is None
    assert hc["cpu_quota"] == 150_000 and hc["cpu_period"] == 100_000
    assert hc["nano_cpus"] is None

    # the Engine API request itself
    body = engine.created["shuyu-alice"]
    assert body["Image"] == "shuyu/singleuser:0.1.0"
    assert body["User"] == "1000:1000"
    assert body["Cmd"] == ["python", "-I", "-m", "shuyu_server.singleuser"]  # isolated mode
    assert body["WorkingDir"] == "/home/jovyan/work"
    assert body["Volumes"] == {
        "/data/imports": {},
        "/data/synthetic": {},
        "/data/views": {},
        "/home/jovyan/work": {},
    }
    assert list(body["ExposedPorts"]) == ["8888/tcp"]  # exposed on the network, not published

    host = body["HostConfig"]
    assert sorted(host["Binds"]) == sorted(
        [
            f"{home}/views/kangning:/data/views:ro",
            f"{home}/imports/kangning:/data/imports:ro",
            f"{home}/synthetic:/data/synthetic:ro",
            f"{home}/work/kangning/alice:/home/jovyan/work:rw",
        ]
    )
    assert host["Mounts"] == []
    assert host["CapDrop"] == ["ALL"]
    assert "CapAdd" not in host
    assert "Privileged" not in host  # docker-py sends it only when true
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {
        "/tmp": "rw,noexec,nosuid,nodev,size=512m",
        "/home/jovyan/.local": "rw,noexec,nosuid,nodev,size=64m",
    }
    assert host["Memory"] == 2 * GIB
    assert host["MemorySwap"] == 2 * GIB  # no swap on top of the memory limit
    assert host["CpuPeriod"] == 100_000 and host["CpuQuota"] == 150_000  # 1.5 CPUs
    assert "NanoCpus" not in host
    assert host["PidsLimit"] == 512
    assert host["NetworkMode"] == NETWORK
    assert "PortBindings" not in host and "PublishAllPorts" not in host
    assert host["IpcMode"] == "private" and host["CgroupnsMode"] == "private"
    for shared in ("PidMode", "UTSMode", "UsernsMode", "Devices", "DeviceRequests"):
        assert shared not in host
    assert "VolumesFrom" not in host and "DeviceCgroupRules" not in host
    assert host["Init"] is True
    assert host["AutoRemove"] is True

    env = _env(body)
    assert env["SHUYU_API_URL"] == "http://shuyu-hub:10101/services/shuyu/"
    assert env["SHUYU_TENANT"] == "kangning"
    assert env["SHUYU_VIEWS"] == "/data/views"
    assert env["SHUYU_IMPORTS"] == "/data/imports"
    assert env["SHUYU_SYNTHETIC"] == "/data/synthetic"
    assert env["JUPYTERHUB_API_URL"] == "http://shuyu-hub:8081/hub/api"
    assert env["JUPYTERHUB_ROOT_DIR"] == "/home/jovyan/work"
    assert env["HOME"] == "/home/jovyan"
    assert env["JUPYTER_RUNTIME_DIR"].startswith("/home/jovyan/.local/")
    assert env["IPYTHONDIR"].startswith("/home/jovyan/.local/")
    assert env["MEM_LIMIT"] == str(2 * GIB)

    # nothing in the whole request names a zone the container must not see
    request = json.dumps([body, engine.create_kwargs, engine.host_config_kwargs], default=str)
    for zone in FORBIDDEN_ZONES:
        assert str(home / zone) not in request, zone
    # and every host path in it is one of the tenant's four folders
    assert set(re.findall(re.escape(str(home)) + r"[^\"':,]*", request)) == {
        f"{home}/views/kangning",
        f"{home}/imports/kangning",
        f"{home}/synthetic",
        f"{home}/work/kangning/alice",
    }


def test_start_prepares_the_tenant_folders(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path
) -> None:
    run_async(make_spawner().start())
    work = home / "work" / "kangning" / "alice"
    views = home / "views" / "kangning"
    imports = home / "imports" / "kangning"
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert stat.S_IMODE(views.stat().st_mode) == 0o750
    assert stat.S_IMODE(imports.stat().st_mode) == 0o750
    assert stat.S_IMODE((home / "imports").stat().st_mode) == 0o711  # no listing of tenants
    assert stat.S_IMODE((home / "synthetic").stat().st_mode) == 0o755
    if os.geteuid() == 0:
        assert (work.stat().st_uid, work.stat().st_gid) == (1000, 1000)
        assert (views.stat().st_uid, views.stat().st_gid) == (0, 1000)
        assert (imports.stat().st_uid, imports.stat().st_gid) == (0, 1000)


def test_tenants_never_see_each_other(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path
) -> None:
    run_async(make_spawner("alice", ("tenant-kangning",)).start())
    run_async(make_spawner("bob", ("tenant-huaxin",)).start())
    alice, bob = engine.created["shuyu-alice"], engine.created["shuyu-bob"]
    assert set(_host_paths(alice)) == {
        f"{home}/views/kangning",
        f"{home}/imports/kangning",
        f"{home}/synthetic",
        f"{home}/work/kangning/alice",
    }
    assert set(_host_paths(bob)) == {
        f"{home}/views/huaxin",
        f"{home}/imports/huaxin",
        f"{home}/synthetic",
        f"{home}/work/huaxin/bob",
    }
    assert "huaxin" not in json.dumps(alice) and "bob" not in json.dumps(alice)
    assert "kangning" not in json.dumps(bob) and "alice" not in json.dumps(bob)
    assert _env(alice)["SHUYU_TENANT"] == "kangning" and _env(bob)["SHUYU_TENANT"] == "huaxin"


def test_as_the_hub_runs_it_with_the_spawn_policy(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path
) -> None:
    """The policy hook (which points at host paths and 127.0.0.1) then start()."""
    config = _config(home)
    settings = Shuyu(config=config)
    db.upgrade(settings.db_url)
    config.Spawner.pre_spawn_hook = SpawnPolicy(settings).pre_spawn
    spawner = make_spawner(config=config)
    spawner.run_pre_spawn_hook()
    assert spawner.notebook_dir == str(home / "work" / "kangning" / "alice")  # host path
    run_async(spawner.start())
    env = _env(engine.created["shuyu-alice"])
    assert env["JUPYTERHUB_ROOT_DIR"] == "/home/jovyan/work"
    assert env["SHUYU_API_URL"] == "http://shuyu-hub:10101/services/shuyu/"
    assert "127.0.0.1" not in json.dumps(env)


def test_ports_and_hub_name_follow_the_settings(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path
) -> None:
    config = _config(home)
    config.Shuyu.hub_port = 18081
    config.Shuyu.service_port = 20202
    config.ShuyuDockerSpawner.hub_hostname = "hub-a"
    run_async(make_spawner(config=config).start())
    env = _env(engine.created["shuyu-alice"])
    assert env["JUPYTERHUB_API_URL"] == "http://hub-a:18081/hub/api"
    assert env["SHUYU_API_URL"] == "http://hub-a:20202/services/shuyu/"


# ------------------------------------------------- operator extras cannot loosen
LOOSENING_HOST_CONFIG: dict[str, Any] = {
    "privileged": True,
    "cap_add": ["SYS_ADMIN", "NET_ADMIN"],
    "cap_drop": [],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "read_only": False,
    "binds": {"/": {"bind": "/host", "mode": "rw"}},
    "mounts": [{"type": "bind", "source": "/", "target": "/host"}],
    "volumes_from": ["shuyu-hub"],
    "devices": ["/dev/sda:/dev/sda:rwm"],
    "device_cgroup_rules": ["a *:* rwm"],
    "network_mode": "host",
    "port_bindings": {8888: ("0.0.0.0", 80)},
    "publish_all_ports": True,
    "pid_mode": "host",
    "ipc_mode": "host",
    "uts_mode": "host",
    "userns_mode": "host",
    "cgroupns": "host",
    "tmpfs": {"/tmp": "rw,exec,size=64g"},
    "mem_limit": "512G",
    "memswap_limit": -1,
    "oom_kill_disable": True,
    "cpu_quota": -1,
    "cpu_period": 1_000,
    "nano_cpus": 64_000_000_000,
    "pids_limit": -1,
    # an addition that loosens nothing, and must pass through
    "shm_size": "128m",
}
LOOSENING_CREATE_KWARGS: dict[str, Any] = {
    "user": "0:0",
    "working_dir": "/",
    "volumes": ["/host"],
    "host_config": {"Privileged": True, "Binds": ["/:/host:rw"]},
    "networking_config": {"EndpointsConfig": {"bridge": {}}},
    "labels": {"team": "ops"},  # passes through
}


def _assert_still_isolated(body: dict[str, Any], home: Path) -> None:
    """The Engine API body keeps every isolation setting of the plain request."""
    host = body["HostConfig"]
    assert body["User"] == "1000:1000"
    assert body["WorkingDir"] == "/home/jovyan/work"
    assert sorted(body["Volumes"]) == [
        "/data/imports",
        "/data/synthetic",
        "/data/views",
        "/home/jovyan/work",
    ]
    assert "NetworkingConfig" not in body
    assert sorted(_host_paths(body)) == sorted(
        [
            f"{home}/imports/kangning",
            f"{home}/synthetic",
            f"{home}/views/kangning",
            f"{home}/work/kangning/alice",
        ]
    )
    assert host["Mounts"] == [] and "VolumesFrom" not in host
    assert "Privileged" not in host and "CapAdd" not in host
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"]["/tmp"] == "rw,noexec,nosuid,nodev,size=512m"
    assert "Devices" not in host and "DeviceCgroupRules" not in host
    assert host["NetworkMode"] == NETWORK
    assert "PortBindings" not in host and "PublishAllPorts" not in host
    for shared in ("PidMode", "UTSMode", "UsernsMode"):
        assert shared not in host
    assert host["IpcMode"] == "private" and host["CgroupnsMode"] == "private"
    assert host["Memory"] == 2 * GIB and host["MemorySwap"] == 2 * GIB
    assert "OomKillDisable" not in host
    assert host["CpuPeriod"] == 100_000 and host["CpuQuota"] == 150_000
    assert "NanoCpus" not in host
    assert host["PidsLimit"] == 512


def test_operator_extras_cannot_loosen_isolation(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path
) -> None:
    config = _config(home)
    config.DockerSpawner.extra_host_config = LOOSENING_HOST_CONFIG
    config.ShuyuDockerSpawner.extra_create_kwargs = LOOSENING_CREATE_KWARGS
    run_async(make_spawner(config=config).start())
    body = engine.created["shuyu-alice"]
    _assert_still_isolated(body, home)
    assert body["HostConfig"]["ShmSize"] == 128 * 1024**2
    assert body["Labels"] == {"team": "ops"}


def test_callable_operator_extras_cannot_loosen_isolation(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path
) -> None:
    async def host_config(spawner: ShuyuDockerSpawner) -> dict[str, Any]:
        return dict(LOOSENING_HOST_CONFIG)

    config = _config(home)
    config.ShuyuDockerSpawner.extra_host_config = host_config
    config.ShuyuDockerSpawner.extra_create_kwargs = lambda spawner: dict(LOOSENING_CREATE_KWARGS)
    spawner = make_spawner(config=config)
    # set after construction too, as a hook or an admin would: still wrapped
    spawner.extra_host_config = host_config
    run_async(spawner.start())
    _assert_still_isolated(engine.created["shuyu-alice"], home)


@pytest.mark.parametrize(
    "option, value",
    [
        ("volumes", {"/srv/shuyu/raw": "/data/raw"}),
        ("read_only_volumes", {"/": "/host"}),
        ("mounts", [{"type": "bind", "source": "/", "target": "/host"}]),
    ],
)
def test_volume_settings_are_refused(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path, option: str, value: Any
) -> None:
    config = _config(home)
    config.DockerSpawner[option] = value
    with pytest.raises(RuntimeError, match="computes its mounts from the tenant"):
        run_async(make_spawner(config=config).start())
    assert engine.created == {} and engine.calls == []


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("use_internal_ip", False, "use_internal_ip"),
        ("mem_limit", None, "mem_limit and cpu_limit"),
        ("cpu_limit", None, "mem_limit and cpu_limit"),
    ],
)
def test_settings_that_widen_the_sandbox_are_refused(
    make_spawner: MakeSpawner,
    engine: EngineStub,
    home: Path,
    option: str,
    value: Any,
    message: str,
) -> None:
    config = _config(home)
    config.ShuyuDockerSpawner[option] = value
    with pytest.raises(RuntimeError, match=message):
        run_async(make_spawner(config=config).start())
    assert engine.created == {}


@pytest.mark.parametrize("user", ["0:0", "0:1000", "1000:0", "root", "1000", ""])
def test_root_or_non_numeric_container_user_is_refused(home: Path, user: str) -> None:
    config = _config(home)
    config.ShuyuDockerSpawner.container_user = user
    with pytest.raises(ValueError, match="non-root"):
        ShuyuDockerSpawner(config=config)


@pytest.mark.parametrize(
    "internal, exists, message",
    [(False, True, "is not internal"), (True, False, "does not exist")],
)
def test_only_an_internal_network_is_accepted(
    make_spawner: MakeSpawner,
    monkeypatch: pytest.MonkeyPatch,
    home: Path,
    internal: bool,
    exists: bool,
    message: str,
) -> None:
    stub = EngineStub(network_internal=internal, network_exists=exists)
    monkeypatch.setattr(ShuyuDockerSpawner, "_client", stub)
    with pytest.raises(RuntimeError, match=message):
        run_async(make_spawner().start())
    assert stub.created == {}
    assert not (home / "work" / "kangning" / "alice").exists()


def test_user_without_tenant_is_refused_with_403(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path
) -> None:
    spawner = make_spawner("eve", groups=("analysts",))
    with pytest.raises(web.HTTPError) as refused:
        run_async(spawner.start())
    assert refused.value.status_code == 403
    assert "belongs to no tenant" in str(refused.value.log_message)
    assert engine.calls == [] and engine.created == {}
    assert list((home / "work").iterdir()) == []


@pytest.mark.parametrize("name", ["..", "a:b", "a,b", "-rm", ".hidden", "x" * 129])
def test_unsafe_user_name_is_refused_with_403(
    make_spawner: MakeSpawner, engine: EngineStub, home: Path, name: str
) -> None:
    spawner = make_spawner(name)
    with pytest.raises(web.HTTPError) as refused:
        run_async(spawner.start())
    assert refused.value.status_code == 403
    assert "cannot name a folder" in str(refused.value.log_message)
    assert engine.calls == [] and engine.created == {}
    assert not (home / "work" / "kangning").exists()


def test_user_chosen_image_is_refused(make_spawner: MakeSpawner, engine: EngineStub) -> None:
    spawner = make_spawner()
    spawner.user_options = {"image": "docker.io/library/ubuntu"}
    with pytest.raises(web.HTTPError) as refused:
        run_async(spawner.start())
    assert refused.value.status_code == 400
    assert engine.created == {}


def test_internal_ssl_certificates_volume_is_named_and_read_only(
    make_spawner: MakeSpawner, home: Path
) -> None:
    spawner = make_spawner()
    spawner.internal_ssl = True
    binds = spawner.volume_binds
    assert binds["shuyussl-alice"] == {"bind": "/certs", "mode": "ro"}
    assert len(binds) == 5 and not any("{" in source for source in binds)


# ------------------------------------------------------------ choosing the spawner
def test_docker_is_chosen_by_dotted_name_and_imported_only_then() -> None:
    assert SPAWNERS["docker"] == "shuyu_platform.isolation.docker.ShuyuDockerSpawner"
    hub = JupyterHub()
    hub.spawner_class = SPAWNERS["docker"]
    assert hub.spawner_class is ShuyuDockerSpawner
    code = (
        "import sys, shuyu_platform.hubconfig, shuyu_platform.isolation.spawner; "
        "assert 'dockerspawner' not in sys.modules, 'dockerspawner imported'; "
        "assert 'shuyu_platform.isolation.docker' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_listen_on_sandbox_network_opens_hub_and_service_only() -> None:
    c = Config()
    c.JupyterHub.hub_bind_url = "http://127.0.0.1:8081"
    c.JupyterHub.services = [
        {"name": "shuyu-operator", "api_token": "t"},
        {"name": "shuyu", "url": "http://127.0.0.1:10101", "command": ["x"]},
    ]
    settings = Shuyu(config=c)
    listen_on_sandbox_network(c, settings)
    assert c.JupyterHub.hub_bind_url == "http://0.0.0.0:8081"
    assert c.JupyterHub.hub_connect_url == "http://127.0.0.1:8081"
    assert c.JupyterHub.services == [
        {"name": "shuyu-operator", "api_token": "t"},
        {"name": "shuyu", "url": "http://0.0.0.0:10101", "command": ["x"]},
    ]
