"""The words the actions say are domain responses (issue 8: trainers reword prompts without touching Python).

Actions choose a response and hand it its variables; the words live in each capability's `domain/*.yml`. These
tests check the actions write no sentences of their own, name only responses that exist, and that every outcome
of a money movement or card change has a response whose variables the action gives.
"""

from __future__ import annotations

import ast
import re
from string import Formatter

import pytest

from actions.bank.views import ActivationStatus, RepaymentResult, RepaymentStatus, TransferResult, TransferStatus
from actions.cards import ACTIVATION_RESPONSES, repayment_response
from actions.transfers import transfer_response
from settings import REPO_ROOT
from tests.actions.dialogue_harness import project_domain

ACTION_FILES = sorted((REPO_ROOT / "actions").glob("*.py"))
RESPONSE_NAME = re.compile(r"""["'](utter_[a-z0-9_]+)["']""")
# The variables each action passes with its outcome responses (actions/cards.py, actions/transfers.py).
REPAYMENT_VARIABLES = {"debit", "amount", "remaining"}
TRANSFER_VARIABLES = {"source", "target", "amount", "reference", "limit"}
ACTIVATION_VARIABLES = {"card"}


def variables(response: str) -> set[str]:
    """The {names} the response's words use, over all its variations."""
    texts = [variation.get("text") or "" for variation in project_domain()["responses"][response]]
    return {field for text in texts for _, field, _, _ in Formatter().parse(text) if field}


def spoken_literals(node: ast.AST) -> bool:
    """Whether an expression is, or is built from, string literals: words written in Python."""
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)) or (
        isinstance(node, ast.BinOp) and (spoken_literals(node.left) or spoken_literals(node.right)))


@pytest.mark.parametrize("path", ACTION_FILES, ids=lambda path: path.name)
def test_actions_name_only_responses_the_domain_has(path):
    missing = set(RESPONSE_NAME.findall(path.read_text(encoding="utf-8"))) - set(project_domain()["responses"])
    assert not missing


@pytest.mark.parametrize("path", ACTION_FILES, ids=lambda path: path.name)
def test_actions_say_no_words_of_their_own(path):
    written = [
        node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "utter_message"
        and any(keyword.arg == "text" and spoken_literals(keyword.value) for keyword in node.keywords)
    ]
    assert not written, f"{path.name} lines {written}: say it with a domain response"


@pytest.mark.parametrize("status", list(RepaymentStatus))
@pytest.mark.parametrize("repeated", [False, True])
@pytest.mark.parametrize("remaining", [0, 10_000])
def test_every_repayment_outcome_has_words_the_action_can_fill(status, repeated, remaining):
    response = repayment_response(RepaymentResult(status, remaining_due_cents=remaining, repeated=repeated))
    assert variables(response) <= REPAYMENT_VARIABLES


@pytest.mark.parametrize("status", list(TransferStatus))
@pytest.mark.parametrize("repeated", [False, True])
def test_every_transfer_outcome_has_words_the_action_can_fill(status, repeated):
    response = transfer_response(TransferResult(status, repeated=repeated))
    assert variables(response) <= TRANSFER_VARIABLES


def test_every_activation_outcome_has_words_the_action_can_fill():
    assert set(ACTIVATION_RESPONSES) == set(ActivationStatus)
    assert all(variables(response) <= ACTIVATION_VARIABLES for response in ACTIVATION_RESPONSES.values())


def test_a_paid_off_statement_is_said_so_and_a_remainder_is_said_with_its_amount():
    assert "remaining" in variables(repayment_response(RepaymentResult(RepaymentStatus.OK, remaining_due_cents=1)))
    paid_off = repayment_response(RepaymentResult(RepaymentStatus.OK, remaining_due_cents=0))
    assert "remaining" not in variables(paid_off) and "还清" in project_domain()["responses"][paid_off][0]["text"]
