"""Running the real ``openstack`` CLI against our controller, printing each command.

The demos use it to show that an unmodified OpenStack client drives
l3fabric: no Keystone, ``--os-auth-type none --os-endpoint URL``, or with a token
(``--auth tokens``) ``--os-auth-type admin_token`` with the token in ``OS_TOKEN``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from rich.console import Console

COMMAND_TIMEOUT_S = 60


class CommandFailed(Exception):
    """An ``openstack`` command failed; the message says which and why."""


def openstack_executable() -> Path:
    """The CLI installed next to this Python (the venv's), or CommandFailed."""
    path = Path(sys.executable).parent / "openstack"
    if not path.exists():
        raise CommandFailed(
            f"{path} not found; install the test extras: pip install -e '.[test]' (or run make demo)"
        )
    return path


class OpenStackCLI:
    """``openstack ...`` against ``url``; each call is printed with its output."""

    def __init__(self, url: str, console: Console, token: str | None = None) -> None:
        self.url = url
        self.console = console
        self.executable = openstack_executable()
        # Whatever cloud the user has configured must not leak into the demo.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        # The token goes in the environment, where `ps` does not show it.
        self.auth = ["--os-auth-type", "none"]
        if token:
            self.env["OS_TOKEN"] = token
            self.auth = ["--os-auth-type", "admin_token"]

    def __call__(self, title: str, *argv: str, quiet: bool = False) -> str:
        """Run ``openstack ARGV``; returns its stdout, raises CommandFailed on failure."""
        command = [str(self.executable), *self.auth, "--os-endpoint", self.url]
        shown = f"openstack {shlex.join(argv)}"
        if not quiet:
            self.console.print(f"\n[bold cyan]# {title}[/bold cyan]")
            self.console.print(f"[bold]$ {shown}[/bold]", highlight=False)
        try:
            done = subprocess.run(
                [*command, *argv],
                capture_output=True,
                text=True,
                env=self.env,
                timeout=COMMAND_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"`{shown}` took over {COMMAND_TIMEOUT_S} s") from None
        if not quiet:
            # soft_wrap: the CLI's tables keep their own line breaks at any width.
            self.console.print(done.stdout.rstrip(), markup=False, soft_wrap=True)
        if done.returncode != 0:
            self.console.print(done.stderr.rstrip(), style="red", markup=False, soft_wrap=True)
            raise CommandFailed(f"`{shown}` exited with {done.returncode}")
        return done.stdout
