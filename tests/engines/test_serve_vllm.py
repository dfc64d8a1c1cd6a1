"""`safegrpo serve vllm` refuses bad input in one line, before starting anything."""

import sys

import pytest
from typer.testing import CliRunner

from safegrpo.cli import app


def _run(args):
    res = CliRunner().invoke(app, ["serve", "vllm", *args])
    return res.exit_code, " ".join(res.output.replace("│", " ").split())  # unwrap rich's box


def test_serve_vllm_bad_input_is_one_clean_error(tmp_path, peaked_lm_path):
    code, out = _run([str(tmp_path)])
    assert code == 2 and "not an HF model folder" in out and "Traceback" not in out
    code, out = _run([peaked_lm_path, "--dtype", "int3"])
    assert code == 2 and "int3" in out
    code, out = _run([peaked_lm_path, "--python", str(tmp_path / "nope")])
    assert code == 2 and "no interpreter" in out
    code, out = _run([peaked_lm_path, "--port", "70000"])
    assert code == 2 and "65535" in out


def test_serve_vllm_without_vllm_names_the_install(peaked_lm_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:  # it would exec the server here
        pytest.skip("vLLM is installed in this env: the command would start a server")
    code, out = _run([peaked_lm_path, "--python", sys.executable])
    assert code == 2 and "install_vllm.sh" in out
