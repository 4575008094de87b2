"""Wheels for an offline GPU node, in parts that fit its transfers (`make wheelhouse`).

    python .ci/wheelhouse.py --python 3.12 --have node-packages.txt --out DIR --part-mib 60

--have lists what the node already has, one package a line, `name` or `name==version`
('#' starts a comment). rap's wheel is built from this checkout; pip resolves it for that
Python on manylinux x86_64 (glibc up to --glibc) with the node's versions pinned where it
states them and constraints.txt's tested versions for the rest; a wheel is needed when rap
reaches it without passing through a package the node has (a node package's own
dependencies are the node's business, and a package it lists without a version is taken
as compatible: the run names those). The needed wheels are downloaded and laid in parts
DIR/part-N/ of at most --part-mib MiB, each with install.sh, which installs that part
offline (`pip install --no-index --no-deps`), so the parts can arrive one at a time.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
INSTALL_SH = """#!/usr/bin/env bash
# Installs this part's wheels offline, without their dependencies (the other parts and the
# node bring those). Extra arguments go to pip, e.g. --target DIR or --user:
#   bash part-N/install.sh [pip options]
# After the last part: python -m pip check (or, with --target, PYTHONPATH=DIR python -m rap...)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"${PYTHON:-python3}" -m pip install --no-index --no-deps --no-cache-dir "$@" "$here"/*.whl
echo "installed $(ls "$here"/*.whl | wc -l) wheels from $(basename "$here")"
"""


def read_have(path: str | None) -> dict[str, str | None]:
    """{canonical name: version or None} from a node's package list."""
    have: dict[str, str | None] = {}
    if not path:
        return have
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name.strip()):
            sys.exit(f"wheelhouse: {path}:{number}: not `name` or `name==version`: {raw!r}")
        have[canonicalize_name(name)] = version.strip() or None
    return have


def read_constraints(path: Path) -> dict[str, str]:
    """{canonical name: line} of a constraints file."""
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out[canonicalize_name(re.split(r"[=<>!~ ;\[]", line, 1)[0])] = line
    return out


def platforms(glibc_minor: int) -> list[str]:
    tags = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"]
    return tags + [f"manylinux_2_{m}_x86_64" for m in range(5, glibc_minor + 1)]


def target_args(python: str, glibc_minor: int) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for tag in platforms(glibc_minor):
        args += ["--platform", tag]
    return args


def target_environment(python: str) -> dict[str, str]:
    """Marker values of the node (Linux x86_64, CPython `python`)."""
    env = default_environment()
    env.update(python_version=python, python_full_version=f"{python}.0",
               sys_platform="linux", platform_system="Linux", platform_machine="x86_64",
               os_name="posix", implementation_name="cpython",
               platform_python_implementation="CPython")
    return env


def pip(*args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, *(["-q"] if quiet else [])],
                          capture_output=True, text=True)


def resolve(wheel: Path, constraints: Path, local: Path, python: str, glibc: int,
            work: Path) -> list[dict]:
    """pip's resolution of rap's wheel for the node: the report's `install` list. A
    dependency with no wheel on the index is built into one here (pure Python only)."""
    for _ in range(10):
        report = work / "report.json"
        done = pip("install", "--dry-run", "--ignore-installed", "--report", str(report),
                   "--target", str(work / "unused"), "--find-links", str(local),
                   "-c", str(constraints), *target_args(python, glibc), str(wheel),
                   quiet=False)  # pip explains a conflict only when not quiet
        if done.returncode == 0:
            return json.loads(report.read_text())["install"]
        text = done.stdout + done.stderr
        missing = re.findall(r"No matching distribution found for ([A-Za-z0-9._-]+)", text)
        listed = re.search(r"no matching distributions available for your environment:\n"
                           r"((?:[ \t]+\S+\n?)+)", text)
        missing += listed.group(1).split() if listed else []
        if not missing:
            sys.exit("wheelhouse: pip could not resolve rap for the node:\n" + text[-3000:])
        name = missing[0]
        pin = read_constraints(constraints).get(canonicalize_name(name))
        spec = pin if pin and "==" in pin else name
        built = pip("wheel", "--no-deps", "--no-binary", name, "-w", str(local), spec)
        pure = [f for f in local.glob("*-none-any.whl")
                if canonicalize_name(f.name.split("-")[0]) == canonicalize_name(name)]
        if built.returncode or not pure:
            sys.exit(f"wheelhouse: no wheel of {spec} for the node, and it does not build "
                     "into a pure-Python one here:\n" + (built.stderr or text)[-2000:])
        print(f"built a wheel of {spec} (the index has only its source)")
    sys.exit("wheelhouse: gave up after building 10 missing wheels")


