"""math-verify in helper processes, so that every comparison has a hard time limit.

math-verify's own timeout is SIGALRM: main thread only, and useless while sympy computes a
huge power in C. So each comparison runs in a long-lived helper process (JSON lines over its
stdin/stdout); a helper that misses the deadline, crashes or answers garbage is killed and
reaped, the comparison counts as not equal, and the next one starts a fresh helper. Threads
that compare at once each take their own helper. Run as a script, this file is the helper.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import select
import subprocess
import sys
import threading
import time

# -P: don't put this file's folder (rap_core/) on the helper's sys.path
COMMAND = [sys.executable, "-P", os.path.abspath(__file__)]
START_TIMEOUT = 60  # import and warm-up; not counted in a comparison's time
# An orphaned helper (its parent killed mid-comparison) ends by itself after this much CPU.
HELPER_CPU_LIMIT = 20
_READY = b'{"ready": true}'


class _Helper:
    def __init__(self):
        self.proc = subprocess.Popen(COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._pending = b""
        with _lock:
            _live.add(self)
        try:
            ready = self._line(time.monotonic() + START_TIMEOUT)
        except BaseException:  # Ctrl-C while waiting: leave no helper behind
            self.kill()
            raise
        if ready != _READY:
            self.kill()
            raise RuntimeError(f"math-verify helper did not start (exit code "
                               f"{self.proc.returncode}, command {COMMAND})")

    def _line(self, deadline: float) -> bytes | None:
        """The helper's next output line, or None when it exits or the deadline passes."""
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # not select(): fds above 1024 in a big parent process
        poller.register(fd, select.POLLIN)
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(math.ceil(left * 1000)):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def compare(self, gold: str, pred: str, timeout: float) -> bool | None:
        """Equal or not; None when the helper failed (it must then be killed)."""
        try:
            self.proc.stdin.write(json.dumps({"gold": gold, "pred": pred}).encode() + b"\n")
            self.proc.stdin.flush()
            reply = json.loads(self._line(time.monotonic() + timeout) or b"null")
        except (OSError, ValueError):  # a dead helper's pipe; garbage output
            return None
        equal = reply.get("equal") if isinstance(reply, dict) else None
        return equal if isinstance(equal, bool) else None

    def kill(self) -> None:
        with _lock:
            _live.discard(self)
        self.proc.kill()  # a no-op once it has exited and been reaped
        self.proc.wait()  # reap: no zombie
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


_lock = threading.Lock()
_idle: list[_Helper] = []
_live: set[_Helper] = set()


def equal(gold: str, pred: str, timeout: float) -> bool:
    """math-verify's verdict on two LaTeX strings; False if it takes over timeout seconds.

    Starting a helper (about a second, on first use and after a failure) is not counted in
    timeout; a helper that cannot start at all raises RuntimeError rather than grading every
    math answer wrong."""
    with _lock:
        helper = _idle.pop() if _idle else None
    if helper is not None and helper.proc.poll() is not None:
        helper.kill()  # died while idle: not this comparison's fault
        helper = None
    if helper is None:
        helper = _Helper()
    try:
        result = helper.compare(gold, pred, timeout)
    except BaseException:  # Ctrl-C while waiting: its reply would confuse the next caller
        helper.kill()
        raise
    if result is None:
        helper.kill()
        return False
    with _lock:
        _idle.append(helper)
    return result


def shutdown() -> None:
    """Kill and reap every helper (at exit; a later comparison starts a new one)."""
    with _lock:
        helpers = list(_live)
        _idle.clear()
    for helper in helpers:
        helper.kill()


def _forget_after_fork() -> None:
    # A forked child must neither talk to nor kill its parent's helpers.
    global _lock, _idle, _live
    for helper in _live:
        for pipe in (helper.proc.stdin, helper.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
    _lock, _idle, _live = threading.Lock(), [], set()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)


def _serve() -> None:
    """The helper: one {"gold", "pred"} request per stdin line, one {"equal"} reply each."""
    import logging
    import resource
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which kills us
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the replies
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)

    from math_verify import parse, verify

    # the parent enforces the time limit; math-verify would warn that its own is off
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def same(gold: str, pred: str) -> bool:
        try:
            gold_parsed = parse(f"${gold}$", parsing_timeout=None)
            pred_parsed = parse(f"${pred}$", parsing_timeout=None)
            if not gold_parsed or not pred_parsed:
                return False
            return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
        except Exception:  # a malformed response is simply not correct
            return False

    same("\\frac{1}{2}", "0.5")  # warm-up, so that the first real comparison isn't slower
    out.write(_READY + b"\n")
    out.flush()
    for line in sys.stdin.buffer:  # ends at EOF, when the parent closes the pipe or exits
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime) + 1 + HELPER_CPU_LIMIT
        if cpu_hard != resource.RLIM_INFINITY:
            soft = min(soft, cpu_hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, cpu_hard))  # past it: SIGXCPU ends us
        request = json.loads(line)
        out.write(json.dumps({"equal": same(request["gold"], request["pred"])}).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _serve()
