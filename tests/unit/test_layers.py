"""The controller's layers stay apart: api -> service -> store (docs/controller.md).

The service layer must stay usable without HTTP (benchmarks, tools, other
transports), and the package must stay free of import cycles, type-only
imports included: a cycle is how "narrow collaborators" quietly become "every
service knows every other" again.
"""

from __future__ import annotations

import graphlib
import subprocess
import sys

import grimp
import pytest

from l3fabric.api.errors import status_of
from l3fabric.service import errors

_NO_HTTP = """
import importlib, pkgutil, sys
import l3fabric.service
names = [m.name for m in pkgutil.walk_packages(l3fabric.service.__path__, "l3fabric.service.")]
for name in names:
    importlib.import_module(name)
http = sorted({m.split(".")[0] for m in sys.modules} & {"fastapi", "starlette"})
print(len(names), " ".join(http))
"""


def test_the_service_layer_loads_no_http_framework() -> None:
    # A fresh interpreter: this one has FastAPI loaded by the API tests.
    out = subprocess.run(
        [sys.executable, "-c", _NO_HTTP], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    count, http = int(out[0]), out[1:]
    assert http == [], f"service modules pull in {http}"
    assert count >= 12  # every service module, errors, fabric and watch included


def test_the_package_has_no_import_cycle_not_even_through_type_only_imports() -> None:
    graph = grimp.build_graph("l3fabric", exclude_type_checking_imports=False)
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each module before the one that imports it.
        pytest.fail(f"import cycle: {' -> '.join(reversed(exc.args[1]))}")


def test_services_never_import_the_api() -> None:
    graph = grimp.build_graph("l3fabric", exclude_type_checking_imports=False)
    chain = graph.find_shortest_chain("l3fabric.service", "l3fabric.api", as_packages=True)
    assert chain is None, " -> ".join(chain or ())


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.BadRequest, 400),
        (errors.NotFound, 404),
        (errors.Conflict, 409),
        (errors.Gone, 410),
        (errors.PreconditionFailed, 412),
        (errors.Unavailable, 503),
    ],
)
def test_every_kind_of_service_error_has_its_http_status(
    error: type[errors.ServiceError], status: int
) -> None:
    assert status_of(error("SomeType", "some message")) == status


def test_no_kind_of_service_error_is_left_unmapped() -> None:
    kinds = errors.ServiceError.__subclasses__()
    assert kinds and all(status_of(k("T", "m")) != 500 for k in kinds)
