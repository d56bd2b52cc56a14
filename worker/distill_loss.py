"""The distillation loss: cosine to the teacher's vector, plus an optional in-batch relational term.

Why not ``losses.MSELoss`` (the first recipe's): under ``MatryoshkaLoss`` the student's prefix is cut
and re-normalised but the label's prefix is only cut, and MSE is a mean over the prefix's coordinates,
so a 64-d prefix weighed about four times a full 384-d vector per unit of cosine (``|label_d| / d``) and
the MRL student paid for its prefixes with full-width quality. Cosine is scale-free: every prefix counts
by its Matryoshka weight and nothing else, and at full width (unit vectors) it is MSE up to a constant.

The relational term matches the student's in-batch cosine matrix to the teacher's (the similarity
structure retrieval ranks by) rather than each vector alone; it costs one (batch x batch) product.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn


class CosineDistillLoss(nn.Module):
    """``mean(1 - cos(student, label)) + relational_weight * mse(S S^T, T T^T)`` on unit vectors."""

    def __init__(self, model: SentenceTransformer, relational_weight: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.relational_weight = relational_weight

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = next(iter(sentence_features))
        student = F.normalize(self.model(features)["sentence_embedding"], dim=-1)
        teacher = F.normalize(labels.to(student.dtype), dim=-1)
        loss = (1 - (student * teacher).sum(dim=-1)).mean()
        if self.relational_weight:
            loss = loss + self.relational_weight * F.mse_loss(student @ student.T, teacher @ teacher.T)
        return loss
