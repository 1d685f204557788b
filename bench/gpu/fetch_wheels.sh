#!/usr/bin/env bash
# Re-download the wheels the GPU check carries (the GPU image has no open_clip and no network), then check
# them against SHA256SUMS. Pure-Python wheels: one set serves every Python 3 and platform.
# ftfy and wcwidth are open_clip's only needs missing from the image (torch, torchvision, regex, tqdm,
# huggingface_hub, safetensors and timm are there).
set -euo pipefail
cd "$(dirname "$0")/wheels"
python3 -m pip download --no-deps --only-binary=:all: -d . \
    open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.2.13
sha256sum -c SHA256SUMS
