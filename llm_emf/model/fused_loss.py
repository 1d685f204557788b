"""Full-softmax cross-entropy over a domain's items, fused with its linear layer and computed in row chunks.

The training step is dominated by ``states (N, q) @ items (n_D, q).T`` and the softmax over it: with
N ~ 4,000 positions and n_D ~ 28,000 Kitchen items the logits are ~450 MB in fp32, and the unfused path
(matmul -> log_softmax -> nll -> their backwards) makes about eight passes over that buffer plus a zero-fill.
Here each chunk of rows computes its logits, loss and gradient in one go (grad of CE w.r.t. logits is
softmax - onehot), so the logits of a chunk are written once, read a few times while hot, and freed; the
backward only scales the stored gradients. Same loss and gradients as ``F.cross_entropy(states @ items.T)``
up to float rounding (tests/model/test_fused_loss.py); the matmuls run in bf16 when bf16 autocast is on.
"""

from __future__ import annotations

import torch

# Rows per chunk: about this many bytes of fp32 logits, so a chunk stays in the CPU's last-level cache
# (measured on a 2-core EPYC with 27,637 items: 64-128 rows were fastest, 1,024 no faster than unfused).
CHUNK_BYTES = 8 << 20


def _target_log_prob(probs: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(C, 1) log p[target] from fp32 softmax rows; rows whose target probability underflowed (a logit gap of
    ~100, rare) are recomputed with log-softmax, so the loss stays finite and exact."""
    p = probs.gather(1, targets)
    log_p = torch.log(p)
    tiny = p < 1e-30
    if bool(tiny.any()):
        rows = tiny.flatten()
        log_p[rows] = torch.log_softmax(logits[rows], dim=1, dtype=torch.float32).gather(1, targets[rows])
    return log_p


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, states, items, targets, row_weights, chunk: int, matmul_dtype):
        # states (N, q), items (n, q), targets (N,) in [0, n), row_weights (N,): returns sum_r w_r * CE_r.
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        w_mm = items.detach().to(matmul_dtype)
        loss = torch.zeros((), dtype=torch.float32, device=states.device)
        grad_states = torch.empty(states.shape, dtype=torch.float32, device=states.device) if need_grad else None
        grad_items = torch.zeros(items.shape, dtype=torch.float32, device=items.device) if need_grad else None
        for start in range(0, states.shape[0], chunk):
            s = states[start:start + chunk].detach().to(matmul_dtype)              # (C, q)
            t = targets[start:start + chunk, None]                                 # (C, 1)
            w = row_weights[start:start + chunk, None].float()                     # (C, 1)
            # softmax in fp32 straight from the (possibly bf16) logits: it is the gradient, and the loss is
            # -log of its target entry, so no separate log-softmax pass and exp pass over the chunk
            logits = s @ w_mm.T                                                    # (C, n)
            probs = torch.softmax(logits, dim=1, dtype=torch.float32)              # (C, n)
            loss -= (w * _target_log_prob(probs, logits, t)).sum()
            if need_grad:
                grad = probs
                grad.scatter_add_(1, t, -torch.ones_like(t, dtype=grad.dtype))     # minus the one-hot target
                grad = torch.mul(grad, w, out=torch.empty(grad.shape, dtype=matmul_dtype, device=grad.device))
                grad_states[start:start + chunk] = grad @ w_mm                     # dLoss/dstates (C, q)
                grad_items += grad.T @ s                                           # (n, q)
        ctx.save_for_backward(grad_states, grad_items)
        ctx.dtypes = (states.dtype, items.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_states, grad_items = ctx.saved_tensors
        return ((grad_states * grad_loss).to(ctx.dtypes[0]), (grad_items * grad_loss).to(ctx.dtypes[1]),
                None, None, None, None)


def linear_cross_entropy(states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                         row_weights: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``sum_r row_weights[r] * CE(states[r] @ items.T, targets[r])`` without materialising all logits.

    ``row_weights`` carries the mean (1/N) and the loss-term weights (C2DSR's lambda), so one call covers
    several loss terms that score against the same items. Under bf16 autocast the matmuls run in bf16 and
    the softmax in fp32, as autocast would do for the unfused path.
    """
    device = states.device.type
    if chunk is None:
        chunk = min(4096, max(16, CHUNK_BYTES // (4 * max(items.shape[0], 1))))
    matmul_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else states.dtype
    with torch.autocast(device_type=device, enabled=False):
        return _LinearCrossEntropy.apply(states, items, targets, row_weights, chunk, matmul_dtype)
