"""The `rap` command line: run the flow locally (Prefect ephemeral mode) and query the store.

    rap select [--data PATH] [--model DIR] [options]   # infer what is missing, then select
    rap select --method pass_band|random               # the baselines, same interface
    rap retune [--run RUN] [--lambda-c 0.3 ...]         # re-select from stored facts only
    rap query "SELECT * FROM funnel"                    # one read-only SELECT over the store
    rap query "SELECT * FROM selected" --out sel.csv    # its whole result as a file
    rap runs                                            # the selection runs so far
    rap compare RUN_A RUN_B                             # overlap, Jaccard, crosstab
    rap track [--run RUN]                               # log a stored run to MLflow later
    rap demo-model [--retrain]                          # train / show the embedded model
    rap validate                                        # planted priors, question types
    rap experiment                                      # the miniature of the paper's claim
    rap server start | deploy | worker                  # Prefect server, deployments, worker
    rap export --format verl --out sel.parquet          # a selection for a trainer
    rap export --check sel.parquet --format verl        # check a trainer file
"""

from __future__ import annotations

import argparse
import sys

from rap_core.settings import Settings, configure_process_env

SPECIAL_THRESHOLD_FLAGS = {  # field: (flag, type, help) where the generic form does not fit
    "drm_k": ("--drm-k", str, "DRM replacements: an integer or auto (default)"),
    "drm_require_positive_d": ("--drm-allow-nonpositive-d", None,
                               "DRM: also take replacements with D(x) <= 0"),
}


def threshold_flags() -> list[tuple[str, str, object, str]]:
    """(flag, field, type, help) for every estimator's thresholds: a new estimator's
    thresholds become flags with no change here."""
    from rap_core.params import Thresholds
    flags = []
    for field, info in Thresholds.model_fields.items():
        if field in SPECIAL_THRESHOLD_FLAGS:
            flags.append((SPECIAL_THRESHOLD_FLAGS[field][0], field,
                          *SPECIAL_THRESHOLD_FLAGS[field][1:]))
            continue
        kind = next((t for t in (int, float) if t in _types(info.annotation)), str)
        default = "" if info.default is None else f" (default {info.default})"
        flags.append((f"--{field.replace('_', '-')}", field, kind, info.description + default))
    return flags


def _types(annotation) -> tuple:
    from typing import get_args
    return get_args(annotation) or (annotation,)


SELECT_FLAGS = [  # (flag, group, field, type, help)
    ("--data", "data", "path", str, "pool file/folder, or builtin:easy-vqa (default)"),
    ("--limit", "data", "limit", int, "read at most N rows (default: all; the embedded "
     "easy-VQA default reads 1,000 of its 38,575)"),
    ("--question-key", "data", "question_key", str, "question column (default problem)"),
    ("--answer-key", "data", "answer_key", str, "answer column (default answer)"),
    ("--image-key", "data", "image_key", str, "image column (default images)"),
    ("--image-dir", "data", "image_dir", str, "base folder of relative image paths"),
    ("--format", "data", "format", str, "pool layout: auto (default: from the columns), "
     "easyr1, mmeureka, openrlhf, verl, hf"),
    ("--model", "model", "path", str, "local Qwen2-VL/Qwen2.5-VL checkpoint folder, "
     "builtin:easy-vqa-vlm (default: trained on easy-VQA on first use) or "
     "builtin:tiny-qwen2-vl (random weights)"),
    ("--device", "model", "device", str, "cpu (default), cuda, cuda:N"),
    ("--dtype", "model", "dtype", str, "float32 (default), bfloat16, float16, auto "
     "(bfloat16 where the hardware has it)"),
    ("--system-prompt", "model", "system_prompt", str, "system turn for every prompt"),
    ("--m", "rollout", "m", int, "responses per sample and condition (default 5)"),
    ("--temperature", "rollout", "temperature", float, "sampling temperature (default 1.0)"),
    ("--top-p", "rollout", "top_p", float, "nucleus sampling (default 0.99)"),
    ("--max-new-tokens", "rollout", "max_new_tokens", int, "response length cap (default 64)"),
    ("--seed", "rollout", "seed", int, "sampling seed (default 0)"),
    ("--head-reduce", "ace", "head_reduce", str, "ACE: mean (default) or max over heads"),
    ("--ace-response", "ace", "response", str, "ACE: first_correct (default) or first"),
    ("--runner", "runner", "kind", str, "local (default) or ray: inference shards as tasks "
     "on Ray (pip install .[ray])"),
    ("--ray-address", "runner", "address", str, "Ray cluster to join (default: start a "
     "local Ray)"),
    ("--ray-num-gpus", "runner", "num_gpus", float, "GPUs per shard task (default: 1 when "
     "the cluster has GPUs, else 0)"),
    ("--ray-num-cpus", "runner", "num_cpus", float, "CPUs per shard task (default 1)"),
]


