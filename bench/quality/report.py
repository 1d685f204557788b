"""The quality benchmark's outputs from its JSON document: the markdown report, the convergence check and a
JSON writer that keeps per-case lists on one line (pure functions, unit-tested).

``doc`` is the document run.py keeps in ``<out>.json``; its ``aggregate``, ``paired`` and ``by_popularity``
entries are filled by run.py's ``analyse`` before these are called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from bench.quality.buckets import bucket_markdown
from bench.quality.by_target import target_kind_markdown
from bench.quality.paired import paired_markdown
from bench.quality.table import markdown_table

_PACKED = re.compile(r'"\\u0000(\d+)\\u0000"')


def dumps(doc: Mapping, min_packed: int = 16) -> str:
    """``json.dumps(doc, indent=2)``, except that lists of at least ``min_packed`` plain numbers (per-case
    ranks, targets) are written on one line: one case per line would make the file mostly line breaks."""
    packed: list[str] = []

    def pack(x):
        if isinstance(x, Mapping):
            return {k: pack(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            if len(x) >= min_packed and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x):
                packed.append(json.dumps(list(x), separators=(",", ":")))
                return f"\x00{len(packed) - 1}\x00"
            return [pack(v) for v in x]
        return x

    text = json.dumps(pack(doc), indent=2, default=str)
    return _PACKED.sub(lambda m: packed[int(m.group(1))], text)


def trained(run: Mapping) -> bool:
    return run.get("trained", True)


def unconverged(runs: Sequence[Mapping]) -> list[Mapping]:
    """Trained runs that did not stop early, i.e. used up train.epochs while still improving (or unknown)."""
    return [r for r in runs if trained(r) and r.get("stopped_early") is not True]


def _max_epochs(run: Mapping) -> str:
    if run.get("max_epochs") is not None:
        return str(run["max_epochs"])
    given = [o.split("=", 1)[1] for o in run.get("overrides", []) if o.startswith("train.epochs=")]
    return given[-1] if given else "?"


def runs_table(runs: Sequence[Mapping]) -> str:
    lines = ["| variant | seed | epochs run / max | resumed from epoch | best epoch per domain | stopped early | "
             "wall (s) |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        if trained(r):
            best = ", ".join(f"{d} {b['epoch']}" for d, b in r["best"].items())
            stopped = {True: "yes", False: "**no**"}.get(r.get("stopped_early"), "?")
            epochs = f"{r['epochs_run']} / {_max_epochs(r)}"
        else:
            best, stopped, epochs = "-", "not trained", "0"
        lines.append(f"| {r['variant']} | {r['seed']} | {epochs} | {r.get('resumed_from_epoch', 0)} | {best} | "
                     f"{stopped} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def convergence_section(runs: Sequence[Mapping]) -> str:
    """The per-run table, then whether every trained run stopped by itself (early stopping on validation)."""
    lines = ["## Runs and convergence", "",
             "Wall time of this invocation (training, validation and testing; a resumed run's earlier epochs are "
             "not in it). A run has converged when early stopping ended it (train.patience epochs without a "
             "better validation MRR) before train.epochs.", "", runs_table(runs), ""]
    late = unconverged(runs)
    n_trained = sum(trained(r) for r in runs)
    if late:
        names = ", ".join(f"{r['variant']} seed {r['seed']} ({r['epochs_run']} of {_max_epochs(r)} epochs)"
                          for r in late)
        lines.append(f"**Warning: {len(late)} of {n_trained} trained runs did not converge**: {names} hit "
                     "train.epochs without early stopping, so their numbers may still be rising. Rerun the same "
                     "command with a larger train.epochs and --resume: they continue from their checkpoints.")
    elif n_trained:
        lines.append(f"All {n_trained} trained runs stopped early.")
    missing = [r for r in runs if not r.get("ranks")]
    if missing:
        lines += ["", "Runs without per-case ranks (written by an older run.py) are left out of the paired and "
                  "bucket tables: " + ", ".join(f"{r['variant']} seed {r['seed']}" for r in missing)
                  + ". The same command without --resume re-tests their checkpoints."]
    return "\n".join(lines)


def markdown_report(doc: Mapping, pngs: Sequence[str] = ()) -> str:
    m = doc["machine"]
    md = [f"# Quality benchmark: {doc['dataset']}", "",
          f"Command: `{doc['command']}`", "",
          f"Machine: {m['cpu_count']} CPUs ({m['torch_threads']} torch threads, CUDA {m['cuda']}), torch "
          f"{m['torch']}, ray {m['ray']}, Python {m['python']}; load average at start {m['loadavg_at_start']}.",
          "", "Test metrics, each domain at its best-validation epoch; mean ± sample std over seeds "
          "(a single seed shows the value only). Wall time includes training, validation and testing.", "",
          *[line for n in doc.get("notes", []) for line in (f"Note: {n}", "")],
          markdown_table(doc["aggregate"]), ""]
    if doc.get("paired"):
        md += [paired_markdown(doc["paired"]), ""]
    if doc.get("by_popularity"):
        md += [bucket_markdown(doc["by_popularity"]), ""]
    if doc.get("by_target"):
        md += [target_kind_markdown(doc["by_target"]), ""]
    md += [convergence_section(doc["runs"]), "", *[f"![{p}]({p})" for p in pngs], ""]
    return "\n".join(md)
