"""Where things live: the data folder, the DuckDB file, the MLflow store.

One settings object, read from the environment; no configuration is needed for the
embedded default (everything goes under ./rap_data).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Paths and URIs of one installation, from RAP_DATA_DIR, RAP_MLFLOW_TRACKING_URI and
    RAP_MLFLOW_EXPERIMENT (or given)."""

    model_config = SettingsConfigDict(env_prefix="RAP_")

    data_dir: Path = Path("rap_data")
    mlflow_tracking_uri: str = ""  # default: sqlite in the data folder
    mlflow_experiment: str = "rap"

    @model_validator(mode="after")
    def _resolved(self) -> "Settings":
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{self.data_dir / 'mlflow.db'}"
        return self

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "rap.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def images_dir(self) -> Path:
        """Content-addressed copies of images that came as bytes, not files."""
        return self.data_dir / "images"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def mlflow_artifacts_uri(self) -> str:
        return (self.data_dir / "mlartifacts").resolve().as_uri()

    @classmethod
    def from_env(cls) -> "Settings":
        return cls()


def process_env(data_dir: Path) -> dict[str, str]:
    """What every rap process needs in its environment (this one, a Prefect server, deploy
    and worker, a Ray worker): offline hubs, quiet Prefect, Prefect's home and cached task
    results beside the store. The one place these are written."""
    home = Path(data_dir) / "prefect"
    return {
        "RAP_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(home),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "results"),
        "TOKENIZERS_PARALLELISM": "false",
        # the first start creates the server database; on 2 busy cores that can take > 20 s
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }


def configure_process_env(data_dir: Path) -> None:
    """process_env as defaults of this process (what is already set wins). Creates nothing:
    commands that write check and prepare the data folder (preflight.py)."""
    for key, value in process_env(data_dir).items():
        os.environ.setdefault(key, value)
