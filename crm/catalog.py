"""The CRM catalog: brands (tone material), products, reviews, promotions, ingredients, channels.

Read from `data/crm/` (or `CRM_DATA_DIR`), validated by pydantic, cached per directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from personagraph.serving.language import detect_language
from personagraph.serving.settings import get_settings

DATA_FILES = ("brands.yaml", "products.json", "reviews.jsonl", "promotions.json", "ingredients.yaml",
              "channels.yaml")  # fmt: skip


class CrmSettings(BaseSettings):
    """CRM-specific settings (environment: CRM_*)."""

    model_config = SettingsConfigDict(env_prefix="CRM_", env_file=".env", extra="ignore")

    data_dir: Path | None = Field(default=None, description="Catalog folder (default: DATA_DIR/crm).")
    cache: bool = Field(default=True, description="Cache results keyed on inputs and models.")
    timing_window: int = Field(default=20, ge=1, description="Runs in the rolling average of timings.")
    max_refine_rounds: int = Field(
        default=2, ge=0, description="Rewrites after a failed check (service default)."
    )
    draft_max_tokens: int = Field(
        default=400, ge=64, description="Token budget of the draft (service default)."
    )


def crm_settings() -> CrmSettings:
    return CrmSettings()


def crm_data_dir() -> Path:
    return crm_settings().data_dir or get_settings().data_dir / "crm"


def crm_home() -> Path:
    return get_settings().personagraph_home / "crm"


class Brand(BaseModel):
    id: str
    name: str
    name_en: str
    positioning: str
    introduction: str
    tone: str
    words_used: list[str]
    words_avoided: list[str]
    copy_examples: list[str] = Field(alias="copy")
    # Banned phrase -> the brand's own allowed wording, used by the repair step before its defaults.
    allowed_wording: dict[str, str] = Field(default_factory=dict)


def brand_copy(brand: Brand, lang: str, limit: int = 4) -> list[str]:
    """The brand's own copy written in `lang` (the first `limit` lines): the voice the drafter imitates."""
    return [line for line in brand.copy_examples if detect_language(line) == lang][:limit]


class Product(BaseModel):
    id: str
    brand_id: str
    name: str
    name_en: str
    category: str
    category_ko: str
    category_en: str
    key_ingredients: list[str]
    benefits: list[str]
    volume: str
    price: int = Field(gt=0)
    skin_types: list[str]
    usage: str


class Review(BaseModel):
    id: str
    product_id: str
    brand_id: str
    rating: int = Field(ge=1, le=5)
    skin_type: str
    text: str


class Promotion(BaseModel):
    id: str
    brand_id: str
    title: str
    product_ids: list[str]  # empty = every product of the brand
    discount_percent: int | None = None
    offer: str
    start: date
    end: date
    terms: str


class Ingredient(BaseModel):
    name: str
    aliases: list[str] = []
    benefit: str
    benefit_en: str


class Channel(BaseModel):
    label: str
    measure: Literal["chars", "bytes"]
    max: int = Field(gt=0)
    encoding: str = "cp949"
    title_max_chars: int | None = None
    note: str = ""


class Catalog(BaseModel):
    name: str = ""  # "" = the shipped (or CRM_DATA_DIR) catalog, else an imported one's name
    brands: dict[str, Brand]
    products: dict[str, Product]
    reviews: list[Review]
    promotions: list[Promotion]
    ingredients: dict[str, Ingredient]
    channels: dict[str, Channel]
    fingerprint: str

    def brand_products(self, brand_id: str) -> list[Product]:
        return [p for p in self.products.values() if p.brand_id == brand_id]

    def product_reviews(self, product_id: str) -> list[Review]:
        return [r for r in self.reviews if r.product_id == product_id]

    def ingredient_label(self, ingredient_id: str) -> str:
        item = self.ingredients.get(ingredient_id)
        return item.name if item else ingredient_id

    def promotion_for(self, product: Product) -> Promotion | None:
        """The event for a product: a promotion naming it first, else the brand-wide one (earliest start)."""
        own = [p for p in self.promotions if p.brand_id == product.brand_id and product.id in p.product_ids]
        wide = [p for p in self.promotions if p.brand_id == product.brand_id and not p.product_ids]
        for group in (own, wide):
            if group:
                return min(group, key=lambda p: p.start)
        return None


