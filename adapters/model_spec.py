"""The model a run evaluates, resolved once from its model arguments.

The backend class that will run the model makes a :class:`ModelSpec` with its
``resolve(model_args)`` classmethod (:meth:`SLMBackend.resolve`): the arguments are checked
(``check_model_args``), the file is found and checked, its content digest taken, and the
defaults (the weight format that computes the scores, the threads) are decided there and
nowhere else. Everything that names or describes the model reads the spec: the run's header
(``slm_tasks.run_plan``), the backend's ``__init__``, the response store's key, the cost
record's ``model`` section (whose ``name`` is the board row's name) and the runtime bench.

A process resolves the same arguments once: :func:`memoised` hands the spec made for
``slm-suite run``'s header to the backend lm-eval builds from the same arguments, as long as
the model file is unchanged (size and modification time).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    """One model as a backend will run it."""

    backend: str  # the lm-eval model name (slm-llamacpp, slm-vllm)
    requested: str  # the model argument as given (model_source.locate's rule)
    path: Path | None  # the file or folder the engine loads; None for a hub id left to the engine
    sha256: str | None  # content identity (store_keys.model_identity); None for a hub id
    base_name: str  # the weights' name (models.display_name's rule)
    weights: str | None = None  # llama.cpp: the re-encoded format computing the scores; None: stored
    dtype: str | None = None  # vLLM: the dtype argument (auto: the checkpoint's own)
    threads: int | None = None  # CPU threads of the computation; None where the engine schedules its own
    store: object = None  # model_args store: None (the default file), a path, or off
    cluster: str | None = None  # model_args ray: the Ray cluster's address, or None
    # where the weights came from when the engine loads a derived file (a checkpoint folder
    # converted to GGUF, a GGUF exported to a checkpoint): convert.py / export.py provenance
    source: Mapping | None = field(default=None, compare=False, hash=False)
    # the checked model arguments the spec was made from (what the backend loads with)
    settings: Mapping = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def name(self) -> str:
        """The model's name in cost records and on the board: a computation in another format
        than stored gets its own row, ``<name> [format]``."""
        return f"{self.base_name} [{self.weights}]" if self.weights else self.base_name

    @property
    def scoring(self) -> str:
        """What computes the scores, in words (the run's header)."""
        if self.dtype is not None:
            return f"dtype {self.dtype}"
        if self.weights:
            return f"weights as stored, re-encoded to {self.weights} for scoring"
        return "weights as stored"

    @property
    def origin(self) -> str | None:
        """Where the loaded file came from, in words (the run's header); None: it is the model."""
        src = self.source
        if not src:
            return None
        what = "checkpoint folder" if src.get("kind") == "checkpoint" else "GGUF file"
        return f"{what} {src.get('folder') or src.get('file')}, as {src.get('precision')} by {src.get('converter')}"

    def stored(self) -> ModelSpec:
        """The same model computed in its stored format (the runtime bench measures it so)."""
        return dataclasses.replace(self, weights=None)

    def model_section(self, facts: Mapping) -> dict:
        """The cost record's ``model`` section: the engine's ``facts`` (path, size, quant,
        parameters, ...) with this spec's name and content digest."""
        section = {**facts, "name": self.name, "sha256": self.sha256}
        if self.source:
            section["source"] = dict(self.source)
        return section


_MEMO: dict[tuple, tuple[tuple | None, ModelSpec]] = {}


def _signature(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    return st.st_size, st.st_mtime_ns


def memoised(backend: str, args: Mapping, make: Callable[[], ModelSpec]) -> ModelSpec:
    """The spec ``make()`` returns for ``args``, made once per process while the model file
    stays as it was (a rewritten or removed file is resolved, and checked, again)."""
    key = (backend, repr(sorted((str(k), repr(v)) for k, v in args.items())))
    hit = _MEMO.get(key)
    if hit is not None and _signature(hit[1].path) == hit[0]:
        return hit[1]
    spec = make()
    _MEMO[key] = (_signature(spec.path), spec)
    return spec
