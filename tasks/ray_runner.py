"""Inference shards on Ray: Prefect tasks submitted through prefect-ray's task runner.
(Prefect and Ray are imported only when used: the CLI imports RunnerError at start.)

Each Ray worker process keeps the model it loaded (rap_core.engines.base.load_engine caches one per
process, and Ray reuses its workers), so a worker pays the load once for all the shards it
gets. Results come back to the flow, whose single writer stores them in DuckDB. A worker that
dies is retried by Ray (max_retries); a task that raises is retried by Prefect; a shard that
still fails becomes errors for its samples and the run goes on.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from rap_core.params import RunnerSpec
from rap_core.settings import Settings, process_env

# variables a worker needs to reach the same Prefect API, data folder and offline hubs
PASSED_PREFIXES = ("RAP_", "HF_", "PREFECT_HOME", "PREFECT_RESULTS_", "TOKENIZERS_")
SHARD_RETRIES = 1  # Prefect retries of a shard task that raised (Ray retries dead workers)


class RunnerError(RuntimeError):
    """The Ray runner cannot be used (extra not installed, cluster unreachable)."""


def worker_env() -> dict[str, str]:
    """The flow's settings for Ray workers: above all its Prefect API, which on a command
    line run is the flow's temporary server (workers would otherwise start their own)."""
    from prefect.context import FlowRunContext
    env = {**process_env(Settings.from_env().data_dir),
           **{k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES)}}
    context = FlowRunContext.get()
    if context is not None and context.client is not None:
        env["PREFECT_API_URL"] = str(context.client.api_url).rstrip("/")
    return env


@contextmanager
def ray_task_runner(spec: RunnerSpec):
    """A started RayTaskRunner: joins spec.address, or starts a local Ray for the run."""
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as exc:
        raise RunnerError("runner ray needs the ray extra: pip install '.[ray]'") from exc
    init = {"runtime_env": {"env_vars": worker_env()}, "log_to_driver": False}
    if spec.address is None:
        init["include_dashboard"] = False
    runner = RayTaskRunner(address=spec.address, init_kwargs=init)
    try:
        runner.__enter__()
    except Exception as exc:
        raise RunnerError(f"could not start or join Ray ({spec.address or 'local'}): "
                          f"{type(exc).__name__}: {exc}") from exc
    try:
        yield runner
    finally:
        runner.__exit__(None, None, None)


def remote_resources(spec: RunnerSpec) -> dict:
    """num_cpus / num_gpus per shard task; GPUs default to 1 when the cluster has any."""
    import ray
    gpus = spec.num_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    return {"num_cpus": spec.num_cpus, "num_gpus": gpus}


def submit_shards(runner, task_fn, shards: list, runner_spec: RunnerSpec, **parameters) -> list:
    """One task per shard, all submitted at once; futures in shard order."""
    from prefect import get_run_logger
    from prefect_ray.context import remote_options
    resources = remote_resources(runner_spec)
    get_run_logger().info("ray: %d %s tasks, each with %s", len(shards), task_fn.name,
                          resources)
    futures = []
    with remote_options(**resources):
        for number, shard in enumerate(shards, 1):
            named = task_fn.with_options(task_run_name=f"{task_fn.name} {number}/{len(shards)}",
                                         retries=SHARD_RETRIES)
            futures.append(runner.submit(named, {"shard": shard, **parameters}))
    return futures
