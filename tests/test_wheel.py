"""The wheel is the product: built from this checkout it holds one top-level name, rap, with
every SQL file, prefect.yaml and the demo model inside (.ci/wheel_check installs it into a
new environment and runs the commands from an empty folder)."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tracked_copy(target: Path) -> Path:
    """The checkout's files as git knows them (tracked, or new and not ignored), copied: a
    build in the checkout itself would reuse its leftover build/ folder, which can hold
    modules the package list no longer (or does not yet) names."""
    import shutil
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True)
    if listed.returncode:  # not a git checkout: build where it stands
        return ROOT
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def test_the_wheel_holds_rap_alone_and_everything_rap_reads(tmp_path):
    try:  # the environment's setuptools when it is new enough (seconds, no download)
        import setuptools
        isolation = [] if int(setuptools.__version__.split(".")[0]) >= 68 else None
    except ImportError:
        isolation = None
    args = ["--no-build-isolation"] if isolation is not None else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *args, "-w",
                    str(tmp_path), str(_tracked_copy(tmp_path / "src"))], check=True,
                   capture_output=True)
    wheel = next(tmp_path.glob("rap-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"rap"}
    sql = {f"rap/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "sql").rglob("*.sql")}
    assert sql and sql <= names
    assert "rap/prefect.yaml" in names
    # every module of the three rooms, a new sub-package too (pyproject lists the packages)
    modules = {f"rap/{p.relative_to(ROOT).as_posix()}" for room in ("flows", "tasks", "rap_core")
               for p in (ROOT / room).rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert "rap/rap_core/demo/easy-vqa-demo-v1/model.safetensors" in names
    assert not any(n.startswith(("rap/tests/", "rap/bench/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "rap = rap.flows.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
