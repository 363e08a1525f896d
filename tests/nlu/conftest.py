"""Fixtures for the NLU data tests: the split and metrics scripts, loaded from scripts/ (not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader, f"scripts/{name}.py not found"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def split_nlu() -> ModuleType:
    return _load_script("split_nlu")


@pytest.fixture(scope="session")
def nlu_metrics() -> ModuleType:
    return _load_script("nlu_metrics")
