"""Build the service images with buildah and run them the way a Kubernetes pod would.

`build()` calls deploy/k8s/build_images.sh (the script behind `make images`). `Container` runs
an image from the same buildah storage without a container engine: the image's root file
system is mounted (`buildah mount`), bind-mounted read-only in a private mount and PID
namespace (`unshare`), with a tmpfs for every writable volume the manifest mounts and the
manifest's ConfigMap files bound read-only, then entered with `chroot --userspec` as the
image's USER. The network is the host's, so the service reaches the local stack on 127.0.0.1
and its health port (from the env, in the caller's port range) is reachable from the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulse_k8s import REPO

BUILD_SCRIPT = REPO / "deploy" / "k8s" / "build_images.sh"
STAND_IN_BASE = "localhost/pulse-base:py311-bookworm"


def images_dir() -> Path:
    return Path(os.environ.get("PULSE_IMAGES_DIR", REPO / ".stack" / "images"))


def image_name(service: str, *, tag: str = "dev") -> str:
    """pulse/<name-with-dashes>:<tag>, as build_images.sh tags it and the manifests use it."""
    return f"pulse/{service.replace('_', '-')}:{tag}"


def storage_driver() -> str:
    """As deploy/k8s/buildah_env.sh chooses it: overlay where the kernel has it, else vfs."""
    if driver := os.environ.get("PULSE_IMAGES_DRIVER"):
        return driver
    return "overlay" if "\toverlay\n" in Path("/proc/filesystems").read_text() else "vfs"


def buildah(*args: str, timeout_s: float = 300) -> str:
    root, driver = images_dir(), storage_driver()
    argv = [
        "buildah",
        "--root",
        str(root / f"storage-{driver}"),
        "--runroot",
        str(root / f"run-{driver}"),
        "--storage-driver",
        driver,
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv[7:])} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def build(
    services: list[str], *, services_root: Path | None = None, timeout_s: float = 3600
) -> subprocess.CompletedProcess[str]:
    """Run build_images.sh for `services` (its stderr names a failing service and step)."""
    env = {**os.environ, "SERVICES": " ".join(services), "PULSE_IMAGES_DIR": str(images_dir())}
    if services_root is not None:
        env["SERVICES_ROOT"] = str(services_root)
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@dataclass(frozen=True)
class HealthCheck:
    argv: list[str]
    interval_s: float
    start_period_s: float
    retries: int


@dataclass(frozen=True)
class ImageConfig:
    """What the image itself declares (docker-format config)."""

    user: str
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    exposed_ports: set[int]
    healthcheck: HealthCheck | None
    size_bytes: int

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]

    def pod_argv(self, command: list[str], args: list[str]) -> list[str]:
        """What Kubernetes runs: command replaces ENTRYPOINT (and CMD), args replace CMD."""
        if command:
            return [*command, *args]
        return [*self.entrypoint, *(args or self.cmd)]


def image_config(image: str) -> ImageConfig:
    info = json.loads(buildah("inspect", "--type", "image", image))
    config: dict[str, Any] = info["Docker"]["config"]
    check = config.get("Healthcheck") or None
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    size = sum(layer["size"] for layer in json.loads(info["Manifest"])["layers"])
    return ImageConfig(
        user=config.get("User") or "",
        env=env,
        entrypoint=list(config.get("Entrypoint") or []),
        cmd=list(config.get("Cmd") or []),
        exposed_ports={int(p.split("/")[0]) for p in config.get("ExposedPorts") or {}},
        healthcheck=HealthCheck(
            argv=list(check["Test"]),
            interval_s=check.get("Interval", 30_000_000_000) / 1e9,
            start_period_s=check.get("StartPeriod", 0) / 1e9,
            retries=int(check.get("Retries", 3)),
        )
        if check
        else None,
        size_bytes=int(size),
    )


_ROOTS: dict[str, tuple[str, str]] = {}  # image -> (working container, mount point)


def rootfs(image: str) -> str:
    """The image's root file system, mounted once per process (`buildah from` + `mount`).

    Every run binds it read-only, so runs of one image can share it; `release_roots()` removes
    the working containers (vfs copies the whole image for each, so they are made once)."""
    if image not in _ROOTS:
        name = f"pulse-it-{uuid.uuid4().hex[:10]}"
        buildah("from", "--pull=never", "--name", name, image)
        _ROOTS[image] = (name, buildah("mount", name).strip())
    return _ROOTS[image][1]


def release_roots() -> None:
    while _ROOTS:
        _, (name, _) = _ROOTS.popitem()
        buildah("umount", name)
        buildah("rm", name)


# Runs as root in fresh mount + PID namespaces; argv: rootfs, user, then KIND:PATH[:SRC]
# mounts up to "--", then the command.
_ENTER = r"""
set -eu
root="$1"; user="$2"; shift 2
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
while [ "$1" != "--" ]; do
    kind="${1%%:*}"; rest="${1#*:}"; shift
    case "$kind" in
        tmpfs) mkdir -p "$root$rest" && mount -t tmpfs -o mode=1777,size=256m tmpfs "$root$rest" ;;
        ro) dst="${rest%%:*}"; src="${rest#*:}"
            mkdir -p "$root$dst" && mount --bind "$src" "$root$dst"
            mount -o remount,bind,ro "$root$dst" ;;
    esac
