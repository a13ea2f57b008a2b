"""The conformance suite of downstream tasks (``efm_register_tasks``).

Subclass it and list the task names; give ``roots`` (task name -> a folder of its recordings) for
the tests that read data (they are skipped for a task without one)::

    from efm.testing import TaskSuite

    class TestMyTask(TaskSuite):
        names = ["my-imagery"]
        roots = {"my-imagery": "tests/data/imagery"}
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pytest

from efm import registry


class TaskSuite:
    """Checks every listed task: it registers, its fields are consistent, its epochs are sound."""

    names: ClassVar[list[str]] = []
    roots: ClassVar[dict[str, str]] = {}
    recipe: ClassVar[str] = "diver1-EEG"  # whose pipeline conditions the epochs
    max_files: ClassVar[int] = 4

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "name" in metafunc.fixturenames:
            metafunc.parametrize("name", list(self.names))

    def test_registered(self, name: str) -> None:
        from efm.evaluate.task import get

        assert registry.get("tasks", name).name == name
        task = get(name)
        assert task.name == name and task.description

    def test_fields_consistent(self, name: str) -> None:
        from efm.evaluate.task import get

        task = get(name)
        assert task.problems() == []
        assert set(task.label_map.values()) <= set(task.classes)
        json.dumps(task.identity(), default=str)  # a cache key can be made

    def test_epochs(self, name: str, tmp_path: Any, monkeypatch: Any) -> None:
        """A few of its recordings become epochs of the task's length with valid labels."""
        if name not in self.roots:
            pytest.skip(f"no local recordings for {name} (set roots)")
        from pathlib import Path

        from efm.config import compose
        from efm.evaluate import taskdata
        from efm.evaluate.task import get

        monkeypatch.setenv("EFM_CACHE", str(tmp_path))
        task = get(name)
        root = Path(self.roots[name])
        files = taskdata.task_files(task, root)
        picked = [files[i] for i in np.linspace(0, len(files) - 1, self.max_files).astype(int)]
        sub = tmp_path / "data"
        for p, rel in picked:
            (sub / rel).parent.mkdir(parents=True, exist_ok=True)
            (sub / rel).symlink_to(p)
        cfg = compose([f"recipe={self.recipe}"])
        d = taskdata.load(task, cfg, sub, cache=False)
        n_t = round(task.epoch_s * float(cfg["pipeline"]["sfreq"]))
        assert d.x.ndim == 3 and d.x.shape[2] == n_t and d.x.shape[0] == d.y.size > 0
        assert d.y.min() >= 0 and d.y.max() < len(task.classes)
        assert np.isfinite(d.x.astype(np.float32)).all()
        assert len(d.subject) == len(d.recording) == len(d.sha256) == d.y.size
        assert all(len(h) == 64 for h in set(d.sha256))
