"""The coding tasks (slm_humaneval, slm_mbpp, group slm_coding) on lm-eval's machinery.

* prompt parity: the same docs give the same requests (context + generation kwargs) as
  lm-eval's built-in ``humaneval`` and ``mbpp`` (built from lm-eval's own YAMLs; their
  utils.py needs ``evaluate.load("code_eval")`` at import, stubbed here since only prompt
  building is compared);
* our tasks never call ``evaluate.load``;
* scoring: a scripted model that answers with the reference solutions gets pass@1 = 1, and
  the group is the plain average of its tasks' pass@1;
* end to end: ``lm_eval --model dummy ... --confirm_run_unsafe_code`` runs offline.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slm_tasks import code_eval
from slm_tasks.paths import task_dir

HUB = Path(os.environ.get("SLM_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "hub").resolve()


@pytest.fixture()
def mirror(monkeypatch):
    if not (HUB / "manifest.json").is_file():
        pytest.skip(f"offline mirror not found at {HUB} (set SLM_DATA_DIR)")
    monkeypatch.setenv("SLM_DATA_DIR", str(HUB))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return HUB


@pytest.fixture()
def no_hub_metric(monkeypatch):
    """``evaluate.load`` raises: whatever calls it (our tasks must not) fails loudly."""
    import evaluate

    def refuse(*args, **kwargs):
        raise AssertionError(f"evaluate.load{args} called")

    monkeypatch.setattr(evaluate, "load", refuse)


def ours(name):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=task_dir(), include_defaults=False).load([name])["tasks"][name]


def builtin(yaml_rel, hub_dir, monkeypatch):
    """lm-eval's own task from its YAML, reading the mirror folder directly."""
    import evaluate
    import lm_eval.tasks as lt
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    class PromptOnly:  # enough for the import-time self-test in lm-eval's utils.py
        def compute(self, **kwargs):
            return [{"pass@1": 0.0}, {}]

    monkeypatch.setattr(evaluate, "load", lambda *a, **k: PromptOnly())
    cfg = load_yaml(Path(lt.__file__).parent / yaml_rel)
    cfg["dataset_path"] = str(hub_dir)
    return ConfigurableTask(config=cfg)


def requests(task, limit, shots):
    task.set_config(key="num_fewshot", value=shots)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return [(i.doc_id, i.idx, i.args, i.repeats) for i in task.instances]


@pytest.mark.parametrize(
    "name, yaml_rel, hub_id, shots",
    [
        ("slm_humaneval", "humaneval/humaneval.yaml", "openai/openai_humaneval", 0),
        ("slm_mbpp", "mbpp/mbpp.yaml", "google-research-datasets/mbpp", 3),
    ],
)
def test_requests_equal_the_builtin_task(mirror, monkeypatch, name, yaml_rel, hub_id, shots):
    ref = builtin(yaml_rel, mirror / hub_id, monkeypatch)
    mine = ours(name)
    expected = requests(ref, limit=10, shots=shots)
    got = requests(mine, limit=10, shots=shots)
    assert len(got) == 10
    assert got == expected
    docs = list(mine.eval_docs)[:10]
    assert [mine.doc_to_target(d) for d in docs] == [ref.doc_to_target(d) for d in docs]
    if shots:
        assert "[BEGIN]\n" in got[0][2][0] and got[0][2][0].count("[DONE]") == shots


def test_our_tasks_never_load_the_hub_code_eval_metric(mirror, no_hub_metric):
    for name in ("slm_humaneval", "slm_mbpp", "slm_humaneval_lite", "slm_mbpp_lite"):
        task = ours(name)
        task.build_all_requests(limit=1, rank=0, world_size=1)
        doc = next(iter(task.eval_docs))
        out = task.process_results(doc, [["pass"]])
        assert out["pass@1"] == 0.0 and len(out["sandbox"]) == 1


def test_lite_variants_are_fixed_subsets(mirror):
    full_he, lite_he = ours("slm_humaneval"), ours("slm_humaneval_lite")
    full_mb, lite_mb = ours("slm_mbpp"), ours("slm_mbpp_lite")
    assert (len(full_he.eval_docs), len(lite_he.eval_docs)) == (164, 40)
    assert (len(full_mb.eval_docs), len(lite_mb.eval_docs)) == (500, 50)
    assert {d["task_id"] for d in lite_he.eval_docs} <= {d["task_id"] for d in full_he.eval_docs}
    assert [d["task_id"] for d in lite_mb.eval_docs] == [d["task_id"] for d in ours("slm_mbpp_lite").eval_docs]


