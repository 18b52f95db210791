"""The results layer: what both ``slm-suite run`` and the leaderboards read from lm-eval's output.

* :mod:`~slm_tasks.results.inputs` - reading result, cost and samples files safely (regular
  files only, bounded sizes);
* :mod:`~slm_tasks.results.cost_record` - the ``slm-suite.cost/1`` record's schema and its
  one reader, ``CostRecord``;
* :mod:`~slm_tasks.results.samples` - the one reader of per-document samples files;
* :mod:`~slm_tasks.results.stats` - every standard error, interval and test of the suite;
* :mod:`~slm_tasks.results.icl_gain` - the gain from few-shot examples;
* :mod:`~slm_tasks.results.errors` - ``BoardError`` / ``GateError``: result files, specs or
  policies that cannot be used (one line, exit code 2).

Below :mod:`slm_tasks.leaderboards` and the command line: nothing here imports either (or the
adapters); tests/test_layering.py checks it.
"""
