"""``llm-emf <command> [--config FILE] [section.key=value ...]``.

Every command takes the same config tree; ``llm-emf <command> --help`` lists the keys it reads with
their types, defaults and help texts. Each command lives in its own module and exposes
``SECTIONS`` (config sections it reads, for --help), ``add_arguments(parser)`` and ``run(cfg, args)``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from llm_emf.config import Config, ConfigError, format_help, load_config, redact_uri
from llm_emf.config.renamed import show_renamed_keys
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
    show_renamed_keys(f"llm-emf {name}")     # a config key given by its old name: one warning line naming the new
    try:
        cfg = load_config(args.config, args.overrides)
        code = int(module.run(cfg, args) or 0)
        sys.stdout.flush()          # piped output is buffered: a closed pipe shows here, not at exit
        return code
    except (ConfigError, DataError, StorageError) as e:
        print(f"llm-emf {name}: error: {redact_uri(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:   # Ctrl-C; a sweep says how to resume it
        print(f"llm-emf {name}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, the traceback in a file for a bug report
        if isinstance(e, BrokenPipeError) and _stdout_is_closed():
            # `llm-emf stats | head`: the reader has what it wanted. Stop quietly, like a Unix tool killed by
            # SIGPIPE (exit status 128 + 13), and keep Python from complaining again when it flushes at exit.
            _discard_stdout()
            return 141
        if _is_user_error(e):       # a corrupt or unsafe checkpoint file: the message names it
            print(f"llm-emf {name}: error: {redact_uri(str(e))}", file=sys.stderr)
            return 2
        where = _save_traceback(name)
        text = redact_uri(str(e)).strip()
        first = text.splitlines()[0] if text else ""
        kept = f"; the newest {KEEP_TRACEBACKS} are kept there" if Path(where).parent == traceback_dir() else ""
        print(f"llm-emf {name}: error: {type(e).__name__}: {first} (full traceback in {where}{kept})",
              file=sys.stderr)
        return 1


def _is_user_error(e: BaseException) -> bool:
    """A bad file the user can fix (errors of modules that are only imported when a command needs them)."""
    checkpoint = sys.modules.get("llm_emf.checkpoints")
    return checkpoint is not None and isinstance(e, checkpoint.CorruptCheckpoint)


def _stdout_is_closed() -> bool:
    """True when standard output is a pipe whose reader has gone (EPIPE on the next write)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        import select

        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _discard_stdout() -> None:
    """Point the standard output descriptor at /dev/null so the final flush at exit cannot fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


KEEP_TRACEBACKS = 20        # per user: older tracebacks are deleted when a new one is written
TRACEBACK_DIR_ENV = "LLM_EMF_TRACEBACK_DIR"


def traceback_dir() -> Path:
    """Where tracebacks of unexpected errors go: ``$LLM_EMF_TRACEBACK_DIR``, else ``<tmp>/llm-emf-<uid>``
    (private to the user: a traceback can quote paths and data)."""
    import tempfile

    configured = os.environ.get(TRACEBACK_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(tempfile.gettempdir()) / f"llm-emf-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _private_folder(folder: Path) -> bool:
    """Create ``folder`` (mode 0700) if missing; True when it is a real folder owned by this user."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.lstat()
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == os.getuid())


def _save_traceback(command: str) -> str:
    """Write the current exception's traceback (passwords in URIs redacted) to a new file in
    :func:`traceback_dir` and delete all but the newest KEEP_TRACEBACKS there; returns the file's path."""
    import tempfile
    import time
    import traceback

    folder = traceback_dir()
    if not _private_folder(folder):        # taken by someone else, or not writable: a lone file in the temp dir
        folder = Path(tempfile.gettempdir())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"llm-emf-{command}-{stamp}-", suffix=".traceback.txt", dir=folder)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(redact_uri(traceback.format_exc()))
    if folder == traceback_dir():
        _prune_tracebacks(folder, Path(path), keep=KEEP_TRACEBACKS)
    return path


def _prune_tracebacks(folder: Path, current: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest ``llm-emf-*.traceback.txt`` files in ``folder``, ``current`` (the one
    just written) always among them."""
    try:
        others = [(p.stat().st_mtime_ns, p.name, p) for p in folder.glob("llm-emf-*.traceback.txt")
                  if p.is_file() and p != current]
    except OSError:
        return
    for _, _, old in sorted(others, reverse=True)[max(keep - 1, 0):]:
        old.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
