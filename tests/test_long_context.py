"""The long-context tasks: prompts built to their length in each embedded model's own tokens,
needles where they should be, answers nowhere else, cells past the context not applicable,
and the score on hand-made outputs (docs/long-context.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slm_tasks.long_context.cells import TOLERANCE
from slm_tasks.long_context.haystack import SENTENCE_START, haystack
from slm_tasks.long_context.needles import KINDS, needle_set
from slm_tasks.long_context.task import cells, process_results, score

MODELS = ["smollm2-135m", "gemma3-270m"]
LENGTHS = [1000, 2000, 4000, 8000]


@pytest.fixture(scope="module")
def built(mirror):
    """Every kind, at every full length, three depths, for both embedded models."""
    depths = [0, 50, 100]
    return {(m, kind): cells(kind, LENGTHS, depths, lc_samples=1, model=m) for m in MODELS for kind in KINDS}


# run here and in a fresh interpreter: the same cells must come out byte for byte
DIGEST = """
import hashlib, json, sys
from slm_tasks.long_context.task import cells
def digest(kind, model):
    docs = [c.doc() for c in cells(kind, [1000, 2000], [10, 90], 2, model=model)]
    return hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()
"""


def test_prompts_are_identical_across_processes(mirror):
    code = DIGEST + "print(*[digest(k, 'smollm2-135m') for k in sys.argv[1:]])"
    out = subprocess.run([sys.executable, "-c", code, *KINDS], capture_output=True, text=True, check=True)
    scope: dict = {}
    exec(DIGEST, scope)
    assert out.stdout.split() == [scope["digest"](k, "smollm2-135m") for k in KINDS]


@pytest.mark.parametrize("model", MODELS)
def test_lengths_are_within_two_percent_in_the_models_own_tokens(built, model):
    from llama_cpp import Llama

    from slm_tasks.adapters.llamacpp import LlamaCppLM

    # an independent count: llama-cpp-python's own tokenizer, as the backend adds specials
    ref = Llama(str(LlamaCppLM.resolve({"model": model}).path), vocab_only=True, verbose=False)
    for kind in KINDS:
        for c in built[(model, kind)]:
            real = len(ref.tokenize(c.prompt.encode(), add_bos=model == "gemma3-270m", special=True))
            assert c.n_tokens == real
            assert abs(real - c.length) <= TOLERANCE * c.length, (kind, c.length, c.depth, real)


def test_tokenizers_differ_so_the_texts_differ(built):
    a, b = built[("smollm2-135m", "single")], built[("gemma3-270m", "single")]
    assert a[0].prompt != b[0].prompt and a[0].answers == b[0].answers


@pytest.mark.parametrize("model", MODELS)
def test_the_needle_sits_at_its_depth_within_one_sentence(built, model):
    from slm_tasks.long_context.tokenizers import model_tokenizer

    tok, _ = model_tokenizer({"model": model})
    for c in built[(model, "single")]:
        (pos,) = c.needle_positions
        depth = (pos - c.haystack_start) / c.haystack_tokens * 100
        # the sentence the target falls in bounds the distance
        hay = c.prompt[c.prompt.index("Document:\n") + 10 :]
        longest = max(tok.count(s) for s in SENTENCE_START.split(hay) if s)
        assert abs(depth - c.depth) / 100 * c.haystack_tokens <= longest, (c.length, c.depth, depth)
    for c in built[(model, "multi")]:
        assert c.needle_positions == sorted(c.needle_positions)
        assert all(c.haystack_start <= p < c.haystack_start + c.haystack_tokens for p in c.needle_positions)


def test_no_needle_answer_occurs_in_the_haystack(built, mirror):
    hay = haystack(1234)
    for s in range(20):
        for kind in KINDS:
            ns = needle_set(kind, 1234, s, 3, hay.corpus_lower)
            for name in (*ns.answers, *ns.names):
                assert name.lower() not in hay.corpus_lower
    for (_, kind), cs in built.items():
        for c in cs:
            for a in c.answers:  # only in the needles: not in the question, nor the answer's start
                facts = needle_set(kind, 1234, c.sample, 3, hay.corpus_lower).facts
                assert c.prompt.count(a) == sum(f.count(a) for f in facts)


def test_a_cell_past_the_trained_context_is_not_applicable(mirror):
    cs = cells("single", [1000, 16000], [50], model="smollm2-135m")
    ok, na = cs
    assert ok.applicable and ok.n_tokens
    assert not na.applicable and "trained context (8192 tokens)" in na.reason
    assert process_results(na.doc(), ["anything"]) == {"not_applicable": 1.0}
    assert "acc" not in process_results(na.doc(), [na.answers[0]])
    small = cells("single", [1000], [50], model="smollm2-135m", n_ctx=1000)
    assert not small[0].applicable and "n_ctx=1000" in small[0].reason


def test_score_on_hand_made_outputs():
    single = {"kind": "single", "answers": ["Quorilex Shard"], "names": [], "applicable": True}
    assert score(single, " The quorilex shard.")["acc"] == 1.0
    assert score(single, " Quorilex")["acc"] == 0.0
    multi = {"kind": "multi", "answers": ["A Shard", "B Crown", "C Scroll"], "names": [], "applicable": True}
    assert score(multi, "A Shard, C Scroll and B Crown") == {"acc": 1.0, "needle_recall": 1.0}
    assert score(multi, "A Shard and B Crown") == {"acc": 0.0, "needle_recall": pytest.approx(2 / 3)}
    names = ["Zorva", "Melik", "Tessa", "Quen"]
    chain = {"kind": "reasoning", "answers": ["Zorva"], "names": names, "applicable": True}
    assert score(chain, " Zorva is the eldest.")["acc"] == 1.0
    assert score(chain, " Tessa, then Zorva")["acc"] == 0.0  # names a nearer ancestor first
    assert score(chain, " Nobody")["acc"] == 0.0
    assert process_results(chain, [" Zorva"]) == {"acc": 1.0, "needle_recall": 1.0, "not_applicable": 0.0}


def test_a_cell_longer_than_the_haystack_is_one_clear_error(mirror):
    from slm_tasks.errors import SLMError

    with pytest.raises(SLMError) as err:  # no model named: lengths in words, no window
        cells("single", [1_000_000], [50])
    assert "\n" not in str(err.value) and "choose shorter lc_lengths" in str(err.value)
