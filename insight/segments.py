"""RFM segments: log-scaled standardised features, a Gaussian mixture, names from centroids.

`SegmentModel` is one fitted model (JSON-serialisable, so consumers in other processes share it
through Redis). `SegmentScorer` holds the current model behind one reference that a refit swaps
atomically, so scoring never stops while a background thread refits on a schedule.
`model_report` compares K-Means and GMM: BIC, silhouette and stability (adjusted Rand index between
refits on bootstrap samples).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture

DAY = 86_400.0

# Prototype centroids in standardised (recency, frequency, monetary) space; recency is "days since the
# last order", so positive = long ago. Components are matched to prototypes (Hungarian assignment).
PROTOTYPES: dict[str, tuple[float, float, float]] = {
    "vip": (-0.9, 1.6, 1.6),
    "loyal": (-0.6, 0.7, 0.6),
    "new": (-1.0, -1.2, -1.0),
    "at_risk": (0.6, 0.5, 0.5),
    "dormant": (1.2, -0.8, -0.8),
    "regular": (-0.1, -0.1, -0.1),
    "occasional": (0.3, -0.7, -0.6),
}
SEGMENT_LABELS: dict[str, dict[str, str]] = {
    "vip": {"en": "VIP", "ko": "VIP"},
    "loyal": {"en": "Loyal", "ko": "충성 고객"},
    "new": {"en": "New", "ko": "신규 고객"},
    "at_risk": {"en": "At-risk", "ko": "이탈 위험"},
    "dormant": {"en": "Dormant", "ko": "휴면 고객"},
    "regular": {"en": "Regular", "ko": "일반 고객"},
    "occasional": {"en": "Occasional", "ko": "간헐 구매"},
}
SEGMENTS: tuple[str, ...] = tuple(PROTOTYPES)
# Seven components by default: on the seeded history they have the lowest BIC and a steadier
# bootstrap ARI than five (`personagraph insight report`), and every segment name a marketer can
# use then exists.
DEFAULT_COMPONENTS = len(SEGMENTS)


def label(segment: str, lang: str = "en") -> str:
    return SEGMENT_LABELS.get(segment, {}).get(lang, segment)


def rfm_raw(last_ts: np.ndarray, frequency: np.ndarray, monetary: np.ndarray, now: float) -> np.ndarray:
    """(n, 3) recency days, frequency, monetary."""
    recency = np.maximum(0.0, (now - np.asarray(last_ts, dtype=float)) / DAY)
    return np.column_stack([recency, np.asarray(frequency, float), np.asarray(monetary, float)])


def log_features(raw: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(raw, 0.0))


@dataclass
class SegmentModel:
    """A fitted GMM over standardised log-RFM features, with a segment name per component."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    names: list[str]
    version: int = 1
    fitted_at: float = field(default_factory=time.time)
    n_fit: int = 0
    _gmm: GaussianMixture | None = field(default=None, repr=False)

    def features(self, raw: np.ndarray) -> np.ndarray:
        return (log_features(raw) - self.mean) / self.scale

    @property
    def gmm(self) -> GaussianMixture:
        if self._gmm is None:
            gmm = GaussianMixture(n_components=len(self.weights), covariance_type="full")
            gmm.weights_ = self.weights
            gmm.means_ = self.means
            gmm.covariances_ = self.covariances
            gmm.precisions_cholesky_ = np.array(
                [np.linalg.cholesky(np.linalg.inv(c)) for c in self.covariances]
            )
            gmm.converged_ = True
            gmm.n_iter_ = 0
            gmm.n_features_in_ = self.means.shape[1]
            self._gmm = gmm
        return self._gmm

    def predict(self, raw: np.ndarray) -> list[str]:
        """Segment names for rows of (recency days, frequency, monetary)."""
        if len(raw) == 0:
            return []
        components = self.gmm.predict(self.features(np.atleast_2d(raw)))
        return [self.names[c] for c in components]

    def centroids(self) -> dict[str, dict[str, float]]:
        """Each segment's centre in original units (geometric-mean-like, from log space)."""
        out = {}
        for name, centre in zip(self.names, self.means, strict=True):
            recency, freq, money = np.expm1(centre * self.scale + self.mean)
            out[name] = {"recency_days": float(recency), "frequency": float(freq), "monetary": float(money)}
        return out

    def to_json(self) -> str:
        return json.dumps({
            "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
            "means": self.means.tolist(), "covariances": self.covariances.tolist(), "names": self.names,
            "version": self.version, "fitted_at": self.fitted_at, "n_fit": self.n_fit,
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str | bytes) -> SegmentModel:
        data: dict[str, Any] = json.loads(text)
        return cls(
            mean=np.array(data["mean"]), scale=np.array(data["scale"]), weights=np.array(data["weights"]),
            means=np.array(data["means"]), covariances=np.array(data["covariances"]),
            names=list(data["names"]), version=int(data["version"]), fitted_at=float(data["fitted_at"]),
            n_fit=int(data.get("n_fit", 0)),
        )  # fmt: skip


def name_components(means_std: np.ndarray) -> list[str]:
    """Segment names for standardised component centres: the closest prototypes, one each."""
    # The five classic segments first; "regular" and "occasional" only when there are more components.
    names = list(PROTOTYPES)[: max(5, len(means_std))]
    protos = np.array([PROTOTYPES[n] for n in names])
    cost = ((means_std[:, None, :] - protos[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    assigned = [""] * len(means_std)
    for r, c in zip(rows, cols, strict=True):
        assigned[r] = names[c]
    return assigned


def fit_segment_model(
    raw: np.ndarray, *, components: int = DEFAULT_COMPONENTS, seed: int = 0, version: int = 1
) -> SegmentModel:
    """Fit a full-covariance GMM on standardised log-RFM and name its components."""
    if len(raw) < components * 5:
        raise ValueError(
            f"need at least {components * 5} customers to fit {components} segments, got {len(raw)}"
        )
    logs = log_features(raw)
    mean, scale = logs.mean(axis=0), logs.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    x = (logs - mean) / scale
    gmm = GaussianMixture(
        n_components=components, covariance_type="full", random_state=seed, n_init=2, reg_covar=1e-4
    ).fit(x)
    return SegmentModel(
        mean=mean, scale=scale, weights=gmm.weights_, means=gmm.means_, covariances=gmm.covariances_,
        names=name_components(gmm.means_), version=version, n_fit=len(raw), _gmm=gmm,
    )  # fmt: skip


class SegmentScorer:
    """The current model behind one reference: `score` always sees a whole model, `refit` swaps it.

    `start_refitting(load, interval_s)` refits in a daemon thread every interval from `load()`
    (the current raw RFM rows, or None to skip this round, e.g. when another process holds the refit
    lock) and calls `on_swap(model)` after each swap (e.g. to publish it and re-score everyone).
    """

    def __init__(
        self, model: SegmentModel | None = None, *, components: int = DEFAULT_COMPONENTS, seed: int = 0
    ):
        self._model = model
        self.components = components
        self.seed = seed
        self._lock = threading.Lock()  # serialises refits, never scoring
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refits = 0
        self.last_error: str | None = None

    @property
    def model(self) -> SegmentModel:
        model = self._model
        if model is None:
            raise RuntimeError("no segment model yet: fit one first (refit or load history)")
        return model

    @property
    def ready(self) -> bool:
        return self._model is not None

    def swap(self, model: SegmentModel) -> None:
        self._model = model  # one reference assignment: atomic for readers

    def score(self, raw: np.ndarray) -> list[str]:
        return self.model.predict(raw)

    def refit(self, raw: np.ndarray) -> SegmentModel:
        with self._lock:
            version = (self._model.version + 1) if self._model is not None else 1
            model = fit_segment_model(raw, components=self.components, seed=self.seed, version=version)
            self.swap(model)
            self.refits += 1
            return model

    def start_refitting(
        self,
        load: Callable[[], np.ndarray | None],
        interval_s: float,
        on_swap: Callable[[SegmentModel], None] | None = None,
    ) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    raw = load()
                    if raw is None:
                        continue
                    model = self.refit(raw)
                    if on_swap is not None:
                        on_swap(model)
                    self.last_error = None
                except Exception as exc:  # noqa: BLE001 - keep the old model and keep scoring
                    self.last_error = f"{type(exc).__name__}: {exc}"

        self._thread = threading.Thread(target=loop, name="segment-refit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


def kmeans_bic(x: np.ndarray, km: KMeans) -> float:
    """BIC of K-Means read as a spherical Gaussian mixture with one shared variance."""
    n, d = x.shape
    k = km.n_clusters
    variance = max(float(km.inertia_) / (n * d), 1e-12)
    log_likelihood = -0.5 * n * d * (np.log(2 * np.pi * variance) + 1.0)
    counts = np.bincount(km.labels_, minlength=k)
    log_likelihood += float(np.sum(counts[counts > 0] * np.log(counts[counts > 0] / n)))
    n_params = k * d + 1 + (k - 1)
    return float(-2 * log_likelihood + n_params * np.log(n))


def model_report(
    raw: np.ndarray, *, ks: tuple[int, ...] = (3, 4, 5, 6, 7), seed: int = 0, bootstraps: int = 3,
    sample: int = 2000, fit_sample: int = 3000,
) -> dict[str, Any]:  # fmt: skip
    """K-Means vs GMM for each k: BIC, silhouette (on a sample) and stability across bootstrap refits."""
    rng = np.random.default_rng(seed)
    if len(raw) > fit_sample:  # the comparison is made on a sample so the report takes seconds
        raw = raw[rng.choice(len(raw), size=fit_sample, replace=False)]
    logs = log_features(raw)
    x = (logs - logs.mean(axis=0)) / np.where(logs.std(axis=0) > 1e-9, logs.std(axis=0), 1.0)
    idx = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    rows: list[dict[str, Any]] = []
    for k in ks:
        if len(x) < 5 * k:
            continue
        gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed, reg_covar=1e-4).fit(
            x
        )
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
        gmm_labels, km_labels = gmm.predict(x), km.labels_
        gmm_boot, km_boot = [], []
        for b in range(bootstraps):
            sample_idx = rng.choice(len(x), size=len(x), replace=True)
            gmm_boot.append(
                GaussianMixture(n_components=k, covariance_type="full", random_state=seed + b + 1,
                                reg_covar=1e-4).fit(x[sample_idx]).predict(x)
            )  # fmt: skip
            km_boot.append(
                KMeans(n_clusters=k, n_init=2, random_state=seed + b + 1).fit(x[sample_idx]).predict(x)
            )
        for algorithm, labels, bic, boots in (
            ("gmm", gmm_labels, float(gmm.bic(x)), gmm_boot),
            ("kmeans", km_labels, kmeans_bic(x, km), km_boot),
        ):
            sil = float(silhouette_score(x[idx], labels[idx])) if len(set(labels[idx].tolist())) > 1 else 0.0
            aris = [adjusted_rand_score(labels, other) for other in boots]
            rows.append({
                "algorithm": algorithm, "k": k, "bic": round(bic, 1), "silhouette": round(sil, 4),
                "stability_ari": round(float(np.mean(aris)) if aris else 1.0, 4),
            })  # fmt: skip
    best = {
        algo: min((r for r in rows if r["algorithm"] == algo), key=lambda r: r["bic"])["k"]
        for algo in ("gmm", "kmeans")
        if any(r["algorithm"] == algo for r in rows)
    }
    return {"n": len(x), "rows": rows, "best_k_by_bic": best, "bootstraps": bootstraps}


def report_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"**K-Means vs GMM** on {report['n']:,} customers (standardised log-RFM; silhouette on a sample; "
        f"stability = mean adjusted Rand index of {report['bootstraps']} bootstrap refits vs the full fit)",
        "",
        "| algorithm | k | BIC (lower is better) | silhouette | stability (ARI) |",
        "|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['algorithm']} | {r['k']} | {r['bic']:,.1f} | {r['silhouette']:.3f} | {r['stability_ari']:.3f} |"
        )
    best = ", ".join(f"{a}: k={k}" for a, k in report.get("best_k_by_bic", {}).items())
    lines += ["", f"Lowest BIC: {best}."]
    return "\n".join(lines)
