"""The evaluated model's tokenizer, found from the model arguments lm-eval passes to every
task (``metadata``): lengths are counted in the model's own tokens.

* a short name or a GGUF file (``model=`` or ``pretrained=``, as every backend names it by the
  one rule, ``model_source.locate``): its vocabulary loaded alone (llama.cpp's
  ``vocab_only``: no weights);
* a checkpoint folder or cached hub id (slm-llamacpp converts it; slm-vllm and lm-eval's
  ``hf`` load it), or ``tokenizer=``: the transformers tokenizer of the checkpoint.

Each tokenizer also says the model's trained context and the window the backend evaluates
in (``n_ctx`` / ``max_length`` / ``max_model_len`` when given).
"""

from __future__ import annotations

import ctypes
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from slm_tasks.errors import SLMError

log = logging.getLogger(__name__)
LLAMACPP_DEFAULT_WINDOW = 8192  # slm-llamacpp's cap on the trained context (llamacpp_engine)


class LongContextError(SLMError):
    """The long-context tasks cannot be built for this model; the message says the fix."""


class Tokenizer(Protocol):
    name: str
    trained_context: int | None

    def count(self, text: str) -> int: ...

    def offsets(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class Window:
    trained: int | None  # the model's trained context, None when unknown
    window: int | None  # the longest sequence the backend runs (prompt + generation)
    window_arg: str | None  # the model argument that set it, when one did


class LlamaVocab:
    """A GGUF's vocabulary alone, tokenising as slm-llamacpp's ``tok_encode`` does."""

    def __init__(self, path: Path) -> None:
        from slm_tasks.adapters.llamacpp_lib import import_llama_cpp, install_log_callback

        llama_cpp, lib = import_llama_cpp()
        install_log_callback(llama_cpp, False)  # llama.cpp's loader log only in errors
        lib.llama_backend_init()
        params = lib.llama_model_default_params()
        params.vocab_only = True
        self.lib, self.name = lib, path.name
        self.model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            fix = "check the GGUF file"
            raise LongContextError(f"llama.cpp could not read the vocabulary of '{path}': {fix}")
        self.vocab = lib.llama_model_get_vocab(self.model)
        # a vocab-only load reads no hyper-parameters; the GGUF's metadata has the context
        arch = self._meta("general.architecture")
        ctx = self._meta(f"{arch}.context_length") if arch else None
        self.trained_context = int(ctx) if ctx and ctx.isdigit() else None
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def tokens(self, text: str, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (self.lib.llama_token * n_max)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, True)
        return list(buf[:n])

    def count(self, text: str) -> int:
        return len(self.tokens(text, self.add_bos))

    def offsets(self, text: str) -> list[int]:
        """Character offset where each token of ``text`` (no special tokens) starts."""
        out, pieces, buf = [], bytearray(), ctypes.create_string_buffer(256)
        for tok in self.tokens(text, False):
            out.append(len(pieces.decode("utf-8", "ignore")))
            n = self.lib.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, False)
            pieces += buf.raw[: max(n, 0)]
        return out


class HFTokenizer:
    def __init__(self, name: str) -> None:
        try:
            from transformers import AutoConfig, AutoTokenizer
        except ImportError:
            raise LongContextError(
                "the long-context tasks count lengths with the model's transformers tokenizer: "
                + "pip install transformers"
            ) from None
        self.name = name
        self.tok = AutoTokenizer.from_pretrained(name)
        try:
            cfg = AutoConfig.from_pretrained(name)
            ctx = getattr(cfg, "max_position_embeddings", None)
        except (OSError, ValueError):
            ctx = None
        self.trained_context = int(ctx) if ctx else None

    def count(self, text: str) -> int:
        return len(self.tok(text)["input_ids"])

    def offsets(self, text: str) -> list[int]:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [start for start, _ in enc["offset_mapping"]]


class Words:
    """What lengths are counted in when no model is named (listing or loading tasks alone,
    lm-eval's ``dummy`` model): whitespace-separated words, said in every document."""

    name = "words (no model named)"
    trained_context = None

    def count(self, text: str) -> int:
        return len(text.split())

    def offsets(self, text: str) -> list[int]:
        return [m.start() for m in re.finditer(r"\S+", text)]


@lru_cache(maxsize=4)
def _llama_vocab(path: Path) -> LlamaVocab:
    return LlamaVocab(path)


@lru_cache(maxsize=4)
def _hf_tokenizer(name: str) -> HFTokenizer:
    return HFTokenizer(name)


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "", "None") else None
    except (TypeError, ValueError):
        return None


def model_tokenizer(meta: dict) -> tuple[Tokenizer, Window]:
    """The tokenizer and window of the model named by lm-eval's model arguments."""
    from slm_tasks.adapters.model_source import GGUF, locate

    model, pretrained = meta.get("model"), meta.get("pretrained")
    requested = next((str(v) for v in (pretrained, model) if isinstance(v, str) and v), None)
    # what the argument names, by the one rule every backend resolves it with
    source = locate(requested) if requested and not meta.get("tokenizer") else None
    if source is not None and source.kind == GGUF:
        tok = _llama_vocab(source.path)
        n_ctx = _int(meta.get("n_ctx"))
        default = min(tok.trained_context or LLAMACPP_DEFAULT_WINDOW, LLAMACPP_DEFAULT_WINDOW)
        return tok, Window(tok.trained_context, n_ctx or default, "n_ctx" if n_ctx else None)
    if source is not None:  # a checkpoint folder (a cached hub id's snapshot): its own tokenizer
        requested = str(source.path)
    name = meta.get("tokenizer") or requested
    if not isinstance(name, str) or not name:
        log.warning(
            "long-context tasks: no model named in the model arguments (model= or pretrained=); "
            "lengths are counted in words, not tokens"
        )
        return Words(), Window(None, None, None)
    tok = _hf_tokenizer(name)
    for arg in ("max_model_len", "max_length"):
        if _int(meta.get(arg)):
            return tok, Window(tok.trained_context, _int(meta[arg]), arg)
    return tok, Window(tok.trained_context, tok.trained_context, None)
