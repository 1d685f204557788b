"""Config section: the end-to-end workflow (prepare -> enrich -> embed -> train -> evaluate [-> tune])."""

from __future__ import annotations

from dataclasses import dataclass

from .loader import help_field

ALL_STAGES = ("prepare", "enrich", "embed", "train", "evaluate", "tune")


@dataclass
class PipelineConfig:
    storage: str = help_field("runs/pipeline", "(str) root for every stage's outputs: a local path, a shared "
                              "filesystem path, s3:// or gs://; stages skip work already there")
    stages: list[str] = help_field(None, "(list[str]) stages to run, in order",
                                   default_factory=lambda: ["prepare", "enrich", "embed", "train", "evaluate"])
    ray_address: str = help_field("", "(str) Ray cluster to join; empty: the job's cluster or a local Ray")