def _add_common(p: argparse.ArgumentParser) -> None:
    from rap_core.estimators import METHODS
    p.add_argument("--method", choices=sorted(METHODS), help="selection method (default rap): "
                   + "; ".join(f"{m.name}: {m.description}" for m in METHODS.values()))
    for flag, field, typ, text in threshold_flags():
        if typ is None:
            p.add_argument(flag, dest=field, action="store_false", default=None, help=text)
        else:
            p.add_argument(flag, dest=field, type=typ, help=text)
    p.add_argument("--no-export", dest="export", action="store_false", default=True,
                   help="do not write the EasyR1 Parquet export")
    p.add_argument("--no-track", dest="track", action="store_false", default=True,
                   help="do not log the run to MLflow")
    p.add_argument("--wait-for-lock", dest="wait_for_lock", type=_bounded(float, 0, 86400),
                   metavar="SECONDS", help="if another run is writing to the data folder, "
                   "wait this long for it (default: stop at once, naming it)")


def _bounded(cast, low, high, open_: bool = False):
    """An argparse type: cast, then check low <= x <= high (strictly, when open_)."""
    def parse(text: str):
        value = cast(text)
        inside = low < value < high if open_ else low <= value <= high
        if not inside:
            bounds = f"({low}, {high})" if open_ else f"[{low}, {high}]"
            raise argparse.ArgumentTypeError(f"{text} is outside {bounds}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rap", description="RAP data selection for "
                                     "multimodal reasoning (CDE -> ACE -> DRM).")
    sub = parser.add_subparsers(dest="command", required=True)
    select = sub.add_parser("select", help="infer what is missing, then select")
    for flag, group, field, typ, text in SELECT_FLAGS:
        select.add_argument(flag, dest=f"{group}.{field}", type=typ, help=text,
                            metavar=field.upper())
    select.add_argument("--allow-outside-paths", dest="data.allow_outside_paths",
                        action="store_true", default=None, help="accept relative image paths "
                        "that lead outside the data folder (.. or a symlink)")
    select.add_argument("--shard-size", type=int, help="samples per inference task (256)")
    select.add_argument("--batch-size", type=int, help="samples per model call (8)")
    _add_common(select)
    retune = sub.add_parser("retune", help="re-select from stored facts, no model call")
    retune.add_argument("--run", dest="base_run", help="run to retune (default: latest)")
    _add_common(retune)
    query = sub.add_parser("query", help="run one read-only SELECT over the store (it can "
                           "read the store and nothing else)")
    query.add_argument("sql", help="the SELECT statement (SHOW, DESCRIBE, SUMMARIZE too)")
    query.add_argument("--max-rows", type=_bounded(int, 1, 10**9), default=50,
                       help="rows to print (50)")
    query.add_argument("--out", help="write the whole result to this file instead: .csv, "
                       ".parquet, .json or .jsonl (same rules as rap export --out)")
    query.add_argument("--force", action="store_true", help="replace an earlier `rap query "
                       "--out` result at --out")
    sub.add_parser("runs", help="list selection runs")
    compare = sub.add_parser("compare", help="two runs on one pool: sizes, overlap, Jaccard, "
                             "how each row ended in one against the other, groups")
    compare.add_argument("run_a", help="a selection run")
    compare.add_argument("run_b", help="another run on the same pool")
    compare.add_argument("--max-rows", type=_bounded(int, 1, 10**6), default=30,
                         help="rows of the crosstab to print (30)")
    tracking = sub.add_parser("track", help="log a stored selection run to MLflow (e.g. when "
                              "MLflow could not be reached during the run)")
    tracking.add_argument("--run", help="the run (default: the latest)")
    tracking.add_argument("--force", action="store_true", help="log it again even if it "
                          "already has an MLflow run")
    demo = sub.add_parser("demo-model", help="train (first use) or show the embedded "
                          "easy-VQA model and its test accuracy")
    demo.add_argument("--retrain", action="store_true", help="train it again from scratch")
    validate = sub.add_parser("validate", help="planted language priors (ROC AUC of D) and "
                              "the funnel by question type, on easy-VQA test questions")
    validate.add_argument("--n", type=_bounded(int, 2, 9673), default=1000,
                          help="test questions, 2 to 9673 (1000)")
    validate.add_argument("--share", type=_bounded(float, 0.0, 1.0, open_=True), default=0.3,
                          help="share rewritten to give the answer away, in (0, 1) (0.3)")
    validate.add_argument("--seed", type=int, default=0)
    validate.add_argument("--model", help="model folder (default: the demo model)")
    validate.add_argument("--phrasing", choices=["seen", "unseen"], default="seen",
                          help="plant statements in phrasings the demo model was trained to "
                          "read (seen, default) or in new ones (unseen)")
    experiment = sub.add_parser("experiment", help="miniature of the paper's claim: "
                                "RAP subset vs random subset vs full pool (slow: ~15 min)")
    experiment.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    experiment.add_argument("--pool-size", type=_bounded(int, 10, 30000), default=3000,
                            help="training questions RAP selects from (3000)")
    experiment.add_argument("--epochs", type=_bounded(float, 0.0, 100.0, open_=True),
                            default=3.0, help="epochs over each subset (3)")
    export = sub.add_parser("export", help="write a selection run for a trainer (easyr1, "
                            "verl, openrlhf, hf), or check a file against a trainer's rules")
    export.add_argument("--format", required=True, choices=["easyr1", "verl", "openrlhf", "hf"])
    export.add_argument("--run", help="selection run (default: the latest)")
    export.add_argument("--out", help="file (folder for hf) to write (default: "
                        "rap_data/exports/<run>/<format>.<ext>)")
    export.add_argument("--force", action="store_true", help="replace an earlier rap export "
                        "of the same format at --out (anything else is never replaced)")
    export.add_argument("--data-source", help="verl data_source (default: the pool's, else rap)")
    export.add_argument("--check", metavar="PATH", help="check PATH against the format's rules "
                        "instead of exporting; prints each violation with its row")
    server = sub.add_parser("server", help="a Prefect server, the deployments of prefect.yaml "
                            "and a worker, for `prefect deployment run rap/select`")
    action = server.add_subparsers(dest="action", required=True)
    start = action.add_parser("start", help="start a Prefect server (database in the data "
                              "folder); runs in the foreground")
    start.add_argument("--host", default="127.0.0.1")
    start.add_argument("--port", type=_bounded(int, 1, 65535), default=4200)
    for name, text in [("deploy", "create the work pool if missing and register the "
                        "deployments rap/select and rap/retune"),
                       ("worker", "create the work pool if missing and run a worker on it "
                        "(foreground)")]:
        one = action.add_parser(name, help=text)
        one.add_argument("--port", type=_bounded(int, 1, 65535), help="server port (default: "
                         "PREFECT_API_URL if exported, else 4200)")
        one.add_argument("--wait", type=_bounded(float, 0.0, 3600.0), default=120.0,
                         help="seconds to wait for the server to answer (120)")
    return parser


