"""Fault injection for the Ray test, outside the project's code: with this folder on
PYTHONPATH and RAP_TEST_KILL_WORKER_ONCE naming a marker file, the first process to load the
model for a shard task (tasks.inference) claims the marker and kills itself, as a crashed
Ray worker would."""

import importlib.abc
import importlib.util
import os
import signal
import sys

MARKER = os.environ.get("RAP_TEST_KILL_WORKER_ONCE")


def _die_once() -> None:
    try:
        os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


class _WrapInferenceTasks(importlib.abc.MetaPathFinder):
    """Wraps tasks.inference's load_engine once that module is executed."""

    def find_spec(self, name, path, target=None):
        if name != "rap.tasks.inference":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            load = module.load_engine

            def load_engine(*args, **kwargs):
                _die_once()
                return load(*args, **kwargs)
            module.load_engine = load_engine
        spec.loader.exec_module = exec_module
        return spec


if MARKER:
    sys.meta_path.insert(0, _WrapInferenceTasks())