def test_unbiased_pass_at_k_matches_the_combinatorial_definition():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert code_eval.pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    assert code_eval.pass_at_k(1, 1, 1) == 1.0 and code_eval.pass_at_k(1, 0, 1) == 0.0
    assert code_eval.pass_at_k_scores([True, False, False, False]) == {"pass@1": 0.25}
    with pytest.raises(ValueError):
        code_eval.pass_at_k(3, 1, 4)


def test_sandbox_aggregate_is_the_share_of_candidates_it_stopped():
    items = [["passed"], ["timeout"], ["failed: AssertionError"], ["blocked: os.fork", "memory"]]
    assert code_eval.stopped_share(items) == pytest.approx(3 / 5)


class Scripted:
    """A model that answers with each problem's reference solution (MBPP: only for the
    problems in ``mbpp_right``, junk otherwise)."""

    def __init__(self, hub, mbpp_right):
        he = [json.loads(x) for x in open(hub / "openai/openai_humaneval/openai_humaneval/test.jsonl")]
        mb = [json.loads(x) for x in open(hub / "google-research-datasets/mbpp/full/test.jsonl")]
        self.by_prompt = {d["prompt"]: d["canonical_solution"] for d in he}
        self.mbpp = {d["text"]: (d["code"] if d["task_id"] in mbpp_right else "def nothing(): pass") for d in mb}

    def lm(self):
        from lm_eval.api.model import LM

        outer = self

        class ScriptedLM(LM):
            def generate_until(self, requests):
                out = []
                for r in requests:
                    ctx = r.args[0]
                    if ctx in outer.by_prompt:
                        out.append(outer.by_prompt[ctx])
                    else:
                        text = ctx.rsplit("here is your task: ", 1)[1].split(" Your code should pass", 1)[0]
                        out.append(outer.mbpp[text])
                return out

            def loglikelihood(self, requests):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

        return ScriptedLM()


def test_reference_answers_score_one_and_the_group_is_a_plain_average(mirror):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    mbpp_docs = [json.loads(x) for x in open(mirror / "google-research-datasets/mbpp/full/test.jsonl")][:4]
    right = {mbpp_docs[0]["task_id"], mbpp_docs[1]["task_id"]}  # 2 of 4 right: pass@1 0.5
    out = simple_evaluate(
        model=Scripted(mirror, right).lm(),
        tasks=["slm_coding"],
        task_manager=TaskManager(include_path=task_dir(), include_defaults=False),
        samples={"slm_humaneval": [0, 1], "slm_mbpp": [0, 1, 2, 3]},
        confirm_run_unsafe_code=True,
        bootstrap_iters=0,
    )
    res = out["results"]
    assert res["slm_humaneval"]["pass@1,create_test"] == 1.0
    assert res["slm_mbpp"]["pass@1,create_test"] == 0.5
    # plain average of the two tasks (size-weighted would be (2*1 + 4*0.5)/6 = 0.667)
    assert res["slm_coding"]["pass@1,create_test"] == pytest.approx(0.75)
    assert res["slm_humaneval"]["sandbox,create_test"] == 0.0


def test_unsafe_code_still_needs_the_confirmation_flag(mirror):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    with pytest.raises(ValueError, match="unsafe"):
        simple_evaluate(
            model="dummy",
            tasks=["slm_humaneval"],
            limit=1,
            task_manager=TaskManager(include_path=task_dir(), include_defaults=False),
        )


def test_lm_eval_cli_runs_the_coding_tasks_offline(mirror, tmp_path):
    env = dict(os.environ, SLM_DATA_DIR=str(mirror), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "dummy",
        "--tasks",
        "slm_humaneval,slm_mbpp",
        "--limit",
        "2",
        "--confirm_run_unsafe_code",
        "--output_path",
        str(tmp_path),
        "--log_samples",
    ]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(next(tmp_path.rglob("results_*.json")).read_text())["results"]
    for task in ("slm_humaneval", "slm_mbpp"):
        assert results[task]["pass@1,create_test"] == 0.0  # the dummy model answers junk
    samples = [json.loads(x) for f in tmp_path.rglob("samples_slm_mbpp_*.jsonl") for x in f.read_text().splitlines()]
    assert len(samples) == 2 and all(s["sandbox"][0].startswith("failed") for s in samples)


def test_sandbox_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SLM_SANDBOX_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SLM_SANDBOX_MEMORY_MB", "256")
    limits = code_eval._limits_from_env()
    assert (limits.timeout_s, limits.memory_bytes) == (2.5, 256 << 20)
    monkeypatch.setenv("SLM_SANDBOX_TIMEOUT_S", "ten")
    with pytest.raises(code_eval.CodeEvalError, match="SLM_SANDBOX_TIMEOUT_S"):
        code_eval._limits_from_env()
