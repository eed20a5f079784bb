"""Temperature scaling (Guo et al., 2017): one number that makes P(Fake) honest.

A detector's scores can rank images well (high AUROC) and still be over- or under-confident
(high ECE). Dividing its logit by a temperature T fitted on validation, by minimising the
negative log-likelihood, fixes the confidence without changing any ranking: AUROC, AP, EER
and every decision at a correspondingly moved threshold stay the same.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

#: Scores are clamped this far from 0 and 1 before taking their logit.
EPSILON = 1e-12
#: The temperatures a fit may return: beyond them the scores only saturate.
TEMPERATURE_RANGE = (0.05, 20.0)


def logits_of(probs: torch.Tensor) -> torch.Tensor:
    probs = probs.detach().double().flatten().cpu()
    return torch.logit(probs.clamp(EPSILON, 1 - EPSILON))


def fit_temperature(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """The T that minimises the NLL of `targets` under sigmoid(logit(probs) / T), within
    `TEMPERATURE_RANGE`. The scores are float32 probabilities, so logits beyond about ±16
    count as ±16 to ±27: fine for the bulk of the scores that decides T."""
    targets = targets.detach().double().flatten().cpu()
    if not 0 < int(targets.sum()) < targets.numel():
        raise ValueError("fitting a temperature needs both Fake and Real images")
    logits = logits_of(probs)
    if logits[targets == 0].max() < logits[targets == 1].min():
        # The NLL keeps falling as T goes to 0: no temperature is the right one.
        raise ValueError(
            "the scores separate Fake from Real perfectly, so no finite temperature fits"
        )
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t) > 0
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return min(max(float(log_t.detach().exp()), TEMPERATURE_RANGE[0]), TEMPERATURE_RANGE[1])


def apply_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """P(Fake) after dividing the logit by `temperature`, in the dtype of `probs`."""
    return torch.sigmoid(logits_of(probs) / temperature).to(probs.dtype)


def moved_threshold(threshold: float, temperature: float) -> float:
    """The threshold on calibrated scores that makes the decisions `threshold` made."""
    return float(apply_temperature(torch.tensor([threshold], dtype=torch.float64), temperature))
