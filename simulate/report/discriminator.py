"""The realism discriminator: a classifier trained to tell simulated user turns from human ones.

Character n-grams (2-4, case kept) and word n-grams (1-2, punctuation kept as tokens) weighted by
TF-IDF feed a logistic regression (scikit-learn). Predictions are cross-validated with folds
grouped by conversation, so the turns of one conversation are never split between training and
testing (a classifier could otherwise learn a conversation, not a style). Its ROC AUC is the
headline realism figure: 0.5 means the simulator's turns cannot be told from people's, 1.0 that
every one can. The interval is a cluster bootstrap over conversations. Refitted on every turn,
the words and character sequences with the largest weights are the simulator's giveaways.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from simulate.errors import ConfigError

FOLDS = 5
TOP_FEATURES = 20


@dataclass
class Feature:
    """One n-gram of the fitted classifier and how much it leans toward one side."""

    feature: str
    kind: Literal["word", "char"]
    weight: float
    """The logistic regression's coefficient: positive leans simulated, negative human."""
    simulated_share: float
    """Share of simulated turns that contain it."""
    human_share: float
    """Share of human turns that contain it."""


@dataclass
class Discrimination:
    """Out-of-fold ROC AUC with its bootstrap interval, and the features that decide."""

    auc: float
    low: float | None
    high: float | None
    folds: int
    simulated_turns: int
    human_turns: int
    giveaways: list[Feature]
    """Features leaning most toward simulated: what gives the simulator away."""
    human_tells: list[Feature]
    """Features leaning most toward human: what people do that the simulator does not."""


def _pipeline(seed: int):  # type: ignore[no-untyped-def]
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=(1, 2),
                    token_pattern=r"[A-Za-z0-9']+|[?!.,]",
                    sublinear_tf=True,
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 4), lowercase=False, sublinear_tf=True
                ),
            ),
        ]
    )
    model = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
    return make_pipeline(features, model)


def discriminate(
    simulated: Sequence[str],
    simulated_groups: Sequence[str],
    human: Sequence[str],
    human_groups: Sequence[str],
    *,
    seed: int = 0,
    resamples: int = 500,
    confidence: float = 0.95,
    top: int = TOP_FEATURES,
) -> Discrimination:
    """Train and cross-validate the discriminator on user turns (simulated = positive class).

    Args:
        simulated, human: user turns of each side.
        simulated_groups, human_groups: the conversation of each turn (folds keep them whole).

    Raises:
        ConfigError: fewer than two conversations with turns on a side.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    sim_ids = sorted(set(simulated_groups))
    human_ids = sorted(set(human_groups))
    if len(sim_ids) < 2 or len(human_ids) < 2:
        raise ConfigError(
            "the discriminator needs user turns from at least 2 conversations on each side; got "
            f"{len(sim_ids)} simulated and {len(human_ids)} human"
        )
    texts = [*simulated, *human]
    labels = np.array([1] * len(simulated) + [0] * len(human))
    groups = np.array([f"s\0{g}" for g in simulated_groups] + [f"h\0{g}" for g in human_groups])
    folds = min(FOLDS, len(sim_ids), len(human_ids))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(
        _pipeline(seed), texts, labels, groups=groups, cv=splitter, method="predict_proba"
    )[:, 1]
    auc = float(roc_auc_score(labels, proba))
    low, high = _auc_interval(labels, proba, groups, seed, resamples, confidence)
    fitted = _pipeline(seed).fit(texts, labels)
    giveaways, tells = _top_features(fitted, texts, labels, top)
    return Discrimination(
        auc=auc,
        low=low,
        high=high,
        folds=folds,
        simulated_turns=len(simulated),
        human_turns=len(human),
        giveaways=giveaways,
        human_tells=tells,
    )


def _auc_interval(
    labels: np.ndarray,
    proba: np.ndarray,
    groups: np.ndarray,
    seed: int,
    resamples: int,
    confidence: float,
) -> tuple[float | None, float | None]:
    """Percentile interval of the AUC over conversations resampled within each side."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    _, group_index = np.unique(groups, return_inverse=True)
    values = []
    sides = [np.unique(group_index[labels == side]) for side in (0, 1)]
    for _ in range(resamples):
        counts = np.zeros(group_index.max() + 1)
        for members in sides:
            drawn = rng.choice(members, size=members.size, replace=True)
            np.add.at(counts, drawn, 1)
        weights = counts[group_index]
        values.append(roc_auc_score(labels, proba, sample_weight=weights))
    if not values:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _top_features(
    fitted,
    texts: list[str],
    labels: np.ndarray,
    top: int,  # type: ignore[no-untyped-def]
) -> tuple[list[Feature], list[Feature]]:
    union, model = fitted.steps[0][1], fitted.steps[-1][1]
    names = union.get_feature_names_out()
    weights = model.coef_[0]
    present = union.transform(texts) > 0
    sim_rows, human_rows = present[labels == 1], present[labels == 0]
    sim_share = np.asarray(sim_rows.sum(axis=0)).ravel() / max(1, sim_rows.shape[0])
    human_share = np.asarray(human_rows.sum(axis=0)).ravel() / max(1, human_rows.shape[0])
    order = np.argsort(weights)

    def feature(j: int) -> Feature:
        kind, _, text = str(names[j]).partition("__")
        return Feature(
            feature=text,
            kind="char" if kind == "char" else "word",
            weight=float(weights[j]),
            simulated_share=float(sim_share[j]),
            human_share=float(human_share[j]),
        )

    giveaways = [feature(j) for j in order[::-1][:top] if weights[j] > 0]
    tells = [feature(j) for j in order[:top] if weights[j] < 0]
    return giveaways, tells
