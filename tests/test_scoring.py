"""The backend-neutral scoring core: lm-eval's tokenisation rules, truncation, grouping."""

from __future__ import annotations

import numpy as np
import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM

from slm_tasks.adapters import scoring


class ByteTokenizerLM(TemplateLM):
    """A TemplateLM over a toy tokenizer (words and spaces, optional BOS=1): lm-eval's own
    ``loglikelihood`` records the token ids it would score."""

    def __init__(self, add_bos: bool):
        super().__init__()
        self.add_bos = add_bos
        self.seen = []

    @property
    def eot_token_id(self):
        return 2

    @property
    def prefix_token_id(self):
        return 1

    def tok_encode(self, string, add_special_tokens=None, **kwargs):
        add = self.add_bos if add_special_tokens is None else add_special_tokens
        # merge a leading space into the next word, as BPE tokenizers do
        words, cur = [], ""
        for ch in string:
            if ch == " " and cur.strip():
                words.append(cur)
                cur = ch
            else:
                cur += ch
        if cur:
            words.append(cur)
        ids = [1000 + sum(map(ord, w)) for w in words]
        return ([1] if add else []) + ids

    def _loglikelihood_tokens(self, requests, **kwargs):
        self.seen = [(ctx, cont) for _, ctx, cont in requests]
        return [(0.0, True)] * len(requests)

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm=False):
        raise NotImplementedError


PAIRS = [
    ("Question: what?\nAnswer:", " yes"),
    ("Question: what?\nAnswer: ", "yes"),  # trailing space moves to the continuation
    ("The cat sat  ", "on the mat"),
    ("", "an empty context"),  # -> prefix token
    ("", " starts with space"),
]


@pytest.mark.parametrize("add_bos", [False, True])
def test_encode_request_matches_templatelm(add_bos):
    lm = ByteTokenizerLM(add_bos)
    reqs = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(PAIRS)]
    lm.loglikelihood(reqs, disable_tqdm=True)
    ours = [scoring.encode_request(c, x, lm.tok_encode, lm.prefix_token_id) for c, x in PAIRS]
    assert ours == lm.seen


def test_empty_context_uses_prefix_token_unless_continuation_starts_with_it():
    enc = lambda s, add_special_tokens=None: [1, 7, 8] if s == "x" else [9]  # noqa: E731
    assert scoring.encode_request("", "x", enc, prefix_token_id=1) == ([1], [7, 8])
    assert scoring.encode_request("", "y", enc, prefix_token_id=1) == ([1], [9])


@pytest.mark.parametrize("n_ctx,n_cont,max_len", [(5, 3, 10), (9, 3, 10), (20, 3, 10), (20, 10, 10), (3, 15, 10)])
def test_truncate_left_keeps_what_hf_feeds_the_model(n_ctx, n_cont, max_len):
    ctx, cont = list(range(100, 100 + n_ctx)), list(range(500, 500 + n_cont))
    tctx, tcont, cut = scoring.truncate_left(ctx, cont, max_len)
    assert cut == (n_ctx + n_cont > max_len + 1)
    inputs = list(tctx + tcont)[:-1]
    assert len(inputs) <= max_len
    if n_cont <= max_len:
        # HF: (context + continuation)[-(max_length + 1):][:-1], continuation scored whole
        assert inputs == (ctx + cont)[-(max_len + 1) :][:-1]
        assert list(tcont) == cont
    else:
        assert list(tcont) == cont[-max_len:]


def test_plan_dedupes_groups_and_sorts_by_context():
    a, b = (5, 6, 7), (5, 6, 9)
    reqs = [(b, (1,)), (a, (2,)), (a, (3, 4)), (b, (1,)), (a, (2,)), ((5,), (8,))]
    plan = scoring.plan_groups(reqs)
    assert [g.context for g in plan.groups] == [(5,), a, b]  # lexicographic: shared prefixes adjacent
    ga = plan.groups[1]
    assert ga.continuations == [(2,), (3, 4)]
    assert ga.members == [[1, 4], [2]]
    shuffled = scoring.plan_groups([reqs[i] for i in (2, 1, 0, 5, 4, 3)])
    assert [(g.context, g.continuations) for g in shuffled.groups] == [
        (g.context, g.continuations) for g in plan.groups
    ]
    assert plan.groups[2].members == [[0, 3]]
    assert plan.n_unique == 4 and plan.n_requests == 6 and plan.truncated == []


def test_plan_groups_by_truncated_context():
    reqs = [(tuple(range(10)), (50,)), (tuple(range(2, 10)), (50,))]
    plan = scoring.plan_groups(reqs, max_length=8)
    # both truncate to the same last 8 context tokens: one group, one unique continuation
    assert len(plan.groups) == 1 and plan.groups[0].members == [[0, 1]]
    assert plan.truncated == [0]


def test_common_prefix_len():
    assert scoring.common_prefix_len([1, 2, 3], [1, 2, 4, 5]) == 2
    assert scoring.common_prefix_len([], [1]) == 0
    assert scoring.common_prefix_len([1, 2], [1, 2]) == 2


def test_pack_waves_respects_parallel_and_token_budget():
    assert scoring.pack_waves([3, 3, 3, 3, 3], max_parallel=2, token_budget=100) == [[0, 1], [2, 3], [4]]
    assert scoring.pack_waves([4, 4, 4], max_parallel=16, token_budget=9) == [[0, 1], [2]]
    assert scoring.pack_waves([50, 1], max_parallel=16, token_budget=10) == [[0], [1]]  # oversize alone
    assert scoring.pack_waves([], 4, 10) == []


def test_score_tokens_is_float64_log_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 50)).astype(np.float32) * 10
    targets = [4, 17, int(logits[2].argmax())]
    total, greedy = scoring.score_tokens(logits, targets)
    x = logits.astype(np.float64)
    expected = sum(x[i, t] - np.log(np.exp(x[i]).sum()) for i, t in enumerate(targets))
    assert total == pytest.approx(expected, abs=1e-12)
    assert greedy == all(int(x[i].argmax()) == t for i, t in enumerate(targets))
    _, all_greedy = scoring.score_tokens(logits, [int(r.argmax()) for r in logits])
    assert all_greedy
    rows = scoring.logprob_rows(logits)
    assert rows.dtype == np.float64
    np.testing.assert_allclose(np.exp(rows).sum(1), 1.0, rtol=1e-12)


def _batches(prefixes, order):
    """For each position of the last prefix evaluated: (which prefix's evaluation computed
    it, from which position that batch started) — what decides its numbers in llama.cpp."""
    cached, origin = [], []
    for i in order:
        keep = scoring.kept_prefix(cached, prefixes[i]) if cached else 0
        origin = origin[:keep] + [(i, keep)] * (len(prefixes[i]) - keep)
        cached = list(prefixes[i])
    return origin


def test_replay_chain_rebuilds_the_cache_of_an_uninterrupted_run():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        prefixes = sorted(tuple(rng.integers(0, 2, size=rng.integers(1, 7))) for _ in range(rng.integers(2, 10)))
        index = int(rng.integers(1, len(prefixes)))
        chain = scoring.replay_chain(prefixes, index)
        assert chain == sorted(set(chain)) and all(i < index for i in chain)
        assert _batches(prefixes, chain + [index]) == _batches(prefixes, range(index + 1))


def test_replay_chain_of_a_shared_preamble_is_short():
    preamble = tuple(range(100))
    prefixes = [preamble + (200 + i, 300 + i) for i in range(50)]
    # every document after the first keeps the preamble: only the first one computed it
    assert scoring.replay_chain(prefixes, 30) == [0]
