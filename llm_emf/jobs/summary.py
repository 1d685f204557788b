"""The end-of-job summary: counts, throughput, where the output went, and a printable report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class JobSummary:
    job: str
    total: int = 0
    done: int = 0
    skipped_cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_batch_s: float = 0.0     # until the first batch came back: Ray, actor and model start-up
    counters: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)   # Ray node id -> rows its actors computed
    output: str = ""
    failed_output: str = ""
    unit: str = "items"            # what total/done count, for the report

    @property
    def items_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + int(n)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["items_per_s"] = round(self.items_per_s, 2)
        return d

    def report(self) -> str:
        extra = ", ".join(f"{k} {v}" for k, v in sorted(self.counters.items()))
        lines = [f"{self.job}: {self.total} {self.unit}: {self.done} done, {self.skipped_cached} skipped (cached), "
                 f"{self.failed} failed; {self.items_per_s:.1f} {self.unit}/s over {self.seconds:.1f} s"
                 + (f" (first batch after {self.first_batch_s:.1f} s)" if self.first_batch_s else ""),
                 f"  output: {self.output}"]
        if extra:
            lines.append(f"  {extra}")
        if self.nodes:
            lines.append("  computed on Ray nodes: " + ", ".join(f"{node[:12]} ({rows})" for node, rows
                                                               in sorted(self.nodes.items())))
        if self.failed_output:
            lines.append(f"  failed / problem rows: {self.failed_output}")
        return "\n".join(lines)
