"""The SIP core's process stays clear of the management API: an import error (or a heavy
import) in the API package cannot stop or slow the core."""

from __future__ import annotations

from support.imports import loaded

API_STACK = ("fastapi", "starlette", "uvicorn", "argon2", "httpx", "websockets")

# What ``edgepbx part core`` imports: the command line module, then every module that
# ``_core_main`` and ``run_part`` import when they run (read from their source, so a new
# import there is checked too).
CORE_PART = """
import ast, importlib, inspect
import appliance.cli, appliance.daemon as daemon
for function in (daemon.run_part, daemon._core_main):
    for node in ast.walk(ast.parse(inspect.getsource(function))):
        if isinstance(node, ast.ImportFrom) and node.module:
            importlib.import_module(node.module)
"""


def test_the_core_part_loads_no_api_stack() -> None:
    assert loaded(CORE_PART, API_STACK) == []


def test_the_probe_sees_what_the_manager_part_loads() -> None:
    """The same probe on the manager part finds the API stack: the check above can fail."""
    manager = CORE_PART.replace("daemon._core_main", "daemon._manager_main")
    assert {"fastapi", "uvicorn"} <= set(loaded(manager, API_STACK))
