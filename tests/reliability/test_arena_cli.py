"""`safegrpo serve arena` fails fast with a one-line error on a bad port, a busy port or a bad
config file (before any model is loaded, so it can never hang)."""

import socket

import pytest
from typer.testing import CliRunner

from safegrpo.cli import app

pytestmark = pytest.mark.timeout(60)


def _serve(*args: str):
    return CliRunner().invoke(app, ["serve", "arena", *args], env={"COLUMNS": "400"})


def _error_text(out) -> str:
    """The error message; it must fit on one line (the terminal is wide enough here)."""
    lines = [ln.strip("│ ") for ln in out.output.splitlines() if ln.startswith("│")]
    assert len(lines) == 1, out.output
    return lines[0]


def test_out_of_range_port_is_refused():
    out = _serve("--port", "99999")
    assert out.exit_code == 2 and "--port" in _error_text(out) and "65535" in _error_text(out)


def test_busy_port_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = _serve("--port", str(port))
    assert out.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in _error_text(out)


def test_malformed_yaml_names_the_file(tmp_path):
    bad = tmp_path / "arena.yaml"
    bad.write_text("max_sessions: [1,\n  ttl")
    out = _serve("-c", str(bad))
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert f"{bad}: invalid YAML (line 2" in _error_text(out)


def test_unknown_or_invalid_setting_names_the_field(tmp_path):
    cfg = tmp_path / "arena.yaml"
    cfg.write_text("max_sesions: 10\n")
    assert "unknown field(s) max_sesions" in _error_text(_serve("-c", str(cfg)))
    assert "max_sessions" in _error_text(_serve("--set", "max_sessions=0"))
