"""/healthz on the real stack: 200 with everything up, 503 naming the action server when it is stopped."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_healthz_is_200_when_everything_answers(stack):
    resp = stack.wait_healthy()
    assert resp.status_code == 200, resp.text
    assert resp.json()["failing"] == []


def test_healthz_names_the_stopped_action_server(stack):
    stack.stop("actions")
    try:
        resp = stack.healthz()
        assert resp.status_code == 503
        assert resp.json()["failing"] == ["action_server"]
    finally:
        stack.start("actions")
        stack.wait_ready("actions")
    assert stack.wait_healthy().status_code == 200


def test_console_page_and_metrics_are_served(stack):
    assert stack.http.get(f"{stack.gateway_url}/console", timeout=5).status_code == 200
    metrics = stack.http.get(f"{stack.gateway_url}/metrics", timeout=5)
    assert metrics.status_code == 200 and "ivr_gateway_health_failures_total" in metrics.text
