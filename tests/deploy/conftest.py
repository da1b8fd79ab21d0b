"""Tools the deploy tests need: promtool (Debian's `prometheus` package)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, package: str) -> str:
    """The tool's path; fails under CI (where .ci/run installs it), skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found: install Debian's {package} package (apt-get install -y {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; .ci/run should have installed it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool", "prometheus")
