"""Model quality on real labelled data, and the gate that decides whether a student may serve.

Metrics (data in ``../shared/data``, see its README):

* ``lee_spearman`` — Spearman correlation of cosine similarity with mean human similarity over the
  1,225 pairs of the 50 Lee et al. (2005) news documents (document-level STS).
* ``recall_at_10``, ``ndcg_at_10`` (and ``mrr_at_10``, not gated) — WordNet usage example -> its
  definition, BEIR layout, exact cosine search. Only the definition text is embedded (not the lemma
  title, which would make the task lexical). For CPU speed queries and corpus may be subsampled; the
  relevant documents of every sampled query are always kept, so recall stays well defined, but a
  smaller corpus is an easier task: compare reports only when they were made with the same limits
  (``quality_gate`` refuses otherwise).
* ``teacher_cosine`` — mean cosine between the model's and the teacher's vectors of the same texts
  (only when both have the same width; pass a teacher already mapped into the student's space for a
  rotated MRL student, see ``distill.load_label_rotation``). ``teacher_similarity_spearman`` —
  Spearman correlation between the two models' pairwise similarities over those texts; it does not
  care about width or rotation, and measures what search actually uses.

Every vector goes through ``postprocess`` (normalise, truncate to an MRL prefix, re-normalise), the
same function serving uses, so the figures for a dimension are the figures a user of it gets.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from embedfleet.domain import InputType, Precision
from embedfleet.errors import InvalidArgument, NotFound
from embedfleet.worker.models.base import Encoder
from embedfleet.worker.postprocess import postprocess

EncodeFn = Callable[[list[str], str], np.ndarray]
"""``encode(texts, input_type)`` with input_type "query" or "document" -> float32 (n, d) vectors."""

HEADLINE_METRICS = ("lee_spearman", "recall_at_10", "ndcg_at_10")
DATA_ENV = "EMBEDFLEET_EVAL_DATA"
_LEE = "gensim-testdata"
_RETRIEVAL = "wordnet-glosses/retrieval_example2definition"
_K = 10


def default_data_dir() -> Path:
    """``$EMBEDFLEET_EVAL_DATA``, else ``../shared/data`` beside the repository root.

    The fallback is right for a source checkout (the editable install used in development and CI);
    an installed wheel has no repository beside it and must set the variable.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass(frozen=True)
class EvalLimits:
    """Subsampling for CPU budgets; None means the whole set. Same limits -> same sample."""

    max_queries: int | None = None
    max_corpus: int | None = None
    max_agreement_texts: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class Metrics:
    lee_spearman: float
    recall_at_10: float
    ndcg_at_10: float
    mrr_at_10: float
    teacher_cosine: float | None = None
    teacher_similarity_spearman: float | None = None


@dataclass(frozen=True)
class EvalSample:
    """What the numbers were computed on; two reports compare only if these are equal."""

    data_dir: str
    lee_pairs: int
    queries: int
    corpus: int
    agreement_texts: int
    seed: int


@dataclass(frozen=True)
class EvalReport:
    dimensions: int
    full: Metrics
    by_dim: dict[int, Metrics]
    sample: EvalSample
    encode_s: float
    elapsed_s: float

    def metrics_at(self, dim: int | None = None) -> Metrics:
        if dim is None or dim == self.dimensions:
            return self.full
        try:
            return self.by_dim[dim]
        except KeyError:
            raise NotFound(f"no evaluation at {dim} dimensions; have {sorted(self.by_dim)}") from None

    def flat(self) -> dict[str, float]:
        """``{"lee_spearman": .., "dim128.lee_spearman": ..}``: for manifests and JSON output."""
        out: dict[str, float] = {}
        for prefix, metrics in [("", self.full), *((f"dim{d}.", m) for d, m in sorted(self.by_dim.items()))]:
            for name, value in asdict(metrics).items():
                if value is not None:
                    out[prefix + name] = round(float(value), 6)
        return out


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    min_fraction: float
    fractions: dict[str, float] = field(default_factory=dict)
    failed: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class _Data:
    lee_docs: list[str]
    lee_pairs: list[tuple[int, int, float]]
    queries: list[str]
    corpus: list[str]
    relevant: list[dict[int, float]]  # per query: corpus index -> gain


