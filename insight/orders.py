"""Orders, the product catalogue and a seeded, realistic order history.

The history has customer archetypes (VIP, loyal, regular, at-risk, dormant, new) with different
purchase rates, basket sizes, price levels, channels and activity windows over about two years. It
is generated with numpy in about a second and stored in SQLite under PERSONAGRAPH_HOME/insight
(nothing is committed to git); the same seed and anchor give the same data.
"""

from __future__ import annotations

import re
import sqlite3
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from personagraph.insight.settings import get_insight_settings
from personagraph.serving.settings import get_settings

Channel = Literal["app", "web", "store"]
CHANNELS: tuple[Channel, ...] = ("app", "web", "store")
DAY = 86_400.0


class Product(BaseModel):
    sku: str
    name_en: str
    name_ko: str
    category: str
    price: int  # KRW


# Ids become parts of Redis keys and show up in answers: full matches only, no ':' or spaces.
ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}")
CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}")
SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
# Characters a note never keeps: controls (other than whitespace) and bidirectional overrides,
# which can make a note display differently from what it says.
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


def _full_match(pattern: re.Pattern[str], value: str, max_chars: int) -> str:
    if not pattern.fullmatch(value) or ".." in value:
        raise ValueError(
            f"use 1-{max_chars} letters, digits, _ . - (starting with a letter or digit, no ..); got {value[:40]!r}"
        )
    return value


def clean_note(text: str | None, max_chars: int) -> str | None:
    """A customer's note as kept: controls and bidi overrides dropped, whitespace runs made one space;
    None when nothing is left. ValueError when longer than `max_chars` (INSIGHT_NOTE_MAX_CHARS)."""
    if text is None:
        return None
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or (unicodedata.category(ch) != "Cc" and ch not in _BIDI)
    )
    note = " ".join(kept.split())
    if len(note) > max_chars:
        raise ValueError(f"at most {max_chars} characters (INSIGHT_NOTE_MAX_CHARS); got {len(note)}")
    return note or None


class OrderItem(BaseModel):
    sku: str = Field(min_length=1, max_length=32)
    qty: int = Field(ge=1, description="Units; at most INSIGHT_ORDER_MAX_QTY.")
    price: int = Field(ge=0, description="Unit price in KRW; at most INSIGHT_ORDER_MAX_PRICE.")

    @field_validator("sku")
    @classmethod
    def _sku(cls, value: str) -> str:
        return _full_match(SKU, value, 32)

    @field_validator("qty")
    @classmethod
    def _qty(cls, value: int) -> int:
        limit = get_insight_settings().order_max_qty
        if value > limit:
            raise ValueError(f"at most {limit} (INSIGHT_ORDER_MAX_QTY)")
        return value

    @field_validator("price")
    @classmethod
    def _price(cls, value: int) -> int:
        limit = get_insight_settings().order_max_price
        if value > limit:
            raise ValueError(f"at most {limit:,} KRW (INSIGHT_ORDER_MAX_PRICE)")
        return value


