"""The Prefect server, the deployments, a worker and MLflow's UI, in the foreground."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rap.flows.commands.common import say
from rap.rap_core.settings import Settings

PORT = Annotated[Optional[int], typer.Option(min=1, max=65535, help="server port",
                                             show_default="PREFECT_API_URL if exported, "
                                             "else 4200")]
WAIT = Annotated[float, typer.Option(min=0.0, max=3600.0,
                                     help="seconds to wait for the server to answer")]


def server_start(settings: Settings, host: str = "127.0.0.1",
                 port: Annotated[int, typer.Option(min=1, max=65535)] = 4200) -> None:
    """Start a Prefect server (database in the data folder); runs in the foreground."""
    from rap.flows import server
    server.start_server(settings, host, port, say)


def server_deploy(settings: Settings, port: PORT = None, wait: WAIT = 120.0) -> None:
    """Create the work pool if missing and register the deployments rap/select and
    rap/retune."""
    from rap.flows import server
    server.deploy(settings, port, say, wait)


def server_mlflow(settings: Settings, host: str = "127.0.0.1",
                  port: Annotated[int, typer.Option(min=1, max=65535)] = 5000) -> None:
    """Start MLflow's UI over the data folder's runs (foreground; needs the full mlflow
    package, which make install adds)."""
    from rap.flows import server
    server.start_mlflow_ui(settings, host, port, say)


def server_worker(settings: Settings, port: PORT = None, wait: WAIT = 120.0) -> None:
    """Create the work pool if missing and run a worker on it (foreground)."""
    from rap.flows import server
    server.start_worker(settings, port, say, wait)
