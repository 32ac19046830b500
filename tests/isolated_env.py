"""A fresh virtual environment holding only named distributions (and what they require), for testing packaged bundles.

Installing torch and friends again for every test run would take minutes and gigabytes, so the environment links the
distributions' files from the running interpreter's site-packages instead: the new environment sees exactly the
files of the requested distributions and of their declared requirements, and nothing else (no samzoo, no test
tools, not this repository).
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
import venv
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def requirement_closure(names: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions named in ``names`` plus everything they require (environment markers applied)."""
    found: dict[str, metadata.Distribution] = {}
    pending = [(name, frozenset()) for name in names]
    while pending:
        name, extras = pending.pop()
        key = canonicalize_name(name)
        if key in found and not extras:
            continue
        dist = found.get(key) or metadata.distribution(name)
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [dict(default_environment(), extra=e) for e in (extras or {""})]
            wanted = req.marker is None or any(req.marker.evaluate(env) for env in envs)
            if wanted and canonicalize_name(req.name) not in found:
                pending.append((req.name, frozenset(req.extras)))
    return found


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The names a distribution puts directly in site-packages (packages, modules, .pth files, its dist-info)."""
    entries = set()
    for file in dist.files or []:
        parts = Path(file).parts
        if parts and parts[0] not in ("..", "__pycache__"):
            entries.add(parts[0])
    return entries


def isolated_env(root: Path, distributions: Iterable[str]) -> Path:
    """Create a virtual environment at ``root`` exposing only ``distributions`` and their requirements; return its
    Python executable."""
    venv.create(root, with_pip=False, symlinks=True)
    target = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    for dist in requirement_closure(distributions).values():
        source = Path(dist.locate_file(""))
        for entry in _top_level_entries(dist):
            link = target / entry
            if not link.exists() and (source / entry).exists():
                link.symlink_to(source / entry)
    return root / "bin" / "python"


def run_python(python: Path, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run the isolated interpreter with a clean environment (no PYTHONPATH leaking the test's packages)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


__all__ = ["isolated_env", "requirement_closure", "run_python"]