def evaluate(
    encode: EncodeFn,
    *,
    dims: list[int] | None = None,
    data_dir: Path | None = None,
    teacher_encode: EncodeFn | None = None,
    limits: EvalLimits | None = None,
) -> EvalReport:
    """Score one model (full width and each of ``dims``) on the Lee pairs and the WordNet retrieval set.

    ``encode`` is called once for documents (Lee docs + corpus) and once for queries; every dimension
    is derived from those vectors, so an MRL model is embedded once, as in serving.
    """
    started = time.monotonic()
    limits = limits or EvalLimits()
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    data = _load(data_dir, limits)

    t0 = time.monotonic()
    documents = _call(encode, data.lee_docs + data.corpus, InputType.DOCUMENT)
    queries = _call(encode, data.queries, InputType.QUERY)
    encode_s = time.monotonic() - t0
    full_dim = documents.shape[1]
    if queries.shape[1] != full_dim:
        raise InvalidArgument(f"query vectors have {queries.shape[1]} dims, documents {full_dim}")
    bad = [d for d in dims or [] if not 0 < d < full_dim]
    if bad:
        raise InvalidArgument(f"dims {bad} must be in 1..{full_dim - 1} for a {full_dim}-dimensional model")
    lee, corpus = documents[: len(data.lee_docs)], documents[len(data.lee_docs) :]

    agree_docs, agree_queries = _agreement_split(len(data.lee_docs) + len(data.corpus), len(queries), limits)
    own_agree = np.concatenate([documents[:agree_docs], queries[:agree_queries]])
    teacher_vectors: np.ndarray | None = None
    if teacher_encode is not None:
        teacher_vectors = np.concatenate(
            [
                _call(teacher_encode, (data.lee_docs + data.corpus)[:agree_docs], InputType.DOCUMENT),
                _call(teacher_encode, data.queries[:agree_queries], InputType.QUERY),
            ]
        )
        teacher_vectors = _post(teacher_vectors, teacher_vectors.shape[1])

    def score(dim: int) -> Metrics:
        lee_d, corpus_d, queries_d = _post(lee, dim), _post(corpus, dim), _post(queries, dim)
        sims = [float(lee_d[i] @ lee_d[j]) for i, j, _ in data.lee_pairs]
        lee_rho = float(spearmanr(sims, [s for *_, s in data.lee_pairs]).statistic)
        recall, ndcg, mrr = _retrieval(queries_d, corpus_d, data.relevant)
        cosine = similarity = None
        if teacher_vectors is not None:
            own = _post(own_agree, dim)
            if teacher_vectors.shape[1] == full_dim:
                cosine = float(np.mean(np.sum(own * _post(teacher_vectors, dim), axis=1)))
            similarity = _similarity_agreement(own, teacher_vectors)
        return Metrics(lee_rho, recall, ndcg, mrr, cosine, similarity)

    sample = EvalSample(
        data_dir=str(data_dir),
        lee_pairs=len(data.lee_pairs),
        queries=len(data.queries),
        corpus=len(data.corpus),
        agreement_texts=agree_docs + agree_queries,
        seed=limits.seed,
    )
    return EvalReport(
        dimensions=full_dim,
        full=score(full_dim),
        by_dim={d: score(d) for d in sorted(set(dims or []), reverse=True)},
        sample=sample,
        encode_s=encode_s,
        elapsed_s=time.monotonic() - started,
    )