def params_from_args(args: argparse.Namespace):
    """Only the flags given override the defaults."""
    from rap_core.params import RapParams
    given = {k: v for k, v in vars(args).items() if v is not None}
    nested: dict = {"mode": args.command, "thresholds": {}}
    for key, value in given.items():
        if "." in key:
            group, field = key.split(".")
            nested.setdefault(group, {})[field] = value
        elif key in {f for _, f, _, _ in threshold_flags()}:
            nested["thresholds"][key] = value
        elif key not in {"command"}:
            nested[key] = value
    if nested["thresholds"].get("drm_k", "auto") != "auto":
        nested["thresholds"]["drm_k"] = int(nested["thresholds"]["drm_k"])
    return RapParams.model_validate(nested)


def format_summary(summary: dict, settings: Settings) -> str:
    """The funnel step by step, the reasons, and where everything went."""
    f = summary["funnel"]
    steps = [k for k in f if k.startswith("after_")]
    lines = [f"RAP {summary['mode']} run {summary['run_id']}"
             f" (method {summary.get('method', 'rap')})",
             f"  {'pool rows':<{max([11] + [len(k) for k in f])}} {f['pool_rows']:>8}   "
             f"(errors {f['errors']}, duplicates {f['duplicates']})"]
    width = max([11] + [len(step) for step in steps])
    lines += [f"  {'after ' + step[6:].upper():<{width}} {f[step]:>8}"
              + ("   <- selected" if step == steps[-1] else "") for step in steps]
    lines += ["  by state / stage / reason:"]
    lines += [f"    {r['state']:<9}{r['stage']:<12}{r['reason']:<28}{r['n']:>8}"
              for r in summary["reasons"]]
    lines += [f"  samples inferred {summary['samples_inferred']}"
              + (f" ({summary['inference_s']:.1f} s)" if summary.get("inference_s") else "")
              + f", found stored {summary['samples_stored']}",
              f"  DuckDB      {summary['duckdb_path']}",
              f"  MLflow run  {_tracking(summary)}  [{settings.mlflow_tracking_uri}]",
              f"  export      {summary['export_path'] or '(none)'}"]
    return "\n".join(lines)


