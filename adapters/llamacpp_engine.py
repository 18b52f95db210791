"""llama.cpp through llama-cpp-python's low-level API: one loaded GGUF model and one
multi-sequence context (see docs/llamacpp.md for the measurements behind these choices).

* one context with ``n_parallel + 1`` sequences over a unified KV cache, flash attention on
  (with it off, multi-sequence batches give different numbers than single sequences);
* a context is evaluated once on sequence 0 and shared with sequences 1..n by
  ``llama_memory_seq_cp`` (a metadata copy in a unified cache); all continuations of a group
  then run as parallel sequences in one batch, with logits only at the scored positions;
* the longest common prefix with the previous context stays in the cache (only the rest is
  removed with ``llama_memory_seq_rm``), so a fixed few-shot preamble is evaluated once;
* ``dequantise=`` computes on a copy re-encoded by llama.cpp's own quantiser
  (:mod:`slm_tasks.adapters.dequantise`); the library's import, log and model parameters
  are :mod:`slm_tasks.adapters.llamacpp_lib`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from slm_tasks.adapters import scoring
from slm_tasks.adapters.dequantise import dequantise_kind, dequantised_copy
from slm_tasks.adapters.hardware import usable_cores
from slm_tasks.adapters.llamacpp_lib import (
    LlamaCppError,
    ftype_name,
    import_llama_cpp,
    install_log_callback,
    log_tail,
    model_params,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 8192  # cap on the model's training context (HF's max_length rule)


class LlamaEngine:
    """A loaded GGUF model plus one multi-sequence context (not thread-safe).

    ``max_length`` is the longest sequence scored or generated (lm-eval's HF
    ``max_length``); the KV cache holds ``max_length + kv_slack`` cells so several
    continuations fit next to a long context.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        max_length: int | None = None,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_parallel: int = 16,
        kv_slack: int = 1024,
        prefix_cache: bool = True,
        dequantise: str | None = None,
        verbose: bool = False,
    ):
        llama_cpp, lib = import_llama_cpp()
        self.lib = lib
        self.llama_cpp_version = llama_cpp.__version__
        install_log_callback(llama_cpp, verbose)
        lib.llama_backend_init()
        self.path = Path(path)
        self.dequantised_to = dequantise_kind(dequantise)
        load = dequantised_copy(lib, self.path, self.dequantised_to) if self.dequantised_to else self.path
        self.model = lib.llama_model_load_from_file(str(load).encode(), model_params(lib))
        if not self.model:
            raise LlamaCppError(
                f"llama.cpp could not load '{self.path}'{log_tail()}. Check that the file "
                "is a GGUF model this llama.cpp version supports"
            )
        self._stored_ftype = self._read_stored_ftype() if self.dequantised_to else None
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lib.llama_model_n_ctx_train(self.model)
        self.max_length = int(max_length or min(self.n_ctx_train, DEFAULT_MAX_LENGTH))
        self.n_threads = int(n_threads or usable_cores())
        self.n_batch = int(n_batch)
        self.n_parallel = int(n_parallel)
        self.prefix_cache = bool(prefix_cache)

        cp = lib.llama_context_default_params()
        cp.n_ctx = self.max_length + int(kv_slack)
        cp.n_batch = cp.n_ubatch = self.n_batch
        cp.n_seq_max = self.n_parallel + 1
        cp.n_outputs_max = 0  # = n_batch: every row of a batch may ask for logits
        cp.n_outputs_max_per_seq = 0
        cp.n_threads = cp.n_threads_batch = self.n_threads
        cp.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.kv_unified = True  # sequences share cells: a context copied to n sequences costs nothing
        cp.swa_full = True  # sliding-window layers keep every cell, so kept prefixes stay valid
        cp.no_perf = True
        self.ctx = lib.llama_init_from_model(self.model, cp)
        if not self.ctx:
            lib.llama_model_free(self.model)
            self.model = None
            raise LlamaCppError(
                f"llama.cpp could not create a context for '{self.path}' "
                f"(n_ctx={cp.n_ctx}, n_batch={self.n_batch}){log_tail()}. Try a smaller n_ctx"
            )
        self.kv_size = lib.llama_n_ctx(self.ctx)
        self.mem = lib.llama_get_memory(self.ctx)
        self._batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self._tok = np.ctypeslib.as_array(self._batch.token, shape=(self.n_batch,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, shape=(self.n_batch,))
        self._nseq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(self.n_batch,))
        self._want = np.ctypeslib.as_array(self._batch.logits, shape=(self.n_batch,))
        self._nseq[:] = 1
        self.cached: list[int] = []  # tokens held by sequence 0, positions 0..len-1
        self.prompt_tokens = 0  # counters read by the adapter around each unit of work
        self.prefill_s = 0.0
        self._text_buf = ctypes.create_string_buffer(1 << 16)

    # --- model facts -------------------------------------------------------------------
    def meta(self, key: str, model=None) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = self.lib.llama_model_meta_val_str(model or self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def _read_stored_ftype(self) -> str | None:
        """``general.file_type`` of the file as stored (metadata only, no weights loaded)."""
        mp = self.lib.llama_model_default_params()
        mp.vocab_only = True
        model = self.lib.llama_model_load_from_file(str(self.path).encode(), mp)
        if not model:
            return None
        try:
            return self.meta("general.file_type", model)
        finally:
            self.lib.llama_model_free(model)

    def describe(self) -> dict:
        ftype = self._stored_ftype if self.dequantised_to else self.meta("general.file_type")
        desc = ctypes.create_string_buffer(256)
        self.lib.llama_model_desc(self.model, desc, len(desc))
        quant = ftype_name(self.lib, int(ftype)) if ftype and ftype.isdigit() else None
        return {
            "name": self.meta("general.name"),
            "path": str(self.path),
            "file_bytes": self.path.stat().st_size,
            "quant": quant or (desc.value.decode().split()[-1] if desc.value else None),
            "n_params": int(self.lib.llama_model_n_params(self.model)),
            "backend": "llama.cpp",
            # weights computed in another format than stored (model_args dequantise=)
            "dequantised_to": self.dequantised_to,
        }

    def build(self) -> str:
        version = self.lib.llama_version().decode()
        system = self.lib.llama_print_system_info().decode().strip(" |")
        return f"llama.cpp {version}; {system}"

    def chat_template(self) -> str | None:
        """The model's chat template (GGUF ``tokenizer.chat_template``), or None."""
        tmpl = self.lib.llama_model_chat_template(self.model, None)
        return tmpl.decode("utf-8") if tmpl else None

    @property
    def bos(self) -> int | None:
        t = self.lib.llama_vocab_bos(self.vocab)
        return t if t >= 0 else None

    @property
    def eos(self) -> int:
        return self.lib.llama_vocab_eos(self.vocab)

    @property
    def adds_bos(self) -> bool:
        return bool(self.lib.llama_vocab_get_add_bos(self.vocab))

    def is_eog(self, token: int) -> bool:
        return bool(self.lib.llama_vocab_is_eog(self.vocab, token))

    # --- text <-> tokens ---------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (self.lib.llama_token * n_max)()
        # parse_special: special-token text becomes the special token, as HF tokenizers do
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, True)
        if n < 0:
            buf = (self.lib.llama_token * -n)()
            n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, -n, add_special, True)
        return list(buf[:n])

    def detokenize_special(self, token: int) -> str:
        """The text of one token, special tokens included (e.g. '<|im_end|>')."""
        buf = ctypes.create_string_buffer(256)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "ignore")

    def detokenize(self, tokens: Sequence[int]) -> str:
        if not tokens:
            return ""
        arr = (self.lib.llama_token * len(tokens))(*tokens)
        # special tokens are not rendered (HF's decode(skip_special_tokens=True))
        n = self.lib.llama_detokenize(self.vocab, arr, len(tokens), self._text_buf, len(self._text_buf), False, False)
        if n < 0:
            self._text_buf = ctypes.create_string_buffer(-n + 16)
            n = self.lib.llama_detokenize(
                self.vocab, arr, len(tokens), self._text_buf, len(self._text_buf), False, False
            )
        return self._text_buf.raw[:n].decode("utf-8", "ignore")

    # --- evaluation --------------------------------------------------------------------
    def decode(
        self,
        tokens: Sequence[int],
        positions: Sequence[int],
        seqs: Sequence[int],
        want: Sequence[bool],
        prompt: bool = True,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Evaluate tokens in batches of n_batch; yields (index, logits row) for wanted rows.

        ``prompt``: count the tokens and time in the prompt counters (generation steps
        are timed by the caller instead).

        A row is a view into llama.cpp's buffer, valid until the generator is resumed
        after the last row of its batch: consume it right away.
        """
        lib = self.lib
        n = len(tokens)
        tokens, positions, want = np.asarray(tokens), np.asarray(positions), np.asarray(want, dtype=bool)
        for start in range(0, n, self.n_batch):
            end = min(n, start + self.n_batch)
            m = end - start
            self._tok[:m] = tokens[start:end]
            self._pos[:m] = positions[start:end]
            self._want[:m] = want[start:end]
            for i in range(m):
                self._batch.seq_id[i][0] = seqs[start + i]
            self._batch.n_tokens = m
            t0 = time.perf_counter()
            rc = lib.llama_decode(self.ctx, self._batch)
            if prompt:
                self.prefill_s += time.perf_counter() - t0
                self.prompt_tokens += m
            if rc != 0:
                raise LlamaCppError(
                    f"llama_decode failed with code {rc} on a batch of {m} tokens "
                    f"(KV cache {self.kv_size} cells){log_tail()}"
                )
            for i in np.flatnonzero(want[start:end]):
                ptr = lib.llama_get_logits_ith(self.ctx, int(i))
                yield start + int(i), np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.mem, True)
        self.cached = []

    def set_prefix(self, tokens: Sequence[int]) -> np.ndarray:
        """Make sequence 0 hold exactly ``tokens``; returns the logits after the last one.

        Keeps the common prefix with what sequence 0 already holds (at least the last token
        is re-evaluated, since its logits are needed). With ``prefix_cache=False`` every
        context is evaluated from position 0.
        """
        if not tokens:
            raise ValueError("empty context")
        keep = min(scoring.common_prefix_len(self.cached, tokens), len(tokens) - 1) if self.prefix_cache else 0
        self.cached = self.cached[:keep]
        if not self.lib.llama_memory_seq_rm(self.mem, 0, keep, -1):
            self.clear()
            keep = 0
        rest = tokens[keep:]
        last = None
        for _, row in self.decode(rest, range(keep, len(tokens)), [0] * len(rest), [False] * (len(rest) - 1) + [True]):
            last = row.copy()
        self.cached = list(tokens)
        return last

    def step(self, token: int) -> np.ndarray:
        """Append one generated token to sequence 0 and return the logits after it (a copy).

        Counted as decoding, not prompt work: callers time generation steps themselves."""
        ((_, row),) = self.decode([token], [len(self.cached)], [0], [True], prompt=False)
        self.cached.append(token)
        return row.copy()

    def drop_sequences(self, seqs: Sequence[int]) -> None:
        for s in seqs:
            self.lib.llama_memory_seq_rm(self.mem, s, -1, -1)

    def score_group(self, context: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[tuple[float, bool]]:
        """(sum of log-probs, is_greedy) of each continuation after ``context``.

        Continuations run as parallel sequences 1..n over the shared context, in waves of
        at most ``n_parallel`` sequences that fit in the KV cache.
        """
        first = self.set_prefix(context)
        first_lp = scoring.logprob_rows(first)
        first_best = int(first.argmax())
        n_ctx = len(context)
        out = [(float(first_lp[c[0]]), first_best == c[0]) if c else (0.0, True) for c in continuations]
        todo = [i for i, c in enumerate(continuations) if len(c) > 1]
        lengths = [len(continuations[i]) - 1 for i in todo]
        for wave in scoring.pack_waves(lengths, self.n_parallel, self.kv_size - n_ctx):
            tokens, pos, seqs, owner = [], [], [], []
            used = []
            for slot, w in enumerate(wave, start=1):
                ci = todo[w]
                c = continuations[ci]
                self.lib.llama_memory_seq_cp(self.mem, 0, slot, -1, -1)
                used.append(slot)
                tokens += c[:-1]
                pos += range(n_ctx, n_ctx + len(c) - 1)
                seqs += [slot] * (len(c) - 1)
                owner += [(ci, j + 1) for j in range(len(c) - 1)]  # row predicts c[j+1]
            try:
                for k, row in self.decode(tokens, pos, seqs, [True] * len(tokens)):
                    ci, j = owner[k]
                    target = continuations[ci][j]
                    lp, greedy = scoring.score_tokens(row[None, :], [target])
                    total, all_greedy = out[ci]
                    out[ci] = (total + lp, all_greedy and greedy)
            finally:
                self.drop_sequences(used)
        return out

    def close(self) -> None:
        lib = self.lib
        if getattr(self, "_batch", None) is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "ctx", None):
            lib.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lib.llama_model_free(self.model)
            self.model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
