"""Where rap may write a file a user named (`rap export --out`, `rap query --out`), and how.

Rules, the same for every such file:
  * never: the data folder, anything inside rap's own files there (the store, its lock, the
    MLflow store, models, images, Prefect's home...), or any ancestor of the data folder or
    of the working directory;
  * a path that exists is refused unless `force`, and even then only a previous rap output of
    the same kind is replaced, recognised by its manifest (`<out>.manifest.json`), every file
    of it unchanged since rap wrote it (sha256) and nothing else inside it;
  * everything is written under a temporary name beside the target and renamed into place,
    so a reader never sees half a file and a failed write leaves the old output whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rap.rap_core.keys import sha256_file
from rap.rap_core.errors import OutputError

# What rap itself keeps in the data folder (Settings); an output never lands in or on these.
PROJECT_ENTRIES = ("rap.duckdb", "rap.duckdb.wal", "rap.duckdb.tmp", "rap.lock", "mlflow.db",
                   "mlartifacts", "models", "images", "prefect", "validation", "experiments")
WRITTEN_BY = "rap"


def manifest_path(out: Path) -> Path:
    return out.with_name(f"{out.name}.manifest.json")


def forbidden(target: Path, data_dir: Path, cwd: Path | None = None) -> str | None:
    """Why target may never be written (None: it may, subject to the existing-path rules)."""
    t, d = Path(target).resolve(), Path(data_dir).resolve()
    c = Path(cwd or Path.cwd()).resolve()
    if t == d:
        return f"is the data folder {d}"
    if d.is_relative_to(t):
        return f"is an ancestor of the data folder {d}"
    if c.is_relative_to(t):
        return "is the working directory" if t == c else \
            f"is an ancestor of the working directory {c}"
    for name in PROJECT_ENTRIES:
        if t.is_relative_to(d / name):
            return f"is inside rap's own {d / name}"
    if t == d / "exports":  # what is inside may be written, one export at a time
        return "is rap's own exports folder"
    return None


def refuse_forbidden(path: Path, data_dir: Path, what: str = "export") -> Path:
    """path (absolute), or OutputError when the rules above forbid writing it."""
    path = Path(path).absolute()
    reason = forbidden(path, data_dir)
    if reason:
        raise OutputError(f"refusing to write {what} to {path}: it {reason}; "
                          "choose another --out")
    return path


def read_manifest(out: Path) -> dict | None:
    """The manifest rap wrote beside out, or None when there is none that rap wrote."""
    try:
        found = json.loads(manifest_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(found, dict) or not isinstance(found.get("files"), list):
        return None
    if found.get("written_by", WRITTEN_BY) != WRITTEN_BY or "format" not in found:
        return None
    return found


def _files_under(path: Path) -> list[Path]:
    if path.is_dir() and not path.is_symlink():
        return sorted(p for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
    return [path]


def process_umask() -> int:
    """This process's umask, read without changing it where Linux tells (/proc), else by
    setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@dataclass
class Claim:
    """Permission to write one output: the target, the paths beside it that belong to it,
    and what of a previous output must go once the new one is in place."""

    out: Path
    kind: str
    side: list[Path] = field(default_factory=list)
    previous: dict | None = None
    temps: list[Path] = field(default_factory=list)

    def temp_file(self, target: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".rap-tmp",
                                    dir=target.parent)
        os.close(fd)
        # mkstemp makes it 0600; an output is an ordinary file and follows the umask
        os.chmod(name, 0o666 & ~process_umask())
        self.temps.append(Path(name))
        return Path(name)

    def temp_dir(self, target: Path) -> Path:
        made = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".rap-tmp",
                                     dir=target.parent))
        made.chmod(0o777 & ~process_umask())
        self.temps.append(made)
        return made

    def place(self, tmp: Path, target: Path) -> Path:
        """Rename tmp onto target; a folder of the previous output (checked to be rap's)
        is moved aside first and removed after."""
        old = None
        if target.is_dir() and not target.is_symlink():
            old = self.temp_dir(target)
            os.rmdir(old)
            os.rename(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)
        self.temps.remove(tmp)
        return target

    def cleanup(self) -> None:
        for tmp in self.temps:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        self.temps.clear()


