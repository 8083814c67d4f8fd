"""``crossdock test`` on a captured Hardal body: decoded by the hardal source, as live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossdock.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "hardal-to-vendors.toml"
PURCHASE = ROOT / "examples" / "events" / "hardal_purchase.json"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CROSSDOCK_CONFIG", raising=False)
    for name, value in {
        "HARDAL_TOKEN": "hardal-token-0123456789",
        "SEGMENTIFY_API_KEY": "sfy-key-0123456789",
        "INSIDER_TOKEN": "insider-token-0123456789",
        "MISO_API_KEY": "miso-key-0123456789",
    }.items():
        monkeypatch.setenv(name, value)


def _body(out: str) -> object:
    """The JSON body of the one request ``crossdock test`` printed."""
    start = out.index("\n[")
    end = out.index("\n\nevent 0:")
    return json.loads(out[start:end])


def test_the_guides_purchase_step_from_a_hardal_body(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["test", "segmentify", "-c", str(EXAMPLE), "--event", str(PURCHASE)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("POST https://gandalf.segmentify.com/add/events/v1.json?apiKey=***\n")
    assert "sfy-key-0123456789" not in out
    [purchase] = _body(out)
    # segmentify.md, the purchase step of the guide (os and lang need a user agent and a locale,
    # which Hardal's template does not carry)
    assert {k: purchase[k] for k in ("name", "step", "userId", "sessionId", "currency")} == {
        "name": "CHECKOUT",
        "step": "purchase",
        "userId": "u-1042",
        "sessionId": "u-1042-20250302",
        "currency": "EUR",
    }
    assert purchase["orderNo"] == "A-5521"
    assert purchase["totalPrice"] == 54.9
    assert purchase["productList"] == [{"productId": "sku-77", "price": 24.95, "quantity": 2}]
    assert "event 0: would send" in out


def test_a_body_hardal_would_refuse_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "bad.json"
    event.write_text(json.dumps({"properties": {}}))
    assert main(["test", "segmentify", "-c", str(EXAMPLE), "--event", str(event)]) == 1
    assert "event 0: invalid: event_name: required" in capsys.readouterr().out
