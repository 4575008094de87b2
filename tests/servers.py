"""A real OpenAI-compatible server for tests and benchmarks: `transformers serve` (from the
pinned transformers) serving the demo model, started and stopped by PID.

transformers serve loads a folder's processor with AutoProcessor, and the stock Qwen2-VL
processor needs torchvision (its video processor), which this machine cannot install beside
its CPU torch. `served_folder` links the checkpoint's files into a folder whose processor
config names rap's image-only processor as remote code (`--trust-remote-code`); the weights,
tokenizer and chat template are the checkpoint's own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

REMOTE_CODE = ("from rap.rap_core.engines.hf_loading import Qwen2VLImageOnlyProcessor"
               "  # noqa: F401\n")
NOT_LINKED = {"processor_config.json", "video_preprocessor_config.json"}


def served_folder(model_dir: Path, dest: Path) -> Path:
    """The checkpoint's files linked into dest, with the image-only processor as remote code."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in Path(model_dir).iterdir():
        if f.name not in NOT_LINKED and not (dest / f.name).exists():
            (dest / f.name).symlink_to(f.resolve())
    processor = json.loads((Path(model_dir) / "processor_config.json").read_text())
    processor.update(processor_class="Qwen2VLImageOnlyProcessor",
                     auto_map={"AutoProcessor": "rap_image_only.Qwen2VLImageOnlyProcessor"})
    (dest / "processor_config.json").write_text(json.dumps(processor, indent=2))
    (dest / "rap_image_only.py").write_text(REMOTE_CODE)
    return dest


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a process a test started (by its PID): SIGTERM, then SIGKILL after 15 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `transformers serve` process; start() and stop() may be called again."""

    def __init__(self, folder: Path, workdir: Path, port: int | None = None):
        self.folder, self.workdir = folder, workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model = str(folder)  # transformers serve names a model by its path
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "server.log"

    def start(self, timeout_s: float = 120.0) -> "Server":
        env = {**os.environ, "HF_HOME": str(self.workdir / "hf"), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": os.environ.get("RAP_SERVER_THREADS", "1")}
        command = [str(Path(sys.executable).with_name("transformers")), "serve",
                   str(self.folder), "--device", "cpu", "--dtype", "float32",
                   "--host", "127.0.0.1", "--port", str(self.port), "--trust-remote-code"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"transformers serve did not answer in {timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop the process this object started (by its PID), and nothing else."""
        stop(self.proc)


@contextmanager
def transformers_serve(model_dir: Path, workdir: Path):
    """A started server over a served copy of model_dir, stopped on exit."""
    server = Server(served_folder(model_dir, workdir / "served"), workdir).start()
    try:
        yield server
    finally:
        server.stop()
