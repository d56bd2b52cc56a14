"""The distillation loss: cosine to the teacher's vector, plus an optional in-batch relational term.

Why not ``losses.MSELoss`` (the first recipe's): under ``MatryoshkaLoss`` the student's prefix is cut
and re-normalised but the label's prefix is only cut, and MSE is a mean over the prefix's coordinates,
so a 64-d prefix weighed about four times a full 384-d vector per unit of cosine (``|label_d| / d``) and
the MRL student paid for its prefixes with full-width quality. Cosine is scale-free: every prefix counts
by its Matryoshka weight and nothing else, and at full width (unit vectors) it is MSE up to a constant.

The relational term matches the student's in-batch similarity structure to the teacher's (what retrieval
ranks by) rather than each vector alone; it costs one (batch x batch) product. With a temperature it is
the KL divergence between the rows' softmax distributions (each text's neighbours as the teacher ranks
them, the nearest weighted most); without, the MSE between the cosine matrices.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn


class CosineDistillLoss(nn.Module):
    """``mean(1 - cos(student, label)) + relational_weight * mse(S S^T, T T^T)`` on unit vectors."""

    def __init__(self, model: SentenceTransformer, relational_weight: float = 0.0, temperature: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.relational_weight = relational_weight
        self.temperature = temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = next(iter(sentence_features))
        student = F.normalize(self.model(features)["sentence_embedding"], dim=-1)
        teacher = F.normalize(labels.to(student.dtype), dim=-1)
        loss = (1 - (student * teacher).sum(dim=-1)).mean()
        if self.relational_weight:
            loss = loss + self.relational_weight * self._relational(student @ student.T, teacher @ teacher.T)
        return loss

    def _relational(self, student: Tensor, teacher: Tensor) -> Tensor:
        if not self.temperature:
            return F.mse_loss(student, teacher)
        # A text is not its own neighbour: the diagonal (always 1) is left out of both distributions.
        mask = torch.eye(len(student), dtype=torch.bool, device=student.device)
        own = F.log_softmax(student.masked_fill(mask, -1e4) / self.temperature, dim=-1)
        target = F.log_softmax(teacher.masked_fill(mask, -1e4) / self.temperature, dim=-1)
        return F.kl_div(own, target, log_target=True, reduction="batchmean")
