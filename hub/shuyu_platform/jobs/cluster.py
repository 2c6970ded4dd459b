"""What a sealed run would send to Kubernetes or Docker instead of bubblewrap.

The platform runs jobs with bubblewrap (:mod:`.runner`). An installation on Kubernetes
or Docker runs the same run as a Kubernetes ``Job`` or a Docker container; these
functions build exactly what would be sent, with the sealed runner's guarantees as
fields that cannot be left out:

- no network: a ``NetworkPolicy`` that selects the job's pod and allows nothing in or
  out, and ``automountServiceAccountToken: false`` (no API credentials); for Docker,
  ``network_mode: none``;
- uid ``nobody``, no capabilities, no privilege escalation, the runtime's seccomp
  profile, a read-only root filesystem;
- the frozen code and the tenant's production inputs read-only (sub-paths of the jobs
  volume: nothing else of it), an empty work folder and ``/tmp`` with size limits;
- memory, CPU and process limits, and the wall-clock limit as ``activeDeadlineSeconds``
  (no retries: ``backoffLimit: 0``; the platform requeues, not the cluster).

They are configuration only here: no cluster is reached by this module, and the tests
check the specification they produce (as for the spawners).
"""

from __future__ import annotations

from typing import Any

from .runner import INSIDE_CODE, INSIDE_INPUTS, INSIDE_META, INSIDE_WORK, Limits

#: The image the jobs run in: the single-user image (same Python and packages).
IMAGE = "shuyu/singleuser"
#: The uid and gid of a job.
NOBODY = 65534


def _labels(job_id: str, tenant: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "shuyu-job", "shuyu/job": job_id, "shuyu/tenant": tenant}


def kubernetes(
    job_id: str,
    tenant: str,
    command: list[str],
    datasets: list[str],
    limits: Limits,
    *,
    volume_claim: str = "shuyu-jobs",
    image: str = IMAGE,
    namespace: str = "shuyu-jobs",
) -> list[dict[str, Any]]:
    """The ``Job`` and its deny-all ``NetworkPolicy`` for one sealed run.

    ``volume_claim`` holds the jobs zone; the pod mounts only the run's code and the
    tenant's production inputs from it (read-only sub-paths) and its work and meta
    folders; ``command`` is the program (papermill or Python) as in the runner.
    """
    labels = _labels(job_id, tenant)
    mounts = [
        {
            "name": "jobs",
            "mountPath": INSIDE_CODE,
            "subPath": f"{job_id}/run/code",
            "readOnly": True,
        },
        *(
            {
                "name": "jobs",
                "mountPath": f"{INSIDE_INPUTS}/{name}.parquet",
                "subPath": f"inputs/{tenant}/{name}.parquet",
                "readOnly": True,
            }
            for name in sorted(datasets)
        ),
        {"name": "work", "mountPath": INSIDE_WORK},
        {"name": "meta", "mountPath": INSIDE_META},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    disk = f"{limits.disk_mb}Mi"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"shuyu-job-{job_id}", "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": limits.wall_seconds,
            "ttlSecondsAfterFinished": 300,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "hostNetwork": False,
                    "hostPID": False,
                    "hostIPC": False,
                    "dnsPolicy": "None",
                    "dnsConfig": {"nameservers": ["127.0.0.1"]},
                    "securityContext": {
                        "runAsUser": NOBODY,
                        "runAsGroup": NOBODY,
                        "runAsNonRoot": True,
                        "fsGroup": NOBODY,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "job",
                            "image": image,
                            "command": command,
                            "workingDir": INSIDE_WORK,
                            "env": [
                                {"name": "SHUYU_JOB", "value": "1"},
                                {"name": "SHUYU_JOB_INPUTS", "value": INSIDE_INPUTS},
                                {"name": "HOME", "value": "/tmp"},
                            ],
                            "resources": {
                                "limits": {
                                    "memory": f"{limits.memory_mb}Mi",
                                    "cpu": str(limits.cpus),
                                    "ephemeral-storage": disk,
                                },
                                "requests": {"memory": f"{limits.memory_mb}Mi", "cpu": "100m"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "privileged": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": [
                        {
                            "name": "jobs",
                            "persistentVolumeClaim": {"claimName": volume_claim, "readOnly": True},
                        },
                        {"name": "work", "emptyDir": {"sizeLimit": disk}},
                        {"name": "meta", "emptyDir": {"sizeLimit": disk}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
                    ],
                },
            },
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"shuyu-job-{job_id}", "namespace": namespace, "labels": labels},
        "spec": {
            "podSelector": {"matchLabels": {"shuyu/job": job_id}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }
    return [policy, job]


def docker(
    job_id: str,
    tenant: str,
    command: list[str],
    run_folder: str,
    inputs_folder: str,
    datasets: list[str],
    limits: Limits,
    *,
    image: str = IMAGE,
) -> dict[str, Any]:
    """The ``docker create`` parameters (Docker Engine API) of one sealed run."""
    binds = [f"{run_folder}/code:{INSIDE_CODE}:ro"]
    binds += [
        f"{inputs_folder}/{name}.parquet:{INSIDE_INPUTS}/{name}.parquet:ro"
        for name in sorted(datasets)
    ]
    binds += [f"{run_folder}/work:{INSIDE_WORK}:rw", f"{run_folder}/meta:{INSIDE_META}:rw"]
    mib = 1024 * 1024
    return {
        "Image": image,
        "Cmd": command,
        "User": f"{NOBODY}:{NOBODY}",
        "WorkingDir": INSIDE_WORK,
        "Env": ["SHUYU_JOB=1", f"SHUYU_JOB_INPUTS={INSIDE_INPUTS}", "HOME=/tmp"],
        "Labels": _labels(job_id, tenant),
        "NetworkDisabled": True,
        "HostConfig": {
            "NetworkMode": "none",
            "Binds": binds,
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": "rw,noexec,nosuid,size=256m"},
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": False,
            "IpcMode": "private",
            "CgroupnsMode": "private",
            "Init": True,
            "Memory": limits.memory_mb * mib,
            "MemorySwap": limits.memory_mb * mib,
            "NanoCpus": int(limits.cpus * 1e9),
            "PidsLimit": limits.pids,
            "Ulimits": [
                {"Name": "cpu", "Soft": limits.cpu_seconds, "Hard": limits.cpu_seconds + 5},
                {"Name": "fsize", "Soft": limits.disk_mb * mib, "Hard": limits.disk_mb * mib},
                {"Name": "core", "Soft": 0, "Hard": 0},
            ],
        },
    }
