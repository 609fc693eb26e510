"""The parts of a model server's pod spec that keep it hardened and sized: pure dictionaries.

The pod runs as a fixed non-root user on a read-only root filesystem with every capability
dropped and the runtime's seccomp profile: what the `restricted` Pod Security Standard asks.
Everything the engines write goes to emptyDir volumes (or the weights PVC), named by
environment variables the engines and their libraries honour.
"""

from __future__ import annotations

from typing import Any, Optional

#: Fixed non-root UID/GID (no passwd entry needed; HOME and USER are set explicitly).
RUN_AS = 10001
HOME = "/home/llm"
#: Where the weights PVC is mounted (pvc weights); HF_HOME points here.
MODEL_CACHE = "/var/cache/models"
#: emptyDir sizes: HOME holds the vLLM/torch/triton compile caches, /tmp the engines' sockets
#: and the config/tokenizer files fetched next to streamed weights.
HOME_SIZE, TMP_SIZE = "10Gi", "4Gi"

POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
    "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}


def writable_paths(shm_gi: int, model_cache_claim: Optional[str]) -> tuple[list[dict], list[dict], list[dict]]:
    """(volumes, volume mounts, env) for everything the server writes."""
    volumes = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gi}Gi"}},
               {"name": "home", "emptyDir": {"sizeLimit": HOME_SIZE}},
               {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}}]
    mounts = [{"name": "shm", "mountPath": "/dev/shm"}, {"name": "home", "mountPath": HOME},
              {"name": "tmp", "mountPath": "/tmp"}]
    hf_home = f"{HOME}/.cache/huggingface"
    if model_cache_claim:
        volumes.append({"name": "cache", "persistentVolumeClaim": {"claimName": model_cache_claim}})
        mounts.append({"name": "cache", "mountPath": MODEL_CACHE})
        hf_home = MODEL_CACHE
    env = [{"name": "HOME", "value": HOME},
           # torch asks getpass for its cache path, which fails for a UID without a passwd entry.
           {"name": "USER", "value": "llm"},
           {"name": "XDG_CACHE_HOME", "value": f"{HOME}/.cache"},  # vLLM, triton, flashinfer caches
           {"name": "XDG_CONFIG_HOME", "value": f"{HOME}/.config"},
           {"name": "HF_HOME", "value": hf_home},
           # Images may set the hub cache themselves (TGI's is /data, on the read-only root);
           # TGI's launcher still reads the older name.
           {"name": "HF_HUB_CACHE", "value": f"{hf_home}/hub"},
           {"name": "HUGGINGFACE_HUB_CACHE", "value": f"{hf_home}/hub"}]
    return volumes, mounts, env


def _cpu(vcpu: float) -> str:
    return str(int(vcpu)) if float(vcpu).is_integer() else f"{round(vcpu * 1000)}m"


def resources(gpus: int, cpu: float, memory_gi: int, shm_gi: int) -> dict[str, Any]:
    """Requests the scheduler reserves, and a memory limit that leaves room for /dev/shm
    (memory-backed, so charged to the container): a full shm never crowds out the process."""
    return {"requests": {"nvidia.com/gpu": str(gpus), "cpu": _cpu(cpu), "memory": f"{memory_gi}Gi"},
            "limits": {"nvidia.com/gpu": str(gpus), "memory": f"{memory_gi + shm_gi}Gi"}}
