"""A rich progress display for runs in the terminal (one bar per step)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class RichReporter:
    """Shows each step as a progress bar with its latest metric values."""

    def __init__(self, console: Console, steps: list[tuple[str, str]]) -> None:
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[node]:<12}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[status]:<10}"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.latest: dict[str, dict[str, float]] = {}
        for node_id, block in steps:
            self.tasks[node_id] = self.bar.add_task(block, node=node_id, status="waiting", total=None, start=False)

    def __enter__(self) -> RichReporter:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def step_started(self, node_id: str, cached: bool) -> None:
        self.bar.start_task(self.tasks[node_id])
        self.bar.update(self.tasks[node_id], status="cached" if cached else "running")

    def progress(self, node_id: str, done: float, total: float, description: str) -> None:
        extra = self._metrics_text(node_id)
        self.bar.update(self.tasks[node_id], completed=done, total=total, description=f"{description}{extra}")

    def metric(self, node_id: str, name: str, value: float, step: int) -> None:
        self.latest.setdefault(node_id, {})[name] = value

    def step_finished(self, node_id: str, status: str) -> None:
        t = self.tasks[node_id]
        task = self.bar.tasks[self.bar.task_ids.index(t)]
        total = task.total or 1
        self.bar.update(t, status=status, total=total, completed=total if status != "failed" else task.completed)
        self.bar.stop_task(t)

    def _metrics_text(self, node_id: str) -> str:
        shown = {k: v for k, v in self.latest.get(node_id, {}).items() if k in ("loss", "accuracy")}
        return "".join(f"  {k}={v:.3f}" for k, v in shown.items())


__all__ = ["RichReporter"]
