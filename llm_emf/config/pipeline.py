"""Config section: the end-to-end workflow (prepare -> enrich -> embed -> train -> evaluate [-> recommend]
[-> tune])."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import help_field

ALL_STAGES = ("prepare", "enrich", "embed", "train", "evaluate", "recommend", "tune")


@dataclass
class PipelineConfig:
    storage: str = help_field("runs/pipeline", "(str) root for every stage's outputs: a local path, a shared "
                              "filesystem path, s3:// or gs://; stages skip work already there")
    stages: list[str] = help_field(None, "(list[str]) stages to run, in order",
                                   default_factory=lambda: ["prepare", "enrich", "embed", "train", "evaluate",
                                                            "recommend"])
    ray_address: str = help_field("", "(str) Ray cluster to join; empty: the job's cluster or a local Ray")
    ray_dashboard: bool = help_field(True, "(bool) a local Ray started by run, tune, enrich, embed or recommend --all "
                                     "serves Ray's dashboard on 127.0.0.1 and prints its address (token "
                                     "authentication stays on); false, or LLM_EMF_RAY_DASHBOARD=0: no dashboard")
    recommend_split: str = help_field("test", "(str) recommend stage: top-k lists for every user of this split",
                                      choices=("train", "valid", "test"))
    recommend_k: int = help_field(10, "(int) recommend stage: items per user and domain", min=1, max=10000)
