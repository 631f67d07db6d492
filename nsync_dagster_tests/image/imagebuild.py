"""Build deploy/Dockerfile with podman and run commands in the image with buildah, on a machine
without a container registry or a container runtime daemon (``podman run`` does not work here;
``buildah run --isolation=chroot`` does, and shares the host's network).

The base image is Debian bookworm made from Debian's own packages with ``mmdebstrap`` and
``podman import``; its tarball is cached (``NSYNC_IMAGE_CACHE``, default
``~/.cache/nsync/image``) and the imported image is kept by podman, so only the first run pays
for it. The build takes PostgreSQL's clients from Debian (``PG_CLIENTS=distribution``: 15 on
bookworm) and pip's packages from the index pip is configured for here; a TLS proxy's CA bundle
(``PIP_CERT``) is passed as the build secret ``pip_ca``, never stored in the image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
PG_MAJOR = "15"  # Debian bookworm's only PostgreSQL
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_TAG = f"localhost/nsync-base:{SUITE}"
IMAGE_TAG = "localhost/nsync:image-test"
MIRROR = os.environ.get("NSYNC_DEBIAN_MIRROR", "http://deb.debian.org/debian")
TOOLS = ("podman", "buildah", "mmdebstrap")
PODMAN = ["podman", "--cgroup-manager=cgroupfs"]


def missing_tools() -> list[str]:
    """The programs the image test needs that are not installed (``.ci/run`` installs them)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _run(cmd: list[str], timeout: float, log: Path | None = None) -> str:
    # stdin closed: a tool that reads the terminal would stop a backgrounded run (SIGTTIN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                         stdin=subprocess.DEVNULL)
    text = out.stdout + out.stderr
    if log is not None:
        log.write_text(text)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])} ... failed ({out.returncode}):\n{text[-6000:]}")
    return text


def base_tarball() -> Path:
    """Debian's minimal base with Python, made once with mmdebstrap and cached by its recipe."""
    cache = Path(os.environ.get("NSYNC_IMAGE_CACHE", Path.home() / ".cache/nsync/image"))
    recipe = f"{SUITE} minbase {','.join(BASE_PACKAGES)} {MIRROR}"
    tar = cache / f"debian-{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.tar"
    if not tar.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".partial")
        _run(["mmdebstrap", "--variant=minbase", "--format=tar",
              f"--include={','.join(BASE_PACKAGES)}", "--aptopt=Acquire::Retries \"3\"",
              SUITE, str(partial), MIRROR], timeout=1200)
        partial.rename(tar)
    return tar


def base_image() -> str:
    """The base tarball imported into podman (kept there between runs)."""
    tar = base_tarball()
    tag = f"{BASE_TAG}-{tar.stem.rsplit('-', 1)[1]}"
    if subprocess.run([*PODMAN, "image", "exists", tag]).returncode != 0:
        _run([*PODMAN, "import", str(tar), tag], timeout=600)
    return tag


def build_args() -> list[str]:
    """The build's arguments: the Debian base, Debian's PostgreSQL clients, this machine's pip
    index (if an http(s) one is configured) and its CA bundle as a secret."""
    args = ["--build-arg", f"BASE_IMAGE={base_image()}", "--build-arg", "PG_CLIENTS=distribution",
            "--build-arg", f"PG_MAJOR={PG_MAJOR}"]
    index = os.environ.get("PIP_INDEX_URL", "")
    if index.startswith(("http://", "https://")):
        args += ["--build-arg", f"PIP_INDEX_URL={index}"]
    ca = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
    if Path(ca).is_file():
        args += ["--secret", f"id=pip_ca,src={ca}"]
    return args


def build_image(log: Path) -> float:
    """``podman build`` of deploy/Dockerfile from the repository root; returns its seconds."""
    started = time.monotonic()
    _run([*PODMAN, "build", "--isolation=chroot", "-f", "deploy/Dockerfile",
          "--ignorefile", "deploy/Dockerfile.dockerignore", *build_args(), "-t", IMAGE_TAG, "."],
         timeout=1800, log=log)
    return time.monotonic() - started


class Container:
    """A buildah working container of the image: commands run in it as the image's user."""

    def __init__(self, image: str = IMAGE_TAG) -> None:
        self.name = _run(["buildah", "from", "--pull-never", image], timeout=300).split()[-1]

    def copy(self, source: Path, dest: str) -> None:
        _run(["buildah", "copy", "--chown", "10001:10001", self.name, str(source), dest],
             timeout=120)

    def run(self, env: dict[str, str], *cmd: str, timeout: float = 600,
            ) -> subprocess.CompletedProcess:
        flags = [f"--env={key}={value}" for key, value in env.items()]
        return subprocess.run(["buildah", "run", "--isolation=chroot", *flags, self.name, "--",
                               *cmd], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def remove(self) -> None:
        subprocess.run(["buildah", "rm", self.name], capture_output=True, timeout=120)
