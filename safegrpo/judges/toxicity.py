"""Toxicity judges: ``score(texts) -> Tensor[B]`` = p(toxic) in [0, 1] (higher = more toxic).

- ``profanity``: embedded CPU default, the linear SVM bundled by ``alt-profanity-check``.
- ``hf_classifier``: any HF sequence classifier (e.g. a DeBERTa toxicity model) by id or path;
  p(toxic) is the softmax (single-label) or sigmoid (multi-label) of the chosen label.
- ``remote``: a scorer server (``safegrpo serve scorer``) over HTTP.
Local judges read ``canonical_text`` of their input (look-alike spellings score as plain ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from safegrpo.core.text import canonical_text
from safegrpo.judges.base import JUDGES


@JUDGES.register("profanity")
class ProfanityJudge:
    def __init__(self) -> None:
        try:
            from profanity_check import predict_prob
        except ImportError as e:
            raise ImportError(
                "the embedded toxicity judge needs `pip install alt-profanity-check`"
            ) from e
        self._predict = predict_prob

    def score(self, batch: Sequence[str]) -> Tensor:
        if not batch:
            return torch.zeros(0)
        return torch.tensor(self._predict([canonical_text(t) for t in batch]), dtype=torch.float32)


@JUDGES.register("hf_classifier")
class HFClassifierJudge:
    """p(label) from an AutoModelForSequenceClassification (hub id or local path)."""

    def __init__(
        self,
        model: str,
        label: str | int = "toxic",
        device: str = "cpu",
        batch_size: int = 32,
        max_length: int = 512,
        dtype: str = "float32",
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model, dtype=getattr(torch, dtype)
        )
        self.model.to(device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tok.pad_token_id
        self.device, self.batch_size, self.max_length = device, batch_size, max_length
        self.label_index = self._resolve(label)
        self.multi_label = self.model.config.problem_type == "multi_label_classification"

    def _resolve(self, label: str | int) -> int:
        n = self.model.config.num_labels
        if isinstance(label, int) or str(label).isdigit():
            idx = int(label)
            if not 0 <= idx < n:
                raise ValueError(f"label index {idx} out of range for {n} labels")
            return idx
        by_name = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        if str(label).lower() not in by_name:
            raise ValueError(f"label {label!r} not in the model's labels {sorted(by_name)}")
        return by_name[str(label).lower()]

    @torch.no_grad()
    def score(self, batch: Sequence[str]) -> Tensor:
        out = []
        for i in range(0, len(batch), self.batch_size):
            chunk = [canonical_text(t) for t in batch[i:i + self.batch_size]]
            enc = self.tok(chunk, return_tensors="pt", padding=True,
                           truncation=True, max_length=self.max_length).to(self.device)
            logits = self.model(**enc).logits.float()
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
            out.append(probs[:, self.label_index].cpu())
        return torch.cat(out) if out else torch.zeros(0)


@JUDGES.register("remote")
class RemoteJudge:
    """Scores through a scorer server; unscorable texts come back as NaN."""

    def __init__(
        self, url: str, api_key: str | None = None, retries: int = 3, timeout: float = 30.0
    ):
        from safegrpo.judges.serving.client import ScorerClient

        self.client = ScorerClient(url, api_key=api_key, retries=retries, timeout=timeout)

    @classmethod
    def from_spec(cls, url: str = "", api_key_env: str = "", retries: int = 3,
                  timeout: float = 30.0) -> RemoteJudge:
        """From config: the API key is read from environment variable ``api_key_env`` (a key is
        never written into a config file)."""
        import os

        if not url:
            raise ValueError("url is required for the remote judge (the scorer server's base URL)")
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise ValueError(f"api_key_env: environment variable {api_key_env} is empty or unset")
        return cls(url, api_key=key, retries=retries, timeout=timeout)

    def score(self, batch: Sequence[str], prompts: Sequence[str] | None = None) -> Tensor:
        scores = self.client.score(list(batch), None if prompts is None else list(prompts))
        return torch.tensor([float("nan") if s is None else s for s in scores], dtype=torch.float32)


@JUDGES.register("embedding_classifier")
class EmbeddingClassifierJudge:
    """p(unsafe) from a logistic regression over sentence embeddings, fitted locally on labelled
    texts (embedded default of the red-team scorer; unlike a centroid projection it also learns
    that refusals are harmless)."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], embedder=None, c: float = 1.0):
        from sklearn.linear_model import LogisticRegression

        from safegrpo.judges.embeddings import build_embedder, embed_fixed

        if len(set(labels)) != 2 or len(texts) != len(labels):
            raise ValueError(
                "embedding_classifier needs texts with both labels 0 (safe) and 1 (unsafe)"
            )
        self.embedder = embedder or build_embedder("minilm")
        self.model = LogisticRegression(C=c, max_iter=2000)
        self.model.fit(embed_fixed(self.embedder, list(texts)).numpy(), list(labels))

    @classmethod
    def from_records(cls, records: Sequence, embedder=None, extra_safe: Sequence[str] = (),
                     **kw) -> EmbeddingClassifierJudge:
        """Safe: benign prompts, reference rewrites and ``extra_safe``; unsafe: unsafe prompts."""
        safe = [r.prompt for r in records if r.label == "safe"] + [
            r.rewrite for r in records if r.label == "unsafe"
        ]
        safe += list(extra_safe) * 20  # a handful of texts; repeated so they carry weight
        unsafe = [r.prompt for r in records if r.label == "unsafe"]
        return cls(safe + unsafe, [0] * len(safe) + [1] * len(unsafe), embedder=embedder, **kw)

    def score(self, batch: Sequence[str]) -> Tensor:
        if not batch:
            return torch.zeros(0)
        e = self.embedder.embed([canonical_text(t) for t in batch])
        return torch.tensor(self.model.predict_proba(e.numpy())[:, 1],
                            dtype=torch.float32)