class Order(BaseModel):
    """One order as it travels on the stream; every field bounded (INSIGHT_ORDER_* settings).

    The bounds keep one order from breaking the customer state: a time far outside any calendar, a
    total that overflows Redis' 64-bit counters, or thousands of item lines are rejected here with
    the field named, before anything is written.
    """

    order_id: str = Field(min_length=1, max_length=80)
    customer_id: str = Field(min_length=1, max_length=40)
    items: list[OrderItem] = Field(min_length=1, description="At most INSIGHT_ORDER_MAX_ITEMS lines.")
    amount: int = Field(ge=0, description="Order total in KRW; at most INSIGHT_ORDER_MAX_AMOUNT.")
    channel: Channel
    ts: float = Field(gt=0, allow_inf_nan=False, description="Order time, Unix seconds.")
    note: str | None = Field(
        default=None, description="The customer's free-text note (at most INSIGHT_NOTE_MAX_CHARS characters)."
    )

    @field_validator("order_id")
    @classmethod
    def _order_id(cls, value: str) -> str:
        return _full_match(ORDER_ID, value, 80)

    @field_validator("customer_id")
    @classmethod
    def _customer_id(cls, value: str) -> str:
        return _full_match(CUSTOMER_ID, value, 40)

    @field_validator("items", mode="before")
    @classmethod
    def _item_count(cls, value: Any) -> Any:
        # Counted before the lines are parsed, so a huge list costs nothing.
        limit = get_insight_settings().order_max_items
        if isinstance(value, list | tuple) and len(value) > limit:
            raise ValueError(f"at most {limit} item lines (INSIGHT_ORDER_MAX_ITEMS); got {len(value)}")
        return value

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: int) -> int:
        limit = get_insight_settings().order_max_amount
        if value > limit:
            raise ValueError(f"at most {limit:,} KRW (INSIGHT_ORDER_MAX_AMOUNT)")
        return value

    @field_validator("ts")
    @classmethod
    def _ts(cls, value: float, info: ValidationInfo) -> float:
        s = get_insight_settings()
        # "Now" is the reader's clock: a simulated one (issue 21) passes it as context={"now": t}.
        now = (info.context or {}).get("now")
        latest = (time.time() if now is None else float(now)) + s.order_max_future_s
        if not s.order_min_ts <= value <= latest:
            raise ValueError(
                f"must be between {_day(s.order_min_ts)} and {s.order_max_future_s:g} s from now "
                "(INSIGHT_ORDER_MIN_TS, INSIGHT_ORDER_MAX_FUTURE_S)"
            )
        return value

    @field_validator("note", mode="before")
    @classmethod
    def _note(cls, value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value  # a non-string is rejected by the type check
        return clean_note(value, get_insight_settings().note_max_chars)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def validation_problems(exc: ValidationError, limit: int = 3) -> str:
    """`field: problem; ...` of a pydantic error (the first `limit`), e.g. `items.0.qty: at most 100 ...`."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "order"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


_CATALOGUE_ROWS = [
    # sku, English, Korean, category, price (KRW)
    ("SK01", "Hydrating Toner", "수분 토너", "skincare", 18000),
    ("SK02", "Vitamin C Serum", "비타민C 세럼", "skincare", 32000),
    ("SK03", "Ceramide Cream", "세라마이드 크림", "skincare", 28000),
    ("SK04", "Daily Sunscreen SPF50", "데일리 선크림 SPF50", "skincare", 19000),
    ("SK05", "Retinol Night Ampoule", "레티놀 나이트 앰플", "skincare", 45000),
    ("SK06", "Cica Sheet Mask (10)", "시카 시트 마스크 10매", "skincare", 15000),
    ("SK07", "Gentle Foam Cleanser", "약산성 폼 클렌저", "skincare", 12000),
    ("SK08", "Premium Eye Cream", "프리미엄 아이크림", "skincare", 68000),
    ("MU01", "Cushion Foundation", "쿠션 파운데이션", "makeup", 29000),
    ("MU02", "Velvet Lip Tint", "벨벳 립 틴트", "makeup", 14000),
    ("MU03", "Eyeshadow Palette", "아이섀도 팔레트", "makeup", 36000),
    ("MU04", "Waterproof Mascara", "워터프루프 마스카라", "makeup", 16000),
    ("MU05", "Brow Pencil", "브로우 펜슬", "makeup", 9000),
    ("MU06", "Setting Powder", "세팅 파우더", "makeup", 22000),
    ("HC01", "Scalp Care Shampoo", "두피 케어 샴푸", "haircare", 17000),
    ("HC02", "Repair Hair Mask", "리페어 헤어 마스크", "haircare", 21000),
    ("HC03", "Hair Oil Serum", "헤어 오일 세럼", "haircare", 19000),
    ("FR01", "Signature Eau de Parfum", "시그니처 오 드 퍼퓸", "fragrance", 89000),
    ("FR02", "Body Mist", "바디 미스트", "fragrance", 15000),
    ("FR03", "Solid Perfume", "고체 향수", "fragrance", 24000),
    ("BD01", "Shea Body Lotion", "시어 바디 로션", "bodycare", 16000),
    ("BD02", "Hand Cream Trio", "핸드크림 3종 세트", "bodycare", 13000),
    ("BD03", "Body Scrub", "바디 스크럽", "bodycare", 18000),
    ("LS01", "Soy Candle", "소이 캔들", "lifestyle", 26000),
    ("LS02", "Reed Diffuser", "리드 디퓨저", "lifestyle", 34000),
    ("LS03", "Silk Pillowcase", "실크 베개 커버", "lifestyle", 49000),
    ("LS04", "Bath Bomb Set", "배스 밤 세트", "lifestyle", 21000),
    ("WL01", "Collagen Drink (14)", "콜라겐 드링크 14병", "wellness", 39000),
    ("WL02", "Herbal Tea Set", "허브티 세트", "wellness", 18000),
    ("WL03", "Travel Kit", "여행용 미니 키트", "wellness", 11000),
]
CATALOGUE: tuple[Product, ...] = tuple(
    Product(sku=s, name_en=e, name_ko=k, category=c, price=p) for s, e, k, c, p in _CATALOGUE_ROWS
)
PRODUCTS: dict[str, Product] = {p.sku: p for p in CATALOGUE}
PRICES = np.array([p.price for p in CATALOGUE], dtype=np.int64)


@dataclass(frozen=True)
class Archetype:
    """How one kind of customer buys; used by the history generator and the simulator."""

    name: str
    share: float  # of customers
    rate: float  # relative number of orders
    basket: float  # mean items per order
    premium: float  # >0 favours expensive products, <0 cheap ones
    channels: tuple[float, float, float]  # app, web, store
    active_days: tuple[float, float]  # how long ago the first order can be (min, max)
    last_days: tuple[float, float]  # how long ago the last order is (min, max)


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype("vip", 0.05, 12.0, 3.2, 1.0, (0.7, 0.2, 0.1), (300, 730), (0, 10)),
    Archetype("loyal", 0.20, 5.0, 2.2, 0.3, (0.5, 0.3, 0.2), (200, 730), (0, 30)),
    Archetype("regular", 0.25, 2.2, 1.7, 0.0, (0.35, 0.4, 0.25), (120, 730), (10, 90)),
    Archetype("at_risk", 0.15, 3.5, 2.0, 0.2, (0.4, 0.35, 0.25), (300, 730), (120, 260)),
    Archetype("dormant", 0.23, 0.45, 1.3, -0.5, (0.2, 0.4, 0.4), (400, 730), (300, 700)),
    Archetype("new", 0.12, 0.35, 1.5, -0.2, (0.5, 0.35, 0.15), (0, 45), (0, 45)),
)
ARCHETYPE_INDEX = {a.name: i for i, a in enumerate(ARCHETYPES)}


def product_weights(premium: float) -> np.ndarray:
    """Purchase probabilities over the catalogue for a price preference."""
    logp = np.log(PRICES / PRICES.mean())
    w = np.exp(premium * logp) * np.linspace(1.6, 0.7, len(PRICES))  # earlier SKUs are bestsellers
    return w / w.sum()


def customer_id(index: int) -> str:
    return f"C{index:05d}"


@dataclass
class History:
    """A generated order history: three tables plus how it was made."""

    customers: pd.DataFrame  # customer_id, archetype
    orders: pd.DataFrame  # order_id, customer_id, ts, amount, channel, n_items
    items: pd.DataFrame  # order_id, sku, qty, price
    anchor: float  # the history ends here (Unix seconds)
    seed: int


def generate_history(
    n_customers: int = 5000, n_orders: int = 100_000, *, seed: int = 7, anchor: float | None = None,
    days: float = 730.0,
) -> History:  # fmt: skip
    """Seeded history: every customer has at least one order; order counts follow the archetypes."""
    if n_orders < n_customers:
        raise ValueError(f"n_orders ({n_orders}) must be at least n_customers ({n_customers})")
    anchor = float(anchor if anchor is not None else np.floor(time.time() / DAY) * DAY)
    rng = np.random.default_rng(seed)
    shares = np.array([a.share for a in ARCHETYPES])
    arche = rng.choice(len(ARCHETYPES), size=n_customers, p=shares / shares.sum())
    rate = np.array([a.rate for a in ARCHETYPES])[arche] * rng.lognormal(0.0, 0.45, n_customers)
    counts = 1 + rng.multinomial(n_orders - n_customers, rate / rate.sum())

    first_lo = np.array([a.active_days[0] for a in ARCHETYPES])[arche]
    first_hi = np.array([a.active_days[1] for a in ARCHETYPES])[arche]
    last_lo = np.array([a.last_days[0] for a in ARCHETYPES])[arche]
    last_hi = np.array([a.last_days[1] for a in ARCHETYPES])[arche]
    last_ago = rng.uniform(last_lo, last_hi)
    first_ago = np.maximum(rng.uniform(first_lo, first_hi), last_ago + rng.uniform(0, 5, n_customers))
    first_ago = np.minimum(first_ago, days)
    last_ago = np.minimum(last_ago, first_ago)

    cust_of_order = np.repeat(np.arange(n_customers), counts)
    u = rng.random(len(cust_of_order))
    ago = last_ago[cust_of_order] + u * (first_ago - last_ago)[cust_of_order]
    # The first order of each customer is at its window's end (the most recent one).
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ago[starts] = last_ago
    ts = anchor - ago * DAY - rng.uniform(0, 3600 * 10, len(ago))
    order_arche = arche[cust_of_order]

    n_items_per_order = 1 + rng.poisson(np.array([a.basket - 1 for a in ARCHETYPES])[order_arche])
    item_order = np.repeat(np.arange(len(ts)), n_items_per_order)
    item_arche = order_arche[item_order]
    skus = np.empty(len(item_order), dtype=np.int64)
    for i, archetype in enumerate(ARCHETYPES):
        mask = item_arche == i
        skus[mask] = rng.choice(len(CATALOGUE), size=int(mask.sum()), p=product_weights(archetype.premium))
    qty = 1 + (rng.random(len(item_order)) < 0.12).astype(np.int64)
    line = PRICES[skus] * qty
    amount = np.bincount(item_order, weights=line, minlength=len(ts)).astype(np.int64)

    channel_p = np.array([a.channels for a in ARCHETYPES])[order_arche]
    channel = (rng.random(len(ts))[:, None] > np.cumsum(channel_p, axis=1)).sum(axis=1)
    channel = np.minimum(channel, 2)

    order_ids = np.array([f"H{i:07d}" for i in range(len(ts))])
    sku_names = np.array([p.sku for p in CATALOGUE])
    cust_ids = np.array([customer_id(i) for i in range(n_customers)])
    return History(
        customers=pd.DataFrame({"customer_id": cust_ids, "archetype": [ARCHETYPES[a].name for a in arche]}),
        orders=pd.DataFrame(
            {
                "order_id": order_ids,
                "customer_id": cust_ids[cust_of_order],
                "ts": ts,
                "amount": amount,
                "channel": np.array(CHANNELS)[channel],
                "n_items": n_items_per_order,
            }
        ),  # fmt: skip
        items=pd.DataFrame(
            {"order_id": order_ids[item_order], "sku": sku_names[skus], "qty": qty, "price": PRICES[skus]}
        ),
        anchor=anchor,
        seed=seed,
    )


def insight_dir() -> Path:
    path = get_settings().personagraph_home / "insight"
    path.mkdir(parents=True, exist_ok=True)
    return path


def history_path(n_customers: int, n_orders: int, seed: int) -> Path:
    return insight_dir() / f"history-{n_customers}c-{n_orders}o-s{seed}.sqlite"


def save_history(history: History, path: Path) -> Path:
    """Write the three tables and the metadata to one SQLite file (replaced atomically)."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with sqlite3.connect(tmp) as conn:
        history.customers.to_sql("customers", conn, index=False)
        history.orders.to_sql("orders", conn, index=False)
        history.items.to_sql("order_items", conn, index=False)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("anchor", repr(history.anchor)), ("seed", str(history.seed))]
        )
    tmp.replace(path)
    return path


def read_history(path: Path) -> History:
    with sqlite3.connect(path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return History(
            customers=pd.read_sql("SELECT * FROM customers", conn),
            orders=pd.read_sql("SELECT * FROM orders", conn),
            items=pd.read_sql("SELECT * FROM order_items", conn),
            anchor=float(meta["anchor"]),
            seed=int(meta["seed"]),
        )


def load_or_generate(
    n_customers: int = 5000, n_orders: int = 100_000, *, seed: int = 7, regenerate: bool = False
) -> History:
    """The stored history for these parameters, generated on first use."""
    path = history_path(n_customers, n_orders, seed)
    if path.is_file() and not regenerate:
        return read_history(path)
    history = generate_history(n_customers, n_orders, seed=seed)
    save_history(history, path)
    return history
