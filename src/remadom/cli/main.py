"""The ``remadom`` command line: train, sweep, mock, evaluate, manifest validate, schema.

Exit codes: 0 success, 2 configuration error, 3 data error, 4 environment mismatch,
5 training failure, 6 environment differs from the recorded run (``--env-policy strict``),
1 anything else. Errors print one paragraph naming the problem and
its fix; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from ._errors import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_ENV_POLICY,
    EXIT_ENVIRONMENT,
    EXIT_FAILURE,
    EXIT_TRAINING,
    ConfigurationError,
    DataError,
    RemadomCLIError,
)

EPILOG = """\
exit codes:
  0  success
  2  configuration error (invalid/unknown keys, bad --set, bad --resume target)
  3  data error (missing/unreadable file, keys not in the data)
  4  environment mismatch (no GPU for accelerator=gpu, library versions differ on resume)
  5  training failure (non-finite loss, crash during training)
  6  environment differs from the run being resumed or re-run (--env-policy strict, without --force)

configuration is resolved as: defaults < --config YAML < REMADOM__SECTION__KEY environment
variables (e.g. REMADOM__MODEL__N_LATENT=32) < --set section.key=value (YAML scalars).
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def _env_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env-policy", choices=("strict", "warn", "ignore"), default="warn",
                   help="when resuming or re-running a recorded run: strict stops on any package difference "
                        "(exit 6), warn (default) warns, ignore skips the comparison")
    p.add_argument("--force", action="store_true",
                   help="run even though the environment differs from the recorded one (a warning instead)")


def _version() -> str:
    from remadom import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``remadom``."""
    parser = argparse.ArgumentParser(
        prog="remadom", description="REMADOM: mosaic single-cell multi-omic integration on scvi-tools.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser)
    parser.add_argument("--version", action="version", version=f"remadom {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a YAML config into a new run directory",
                       description="Train REMADOM from a config; writes <save_dir>/<UTC time>_<name>/.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", help="YAML config (omit to use defaults, or the run's own config with --resume PATH)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.n_latent=32 (repeatable)")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="continue from checkpoints/last.ckpt of the latest run of this name (auto), a run "
                        "directory, or a .ckpt file")
    p.add_argument("--save-dir", help="shorthand for --set logging.save_dir=DIR")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _env_args(p)
    _common(p)

    p = sub.add_parser("sweep", help="one resolved config per grid point; run them in sequence or print the commands",
                       description="Write <save_dir>/sweeps/<tag>/point_NNN.yaml for each point of a grid of "
                                   "config values (see 'Sweeps' in docs/cli.md), then train them one after the other.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, help="grid YAML: base config, optional tag, lists of values per dotted key")
    p.add_argument("--save-dir", help="parent of sweeps/ (default: the base config's logging.save_dir)")
    p.add_argument("--print", "--dry-run", dest="print_only", action="store_true",
                   help="write the configs and print the train commands instead of running them")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _env_args(p)
    _common(p)

    p = sub.add_parser("mock", help="write a mock dataset (and optionally an example config)")
    p.add_argument("problem", nargs="?", help="scenario: paired, unpaired, bridge, mosaic, prediction, hierarchical")
    p.add_argument("--problem", dest="problem_flag", help="the scenario, as a flag (alias of PROBLEM)")
    p.add_argument("--out", help="output .h5ad or .h5mu file (default examples/mock/<scenario file name>)")
    p.add_argument("--config-out", help="also write an example YAML config here")
    for name, alias in (("n-cells", "cells"), ("n-genes", "genes"), ("n-peaks", "peaks"),
                        ("n-proteins", "proteins"), ("n-clusters", "clusters"), ("n-latent", "latent")):
        p.add_argument(f"--{name}", f"--{alias}", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    _common(p)

    p = sub.add_parser("evaluate", help="compute latent metrics of a finished run")
    p.add_argument("run_dir", help="run directory (with model/ and config_resolved.yaml)")
    p.add_argument("--out", help="metrics JSON (default RUN_DIR/eval/metrics.json)")
    _common(p)

    p = sub.add_parser("manifest", help="manifest utilities")
    msub = p.add_subparsers(dest="manifest_command", metavar="ACTION")
    v = msub.add_parser("validate", help="check a manifest.json (or a run directory) against schema v1")
    v.add_argument("path")
    _common(v)
    _common(p)

    p = sub.add_parser("schema", help="write the config and manifest JSON Schemas")
    p.add_argument("--out-dir", default="schema", help="folder (default: ./schema)")
    p.add_argument("--check", action="store_true", help="exit 2 if the files differ instead of writing")
    _common(p)
    return parser


# ------------------------------------------------------------------ commands
def _resolve(args):
    from ..config import ConfigError, resolve_config

    overrides = list(args.overrides)
    if args.save_dir:
        overrides.append(f"logging.save_dir={args.save_dir}")
    config_path = args.config
    if config_path is None and args.resume not in (None, "auto"):
        target = Path(args.resume)
        run_dir = target.parent.parent if target.suffix == ".ckpt" else target
        if (run_dir / "config_resolved.yaml").is_file():
            config_path = str(run_dir / "config_resolved.yaml")
    try:
        config, raw = resolve_config(config_path, overrides)
    except ConfigError as e:
        raise ConfigurationError(str(e), "Fix the keys/values above (see schema/config.schema.json, docs/cli.md).") from e
    return config, raw, config_path


def cmd_train(args) -> int:
    """``remadom train``."""
    from ..config import dump_config

    config, raw, source = _resolve(args)
    if args.dry_run:
        print(dump_config(config), end="")
        return 0
    from ._run import run_training

    run_dir = run_training(config, raw, config_source=source, resume=args.resume,
                           progress_bar=not args.no_progress, env_policy=args.env_policy, force=args.force)
    print(f"run directory: {run_dir}")
    return 0


def cmd_sweep(args) -> int:
    """``remadom sweep``."""
    from ._sweep import run_sweep

    return run_sweep(args.grid, save_dir=args.save_dir, print_only=args.print_only,
                     progress_bar=not args.no_progress, env_policy=args.env_policy, force=args.force)


def cmd_mock(args) -> int:
    """``remadom mock``."""
    try:
        from remadom.data.mock import write_mock
    except ImportError as e:
        from ._errors import EnvironmentMismatchError

        raise EnvironmentMismatchError(f"the mock generator cannot be imported ({e}).",
                                       "Reinstall remadom from a complete checkout.") from e
    from remadom.data._mock_scenarios import DEFAULT_FILENAMES

    problem = args.problem or args.problem_flag
    if problem is None or (args.problem and args.problem_flag and args.problem != args.problem_flag):
        raise ConfigurationError("give the mock scenario once, as PROBLEM or --problem.",
                                 f"Choose one of {sorted(DEFAULT_FILENAMES)}.")
    kwargs = {k: getattr(args, k) for k in ("n_cells", "n_genes", "n_peaks", "n_proteins", "n_clusters",
                                             "n_latent", "seed") if getattr(args, k) is not None}
    out = args.out or Path("examples/mock") / DEFAULT_FILENAMES.get(problem, f"mock_{problem}.h5ad")
    try:
        files = write_mock(problem, out, config_out=args.config_out, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigurationError(f"cannot generate mock data: {e}.", "Check the scenario name and sizes.") from e
    print(f"wrote {files.data_path}")
    if args.config_out:
        print(f"wrote {args.config_out}")
    return 0


def cmd_evaluate(args) -> int:
    """``remadom evaluate``: reload a run's model and compute remadom.eval metrics."""
    from ._evaluate_report import format_metrics_table
    from ._evaluate_run import evaluate_run

    metrics, out, figure = evaluate_run(Path(args.run_dir), Path(args.out) if args.out else None)
    print(format_metrics_table(metrics))
    print(f"wrote {out} and {figure}")
    return 0


