"""The wheel is what operators install: build it, install it into a clean venv, run it.

Installs the daemons' dependencies only (no extras) from the package index,
pinned by the CI lock file, so a dependency that is used but not declared
fails here rather than on an operator's host.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "ci.lock"


def _run(*cmd: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, cwd=cwd
    )
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the freshly built wheel installed; its bin directory."""
    work = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work, ROOT)
    (wheel,) = work.glob("l3fabric-*.whl")
    env = work / "venv"
    venv.create(env, with_pip=True)
    _run(env / "bin" / "pip", "install", "-q", "-c", LOCK, wheel)
    return env / "bin"


def test_installed_wheel_runs_version_and_the_agents_help(installed: Path) -> None:
    assert _run(installed / "l3fabric", "--version").startswith("l3fabric ")
    assert "--api" in _run(installed / "l3fabric", "agent", "--help")
    assert "--store" in _run(installed / "l3fabric", "server", "--help")


def test_installed_wheel_has_no_lab_extra_and_says_so(installed: Path) -> None:
    done = subprocess.run(
        [installed / "l3fabric", "lab", "status"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "l3fabric[lab]" in done.stderr


def test_installed_wheel_ships_docs_examples_and_units(installed: Path) -> None:
    prefix = installed.parent
    docs = prefix / "share" / "doc" / "l3fabric"
    assert (docs / "README.md").is_file()
    assert {p.name for p in (ROOT / "docs").glob("*.md")} <= {p.name for p in docs.glob("*.md")}
    assert list((docs / "contrib").glob("*.service"))
    site = _run(installed / "python", "-c", "import l3fabric, sys; print(l3fabric.__path__[0])")
    assert (Path(site.strip()) / "examples" / "dc.yaml").is_file()
