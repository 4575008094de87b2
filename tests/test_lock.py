"""One writing run per data folder; a second is told who holds it, and may queue."""

import os
import threading
import time

import pytest

from rap.rap_core.store.lock import RunLock, StoreBusy, holder


def test_a_second_run_is_told_who_writes(tmp_path):
    with RunLock(tmp_path):
        info = holder(tmp_path)
        assert info["pid"] == os.getpid() and info["started"]
        with pytest.raises(StoreBusy, match=f"pid {os.getpid()} .*--wait-for-lock"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released on exit
        pass


def test_a_second_run_can_queue(tmp_path):
    said = []
    first = RunLock(tmp_path).__enter__()
    threading.Timer(1.0, first.__exit__, (None, None, None)).start()
    start = time.monotonic()
    with RunLock(tmp_path, wait_s=30, say=said.append):
        assert time.monotonic() - start >= 0.9
    assert said and "waiting up to 30 s" in said[0]
    first_again = RunLock(tmp_path).__enter__()
    try:
        with pytest.raises(StoreBusy, match=r"waited 1 s"):
            with RunLock(tmp_path, wait_s=1):
                pass
    finally:
        first_again.__exit__(None, None, None)


def test_a_lock_handed_down_is_joined_in_the_same_process_only(tmp_path):
    """The command line holds the lock around the flow it runs; the flow joins it."""
    import subprocess
    import sys
    code = ("from rap_core.store.lock import RunLock\n"
            f"RunLock({str(tmp_path)!r}).__enter__()\nprint('locked')")
    with RunLock(tmp_path, hand_down=True):
        with RunLock(tmp_path):  # joined: no wait
            pass
        with RunLock(tmp_path):  # still held by the outer one
            pass
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode != 0 and "another rap run" in other.stderr
    with RunLock(tmp_path):  # the outer one released it
        pass
