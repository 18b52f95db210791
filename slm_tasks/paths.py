"""Where slm-suite's own files are: a leaf module (it imports nothing of the project).

``slm_tasks.activation`` loads at every interpreter start and the task modules load inside
lm-eval, so the one fact they all need, the task folder, lives here, below both.
"""

from __future__ import annotations

from pathlib import Path


def task_dir() -> Path:
    """The folder holding every slm_suite task YAML.

    A wheel installs it as package data (slm_tasks/task_configs); an editable install
    or a checkout reads the repository's top-level task_configs/.
    """
    here = Path(__file__).resolve().parent
    installed = here / "task_configs"
    return installed if installed.is_dir() else here.parent / "task_configs"
