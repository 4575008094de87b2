"""Checking a pool row's image references: each is a regular file inside the data folder, or
embedded bytes, and a whole readable image; each distinct image is verified once per read.
Devices, pipes and folders are refused unopened (reading one could block or never end)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from rap.rap_core.keys import sha256_bytes


class RowError(Exception):
    """One row is unusable; code is a snake_case reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def unicode_text(text: str, what: str) -> str:
    """text, unless it holds lone surrogates: they cannot be hashed or stored as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RowError("bad_encoding", f"{what} is not valid Unicode: lone surrogate "
                       f"{text[exc.start]!r} at character {exc.start}") from None
    return text


def storable(text: str | None) -> str | None:
    """text with any lone surrogate written as an escape, so an error row can be stored."""
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _image_ref(ref, where: str) -> bytes | str:
    """One image reference as embedded bytes or a path string, or RowError."""
    if isinstance(ref, dict):
        data, path = ref.get("bytes"), ref.get("path") or ref.get("image")
        if data and not isinstance(data, (bytes, bytearray)):
            raise RowError("image_unreadable", f"unsupported image reference {ref!r:.80}")
        # a {bytes: b"", path: None} struct is an empty image, not a missing reference
        ref = data if data or (data is not None and not path) else path
    if isinstance(ref, (bytes, bytearray)):
        if not ref:
            raise RowError("image_unreadable", f"{where}: the embedded image is empty (0 bytes)")
        return bytes(ref)
    if not isinstance(ref, str) or not ref:
        raise RowError("image_unreadable", f"unsupported image reference {ref!r:.80}")
    if "\x00" in ref:  # no file can have this name
        raise RowError("image_missing", f"image file not found: {ref!r}")
    return unicode_text(ref, f"{where} path")


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                (stat.S_ISSOCK, "a socket"))


def _image_file(ref: str, base_dir: Path, allow_outside: bool,
                where: str) -> tuple[Path, tuple[int, int]]:
    """The resolved regular file a path reference names, and its (size, mtime_ns). A relative
    path must stay inside base_dir (no `..` or symlink out) unless allowed. Anything else
    (a device, a pipe, a folder) is refused unopened: reading it could block or never end."""
    relative = Path(ref.removeprefix("file://"))
    path = base_dir / relative  # the path itself when it is absolute
    try:
        resolved = path.resolve()
        if (not relative.is_absolute() and not allow_outside
                and not resolved.is_relative_to(base_dir.resolve())):
            raise RowError("image_outside_data", f"image path {ref!r} leads outside "
                           f"{base_dir} (allow with allow_outside_paths)")
        st = resolved.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise RowError("image_missing", f"image file not found: {path}") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        reason = exc.strerror if isinstance(exc, OSError) else "a symlink loop"
        raise RowError("image_unreadable", f"{where}: {path} cannot be read ({reason})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "not a file")
        raise RowError("image_unreadable", f"{where}: {path} is not a regular file ({kind})")
    return resolved, (st.st_size, st.st_mtime_ns)


_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def _check_decodable(data: bytes) -> str:
    from rap.rap_core.io.images import image_format
    try:
        return image_format(data)
    except Exception as exc:
        # Pillow names the buffer it read (`<_io.BytesIO object at 0x7f...>`): an address
        # would make two reads of the same file store different details
        detail = _OBJECT_REPR.sub("", str(exc)) or type(exc).__name__
        raise RowError("image_unreadable", f"not a readable image ({detail})") from exc


def _read_image_file(path: Path) -> tuple[str, str]:
    """(sha256, format) of an image file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RowError("image_unreadable", f"{path} cannot be read ({exc.strerror})") from None
    if not data:
        raise RowError("image_unreadable", f"the image file {path} is empty (0 bytes)")
    return sha256_bytes(data), _check_decodable(data)


def _verified(key, verify, checked: dict, where: str):
    """verify() once per key within a read; its result, or its RowError again, for `where`."""
    if key not in checked:
        try:
            checked[key] = verify()
        except RowError as err:
            checked[key] = err
    found = checked[key]
    if isinstance(found, RowError):
        raise RowError(found.code, f"{where}: {found}")
    return found


def image_record(ref, base_dir: Path, images_dir: Path, allow_outside: bool, where: str,
           checked: dict) -> tuple[str, str]:
    """(stored path, sha256) of one image reference, or RowError. checked holds what this
    read has verified already: files by (path, size, mtime), embedded images by sha256."""
    ref = _image_ref(ref, where)
    if isinstance(ref, bytes):
        digest = sha256_bytes(ref)
        fmt = _verified(("bytes", digest), lambda: _check_decodable(ref), checked, where)
        return _store_image(ref, digest, images_dir, fmt), digest
    path, stamp = _image_file(ref, base_dir, allow_outside, where)
    digest, _ = _verified(("file", path, stamp), lambda: _read_image_file(path), checked, where)
    return unicode_text(str(path), f"{where} path"), digest


def _store_image(data: bytes, digest: str, images_dir: Path, fmt: str) -> str:
    """Embedded bytes get a content-addressed file (files stay where they are)."""
    target = images_dir / f"{digest}.{fmt}"
    if not target.exists():
        images_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return str(target)
