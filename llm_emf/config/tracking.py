"""Config section: MLflow tracking."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import help_field


@dataclass
class TrackingConfig:
    enabled: bool = help_field(True, "(bool) log runs to MLflow")
    uri: str = help_field("", "(str) tracking URI; empty: $MLFLOW_TRACKING_URI, else for `run` and pipeline jobs "
                          "sqlite:///<pipeline.storage>/mlflow.db (refused where that would not outlive a Ray job "
                          "or not be shared by a multi-node cluster), for other commands sqlite:///<cwd>/mlflow.db")
    experiment: str = help_field("llm-emf", "(str) MLflow experiment name (created if missing)")
    artifact_root: str = help_field("", "(str) where a new experiment keeps its artifacts; empty: "
                                    "mlartifacts/<experiment> next to the sqlite file (a server decides itself)")
    timeout_s: float = help_field(3.0, "(float) seconds to wait for a tracking server before going on without it",
                                  min=0.1, max=600.0)
    log_checkpoints: bool = help_field(False, "(bool) upload checkpoint files as artifacts; otherwise only their "
                                       "path/URI is recorded")
