"""The whole config tree: one dataclass per section, loaded from YAML, overridable as ``model.n_heads=4``."""

from __future__ import annotations

from dataclasses import dataclass

from .data import DataConfig
from .features import FeaturesConfig
from .fields import ConfigError, help_field, section
from .model import ModelConfig
from .pipeline import ALL_STAGES, PipelineConfig
from .train import EvalConfig, TrainConfig
from .tracking import TrackingConfig
from .tune import TuneConfig


@dataclass
class Config:
    seed: int = help_field(42, "(int) one seed for splits, negatives, init and sampling; recorded with every run",
                           min=0)
    data: DataConfig = section(DataConfig, "input data and the canonical dataset")
    features: FeaturesConfig = section(FeaturesConfig, "LLM enrichment and embedding")
    model: ModelConfig = section(ModelConfig, "the network")
    train: TrainConfig = section(TrainConfig, "training")
    eval: EvalConfig = section(EvalConfig, "evaluation protocol")
    tune: TuneConfig = section(TuneConfig, "hyperparameter search")
    tracking: TrackingConfig = section(TrackingConfig, "experiment tracking")
    pipeline: PipelineConfig = section(PipelineConfig, "the end-to-end workflow")

    def validate(self) -> None:
        """Checks that involve more than one field."""
        m = self.model
        if m.hidden_size % m.n_heads:
            raise ConfigError(f"model.hidden_size ({m.hidden_size}) must be divisible by model.n_heads ({m.n_heads})")
        if not (m.use_id or m.use_text or m.use_image):
            raise ConfigError("model: at least one of use_id, use_text, use_image must be true")
        if m.id_tables == "per_encoder" and (m.name != "llm_emf" or not m.use_id):
            raise ConfigError(f"model.id_tables=per_encoder gives each of llm_emf's three encoders its own ID table; "
                              f"it needs model.name=llm_emf and model.use_id=true, found model.name={m.name} and "
                              f"model.use_id={str(m.use_id).lower()}")
        if self.train.embedding_l2 > 0 and not m.use_id:
            raise ConfigError("train.embedding_l2 penalises item-ID rows; it needs model.use_id=true")
        unknown = [s for s in self.pipeline.stages if s not in ALL_STAGES]
        if unknown:
            raise ConfigError(f"pipeline.stages: expected names from {list(ALL_STAGES)}, found {unknown}")
