"""What a model argument names: the one rule every entry point shares.

``slm-suite run --model``, ``slm-suite bench``, the quantisation sweep and
``lm_eval --model slm-llamacpp|slm-vllm --model_args model=...`` all hand the argument to
:func:`locate`, which answers with a :class:`ModelSource`:

* a **short name** (``smollm2-135m``, ``gemma3-270m``): the embedded GGUF;
* a **GGUF file**;
* a **checkpoint folder**: ``config.json``, weights (safetensors or PyTorch ``.bin``, sharded
  or not) and tokenizer files, as transformers' ``save_pretrained`` writes them;
* a **hub id** (``org/name``) already in the local Hugging Face cache: its snapshot folder,
  a checkpoint folder. Nothing is downloaded.

Each backend then turns the source into what its engine loads (slm-llamacpp converts a
checkpoint to GGUF, :mod:`convert`; slm-vllm exports a GGUF to a checkpoint, :mod:`export`).
Anything else is one :class:`ModelFileError` line naming the thing and the fix.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from slm_tasks.adapters.models import PIP_EXTRA, SHORT_NAMES, ModelFileError, resolve_gguf

GGUF, CHECKPOINT = "gguf", "checkpoint"
WHAT_MODELS_ARE = (
    f"a short name ({', '.join(SHORT_NAMES)}), a .gguf file, a checkpoint folder (config.json, "
    "safetensors weights and tokenizer files) or a hub id in the local Hugging Face cache"
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.(?P<ext>safetensors|bin)$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """A located model: ``kind`` is :data:`GGUF` (``path`` a checked .gguf file) or
    :data:`CHECKPOINT` (``path`` a checked checkpoint folder)."""

    kind: str
    requested: str
    path: Path
    short_name: str | None = None  # the short name typed, if one was
    hub_id: str | None = None  # the hub id typed, if the folder is its cached snapshot
    header: dict = field(default_factory=dict)  # a GGUF's header facts (models.check_gguf)

    @property
    def label(self) -> str:
        """The model's own name: the short name or hub id typed, else the folder's name (a
        GGUF's name comes from the weights, models.display_name)."""
        return self.short_name or self.hub_id or self.path.name


def locate(requested: str | os.PathLike) -> ModelSource:
    """The model ``requested`` names, checked (see the module's docstring)."""
    text = str(requested).strip()
    if not text:
        raise ModelFileError(f"no model given: pass {WHAT_MODELS_ARE}")
    if text.lower() in SHORT_NAMES:
        path, header = resolve_gguf(text)
        return ModelSource(GGUF, text, path, short_name=text.lower(), header=header)
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelSource(CHECKPOINT, text, check_checkpoint(path))
    if path.exists():
        return _file(text, path)
    if _HUB_ID.match(text) and not text.lower().endswith((".gguf", ".safetensors")):
        return ModelSource(CHECKPOINT, text, check_checkpoint(_cached_snapshot(text)), hub_id=text)
    raise ModelFileError(f"model '{text}' does not exist: pass {WHAT_MODELS_ARE} (short names: {PIP_EXTRA})")


def _file(text: str, path: Path) -> ModelSource:
    if path.suffix.lower() == ".safetensors" or path.name.endswith(".safetensors.index.json"):
        folder = path.resolve().parent
        hint = (
            f"pass the folder that holds it: --model {folder}"
            if (folder / "config.json").is_file()
            else "pass the checkpoint folder it came from (config.json, the weights and the tokenizer files together)"
        )
        raise ModelFileError(f"model '{text}' is a weights file alone, without its config and tokenizer: {hint}")
    if path.suffix.lower() != ".gguf" and path.is_file():
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise ModelFileError(f"model file '{text}' cannot be read: {exc.strerror}") from None
        if magic != b"GGUF":
            raise ModelFileError(f"model '{text}' is not a model file slm-suite reads: pass {WHAT_MODELS_ARE}")
    path, header = resolve_gguf(path)
    return ModelSource(GGUF, text, path, header=header)


def check_checkpoint(folder: Path) -> Path:
    """``folder`` if it holds a loadable checkpoint: config.json, every weight shard, a tokenizer."""
    config = folder / "config.json"
    if not config.is_file():
        ggufs = sorted(folder.glob("*.gguf"))
        hint = f"pass the GGUF file itself: --model {ggufs[0]}" if ggufs else f"pass {WHAT_MODELS_ARE}"
        raise ModelFileError(f"model folder '{folder}' has no config.json, so it is not a checkpoint folder: {hint}")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"model folder '{folder}': config.json cannot be read ({exc}); restore it") from None
    _check_weights(folder)
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelFileError(
            f"model folder '{folder}' has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}): save the "
            "tokenizer beside the weights (tokenizer.save_pretrained(folder))"
        )
    return folder


def _check_weights(folder: Path) -> None:
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    indexes = sorted(folder.glob("*.index.json"))
    if not weights and not indexes:
        raise ModelFileError(
            f"model folder '{folder}' has no weights (*.safetensors or pytorch_model*.bin): save the model "
            "into it (model.save_pretrained(folder))"
        )
    wanted: set[str] = set()
    for index in indexes:
        try:
            wanted |= set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"model folder '{folder}': {index.name} cannot be read ({exc}); restore it") from None
    for w in weights:  # model-00002-of-00003.safetensors names its siblings too
        m = _SHARD.match(w.name)
        if m:
            n = int(m["n"])
            wanted |= {f"{m['stem']}-{i:05d}-of-{n:05d}.{m['ext']}" for i in range(1, n + 1)}
    missing = sorted(name for name in wanted if not (folder / name).is_file())
    if missing:
        raise ModelFileError(
            f"model folder '{folder}' is missing weight shard(s) {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''} of {len(wanted)}: copy or download the whole checkpoint"
        )


def _cached_snapshot(hub_id: str) -> Path:
    """The local Hugging Face cache's snapshot of ``hub_id``; never downloads."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelFileError(
            f"model '{hub_id}' is neither a path nor in the local Hugging Face cache ({constants.HF_HUB_CACHE}), "
            f"and slm-suite downloads no models: run `hf download {hub_id}` where the hub is reachable "
            "(or copy the checkpoint folder here) and pass it again"
        ) from None
