"""The block registry under concurrent first use (the workbench runs page scripts in several threads)."""

from __future__ import annotations

import threading
import time

from builder import registry


def test_a_second_thread_waits_for_the_first_to_finish_loading_instead_of_seeing_half_a_registry(monkeypatch):
    registry.load_blocks()
    real_import = registry.importlib.import_module
    started, finished = threading.Event(), {}

    def slow_import(name):
        started.set()
        time.sleep(0.3)  # the first thread is still importing block modules…
        return real_import(name)

    monkeypatch.setattr(registry.importlib, "import_module", slow_import)
    monkeypatch.setattr(registry, "_loaded", False)

    def first():
        registry.load_blocks()
        finished["first"] = time.monotonic()

    t = threading.Thread(target=first)
    t.start()
    assert started.wait(5)
    registry.load_blocks()  # …when a second thread asks for the blocks
    finished["second"] = time.monotonic()
    t.join(10)
    assert finished["second"] >= finished["first"]
    assert {"chat.faq-csv", "compute.local", "service.api"} <= {b.id for b in registry.all_blocks()}


def test_a_failed_load_is_retried_on_the_next_call(monkeypatch):
    registry.load_blocks()
    real_import = registry.importlib.import_module
    calls = []

    def failing_once(name):
        calls.append(name)
        if len(calls) == 1:
            raise ImportError("disk hiccup")
        return real_import(name)

    monkeypatch.setattr(registry.importlib, "import_module", failing_once)
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        registry.load_blocks()
    except ImportError:
        pass
    assert registry._loaded is False
    registry.load_blocks()
    assert registry._loaded is True and len(calls) > 1