def _tracking(summary: dict) -> str:
    if summary.get("tracking_failed"):
        return f"(logging FAILED, the selection is stored: rap track --run {summary['run_id']})"
    return summary["mlflow_run_id"] or "(not tracked)"


def _say(line: str) -> None:
    print(line, flush=True)


def demo_model(settings: Settings, retrain: bool) -> str:
    from rap_core.demo.model import obtain_demo_model, read_meta
    path, trained = obtain_demo_model(settings, _say, retrain=retrain)
    meta = trained or read_meta(path)
    acc, fit, vision = meta["test_accuracy"], meta["train"], meta["vision"]
    return "\n".join([
        f"demo model {meta['version']} ({'trained now' if trained else 'cached'}): {path}",
        f"  trained in {meta['seconds']:.0f} s: vision tower {vision['steps']} steps "
        f"({vision['seconds']:.0f} s), then {fit['steps']} steps on {fit['examples_seen']} "
        f"easy-VQA examples ({fit['seconds']:.0f} s), final loss {fit['final_loss']:.3f}",
        f"  test accuracy (greedy, {acc['questions']} test questions): "
        f"{acc['with_image']:.1%} with the image, {acc['text_only']:.1%} text only",
        f"  use it: rap select (default) or --model {path}"])


def run_query(settings: Settings, statement: str, max_rows: int, out: str | None = None,
              force: bool = False) -> str:
    import polars as pl

    from rap_core.store.query import lock_down, preview, write_result
    from rap_core.store import open_store
    with open_store(settings.duckdb_path, read_only=True) as store:
        lock_down(store.con)
        if out:
            manifest = write_result(store.con, statement, out, settings.data_dir, force)
            return f"wrote {manifest['rows']} rows to {manifest['path']}"
        frame, more = preview(store.con, statement, max_rows)
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
        return str(frame) + (f"\n(first {max_rows} rows; --max-rows N for more, or --out "
                             "FILE for all)" if more else "")


RUNS_SQL = ("SELECT r.run_id, r.mode, r.method, r.base_run, f.pool_rows, f.selected, "
            "f.path AS funnel, r.created_at FROM selection_runs r JOIN funnel f USING (run_id) "
            "ORDER BY r.created_at")


WRITING_COMMANDS = {"select", "retune", "track", "demo-model", "validate", "experiment",
                    "server"}
