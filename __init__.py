"""rap: RAP data selection for multimodal RL, as a Prefect DAG (README.md).

The repository's top-level folders are this package's parts: `rap.flows` (the flows and the
command line), `rap.tasks` (Prefect tasks), `rap.rap_core` (the library), and the SQL files
under `sql/` that `rap.rap_core.store` reads. Installed, `rap` is the only top-level name.
"""