done
shift
mount -o remount,bind,ro "$root"
exec chroot --userspec="$user" "$root" "$@"
"""


@dataclass
class Container:
    """One image run with a read-only root; use as a context manager (stops and cleans up)."""

    image: str
    env: dict[str, str]
    argv: list[str]
    tmpfs: list[str] = field(default_factory=list)
    read_only_binds: dict[str, Path] = field(default_factory=dict)  # container path -> host
    log_path: Path | None = None
    user: str | None = None  # default: the image's USER
    proc: subprocess.Popen[bytes] | None = None
    rootfs: str = ""

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        config = image_config(self.image)
        user = self.user if self.user is not None else config.user
        self.rootfs = rootfs(self.image)
        env = {"HOME": "/", **config.env, **self.env}
        mounts = [f"tmpfs:{path}" for path in self.tmpfs] + [
            f"ro:{dst}:{src}" for dst, src in self.read_only_binds.items()
        ]
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            _ENTER,
            "enter",
            self.rootfs,
            user or "0:0",
            *mounts,
            "--",
            *self.argv,
        ]
        log = (self.log_path or Path(os.devnull)).open("ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def main_pid(self, *, timeout_s: float = 10) -> int:
        """Host PID of the process chrooted into this container's root."""
        deadline = time.monotonic() + timeout_s
        root = os.path.realpath(self.rootfs)  # /proc shows the resolved path
        while time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if os.readlink(entry / "root") == root:
                        return int(entry.name)
                except OSError:
                    continue
            time.sleep(0.1)
        raise AssertionError(f"{self.image}: no process found in {self.rootfs}")

    def uid_gid(self) -> tuple[int, int]:
        """Real uid and gid of the main process (from /proc/<pid>/status)."""
        status = Path(f"/proc/{self.main_pid()}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self, *, grace_s: float = 20) -> None:
        """SIGTERM, then SIGKILL, to the container's PID 1 (its namespace dies with it)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            pid = self.main_pid(timeout_s=2)
        except AssertionError:
            self.proc.kill()  # not in the chroot yet: --kill-child ends the shell
            self.proc.wait(timeout=10)
            return
        os.kill(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            # chroot --userspec drops --kill-child's parent-death signal: kill PID 1 itself.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def run_once(
    image: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    tmpfs: list[str] = (),
    timeout_s: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the image (read-only root, tmpfs mounts) to completion; stdout+stderr."""
    log = images_dir() / f"run-{uuid.uuid4().hex[:8]}.log"
    container = Container(image, env or {}, argv, tmpfs=list(tmpfs), log_path=log)
    try:
        container.start()
        code = container.wait(timeout_s)
    finally:
        container.stop()
    output = log.read_text(errors="replace")
    log.unlink()
    return subprocess.CompletedProcess(argv, code, output, "")


# --- the pod a manifest describes -----------------------------------------------------------


@dataclass(frozen=True)
class PodContainer:
    """One container of a rendered Deployment/CronJob, with its env resolved to values."""

    name: str
    image: str
    command: list[str]  # empty: the image's ENTRYPOINT
    args: list[str]  # empty (with no command): the image's CMD
    env: dict[str, str]  # configMap values and secret references resolved
    ports: set[int]
    run_as_user: int | None
    run_as_group: int | None
    read_only_root: bool
    writable_mounts: list[str]  # emptyDir / PVC mount paths -> tmpfs here
    config_files: dict[str, dict[str, str]]  # mount path -> {file name: content}
    probes: dict[str, str]  # startupProbe/livenessProbe/readinessProbe -> HTTP path


def pod_containers(
    docs: list[dict[str, Any]], workload: dict[str, Any], secrets: dict[str, str]
) -> list[PodContainer]:
    """The workload's init containers and containers; `secrets` maps secret keys to values."""
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    if workload["kind"] == "CronJob":
        spec = workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = workload["spec"]["template"]["spec"]
    pod_security = spec.get("securityContext", {})
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    out = []
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        env: dict[str, str] = {}
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                env.update(config_maps[source["configMapRef"]["name"]].get("data", {}))
            else:  # a whole Secret: `secrets` holds its keys as "<secret name>/<key>"
                prefix = source["secretRef"]["name"] + "/"
                env.update(
                    {k[len(prefix) :]: v for k, v in secrets.items() if k.startswith(prefix)}
                )
        for item in c.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif ref := item.get("valueFrom", {}).get("secretKeyRef"):
                if ref["key"] in secrets:
                    env[item["name"]] = secrets[ref["key"]]
                elif not ref.get("optional") and not ref["key"].startswith("KAFKA_"):
                    raise AssertionError(f"{c['name']}: no local value for secret key {ref['key']}")
        writable, files = [], {}
        for mount in c.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                files[mount["mountPath"]] = config_maps[volume["configMap"]["name"]]["data"]
            else:
                writable.append(mount["mountPath"])
        security = {**pod_security, **c.get("securityContext", {})}
        out.append(
            PodContainer(
                name=c["name"],
                image=c["image"],
                command=list(c.get("command", [])),
                args=list(c.get("args", [])),
                env=env,
                ports={p["containerPort"] for p in c.get("ports", [])},
                run_as_user=security.get("runAsUser"),
                run_as_group=security.get("runAsGroup"),
                read_only_root=bool(security.get("readOnlyRootFilesystem")),
                writable_mounts=writable,
                config_files=files,
                probes={
                    kind: c[kind]["httpGet"]["path"]
                    for kind in ("startupProbe", "livenessProbe", "readinessProbe")
                    if "httpGet" in c.get(kind, {})
                },
            )
        )
    return out


# --- the checks a failing image is reported by (service and step named) ---------------------


def check_non_root(service: str, config: ImageConfig) -> None:
    uid = config.user.split(":")[0]
    if uid in ("", "0", "root"):
        raise AssertionError(
            f"{service}: step user: the image runs as root (USER {config.user or 'unset'})"
        )


def wait_healthy(
    service: str,
    container: Container,
    url: str,
    config: ImageConfig,
    *,
    deadline_s: float | None = None,
) -> float:
    """Seconds until `url` answered 200; fails within the HEALTHCHECK's start period (+ its
    retries × interval, when Docker would call it unhealthy) or when the process exits."""
    import httpx

    check = config.healthcheck
    if deadline_s is None:
        if check is None:
            raise AssertionError(f"{service}: step health: the image declares no HEALTHCHECK")
        deadline_s = check.start_period_s + check.retries * check.interval_s
    start = time.monotonic()
    last = "no answer"
    while (elapsed := time.monotonic() - start) < deadline_s:
        if not container.running():
            code = container.proc.returncode if container.proc else None
            raise AssertionError(
                f"{service}: step health: the process exited ({code}) before {url} answered"
            )
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return elapsed
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise AssertionError(
        f"{service}: step health: {url} not healthy within {deadline_s:.0f} s (last: {last})"
    )
