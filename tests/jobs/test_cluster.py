"""The Kubernetes and Docker specifications of a sealed run (no cluster here: the spec only)."""

from __future__ import annotations

from shuyu_platform.jobs import cluster
from shuyu_platform.jobs.runner import Limits

LIMITS = Limits(memory_mb=512, cpu_seconds=60, wall_seconds=120, disk_mb=64, pids=32, cpus=0.5)
JOB = "0" * 32


def test_the_kubernetes_job_is_sealed() -> None:
    policy, job = cluster.kubernetes(
        JOB, "kangning", ["python", "/job/code/a.py"], ["health_records"], LIMITS
    )
    assert policy["kind"] == "NetworkPolicy"
    assert policy["spec"]["podSelector"]["matchLabels"] == {"shuyu/job": JOB}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [] and policy["spec"]["egress"] == []
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 120
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"]["shuyu/job"] == JOB
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert not pod["hostNetwork"] and not pod["hostPID"]
    assert pod["securityContext"]["runAsUser"] == 65534 and pod["securityContext"]["runAsNonRoot"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    limits = container["resources"]["limits"]
    assert limits == {"memory": "512Mi", "cpu": "0.5", "ephemeral-storage": "64Mi"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/job/code"]["readOnly"] and mounts["/job/code"]["subPath"] == f"{JOB}/run/code"
    data = mounts["/job/inputs/health_records.parquet"]
    assert data["readOnly"] and data["subPath"] == "inputs/kangning/health_records.parquet"
    assert not any("other" in m.get("subPath", "") for m in mounts.values())
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert all(v["persistentVolumeClaim"]["readOnly"] for v in claims)


def test_the_docker_container_is_sealed() -> None:
    run, inputs = "/srv/jobs/x/run", "/srv/jobs/inputs/kangning"
    command = ["python", "/job/code/a.py"]
    spec = cluster.docker(JOB, "kangning", command, run, inputs, ["health_records"], LIMITS)
    host = spec["HostConfig"]
    assert spec["NetworkDisabled"] and host["NetworkMode"] == "none"
    assert spec["User"] == "65534:65534" and host["CapDrop"] == ["ALL"]
    assert host["ReadonlyRootfs"] and not host["Privileged"]
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024**2 and host["PidsLimit"] == 32
    assert "/srv/jobs/x/run/code:/job/code:ro" in host["Binds"]
    assert (
        "/srv/jobs/inputs/kangning/health_records.parquet:/job/inputs/health_records.parquet:ro"
        in host["Binds"]
    )
    assert all(
        b.endswith(":ro") for b in host["Binds"] if "/job/work" not in b and "/job/meta" not in b
    )
