"""Where a phase's inference shards run, behind one interface: `with shard_runner(spec) as
runner: runner.results(...)` yields each shard's ShardResult in shard order.

local  in the flow's process, one shard after the other (progress within each shard).
ray    Prefect tasks submitted through prefect-ray's task runner, all at once. Each Ray worker
       process keeps the model it loaded (rap_core.engines.base.load_engine caches one per
       process, and Ray reuses its workers), so a worker pays the load once for all the shards
       it gets. Results come back to the flow, whose single writer stores them in DuckDB. A
       worker that dies is retried by Ray; a task that raises is retried by Prefect; a shard
       that still fails becomes errors for its samples and the run goes on.
Prefect and Ray are imported only when used.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from rap.rap_core.engines.base import EngineConfigError
from rap.rap_core.engines.inference import failed_shard
from rap.rap_core.errors import RunnerError
from rap.rap_core.params import RunnerSpec
from rap.rap_core.settings import Settings, process_env

STAGES = {"text-only": "text_only", "multimodal": "multimodal", "attention": "attention"}


class LocalRunner:
    """Shards in this process, one after the other."""

    def results(self, name, task_fn, shards, params, model, progress, **kwargs):
        done = 0
        for number, shard in enumerate(shards, 1):
            def report(in_shard: int, _total: int, before=done) -> None:
                progress.update(name, before + in_shard)
            yield task_fn.with_options(task_run_name=f"{task_fn.name} {number}/{len(shards)}")(
                shard, model, params.model, batch_size=params.batch_size, report=report,
                **kwargs)
            done += shard.height


class RayRunner:
    """Shards as tasks on Ray, all submitted at once; one that keeps failing becomes errors."""

    def __init__(self, task_runner, spec: RunnerSpec):
        self.task_runner, self.spec = task_runner, spec

    def results(self, name, task_fn, shards, params, model, progress, **kwargs):
        from prefect import get_run_logger
        futures = submit_shards(self.task_runner, task_fn, shards, self.spec, model=model,
                                spec=params.model, batch_size=params.batch_size, **kwargs)
        for number, (shard, future) in enumerate(zip(shards, futures), 1):
            try:
                yield future.result()
            except EngineConfigError:
                raise
            except Exception as exc:  # the worker kept dying or the task kept raising
                message = (f"{task_fn.name} {number}/{len(shards)} failed: "
                           f"{type(exc).__name__}: {exc}")
                get_run_logger().error("%s; its %d samples are marked as errors", message,
                                       shard.height)
                yield failed_shard(shard, STAGES[name], model.model_key, kwargs["fact_key"],
                                   message)


@contextmanager
def shard_runner(spec: RunnerSpec):
    """The runner spec names: local, or a started Ray (joined or local) for the run."""
    if spec.kind == "local":
        yield LocalRunner()
        return
    with ray_task_runner(spec) as task_runner:
        yield RayRunner(task_runner, spec)


# variables a worker needs to reach the same Prefect API, data folder and offline hubs
PASSED_PREFIXES = ("RAP_", "HF_", "PREFECT_HOME", "PREFECT_RESULTS_", "TOKENIZERS_")
SHARD_RETRIES = 1  # Prefect retries of a shard task that raised (Ray retries dead workers)


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
