"""lm-eval model ``slm-llamacpp``: GGUF models on CPU through llama-cpp-python, in process.

The outline (tokenisation rules, request plans, generation bookkeeping, cost booking) is
:class:`~slm_tasks.adapters.backend.SLMBackend`'s; this module is llama.cpp's side of it:
scoring one context group at a time on :class:`LlamaEngine` (its prefix cache keeps shared
few-shot preambles), and greedy (or sampled) decoding on sequence 0, one prompt at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence

import numpy as np

from slm_tasks.adapters import chat, scoring
from slm_tasks.adapters.backend import DEFAULT_MAX_GEN_TOKS, ScoreItem, SLMBackend
from slm_tasks.adapters.convert import converted_gguf
from slm_tasks.adapters.cost import CostMeter, Work, software_versions
from slm_tasks.adapters.dequantise import DEFAULT_DEQUANTISE, dequantise_kind
from slm_tasks.adapters.generation import GenJob
from slm_tasks.adapters.hardware import describe as describe_hardware
from slm_tasks.adapters.hardware import usable_cores
from slm_tasks.adapters.llamacpp_engine import LlamaEngine
from slm_tasks.adapters.llamacpp_lib import LlamaCppError
from slm_tasks.adapters.make import ClusterCapable
from slm_tasks.adapters.model_source import CHECKPOINT, locate
from slm_tasks.adapters.model_spec import ModelSpec
from slm_tasks.adapters.models import display_name
from slm_tasks.adapters.store_keys import model_identity

log = logging.getLogger(__name__)


class LlamaCppLM(ClusterCapable, SLMBackend):
    """lm-eval model ``slm-llamacpp``.

    model_args: ``model`` (a .gguf path or a short name: smollm2-135m, gemma3-270m),
    ``n_threads`` (default: all usable cores), ``n_ctx`` (longest sequence, default the
    model's training context capped at 8192), ``n_batch`` (512), ``n_parallel`` (16
    sequences per batch), ``prefix_cache`` (keep a shared prefix's KV cache across
    documents, default true), ``dequantise`` (f32, f16 or bf16: compute on a copy of the
    weights re-encoded once, see docs/llamacpp.md; default f16; ``stored`` computes in the
    stored format's own kernels), ``seed``
    (sampling seed), ``max_gen_toks`` (256), ``store`` (the response store: a path, or
    ``off``; default ``$SLM_SUITE_CACHE/responses.sqlite``, see docs/store.md). lm-eval's own
    ``device``/``batch_size``/``max_batch_size``/``trust_remote_code`` are accepted and ignored;
    any other name, or a value of the wrong kind, is refused before anything loads.
    """

    backend_name = "slm-llamacpp"
    MODEL_ARGS = {
        "model": "str",
        "pretrained": "str",
        "n_threads": "int",
        "n_ctx": "int",
        "n_batch": "int",
        "n_parallel": "int",
        "prefix_cache": "bool",
        "dequantise": "str",
        "seed": "int",
        "max_gen_toks": "int",
        "verbose": "bool",
        "store": "any",
    }

    def __init__(self, model: str | None = None, **model_args):
        super().__init__()
        # every name and value is judged, and the file checked, before anything loads (the
        # Python API's path; lm-eval's was checked the same way in create_from_arg_obj)
        spec = self.resolve(model_args if model is None else {"model": model, **model_args})
        self.spec = spec
        a = spec.settings
        self.model_path = spec.path
        self.engine = LlamaEngine(
            spec.path,
            max_length=a.get("n_ctx") or None,
            n_batch=a.get("n_batch", 512),
            n_threads=spec.threads,
            n_parallel=a.get("n_parallel", 16),
            prefix_cache=a.get("prefix_cache", True),
            dequantise=spec.weights or "stored",
            verbose=a.get("verbose", False),
        )
        self.seed = a.get("seed", 1234)
        self.max_gen_toks = a.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)
        self._rng = np.random.default_rng(self.seed)
        eng = self.engine
        self.meter = CostMeter(
            model=spec.model_section(eng.describe()),
            hardware=describe_hardware(threads=eng.n_threads),
            software=software_versions(eng.llama_cpp_version, eng.build()),
        )
        template = eng.chat_template()
        self._open_store(
            spec.store,
            {
                "backend": self.backend_name,
                "model_sha256": spec.sha256,
                # everything of the engine that can change an answer (threads cannot)
                "weights": spec.weights or "stored",
                "max_length": eng.max_length,
                "n_batch": eng.n_batch,
                "n_parallel": eng.n_parallel,
                "prefix_cache": eng.prefix_cache,
                "seed": self.seed,
                "max_gen_toks": self.max_gen_toks,
                "llama_cpp": eng.llama_cpp_version,
                "chat_template": hashlib.sha256(template.encode()).hexdigest() if template else None,
            },
        )

    @classmethod
    def _resolve(cls, args) -> ModelSpec:
        """The GGUF file (a short name's, or a path's, checked), its sha256, its name, the
        format the scores are computed in (``dequantise``, default :data:`DEFAULT_DEQUANTISE`)
        and the threads (``n_threads``, default all usable cores)."""
        weights = dequantise_kind(args["dequantise"] if "dequantise" in args else DEFAULT_DEQUANTISE)
        requested = args.get("model") or args.get("pretrained")
        if not requested:
            raise LlamaCppError(
                "slm-llamacpp needs model_args model=<a short name, .gguf file, checkpoint folder or "
                "cached hub id>, e.g. --model_args model=smollm2-135m"
            )
        source = locate(requested)  # checks the file or folder before anything else loads
        path, origin, name = source.path, None, None
        if source.kind == CHECKPOINT:
            path, origin = converted_gguf(source.path, source.label)
            name = source.label
        else:
            name = display_name(requested, source.header.get("name"), path.stem)
        return ModelSpec(
            backend=cls.backend_name,
            requested=str(requested),
            path=path,
            sha256=model_identity(path),
            base_name=name,
            source=origin,
            weights=weights,
            threads=args.get("n_threads") or usable_cores(),
            store=args.get("store"),
            cluster=args.get("ray"),
            settings=args,
        )

    # --- TemplateLM interface ------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.engine.eos

    @property
    def prefix_token_id(self) -> int:
        # lm-eval's HF rule: BOS when the tokenizer has one, else EOS
        bos = self.engine.bos
        return bos if bos is not None else self.engine.eos

    @property
    def max_length(self) -> int:
        return self.engine.max_length

    @property
    def tokenizer_name(self) -> str:
        return str(self.model_path.name)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        if add_special_tokens is None:
            # the tokenizer's default (BOS for Gemma, none for SmolLM2), unless the text
            # already starts with the BOS text (HF's has_bos_prefix rule)
            bos = self.engine.bos
            add = self.engine.adds_bos and not (
                bos is not None and string.startswith(self.engine.detokenize_special(bos))
            )
        else:
            add = bool(add_special_tokens)
        return self.engine.tokenize(string, add)

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.engine.detokenize(tokens)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if not chat_template:
            return None
        if isinstance(chat_template, str) and chat_template not in ("True", "true", "default"):
            raise LlamaCppError(
                f"'{self.model_path.name}' carries one chat template; named templates "
                f"('{chat_template}') are not supported: pass --apply_chat_template alone"
            )
        return self._chat_template()

    def _chat_template(self) -> str:
        tmpl = self.engine.chat_template()
        if not tmpl:
            raise LlamaCppError(
                f"'{self.model_path.name}' has no chat template (GGUF key "
                "tokenizer.chat_template): run without --apply_chat_template"
            )
        return tmpl

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The GGUF's chat template rendered as transformers' ``apply_chat_template`` does
        (lm-eval's HF model: ``continue_final_message = not add_generation_prompt``)."""
        eng = self.engine
        bos = eng.detokenize_special(eng.bos) if eng.bos is not None else ""
        kwargs = dict(
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
            bos_token=bos,
            eos_token=eng.detokenize_special(eng.eos),
        )
        try:
            return chat.render(self._chat_template(), chat_history, **kwargs)
        except chat.TemplateError:  # as lm-eval's HF model: retry without the system turn
            log.warning("Failed to apply chat template. removing the system role in chat history.")
            return chat.render(self._chat_template(), [m for m in chat_history if m["role"] != "system"], **kwargs)

    # --- engine side ------------------------------------------------------------------
    def _start(self, kind: str) -> None:
        # start from an empty cache: answers depend only on this call's requests
        self.engine.clear()

    def _resume_at(self, units: list, index: int) -> None:
        # the prefix cache's numbers depend on how its tokens were batched: rebuild exactly
        # the cache a run that stored nothing holds here (a few contexts, not the task)
        if not self.engine.prefix_cache:
            return
        prefixes = [u[0].context if isinstance(u[0], ScoreItem) else u[0].ids for u in units]
        for i in scoring.replay_chain(prefixes, index):
            self.engine.set_prefix(prefixes[i])

    @contextlib.contextmanager
    def _prompt_counters(self, work: Work):
        """Book the engine's prompt counters into ``work``."""
        eng = self.engine
        t0, s0 = eng.prompt_tokens, eng.prefill_s
        try:
            yield
        finally:
            work.prompt_tokens += eng.prompt_tokens - t0
            work.prefill_s += eng.prefill_s - s0

    def _score_unit(self, items: list[ScoreItem], work: Work) -> list[tuple[float, bool]]:
        with self._prompt_counters(work):
            return self.engine.score_group(items[0].context, [it.continuation for it in items])

    def _generate_unit(self, jobs: list[GenJob], work: Work) -> list[str]:
        (job,) = jobs
        sampling = None
        if job.do_sample and float(job.options.get("temperature", 1.0)) > 0:
            sampling = {k: job.options.get(k) for k in ("temperature", "top_k", "top_p")}
        with self._prompt_counters(work):
            return [self._generate(job.ids, job.until, job.max_gen, sampling, work)]

    def _generate(self, ids, until, max_gen, sampling, work: Work) -> str:
        eng = self.engine
        t0 = time.perf_counter()
        logits = eng.set_prefix(ids)
        out: list[int] = []
        stops = [s for s in until if s]
        while True:
            tok = _pick_token(logits, sampling, self._rng)
            if not out:
                work.ttft_s.append(time.perf_counter() - t0)
            if eng.is_eog(tok):
                break
            out.append(tok)
            if len(out) >= max_gen or (stops and any(s in eng.detokenize(out) for s in stops)):
                break
            if len(eng.cached) + 1 >= eng.kv_size:
                break
            d0 = time.perf_counter()
            logits = eng.step(tok)
            work.decode_s += time.perf_counter() - d0
            work.decode_tokens += 1
        work.generated_tokens += len(out)
        return eng.detokenize(out)

    def _end_of_text(self) -> str:
        return self.engine.detokenize_special(self.eot_token_id)

    def _close_engine(self) -> None:
        self.engine.close()


def _pick_token(logits: np.ndarray, sampling: dict | None, rng: np.random.Generator) -> int:
    if not sampling:
        return int(logits.argmax())
    x = np.asarray(logits, dtype=np.float64) / max(float(sampling.get("temperature", 1.0)), 1e-6)
    top_k = int(sampling.get("top_k") or 0)
    if 0 < top_k < x.size:
        cut = np.partition(x, -top_k)[-top_k]
        x = np.where(x >= cut, x, -np.inf)
    p = np.exp(x - x.max())
    p /= p.sum()
    top_p = float(sampling.get("top_p") or 1.0)
    if top_p < 1.0:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p) + 1)]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(p.size, p=p))
