"""How the stage-1 feature jobs grow with the catalog: 10k, 100k and 1M synthetic items.

    python -m bench.features.scaling --sizes 10000,100000,1000000 --jobs enrich,embed

Each (job, size) runs ``bench.features.stream_memory`` in a fresh process (its own Ray, so memory peaks
are its own): ``enrich`` with backend none (the Ray Data pipeline, prompt text and Parquet output without an
LLM: what grows with the catalog; LLM tokens/s are in overhead.md) and ``embed`` with the tiny CLIP text
and image towers on synthetic images. Writes ``<out>.json``, ``<out>.md`` and ``<out>.png`` (wall time and
peak memory against items, log-log), with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench import command_line


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for job in sorted({r["job"] for r in rows}):
        mine = sorted((r for r in rows if r["job"] == job), key=lambda r: r["items"])
        x = [r["items"] for r in mine]
        axes[0].plot(x, [r["wall_s"] for r in mine], "o-", label=job)
        axes[1].plot(x, [r["peak_rss_driver_mib"] for r in mine], "o-", label=f"{job}: driver")
        axes[1].plot(x, [r["peak_rss_total_mib"] for r in mine], "s--", label=f"{job}: driver + Ray")
    for ax, title, unit in ((axes[0], "wall time", "s"), (axes[1], "peak resident memory", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("catalog items")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--jobs", default="enrich,embed")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--work", default="runs/bench/scaling")
    p.add_argument("--out", default="bench/results/feature_scaling")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.with_suffix(".json").read_text())["results"] if out.with_suffix(".json").is_file() else []
    rows = []
    for job in args.jobs.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            target = Path(args.work) / f"{job}_{n}.json"
            cmd = [sys.executable, "-m", "bench.features.stream_memory", "--job", job, "--items", str(n),
                   "--batch-size", str(args.batch_size), "--work", f"{args.work}/{n}", "--out", str(target)]
            print("$", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            rows.append(json.loads(target.read_text()))
            r = rows[-1]
            print(f"{job} {n:>9,} items: {r['wall_s']:.0f} s, {r['items_per_s']:.0f} items/s, driver peak "
                  f"{r['peak_rss_driver_mib']:.0f} MiB, all {r['peak_rss_total_mib']:.0f} MiB", flush=True)
    # keep earlier rows for (job, size) pairs this invocation did not run
    done = {(r["job"], r["items"]) for r in rows}
    rows += [r for r in previous if (r.get("job", "embed"), r["items"]) not in done]
    rows.sort(key=lambda r: (r["job"], r["items"]))
    doc = {"command": command_line(__spec__.name, sys.argv[1:]), "cpus": os.cpu_count(), "results": rows}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(rows, out.with_suffix(".png"))
    lines = ["# Feature jobs vs catalog size", "", f"Command: `{doc['command']}`", "",
             f"{os.cpu_count()} CPUs (shared); each run in a fresh process with its own local Ray "
             "(object store 1 GiB); enrich = backend none (no LLM), embed = tiny CLIP text + image on synthetic "
             "images. Peak memory is sampled every 0.5 s.", "",
             "| job | items | wall (s) | items/s | driver peak (MiB) | driver + Ray peak (MiB) | output (MB) "
             "| rows ok |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.get('job', 'embed')} | {r['items']:,} | {r['wall_s']:.0f} | {r['items_per_s']:.0f} | "
              f"{r['peak_rss_driver_mib']:.0f} | {r['peak_rss_total_mib']:.0f} | {r['output_bytes'] / 1e6:.0f} | "
              f"{'yes' if r['rows_match'] else 'NO'} |" for r in rows]
    lines += ["", f"![{out.name}.png]({out.name}.png)", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