def quality_gate(
    student: EvalReport,
    teacher: EvalReport,
    min_fraction: float = 0.95,
    *,
    dim_min_fraction: float | None = None,
) -> GateDecision:
    """Pass iff the student keeps ``min_fraction`` of the teacher's score on every headline metric.

    With ``dim_min_fraction``, every evaluated MRL prefix of the student must also keep that fraction
    of the teacher's *full-width* score (the promise an MRL model makes is "almost as good, smaller").
    Reports made on different samples are refused: a smaller corpus is an easier task.
    """
    if not 0 < min_fraction <= 1.5:
        raise InvalidArgument(f"min_fraction {min_fraction} must be in (0, 1.5]")
    if student.sample != teacher.sample:
        raise InvalidArgument(
            f"the reports were made on different samples ({student.sample} vs {teacher.sample}); "
            "evaluate both with the same data and limits"
        )
    fractions: dict[str, float] = {}
    failed: list[str] = []
    checks = [("", student.full, min_fraction)]
    if dim_min_fraction is not None:
        checks += [(f"dim{d}.", m, dim_min_fraction) for d, m in sorted(student.by_dim.items(), reverse=True)]
    for prefix, metrics, needed in checks:
        for name in HEADLINE_METRICS:
            got, ref = getattr(metrics, name), getattr(teacher.full, name)
            fraction = got / ref if ref > 0 else (1.0 if got >= ref else 0.0)
            fractions[prefix + name] = round(fraction, 4)
            if fraction < needed:
                failed.append(f"{prefix}{name} {got:.4f} is {fraction:.1%} of the teacher's {ref:.4f} (< {needed:.0%})")
    if failed:
        return GateDecision(False, min_fraction, fractions, tuple(failed), "; ".join(failed))
    reason = f"every headline metric >= {min_fraction:.0%} of the teacher"
    return GateDecision(True, min_fraction, fractions, (), reason)


def memoized(encode: EncodeFn) -> EncodeFn:
    """Memoise an encode function per (input type, texts), so re-evaluating a model (at other
    dimensions, against other teachers) costs no second forward pass."""
    memo: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

    def wrapper(texts: list[str], input_type: str) -> np.ndarray:
        key = (input_type, tuple(texts))
        if key not in memo:
            memo[key] = encode(texts, input_type)
        return memo[key]

    return wrapper


def encode_fn_for(encoder: Encoder) -> EncodeFn:
    """Adapt a hosted ``Encoder`` (prompts applied per input type) to ``evaluate``'s callable."""

    def encode(texts: list[str], input_type: str) -> np.ndarray:
        return encoder.encode(texts, InputType(input_type)).vectors

    return encode