def product_fact_texts(catalog: Catalog, product: Product) -> dict[str, str]:
    """The product's facts as short texts, by kind (what is indexed and cited as evidence)."""
    brand = catalog.brands[product.brand_id]
    ingredients = ", ".join(
        f"{catalog.ingredient_label(i)}({catalog.ingredients[i].benefit})" if i in catalog.ingredients else i
        for i in product.key_ingredients
    )
    skin = ", ".join(SKIN_TYPES_KO.get(s, s) for s in product.skin_types)
    return {
        "info": f"{product.name} ({brand.name_en} {product.name_en}): {product.category_ko}, 용량 {product.volume}, "
        f"정가 {product.price:,}원. 추천 피부 타입: {skin}.",
        "ingredients": f"{product.name} 주요 성분: {ingredients}.",
        "benefits": f"{product.name} 기대 효과: {', '.join(product.benefits)}.",
        "usage": f"{product.name} 사용법: {product.usage}",
    }


def promotion_text(promotion: Promotion, product_names: list[str] | None = None) -> str:
    scope = ", ".join(product_names) if product_names else "전 제품"
    discount = f"{promotion.discount_percent}% 할인, " if promotion.discount_percent else ""
    return (
        f"{promotion.title}: {discount}{promotion.offer}. 대상: {scope}. 기간: {promotion.start.isoformat()} ~ "
        f"{promotion.end.isoformat()}. 조건: {promotion.terms}"
    )


SKIN_TYPES_KO = {
    "dry": "건성",
    "oily": "지성",
    "combination": "복합성",
    "sensitive": "민감성",
    "normal": "중성",
}


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in DATA_FILES:
        path = folder / name
        if path.exists():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class CatalogError(RuntimeError):
    """The catalog files are missing or invalid; the message names the file."""


def _parse(folder: Path, name: str) -> Any:
    """One catalog file, parsed (YAML, JSON or JSON lines by its suffix); CatalogError naming the file."""
    path = folder / name
    try:
        text = path.read_text(encoding="utf-8")
        if name.endswith(".jsonl"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except FileNotFoundError as exc:
        raise CatalogError(f"CRM catalog file missing: {path} (set CRM_DATA_DIR or DATA_DIR)") from exc
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        # ValueError covers bad JSON and YAML values such as an impossible date (2001-13-45).
        raise CatalogError(f"CRM catalog file {path} cannot be read: {exc}") from exc


@lru_cache(maxsize=4)
def _load(folder: Path) -> Catalog:
    raw = {name: _parse(folder, name) for name in DATA_FILES}
    try:
        return Catalog(
            name=folder.name if folder.parent == catalogs_dir().resolve() else "",
            brands={b["id"]: Brand.model_validate(b) for b in raw["brands.yaml"]["brands"]},
            products={p["id"]: Product.model_validate(p) for p in raw["products.json"]},
            reviews=[Review.model_validate(r) for r in raw["reviews.jsonl"]],
            promotions=[Promotion.model_validate(p) for p in raw["promotions.json"]],
            ingredients={
                k: Ingredient.model_validate(v) for k, v in raw["ingredients.yaml"]["ingredients"].items()
            },
            channels={k: Channel.model_validate(v) for k, v in raw["channels.yaml"]["channels"].items()},
            fingerprint=_fingerprint(folder),
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A file of the wrong shape (a list where a mapping belongs, a missing key, a bad field).
        raise CatalogError(f"CRM catalog in {folder} is invalid: {type(exc).__name__}: {exc}") from exc


CATALOG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_ACTIVE: ContextVar[str] = ContextVar("crm_catalog", default="")


def catalogs_dir() -> Path:
    """Where imported catalogs live, one folder each: PERSONAGRAPH_HOME/crm/catalogs/<name>/."""
    return crm_home() / "catalogs"


def list_catalogs() -> list[str]:
    folder = catalogs_dir()
    return (
        sorted(p.name for p in folder.iterdir() if (p / "products.json").is_file()) if folder.is_dir() else []
    )


def catalog_folder(name: str | None) -> Path:
    """The folder of a catalog by name ("" or "default": the shipped one); CatalogError naming the
    catalog and the ones there are when it does not exist."""
    if not name or name == "default":
        return crm_data_dir()
    if not CATALOG_NAME.match(name) or name not in list_catalogs():
        allowed = ", ".join(["default", *list_catalogs()])
        raise CatalogError(f"catalog: {name!r} is not an imported catalog; allowed: {allowed}")
    return catalogs_dir() / name


@contextmanager
def use_catalog(name: str | None) -> Iterator[None]:
    """Within the block (and the graph nodes it runs), `load_catalog()` reads the named catalog."""
    token = _ACTIVE.set(name or "")
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def load_catalog(folder: Path | None = None) -> Catalog:
    """The catalog of `folder` (default: the catalog in use, `use_catalog`, else the configured CRM
    data folder); cached per folder."""
    return _load((folder or catalog_folder(_ACTIVE.get())).resolve())


load_catalog.cache_clear = _load.cache_clear  # type: ignore[attr-defined]
