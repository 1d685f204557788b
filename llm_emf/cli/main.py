"""``llm-emf <command> [--config FILE] [section.key=value ...]``.

Every command takes the same config tree; ``llm-emf <command> --help`` lists the keys it reads with
their types, defaults and help texts. Each command lives in its own module and exposes
``SECTIONS`` (config sections it reads, for --help), ``add_arguments(parser)`` and ``run(cfg, args)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from llm_emf.config import Config, ConfigError, format_help, load_config
from llm_emf.data.schema import DataError
from llm_emf.storage import StorageError

# command name -> (module, one-line description). Modules are imported lazily so `--help` is fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("llm_emf.cli.prepare", "import a dataset into the canonical format"),
    "stats": ("llm_emf.cli.stats", "print statistics of a prepared dataset"),
    "ui": ("llm_emf.cli.ui", "start the MLflow UI for the tracking store (localhost by default)"),
    "evaluate": ("llm_emf.cli.evaluate", "evaluate a trained run or a baseline: MRR, NDCG@k, HR@k per domain"),
    "enrich": ("llm_emf.cli.enrich", "LLM-enrich item titles (Ray Data) into an enriched item table"),
    "embed": ("llm_emf.cli.embed", "embed item text and images with frozen encoders (Ray Data) into a feature table"),
    "train": ("llm_emf.cli.train", "train LLM-EMF or the SASRec baseline (Ray Train) and test it"),
    "recommend": ("llm_emf.cli.recommend", "top-k next items of a domain for a user, from a trained run"),
    "tune": ("llm_emf.cli.tune", "Ray Tune sweep over a search space (ASHA + Optuna), tracked in MLflow"),
    "run": ("llm_emf.cli.run", "the whole pipeline: prepare, enrich, embed, train, evaluate"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-emf", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="command")
    for name, (_, desc) in COMMANDS.items():
        sub.add_parser(name, help=desc, add_help=False)
    return p


def _command_parser(name: str, module) -> argparse.ArgumentParser:
    sections = getattr(module, "SECTIONS", ())
    epilog = "config keys (set in --config YAML or as key=value):\n" + format_help(Config, tuple(sections) or None)
    p = argparse.ArgumentParser(prog=f"llm-emf {name}", description=COMMANDS[name][1], epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", help="YAML config file (defaults are used for keys it leaves out)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. model.n_heads=4")
    if hasattr(module, "add_arguments"):
        module.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = _parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"llm-emf: unknown command '{argv[0]}'; choose from {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name = argv.pop(0)
    module = importlib.import_module(COMMANDS[name][0])
    args = _command_parser(name, module).parse_intermixed_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        return int(module.run(cfg, args) or 0)
    except (ConfigError, DataError, StorageError) as e:
        print(f"llm-emf {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:   # Ctrl-C; a sweep says how to resume it
        print(f"llm-emf {name}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, the traceback in a file for a bug report
        where = _save_traceback(name)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"llm-emf {name}: error: {type(e).__name__}: {first} (full traceback in {where})", file=sys.stderr)
        return 1


def _save_traceback(command: str) -> str:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix=f"llm-emf-{command}-", suffix=".traceback.txt")
    with open(fd, "w", encoding="utf-8") as f:
        traceback.print_exc(file=f)
    return path


if __name__ == "__main__":
    sys.exit(main())