def load_training_texts(n: int, *, data_dir: Path | None = None, seed: int = 0) -> list[str]:
    """``n`` unlabelled texts for distillation that share nothing with the evaluation sets.

    Half WordNet definitions/examples of synsets outside the retrieval task, 40% Brown corpus
    paragraphs, 10% Lee background news (not the 50 scored documents): short, medium and long
    texts, like a real corpus, and no leak of the test documents into the student.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    rng = np.random.default_rng(seed)
    excluded = {row["corpus-id"] for row in _read_tsv(data_dir / _RETRIEVAL / "qrels.tsv")}
    excluded |= {json.loads(line)["_id"] for line in _lines(data_dir / _RETRIEVAL / "corpus.jsonl")}
    wordnet: list[str] = []
    for line in _lines(data_dir / "wordnet-glosses" / "wordnet_synsets.jsonl"):
        synset = json.loads(line)
        if synset["id"] not in excluded:
            wordnet.append(synset["definition"])
            wordnet.extend(synset["examples"])
    brown_docs = map(json.loads, _lines(data_dir / "brown-corpus" / "brown_docs.jsonl"))
    brown = [paragraph for doc in brown_docs for paragraph in doc["paragraphs"]]
    background = _lines(data_dir / _LEE / "lee_background.txt")
    n_brown, n_background = int(0.4 * n), int(0.1 * n)
    picks = [
        (wordnet, n - n_brown - n_background),
        (brown, n_brown),
        (background, n_background),
    ]
    texts: list[str] = []
    for pool, k in picks:
        pool = [t for t in pool if t.strip()]
        index = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
        texts.extend(pool[i] for i in sorted(index))
    order = rng.permutation(len(texts))
    return [texts[i] for i in order]


def _load(data_dir: Path, limits: EvalLimits) -> _Data:
    if not (data_dir / _LEE / "lee_pairs.tsv").is_file():
        raise NotFound(f"evaluation data not found in {data_dir} (set ${DATA_ENV} to the shared data folder)")
    docs = {int(row["doc_id"]): row["text"] for row in _read_tsv(data_dir / _LEE / "lee_docs.tsv")}
    lee_docs = [docs[i] for i in sorted(docs)]
    pairs = [
        (int(r["doc_i"]), int(r["doc_j"]), float(r["human_similarity"]))
        for r in _read_tsv(data_dir / _LEE / "lee_pairs.tsv")
    ]

    root = data_dir / _RETRIEVAL
    queries = {q["_id"]: q["text"] for q in map(json.loads, _lines(root / "queries.jsonl"))}
    corpus = {d["_id"]: d["text"] for d in map(json.loads, _lines(root / "corpus.jsonl"))}
    qrels: dict[str, dict[str, float]] = {}
    for row in _read_tsv(root / "qrels.tsv"):
        if float(row["score"]) > 0:
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = float(row["score"])
    rng = np.random.default_rng(limits.seed)
    query_ids = [q for q in queries if q in qrels]
    if limits.max_queries is not None and limits.max_queries < len(query_ids):
        keep = set(rng.choice(len(query_ids), size=limits.max_queries, replace=False).tolist())
        query_ids = [q for i, q in enumerate(query_ids) if i in keep]
    needed = {doc for q in query_ids for doc in qrels[q]}
    doc_ids = list(corpus)
    if limits.max_corpus is not None and limits.max_corpus < len(doc_ids):
        others = [d for d in doc_ids if d not in needed]
        extra = max(0, limits.max_corpus - len(needed))
        chosen = needed | {others[i] for i in rng.choice(len(others), size=extra, replace=False).tolist()}
        doc_ids = [d for d in doc_ids if d in chosen]
    position = {d: i for i, d in enumerate(doc_ids)}
    relevant = [{position[d]: g for d, g in qrels[q].items() if d in position} for q in query_ids]
    return _Data(lee_docs, pairs, [queries[q] for q in query_ids], [corpus[d] for d in doc_ids], relevant)


def _retrieval(queries: np.ndarray, corpus: np.ndarray, relevant: list[dict[int, float]]) -> tuple[float, ...]:
    """Exact top-10 by cosine (vectors are unit length): mean recall@10, nDCG@10, MRR@10."""
    recalls, ndcgs, rrs = [], [], []
    discounts = 1.0 / np.log2(np.arange(2, _K + 2))
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ corpus.T
        k = min(_K, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        for row, rel in zip(top, relevant[start : start + 256], strict=True):
            gains = np.array([rel.get(int(doc), 0.0) for doc in row])
            hits = gains > 0
            recalls.append(hits.sum() / len(rel))
            ideal = np.sort(np.fromiter(rel.values(), dtype=float))[::-1][:k]
            ndcgs.append(float(gains @ discounts[:k]) / float(ideal @ discounts[: len(ideal)]))
            rrs.append(1.0 / (int(np.argmax(hits)) + 1) if hits.any() else 0.0)
    return float(np.mean(recalls)), float(np.mean(ndcgs)), float(np.mean(rrs))


def _similarity_agreement(own: np.ndarray, teacher: np.ndarray) -> float:
    upper = np.triu_indices(len(own), k=1)
    return float(spearmanr((own @ own.T)[upper], (teacher @ teacher.T)[upper]).statistic)


def _agreement_split(n_documents: int, n_queries: int, limits: EvalLimits) -> tuple[int, int]:
    """How many documents (Lee docs first, then corpus) and queries the teacher comparison uses."""
    budget = limits.max_agreement_texts
    n_q = min(n_queries, budget // 2)
    return min(n_documents, budget - n_q), n_q


def _call(encode: EncodeFn, texts: list[str], input_type: InputType) -> np.ndarray:
    vectors = np.asarray(encode(texts, input_type.value), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise InvalidArgument(f"encode returned shape {vectors.shape} for {len(texts)} texts")
    return vectors


def _post(vectors: np.ndarray, dim: int) -> np.ndarray:
    return postprocess(vectors, dimensions=dim, normalize=True, precision=Precision.FLOAT32)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in fh if line.strip()]
