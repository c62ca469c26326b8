"""The baseline a text model must beat: a bag of words (scikit-learn's CountVectorizer, with the
run's own tokenizer) and a linear model (logistic regression for classes, ridge for values), fitted
on the train rows and scored on the validation and test rows with the metrics the run reports.

It is written into the run's summary.json beside the model's numbers, so a user sees at once
whether word order and a network bought anything over counting words.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np

from dlcli.data.text_table import tokens_of


def bag_of_words_baseline(data) -> dict:
    """Scores of the baseline on `data`'s validation and test rows (dlcli.data.text_rows.TextData)."""
    from sklearn.feature_extraction.text import CountVectorizer  # noqa: PLC0415  (dl cache list runs without sklearn)
    from sklearn.linear_model import LogisticRegression, Ridge  # noqa: PLC0415  (dl cache list runs without sklearn)

    started = time.perf_counter()
    classes = data.task == "classification"
    what = "logistic regression" if classes else "ridge regression"
    named = {"name": f"bag of words ({data.encoding.tokens} counts) + {what}, fitted on the train rows", "label": "bag of words"}
    train = data.split.train
    if classes and len(np.unique(data.targets[train])) < 2:  # a tiny split: nothing for a classifier to tell apart
        return {**named, "skipped": "the train rows hold one class"}
    vectorizer = CountVectorizer(analyzer=partial(tokens_of, tokens=data.encoding.tokens, lowercase=data.encoding.lowercase))
    model = LogisticRegression(max_iter=1000) if classes else Ridge()
    model.fit(vectorizer.fit_transform(data.texts[train]), data.targets[train])
    scores = {}
    for part in ("val", "test"):
        rows = data.split.part(part)
        if len(rows):
            predicted = model.predict(vectorizer.transform(data.texts[rows]))
            scores[part] = _scores(data, predicted, data.targets[rows])
    return {**named, **scores, "seconds": round(time.perf_counter() - started, 3)}


def _scores(data, predicted: np.ndarray, targets: np.ndarray) -> dict:
    """The run's own metrics of the predictions (classes, or values as the model learns them)."""
    from sklearn import metrics  # noqa: PLC0415  (dl cache list runs without sklearn)

    from dlcli.engine.metrics import score  # noqa: PLC0415  (dl cache list runs without torch: dlcli.engine.metrics imports it)

    if data.task == "classification":
        labels = list(range(len(data.class_names)))
        return {"accuracy": float(metrics.accuracy_score(targets, predicted)),
                "macro_f1": float(metrics.f1_score(targets, predicted, labels=labels, average="macro", zero_division=0))}
    scaler = data.target_scaler
    return score("regression", np.asarray(predicted), targets, scaler.std, scaler.mean, scaler.transform_name)