def _previous(out: Path, kind: str, side: list[Path], what: str) -> dict:
    """The manifest of the previous rap output at out, checked to cover everything there."""
    manifest = read_manifest(out)
    found = next((p for p in [out, *side] if p.exists() or p.is_symlink()), out)
    where = f"{found} exists"
    if manifest is None:
        raise OutputError(f"{where} and is not a rap {what} (no manifest "
                          f"{manifest_path(out).name} beside it); rap never replaces what it "
                          "did not write: choose another --out or move it away")
    if manifest["format"] != kind:
        raise OutputError(f"{where}: it is a rap {manifest['format']} output, not {kind}; "
                          "choose another --out")
    if Path(str(manifest.get("path"))).resolve() != out.resolve():
        raise OutputError(f"{where}, but its manifest describes {manifest.get('path')}; "
                          "choose another --out or move it away")
    listed = {}
    for entry in manifest["files"]:
        if isinstance(entry, dict) and "path" in entry:
            listed[(out.parent / str(entry["path"])).resolve()] = entry.get("sha256")
    for root in [out, *side]:
        if not (root.exists() or root.is_symlink()):
            continue
        for f in _files_under(root):
            if f.is_symlink() or not f.is_file():
                raise OutputError(f"{where}: {f} is not a plain file rap wrote; "
                                  "choose another --out or move it away")
            sha = listed.get(f.resolve())
            if sha is None:
                raise OutputError(f"{where}: {f} is not part of the previous {kind} output "
                                  "(not in its manifest); rap never removes what it did not "
                                  "write: choose another --out or move it away")
            if sha != sha256_file(f):
                raise OutputError(f"{where}: {f} has changed since rap wrote it; "
                                  "choose another --out or move it away")
    return manifest


def claim(out: Path, kind: str, data_dir: Path, *, force: bool = False,
          side: tuple[Path, ...] = (), folder: bool = False, replaceable=None,
          what: str = "export") -> Claim:
    """Check that out (and the side paths that belong to it) may be written as kind.

    replaceable(previous_manifest) -> bool lets a caller replace its own earlier output
    without force (e.g. the same run's export at its default place)."""
    out = refuse_forbidden(out, data_dir, what)
    paths = [out, manifest_path(out), *side]
    for path in paths[1:]:
        refuse_forbidden(path, data_dir, what)
    for parent in {p.parent for p in paths}:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot write {what} to {out}: {parent} is not a folder")
    if out.exists() or out.is_symlink():
        if folder and (out.is_symlink() or not out.is_dir()):
            raise OutputError(f"{out} exists and is not a folder; choose another --out")
        if not folder and (out.is_symlink() or not out.is_file()):
            raise OutputError(f"{out} exists and is not a plain file; choose another --out")
    if not any(p.exists() or p.is_symlink() for p in paths):
        return Claim(out, kind, list(side))
    previous = _previous(out, kind, list(side), what)
    if not force and not (replaceable and replaceable(previous)):
        raise OutputError(f"{out} already exists (a rap {kind} output of "
                          f"{previous.get('created_at', 'an earlier run')}); pass --force to "
                          "replace it, or choose another --out")
    return Claim(out, kind, list(side), previous)


def manifest_record(claim_: Claim, files: list[Path], **fields) -> dict:
    """The manifest of a written output: what it is, and each file with its sha256."""
    from datetime import datetime, timezone
    base = claim_.out.parent.resolve()
    return {"written_by": WRITTEN_BY, "format": claim_.kind, "path": str(claim_.out.resolve()),
            **fields,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": [{"path": str(f.resolve().relative_to(base)), "sha256": sha256_file(f),
                       "bytes": f.stat().st_size} for f in files]}


def finish(claim_: Claim, manifest: dict) -> dict:
    """Write the manifest (last: an output without a whole manifest is not replaced later
    without question) and forget the previous output's side paths no longer used."""
    target = manifest_path(claim_.out)
    tmp = claim_.temp_file(target)
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    claim_.place(tmp, target)
    manifest["manifest_path"] = str(target.resolve())
    return manifest


@contextmanager
def writing(claim_: Claim):
    """Temporary files of a claim are removed if the write fails."""
    claim_.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield claim_
    finally:
        claim_.cleanup()
