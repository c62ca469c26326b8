"""The pitfall of a language model: a perplexity that stays at the unigram level, i.e. the model
predicts each token from how frequent it is and has not learnt to read the context. A text run
records the unigram perplexity of its training tokens in its summary (dlcli.data.ngram); the
model's best validation perplexity is set beside it. Registered with the other checks
(dlcli.diagnostics.checks)."""

from __future__ import annotations

from dlcli.diagnostics.checks import Facts, check
from dlcli.diagnostics.other_models import other_models
from dlcli.diagnostics.report import Finding, fmt


@check("unigram_level", unless=("lr_too_high",), thresholds={
    # the best validation perplexity within 5% of the unigram perplexity (or above it): the context
    # the model reads has bought it next to nothing over token frequencies alone
    "ratio": 0.95,
})
def unigram_level(f: Facts, t: dict) -> Finding | None:
    unigram = (f.summary.get("baseline") or {}).get("unigram_perplexity")
    model = f.summary.get("best_val_perplexity")
    if not isinstance(unigram, (int, float)) or not isinstance(model, (int, float)) or model < unigram * t["ratio"]:
        return None
    config = f.config or {}
    epochs = (config.get("trainer") or {}).get("epochs")
    lr = (config.get("optim") or {}).get("lr")
    return Finding("unigram_level", "warning", f.summary.get("best_epoch"),
                   {"val_perplexity": model, "unigram_perplexity": unigram},
                   f"the language model stays at the unigram level: validation perplexity {fmt(model)}, and predicting "
                   f"every token from its frequency alone scores {fmt(unigram)}, so it has not learnt to use the context",
                   f.advise(*([("trainer.epochs", epochs * 4)] if isinstance(epochs, int) else []),
                            *([("optim.lr", lr * 3)] if isinstance(lr, (int, float)) else []),
                            then=f"a model that reads the sequence ({other_models(f.config, 'lstm', 'gru', 'transformer')})"))
