"""The README's configuration examples work as it says: the Miso Dojo webhook alternative passes
``crossdock check`` beside a Segment source and sends the whole Spec message; the example
``crossdock.toml`` passes ``crossdock check``; the refund section it documents exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson

import crossdock_miso
from crossdock.testing.events import golden_event

README = Path(__file__).resolve().parents[1] / "README.md"
ENV = {
    "WEB_WRITE_KEY": "wk-readme-0123456789",
    "MISO_API_KEY": "sk_readme_secret",
    "MISO_DOJO_WEBHOOK_URL": "https://dojo.example.invalid/hooks/segment/abc123",
}
SOURCE = """
[[sources]]
id = "web"
type = "segment"
write_keys = ["${WEB_WRITE_KEY}"]
"""


def toml_blocks() -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def block_with(marker: str) -> str:
    [block] = [b for b in toml_blocks() if marker in b]
    return block


def crossdock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossdock", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **ENV},
    )


def test_the_dojo_webhook_example_passes_crossdock_check(tmp_path: Path) -> None:
    config = tmp_path / "crossdock.toml"
    config.write_text(SOURCE + block_with('plugin = "webhook"'))
    result = crossdock("check", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dojo_webhook_sends_the_whole_spec_message(tmp_path: Path) -> None:
    config = tmp_path / "crossdock.toml"
    config.write_text(SOURCE + block_with('plugin = "webhook"'))
    event = tmp_path / "e.json"
    viewed = golden_event("Product Viewed")
    event.write_bytes(orjson.dumps(viewed))
    result = crossdock("test", "miso-dojo", "-c", str(config), "--event", str(event))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would send" in result.stdout
    assert viewed["messageId"] in result.stdout
    assert ENV["MISO_DOJO_WEBHOOK_URL"] not in result.stdout  # the URL is the account's secret
    group = tmp_path / "g.json"
    group.write_bytes(orjson.dumps(golden_event("group")))
    assert crossdock("test", "miso-dojo", "-c", str(config), "--event", str(group)).returncode


def test_the_example_crossdock_toml_passes_crossdock_check(tmp_path: Path) -> None:
    config = tmp_path / "crossdock.toml"
    config.write_text(block_with("[[sources]]"))
    result = crossdock("check", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_documented_refund_section_is_the_mappings() -> None:
    text = README.read_text()
    assert "section refund_without_product_ids: null payload" in text
    assert "refund_without_product_ids" in crossdock_miso.DESTINATION_TYPE.spec.sections
