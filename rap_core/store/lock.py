"""One writing run per data folder.

A selection (or retune) holds an exclusive lock on `<data>/rap.lock` for its whole run, with
who holds it written inside. The operating system drops the lock when the process ends, even
by kill -9, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rap.rap_core.errors import StoreBusy, StoreError


_HANDED_DOWN: dict[Path, int] = {}  # folders locked with hand_down, and how many hold them


def lock_path(data_dir: Path) -> Path:
    return Path(data_dir) / "rap.lock"


def holder(data_dir: Path) -> dict | None:
    """Who holds (or last held) the lock, as written in the lock file."""
    try:
        return json.loads(lock_path(data_dir).read_text() or "null")
    except (OSError, ValueError):
        return None


def describe(info: dict | None) -> str:
    if not info:
        return "another process"
    return (f"pid {info.get('pid')} on {info.get('host')} (`{info.get('command')}`, "
            f"started {info.get('started')})")


class RunLock:
    """Held for a whole run: `with RunLock(data_dir, wait_s, say): ...`. With hand_down, later
    RunLocks on the same folder in this process join it instead of waiting: the command line
    takes the lock before Prefect starts, and the flow it then runs finds it held."""

    def __init__(self, data_dir: Path, wait_s: float = 0.0, say=None, hand_down: bool = False):
        self.path, self.wait_s, self.say = lock_path(data_dir), wait_s, say
        self.data_dir, self.file, self.hand_down = Path(data_dir), None, hand_down
        self.key, self.joined = self.data_dir.resolve(), False

    def __enter__(self) -> "RunLock":
        if self.key in _HANDED_DOWN:
            _HANDED_DOWN[self.key] += 1
            self.joined = True
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a+")
        except OSError as exc:
            raise StoreError(f"cannot open the run lock {self.path} ({exc.strerror}); make "
                             "the data folder writable, or set RAP_DATA_DIR to another "
                             "folder") from exc
        self._acquire()
        if self.hand_down:
            _HANDED_DOWN[self.key] = 1
        return self

    def _acquire(self) -> None:
        deadline, told = time.monotonic() + self.wait_s, False
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                who = describe(holder(self.data_dir))
                if time.monotonic() >= deadline:
                    self.file.close()
                    waited = f" (waited {self.wait_s:.0f} s)" if self.wait_s else ""
                    raise StoreBusy(
                        f"another rap run is writing to {self.data_dir}: {who}{waited}. Wait "
                        "for it to finish, or pass --wait-for-lock SECONDS to queue behind it")
                if not told and self.say:
                    self.say(f"waiting up to {self.wait_s:.0f} s for {who}, which is writing "
                             f"to {self.data_dir}")
                    told = True
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        self.file.seek(0)
        self.file.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "command": " ".join(os.path.basename(a) if i == 0 else a
                                       for i, a in enumerate(sys.argv)),
                   "started": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                  self.file)
        self.file.flush()

    def __exit__(self, *exc) -> None:
        if self.joined or self.hand_down:
            _HANDED_DOWN[self.key] -= 1
            if self.joined:
                return
            del _HANDED_DOWN[self.key]
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
