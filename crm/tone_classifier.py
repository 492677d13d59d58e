"""Which brand does a message sound like? TF-IDF character n-grams + logistic regression trained on
the brands' own tone material (introductions, tone notes, words used, official copy), never on
generated messages. Brand and product names are masked first, so it scores the voice, not the label.
Used to rank variants (services/crm.py) and by the CRM eval (brand_id_accuracy).
"""

from __future__ import annotations

import threading
from typing import Any

from personagraph.crm.catalog import Catalog, load_catalog


def mask_names(text: str, catalog: Catalog | None = None) -> str:
    """The message without brand and product names."""
    catalog = catalog or load_catalog()
    names = [n for b in catalog.brands.values() for n in (b.name, b.name_en)]
    names += [n for p in catalog.products.values() for n in (p.name, p.name_en)]
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, " ")
    return text


def train(catalog: Catalog) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, labels = [], []
    for brand in catalog.brands.values():
        samples = [brand.introduction, brand.tone, " ".join(brand.words_used), *brand.copy_examples]
        texts += samples
        labels += [brand.id] * len(samples)
    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    model.fit(texts, labels)
    return model


_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def classifier(catalog: Catalog) -> Any:
    """The classifier of this catalog (trained once per catalog fingerprint and process)."""
    with _LOCK:
        if catalog.fingerprint not in _MODELS:
            _MODELS[catalog.fingerprint] = train(catalog)
        return _MODELS[catalog.fingerprint]


def brand_score(message: str, brand_id: str, catalog: Catalog | None = None) -> float:
    """The probability that the message is in `brand_id`'s voice (0 when the brand is unknown)."""
    catalog = catalog or load_catalog()
    model = classifier(catalog)
    classes = list(model.classes_)
    if brand_id not in classes or not message.strip():
        return 0.0
    return float(model.predict_proba([mask_names(message, catalog)])[0][classes.index(brand_id)])