def cmd_manifest_validate(args) -> int:
    """``remadom manifest validate``."""
    from ._manifest import validate_manifest

    path = Path(args.path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}.", "Pass a manifest.json or a run directory.") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}).",
                        "The file is corrupted; restore it or re-run training to regenerate it.") from e
    errors = validate_manifest(manifest)
    if errors:
        listing = "; ".join(errors[:8])
        raise DataError(f"{path} does not match manifest schema v1: {listing}.",
                        "The file was edited or truncated; re-run training (or --resume) to regenerate it.")
    print(f"{path}: valid manifest v1")
    return 0


def cmd_schema(args) -> int:
    """``remadom schema``: write schema/config.schema.json and schema/manifest.v1.json."""
    from importlib import resources

    from ..config import schema_text

    out_dir = Path(args.out_dir)
    files = {
        out_dir / "config.schema.json": schema_text(),
        out_dir / "manifest.v1.json": resources.files("remadom.cli").joinpath("manifest.v1.json").read_text(),
    }
    if args.check:
        stale = [str(p) for p, text in files.items() if not p.is_file() or p.read_text() != text]
        if stale:
            raise ConfigurationError(f"out-of-date schema files: {', '.join(stale)}.",
                                     "Run 'remadom schema' and commit the result.")
        print("schema files are up to date")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for p, text in files.items():
        p.write_text(text)
        print(f"wrote {p}")
    return 0


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "mock": cmd_mock, "evaluate": cmd_evaluate, "schema": cmd_schema}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``remadom`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or usage error (2)
        return int(e.code or 0)
    debug = bool(getattr(args, "debug", False))
    _configure_logging(debug)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    if args.command == "manifest":
        if getattr(args, "manifest_command", None) != "validate":
            print("usage: remadom manifest validate PATH", file=sys.stderr)
            return EXIT_CONFIG
        handler = cmd_manifest_validate
    else:
        handler = COMMANDS[args.command]
    try:
        return handler(args)
    except RemadomCLIError as e:
        return _report(e, e.exit_code, debug)
    except ImportError as e:
        return _report(RemadomCLIError(f"a required package is missing: {e}.",
                                       "Install the extra it names, e.g. pip install 'remadom[eval]'."),
                       EXIT_ENVIRONMENT, debug)
    except KeyboardInterrupt:
        print("\nInterrupted. Continue with: remadom train --config <config> --resume auto", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: still one paragraph, traceback on --debug
        return _report(RemadomCLIError(f"unexpected {type(e).__name__}: {e}.",
                                       "Rerun with --debug and report the traceback."), EXIT_FAILURE, debug)


def _configure_logging(debug: bool) -> None:
    """Print REMADOM's own INFO messages; other libraries follow ``remadom.settings.verbosity``.

    Only the ``remadom`` logger gets a handler: a root handler would print every
    library's INFO line (Lightning's "Seed set to" twice, jax's backend line).
    """
    log = logging.getLogger("remadom")
    if not any(getattr(h, "_remadom_cli", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._remadom_cli = True
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def _report(err: RemadomCLIError, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"\n{err.render()}\n(exit code {code}{'' if debug else '; rerun with --debug for the traceback'})",
          file=sys.stderr)
    return code


__all__ = ["EXIT_CONFIG", "EXIT_DATA", "EXIT_ENVIRONMENT", "EXIT_ENV_POLICY", "EXIT_TRAINING", "build_parser", "main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
