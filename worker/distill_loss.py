"""The distillation loss: cosine to the teacher's vector, plus an optional in-batch relational term.

Why not ``losses.MSELoss`` (the first recipe's): under ``MatryoshkaLoss`` the student's prefix is cut
and re-normalised but the label's prefix is only cut, and MSE is a mean over the prefix's coordinates,
so a 64-d prefix weighed about four times a full 384-d vector per unit of cosine (``|label_d| / d``) and
the MRL student paid for its prefixes with full-width quality. Cosine is scale-free: every prefix counts
by its Matryoshka weight and nothing else, and at full width (unit vectors) it is MSE up to a constant.

The token term (``hidden_weight``) compares the student's last hidden state with the frozen teacher's, token
by token, on the same batch: measured on the WordNet retrieval sample it is what moved a 3-layer student from
0.890 to 0.921 of the teacher's recall@10, together with training without dropout (``bench/RESULTS.md``).

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
    """``mean(1 - cos(student, label)) + relational_weight * mse(S S^T, T T^T)
    + hidden_weight * mean over tokens (1 - cos(student token, teacher token))`` on unit vectors."""

    def __init__(
        self,
        model: SentenceTransformer,
        relational_weight: float = 0.0,
        temperature: float = 0.0,
        *,
        teacher_tokens: nn.Module | None = None,
        hidden_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.relational_weight = relational_weight
        self.temperature = temperature
        self.hidden_weight = hidden_weight
        # Not a submodule: the teacher is frozen, and its weights must stay out of the optimiser and
        # out of the student's state dict.
        self._teacher_tokens = [teacher_tokens] if teacher_tokens is not None and hidden_weight else []

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = next(iter(sentence_features))
        inputs = dict(features)  # the student's forward adds its outputs to ``features``
        output = self.model(features)
        student = F.normalize(output["sentence_embedding"], dim=-1)
        teacher = F.normalize(labels.to(student.dtype), dim=-1)
        loss = (1 - (student * teacher).sum(dim=-1)).mean()
        if self.relational_weight:
            loss = loss + self.relational_weight * self._relational(student @ student.T, teacher @ teacher.T)
        # MatryoshkaLoss calls this once per prefix with the labels cut; token states are never cut, so the
        # token term is added once, on the full-width call (the test MatryoshkaLoss itself uses).
        if self._teacher_tokens and labels.shape[-1] == self.model.get_embedding_dimension():
            loss = loss + self.hidden_weight * self._hidden(output["token_embeddings"], inputs)
        return loss

    def _hidden(self, student_tokens: Tensor, inputs: dict[str, Tensor]) -> Tensor:
        """Mean ``1 - cos`` between the student's and the teacher's last hidden state, token by token.

        The pooled vector is one number per dimension per text; the token states are one per token, so
        the student sees how the teacher represents each word, not only their average (the hidden-state
        term of DistilBERT and TinyBERT). Padding is left out.
        """
        with torch.no_grad():
            reference = self._teacher_tokens[0](dict(inputs))["token_embeddings"].to(student_tokens.dtype)
        mask = inputs["attention_mask"].to(student_tokens.dtype)
        cosine = F.cosine_similarity(student_tokens, reference, dim=-1)
        return ((1 - cosine) * mask).sum() / mask.sum().clamp(min=1)

    def _relational(self, student: Tensor, teacher: Tensor) -> Tensor:
        if not self.temperature:
            return F.mse_loss(student, teacher)
        # A text is not its own neighbour: the diagonal (always 1) is left out of both distributions.
        mask = torch.eye(len(student), dtype=torch.bool, device=student.device)
        own = F.log_softmax(student.masked_fill(mask, -1e4) / self.temperature, dim=-1)
        target = F.log_softmax(teacher.masked_fill(mask, -1e4) / self.temperature, dim=-1)
        return F.kl_div(own, target, log_target=True, reduction="batchmean")
