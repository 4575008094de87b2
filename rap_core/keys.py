"""Content hashes that key every stored fact: sample ids, weights fingerprints, settings keys."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel


def short_hash(*parts, length: int = 16) -> str:
    """A stable hex digest of JSON-serialisable parts."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:length]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sample_id(question: str, answer: str, image_sha256: list[str],
              system: str | None = None) -> str:
    """A sample's identity is its content: the same sample in two files gets one id. Its own
    system prompt is part of it (a different prompt is a different sample)."""
    h = hashlib.sha256()
    tail = [f"\0system\0{system}"] if system else []
    for part in [question, answer, *image_sha256, *tail]:
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:24]


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def weights_fingerprint(model_dir: Path, cache_file: Path | None = None) -> str:
    """sha256 over the config and every weights file, cached by (name, size, mtime)."""
    files = sorted(p for p in Path(model_dir).iterdir()
                   if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES)
    stamp = short_hash([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
                       str(Path(model_dir).resolve()))
    cache = json.loads(cache_file.read_text()) if cache_file and cache_file.exists() else {}
    if stamp in cache:
        return cache[stamp]
    digest = short_hash([(p.name, sha256_file(p)) for p in files], length=32)
    if cache_file:
        cache[stamp] = digest
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    return digest


class FactKeys(BaseModel):
    """Which stored facts a selection reads: the pool, and the keys of the model, the rollout
    settings and the attention pass (rap_core/keys.py). Passed between the flow's steps."""

    pool_id: str
    model_key: str
    settings_key: str
    ace_key: str

    def facts(self) -> dict[str, str]:
        """The fact keys alone, as bound SQL parameters."""
        return self.model_dump(exclude={"pool_id"})
