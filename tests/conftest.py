"""Shared fixtures: one Prefect test server per session, one tiny model per session, the
shipped demo model, and a fresh data folder (DuckDB + MLflow) per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per worker (and per process it starts): two workers with torch's default
    # of one thread per core oversubscribe the cores, and spinning OpenMP threads then cost
    # more than they compute
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# rap is imported as installed (make install: an editable install of this checkout)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The embedded tiny Qwen2-VL, built once for the session."""
    from rap.rap_core.demo.tiny_model import ensure_tiny_model
    return ensure_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """The demo model's weights as shipped with rap (rap_core/demo/), checked against the
    current recipe: builtin:easy-vqa-vlm with no model trained in the data folder."""
    from rap.rap_core.demo.recipe import SHIPPED_DIR, shipped_problem
    problem = shipped_problem()
    assert problem is None, problem
    return SHIPPED_DIR


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """A real (temporary) Prefect server for every flow test of the session."""
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(tmp_path_factory.mktemp("results"))
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_harness) -> str:
    """The session server's API, for `rap` subprocesses that need not start their own
    temporary server (about 15 s each here), as with `rap server start` running."""
    from prefect.settings import PREFECT_API_URL
    return PREFECT_API_URL.value()


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh data folder: its own DuckDB file, MLflow store and exports."""
    d = tmp_path / "rap_data"
    monkeypatch.setenv("RAP_DATA_DIR", str(d))
    monkeypatch.delenv("RAP_MLFLOW_TRACKING_URI", raising=False)
    return d


@pytest.fixture
def settings(data_dir):
    from rap.rap_core.settings import Settings
    return Settings.from_env()


def write_png(path: Path, color=(200, 30, 30), size=(32, 32)) -> Path:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path
