"""What the action server registers: exactly the custom actions the domain declares, each under its own name
(an abstract base registered under the name `None` once slipped through)."""

from __future__ import annotations

from pathlib import Path

import yaml
from rasa_sdk.executor import ActionExecutor

DOMAIN = Path(__file__).resolve().parents[2] / "domain"


def declared_actions() -> set[str]:
    names: set[str] = set()
    for path in DOMAIN.rglob("*.yml"):
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        names.update(a for a in content.get("actions") or [] if a.startswith(("action_", "validate_")))
        names.update(f"validate_{form}" for form in content.get("forms") or {})
    return names


def test_the_server_registers_the_domains_actions_and_nothing_else():
    executor = ActionExecutor()
    executor.register_package("actions")
    registered = set(executor.actions)

    assert None not in registered and "None" not in registered
    assert {a for a in registered if a.startswith("action_")} == {a for a in declared_actions() if a.startswith("action_")}
    assert {a for a in registered if a.startswith("validate_")} <= declared_actions()
