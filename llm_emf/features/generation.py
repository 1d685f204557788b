"""Text generation for enrichment: output cleaning and the transformers backend's Ray actor."""

from __future__ import annotations

import re
import time

import numpy as np

from .model_source import quiet_loading_bars

_THINK = re.compile(r"<think>.*?</think>", flags=re.DOTALL | re.IGNORECASE)
_OPEN_THINK = re.compile(r"<think>.*\Z", flags=re.DOTALL | re.IGNORECASE)


def strip_reasoning(text: str) -> str:
    """Drop ``<think>...</think>`` blocks, and an unclosed one cut off by the token cap."""
    text = _THINK.sub("", text)
    text = _OPEN_THINK.sub("", text)
    return text.replace("</think>", "").strip()


def pick_dtype(device: str):
    """bf16 where the hardware does it natively (llm_emf.precision): ~2x faster than fp32; else fp16 on a
    GPU and fp32 on a CPU."""
    import torch

    from llm_emf.precision import native_bf16

    if native_bf16(device):
        return torch.bfloat16
    return torch.float16 if device == "cuda" else torch.float32


class TransformersEnricher:
    """Stateful Ray Data actor: loads the model once, then generates for each batch of prompts.

    Input batch columns: ``prompt``. Adds ``enrichment`` (raw generated text), ``n_new_tokens`` and
    ``error`` (None on success). A batch that fails is retried row by row, so one bad row fails alone.
    """

    def __init__(self, model_dir: str, max_new_tokens: int, temperature: float, seed: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_loading_bars()
        torch.manual_seed(seed)  # sampling (temperature > 0) is reproducible per actor
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"  # decoder-only batching: new tokens start right after each prompt
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=pick_dtype(self.device))
        self.model.to(self.device).eval()
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.generate_seconds = 0.0

    def chat(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt

    def generate(self, prompts: list[str]) -> tuple[list[str], list[int]]:
        import torch

        enc = self.tokenizer([self.chat(p) for p in prompts], return_tensors="pt", padding=True)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        sampling = dict(do_sample=True, temperature=self.temperature) if self.temperature > 0 else dict(do_sample=False)
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id, **sampling)
        new = out[:, enc["input_ids"].shape[1]:]  # (B, <= max_new_tokens)
        # tokens after the first eos are padding; count what the model really produced
        eos = self.tokenizer.eos_token_id
        n_tokens = [int(np.argmax(row == eos)) + 1 if (row == eos).any() else len(row)
                    for row in new.cpu().numpy()]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True), n_tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prompts = [str(p) for p in batch["prompt"]]
        errors: list[str | None] = [None] * len(prompts)
        start = time.perf_counter()
        try:
            texts, n_tokens = self.generate(prompts)
        except Exception:  # noqa: BLE001 - retry one by one so only the bad rows fail
            texts, n_tokens = [""] * len(prompts), [0] * len(prompts)
            for i, prompt in enumerate(prompts):
                try:
                    (texts[i],), (n_tokens[i],) = self.generate([prompt])
                except Exception as e:  # noqa: BLE001 - recorded per row, counted by the driver
                    errors[i] = f"{type(e).__name__}: {e}"[:500]
        self.generate_seconds += time.perf_counter() - start
        batch["enrichment"] = np.array(texts, dtype=object)
        batch["n_new_tokens"] = np.array(n_tokens, dtype=np.int64)
        batch["error"] = np.array(errors, dtype=object)
        return batch
