"""The EKS Connect worker speaks MSK IAM: its config names AWS's login module and callback
handler, and the jar holding them reaches its classpath, fetched with a pinned checksum."""

from __future__ import annotations

import re
from typing import Any

from pulse_k8s import objects, pod_spec

MODULE = "software.amazon.msk.auth.iam.IAMLoginModule"
HANDLER = "software.amazon.msk.auth.iam.IAMClientCallbackHandler"


def test_the_eks_connect_worker_has_the_msk_iam_jar_and_config(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["eks"]
    # generated ConfigMaps carry a content hash after their name
    (config,) = [
        m["data"]
        for name, m in objects(docs, "ConfigMap").items()
        if name.startswith("connect-config")
    ]
    for client in ("", "PRODUCER_", "CONSUMER_", "ADMIN_"):
        assert config[f"CONNECT_{client}SASL_MECHANISM"] == "AWS_MSK_IAM"
        assert MODULE in config[f"CONNECT_{client}SASL_JAAS_CONFIG"]
        assert config[f"CONNECT_{client}SASL_CLIENT_CALLBACK_HANDLER_CLASS"] == HANDLER
    spec = pod_spec(objects(docs, "Deployment")["connect"])
    (init,) = [c for c in spec["initContainers"] if c["name"] == "msk-iam-auth"]
    script = init["command"][-1]
    jar = re.search(r"aws-msk-iam-auth-[\d.]+-all\.jar", script)
    assert jar and "https://repo1.maven.org/maven2/software/amazon/msk/" in script
    assert re.search(r"echo \"[0-9a-f]{64}  \$jar\" \| sha256sum -c -", script)
    (connect,) = [c for c in spec["containers"] if c["name"] == "connect"]
    env = {e["name"]: e.get("value") for e in connect["env"]}
    mounts = {m["name"]: m["mountPath"] for m in connect["volumeMounts"]}
    assert env["CLASSPATH"] == f"{mounts['msk-iam']}/{jar.group(0)}"


def test_the_k3s_connect_worker_is_left_as_it_was(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    spec = pod_spec(objects(rendered["k3s"], "Deployment")["connect"])
    assert not spec.get("initContainers")
