"""Where things live: the data folder, the DuckDB file, the MLflow store.

One settings object, read from the environment; no configuration is needed for the
embedded default (everything goes under ./rap_data).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel


class Settings(BaseModel):
    """Paths and URIs of one installation."""

    data_dir: Path
    mlflow_tracking_uri: str
    mlflow_experiment: str = "rap"

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
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def mlflow_artifacts_uri(self) -> str:
        return (self.data_dir / "mlartifacts").resolve().as_uri()

    @classmethod
    def from_env(cls) -> "Settings":
        data_dir = Path(os.environ.get("RAP_DATA_DIR", "rap_data")).resolve()
        uri = os.environ.get("RAP_MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir / 'mlflow.db'}"
        return cls(data_dir=data_dir, mlflow_tracking_uri=uri,
                   mlflow_experiment=os.environ.get("RAP_MLFLOW_EXPERIMENT", "rap"))


def configure_process_env(data_dir: Path) -> None:
    """Environment defaults every rap process needs: offline hubs, quiet Prefect, local results.
    Creates nothing: commands that write check and prepare the data folder (preflight.py)."""
    defaults = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(data_dir / "prefect"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(data_dir / "prefect" / "results"),
        "TOKENIZERS_PARALLELISM": "false",
        # the first start creates the server database; on 2 busy cores that can take > 20 s
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
