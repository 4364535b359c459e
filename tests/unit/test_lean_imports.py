"""The daemons run from a plain install: no lab extra, no pyroute2 at start-up."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from l3fabric.commands.lab import DEFAULT_TOPOLOGY

# Run in a fresh interpreter in which the lab extra's modules cannot be imported.
_WITHOUT_LAB_EXTRA = textwrap.dedent(
    """
    import importlib.abc, sys

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"rich", "yaml"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
    """
)


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_LAB_EXTRA + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_daemon_commands_import_without_lab_extra_or_pyroute2() -> None:
    done = _python(
        """
        import l3fabric.commands.agent, l3fabric.commands.gateway, l3fabric.commands.server
        print(sorted(m for m in ("pyroute2", "rich", "yaml") if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_and_version_work_without_lab_extra() -> None:
    done = _python(
        """
        from l3fabric.cli import main
        sys.exit(main(sys.argv[1:]))
        """,
        "--help",
    )
    assert done.returncode == 0, done.stderr
    assert "agent" in done.stdout and "lab" in done.stdout
    done = _python("from l3fabric.cli import main\nsys.exit(main(['--version']))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("l3fabric ")


def test_lab_without_its_extra_says_how_to_install_it() -> None:
    done = _python(
        """
        from l3fabric.cli import main
        sys.exit(main(["lab", "up", "x.yaml"]))
        """
    )
    assert done.returncode == 2
    assert "pip install 'l3fabric[lab]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_default_topology_ships_inside_the_package() -> None:
    import l3fabric

    assert DEFAULT_TOPOLOGY.is_file()
    assert DEFAULT_TOPOLOGY.is_relative_to(l3fabric.__path__[0])