READING_COMMANDS = {"query", "runs", "compare", "export", "track"}  # they read the store first


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure_process_env(settings.data_dir)
    from pydantic import ValidationError

    from rap_core.io.outputs import OutputError
    from rap_core.store.query import QueryRefused
    from rap_core.io.readers import PoolReadError
    from rap_core.store import StoreError
    try:
        from rap_core.store.preflight import check_store, prepare_data_dir
        if args.command in WRITING_COMMANDS:
            prepare_data_dir(settings)
        if args.command in READING_COMMANDS and not getattr(args, "check", None):
            check_store(settings, write=False)  # whole, and of this rap's schema
        return _run(args, settings)
    except (ValidationError, PoolReadError, StoreError, OutputError, QueryRefused) as exc:
        return _fail(exc)
    except Exception as exc:
        return _known_failure(exc, settings)


def _fail(exc: BaseException) -> int:
    print(f"rap: error: {exc}", file=sys.stderr)
    return 2


def _known_failure(exc: Exception, settings: Settings) -> int:
    """Errors of the environment and of the engine: one line, exit 2; a bug still raises."""
    import duckdb

    from flows.server import ServerError
    from rap_core.engines.checkpoints import ModelLoadError
    from rap_core.store import StoreDamaged, damage_detail, damage_in
    from rap_core.errors import RunnerError
    if isinstance(exc, duckdb.Error) and damage_in(exc):
        return _fail(StoreDamaged(settings.duckdb_path, damage_detail(exc)))
    if isinstance(exc, (duckdb.Error, ModelLoadError, ServerError, RunnerError)):
        return _fail(exc)
    if isinstance(exc, OSError) and exc.filename:
        return _fail(f"{exc.strerror or exc}: {exc.filename}")
    raise exc


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "query":
        print(run_query(settings, args.sql, args.max_rows, args.out, args.force))
    elif args.command == "runs":
        print(run_query(settings, RUNS_SQL, 1000))
    elif args.command == "compare":
        from rap_core.compare import compare_runs, format_comparison
        from rap_core.store import open_store
        with open_store(settings.duckdb_path, read_only=True) as store:
            print(format_comparison(compare_runs(store, args.run_a, args.run_b), args.max_rows))
    elif args.command == "demo-model":
        print(demo_model(settings, args.retrain))
    elif args.command == "validate":
        from flows.validate import validate
        report = validate(settings, n=args.n, share=args.share, seed=args.seed,
                          model=args.model, phrasing=args.phrasing)
        print(report["text"])
        print(f"\nreport written to {report['report_path']}")
    elif args.command == "track":
        from rap_core.tracking import track_stored_run
        run = track_stored_run(settings, args.run, args.force)
        print(f"run {run['run_id']} logged to MLflow as {run['mlflow_run_id']} "
              f"[{settings.mlflow_tracking_uri}]")
    elif args.command == "export":
        from flows.export import check_file, export_run
        if args.check:
            return check_file(args.check, args.format, _say)
        export_run(settings, args.run, args.format, args.out, args.data_source, _say,
                   force=args.force)
    elif args.command == "server":
        _server(args, settings)
    elif args.command == "experiment":
        from flows.experiment import ExperimentConfig, run_experiment
        run_experiment(settings, ExperimentConfig(
            seeds=tuple(args.seeds), pool_size=args.pool_size, epochs=args.epochs), log=_say)
    else:
        print(format_summary(select(args, settings), settings))
    return 0


def select(args: argparse.Namespace, settings: Settings) -> dict:
    """select / retune: the run lock and the store are checked before Prefect starts (a
    second run, a damaged store or a store from a newer rap stop here, at once)."""
    from rap_core.store.lock import RunLock
    from rap_core.store.preflight import check_store
    params = params_from_args(args)
    with RunLock(settings.data_dir, params.wait_for_lock, _say, hand_down=True):
        check_store(settings, write=True)
        from flows.rap import run_flow
        return run_flow(params)


def _server(args: argparse.Namespace, settings: Settings) -> None:
    from flows import server
    if args.action == "start":
        server.start_server(settings, args.host, args.port, _say)
    elif args.action == "deploy":
        server.deploy(settings, args.port, _say, args.wait)
    else:
        server.start_worker(settings, args.port, _say, args.wait)


if __name__ == "__main__":
    sys.exit(main())
