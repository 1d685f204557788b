"""Merge the JSON of several quality-benchmark invocations into one report.

    python -m bench.quality.merge --out bench/results/quality_fk_converged \
        bench/results/quality_fk_converged_main.json bench/results/quality_fk_converged_side.json

Long benchmarks on a small machine run as parallel invocations (one torch thread each), each with its own
``--out``; this writes ``<out>.json`` / ``<out>.md`` / plots from all their runs as ``run.py --report-only``
would. The inputs must describe the same dataset, test cases and common overrides (else the paired
statistics would compare different things); a (variant, seed) found twice keeps the later file's run.
Every input's command is kept in ``commands``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import command_line
from bench.quality.run import write_outputs

MUST_AGREE = ("dataset", "common_overrides", "targets", "target_train_counts")


def merge(docs: list[dict], names: list[str], exclude: tuple[str, ...] = ()) -> dict:
    first = docs[0]
    for doc, name in zip(docs[1:], names[1:]):
        for key in MUST_AGREE:
            if doc.get(key) != first.get(key):
                raise SystemExit(f"{name}: expected the same {key} as {names[0]}, found a different one")
    runs: dict[tuple[str, int], dict] = {}
    variants: dict[str, list[str]] = {}
    for doc in docs:
        variants.update({k: v for k, v in doc.get("variants", {}).items() if k not in exclude})
        for run in doc["runs"]:
            if run["variant"] not in exclude:
                runs[(run["variant"], run["seed"])] = run
    merged = {k: first[k] for k in first if k not in ("runs", "command", "variants", "aggregate", "paired",
                                                      "by_popularity")}
    merged.update(variants=variants, runs=list(runs.values()),
                  commands=[c for doc in docs for c in doc.get("commands", [doc.get("command")]) if c],
                  seeds=sorted({r["seed"] for r in runs.values()}),
                  notes=list(dict.fromkeys(n for doc in docs for n in doc.get("notes", []))))
    merged["command"] = "; ".join(merged["commands"])
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", help="<out>.json files of run.py invocations")
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("--reference", default="id_only")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--exclude", default="", help="comma-separated variants to leave out (e.g. a run kept "
                   "under two names)")
    args = p.parse_args(argv)
    docs = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.inputs]
    doc = merge(docs, args.inputs, tuple(v for v in args.exclude.split(",") if v))
    doc["notes"] += [n for n in args.note if n not in doc["notes"]]
    doc["merge_command"] = command_line(__spec__.name, sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_outputs(out, doc, final=True, analysis={"reference": args.reference, "n_boot": args.bootstrap,
                                                  "boot_seed": args.bootstrap_seed})
    print(f"merged {len(doc['runs'])} runs from {len(docs)} files into {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