def needed(installs: list[dict], have: dict[str, str | None], python: str) -> tuple[
        list[dict], set[str]]:
    """The resolved packages rap reaches without passing a node package, and the node
    packages it reaches that the node lists without a version."""
    by_name = {canonicalize_name(i["metadata"]["name"]): i for i in installs}
    env = target_environment(python)
    keep, unversioned, todo = {"rap"}, set(), [("rap", frozenset())]
    seen = set(todo)
    while todo:
        name, extras = todo.pop()
        for text in by_name[name]["metadata"].get("requires_dist") or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({**env, "extra": e})
                                      for e in {"", *extras}):
                continue
            dep = canonicalize_name(req.name)
            if dep in have:
                if have[dep] is None:
                    unversioned.add(dep)
                continue
            visit = (dep, frozenset(req.extras))
            if dep in by_name and visit not in seen:
                seen.add(visit)
                keep.add(dep)
                todo.append(visit)
    return [by_name[n] for n in sorted(keep)], unversioned


def pack(files: list[Path], limit: int) -> list[list[Path]]:
    """First-fit decreasing into bins of at most `limit` bytes."""
    parts: list[list[Path]] = []
    sizes: list[int] = []
    for f in sorted(files, key=lambda f: (-f.stat().st_size, f.name)):
        size = f.stat().st_size
        if size > limit:
            sys.exit(f"wheelhouse: {f.name} is {size / MIB:.1f} MiB, over --part-mib")
        at = next((i for i, used in enumerate(sizes) if used + size <= limit), None)
        if at is None:
            parts.append([])
            sizes.append(0)
            at = len(parts) - 1
        parts[at].append(f)
        sizes[at] += size
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="the node's Python (major.minor)")
    parser.add_argument("--have", help="the node's package list (name or name==version)")
    parser.add_argument("--out", required=True, help="the wheelhouse folder (new or empty)")
    parser.add_argument("--part-mib", type=float, default=60.0,
                        help="the largest part, in MiB (a transfer's size)")
    parser.add_argument("--glibc", default="2.28", help="the node's glibc (manylinux tag)")
    parser.add_argument("--constraints", default=str(ROOT / "constraints.txt"))
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        sys.exit(f"wheelhouse: {out} is not empty; name a new or empty folder")
    have = read_have(args.have)
    glibc = int(args.glibc.split(".")[1])
    with tempfile.TemporaryDirectory(prefix="rap-wheelhouse-") as tmp:
        work = Path(tmp)
        local, wheels = work / "local", work / "wheels"
        local.mkdir()
        wheels.mkdir()
        built = pip("wheel", "--no-deps", "-w", str(local), str(ROOT))
        if built.returncode:
            sys.exit("wheelhouse: building rap's wheel failed:\n" + built.stderr[-2000:])
        rap_wheel = next(local.glob("rap-*.whl"))
        # the node's stated versions win over the tested ones: they are what it will run
        pins = read_constraints(Path(args.constraints))
        pins.update({n: f"{n}=={v}" for n, v in have.items() if v})
        for name in [n for n, v in have.items() if v is None]:
            pins.pop(name, None)
        constraints = work / "constraints.txt"
        constraints.write_text("\n".join(pins.values()) + "\n")
        print(f"resolving rap for CPython {args.python}, manylinux x86_64 (glibc "
              f"{args.glibc}); the node has {len(have)} packages")
        chosen, unversioned = needed(resolve(rap_wheel, constraints, local, args.python,
                                             glibc, work), have, args.python)
        download = []
        for item in chosen:
            name, version = item["metadata"]["name"], item["metadata"]["version"]
            prebuilt = [f for f in local.glob("*.whl")
                        if canonicalize_name(f.name.split("-")[0]) == canonicalize_name(name)]
            if prebuilt:  # rap's own wheel, or one built here from a source release
                shutil.copy(prebuilt[0], wheels)
            else:
                download.append(f"{name}=={version}")
        print(f"downloading {len(download)} wheels")
        got = pip("download", "--no-deps", "-d", str(wheels),
                  *target_args(args.python, glibc), *download)
        if got.returncode:
            sys.exit("wheelhouse: downloading failed:\n" + got.stderr[-2000:])
        files = sorted(wheels.glob("*.whl"))
        out.mkdir(parents=True, exist_ok=True)
        parts = pack(files, int(args.part_mib * MIB) - 4096)  # room for install.sh
        lines = []
        for number, part in enumerate(parts, 1):
            folder = out / f"part-{number}"
            folder.mkdir()
            for f in part:
                shutil.copy(f, folder)
            (folder / "install.sh").write_text(INSTALL_SH)
            size = sum(f.stat().st_size for f in folder.iterdir())
            lines.append(f"part-{number}: {len(part)} wheels, {size / MIB:.1f} MiB "
                         f"({', '.join(f.name.split('-')[0] for f in part[:6])}"
                         f"{', ...' if len(part) > 6 else ''})")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    summary = [f"wheelhouse {out}: {len(files)} wheels in {len(parts)} parts of at most "
               f"{args.part_mib:g} MiB, {total / MIB:.1f} MiB in all", *lines]
    if unversioned:
        summary.append("taken as present and compatible (the node lists them without a "
                       f"version): {', '.join(sorted(unversioned))}")
    summary.append(f"on the node, one part at a time: bash {out.name}/part-N/install.sh "
                   "[--target DIR]; then python -m pip check")
    (out / "manifest.txt").write_text("\n".join(summary + ["", "wheels:"]
                                                + [f.name for f in files]) + "\n")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
