"""The CRM request: validated with pydantic; indices or names work for every choice.

An invalid value raises `CrmInputError`, whose message names the field and the allowed values. A
value longer than CRM_FIELD_MAX_CHARS characters is refused before it is looked up or echoed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from personagraph.crm.catalog import Catalog, CatalogError, catalog_folder, load_catalog
from personagraph.crm.definitions import (
    HOOKS,
    PERSONA_BY_NAME,
    PERSONAS,
    STAGE_BY_NAME,
    STAGES,
    STYLE_BY_NAME,
    STYLES,
)
from personagraph.serving.settings import get_settings

FIELDS = ("persona", "brand", "product", "stage_index", "style_index", "is_event", "channel", "top_k", "lang",
          "hook", "catalog")  # fmt: skip
MAX_TOP_K = 10


class CrmInputError(ValueError):
    """An invalid request value; `field` is the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class CrmRequest(BaseModel):
    """A resolved, valid request (ids and indices only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    persona: int = Field(ge=0, le=len(PERSONAS) - 1)
    brand: str
    product: str
    stage_index: int = Field(ge=0, le=len(STAGES) - 1)
    style_index: int = Field(ge=0, le=len(STYLES) - 1)
    is_event: int = Field(ge=0, le=1)
    channel: str = "sms"
    top_k: int = Field(default=3, ge=1, le=MAX_TOP_K)
    lang: Literal["ko", "en"] = "ko"
    hook: int = Field(default=0, ge=0, le=len(HOOKS) - 1)  # how a variant opens (0 = as the style asks)
    catalog: str = ""  # an imported catalog's name ("" = the shipped one)


def _key(value: Any) -> str:
    return re.sub(r"[\s_\-.]+", "", str(value)).lower()


def _listing(pairs: Iterable[tuple[Any, str]]) -> str:
    return ", ".join(f"{i} ({name})" for i, name in pairs)


def _index(field: str, value: Any, names: Mapping[str, Any], labels: list[str]) -> int:
    allowed = f"allowed: {_listing(enumerate(labels))}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CrmInputError(field, f"required; {allowed}")
    if isinstance(value, bool):
        raise CrmInputError(field, f"{value!r} is not allowed; {allowed}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        number = int(value)
        if 0 <= number < len(labels):
            return number
        raise CrmInputError(field, f"{number} is out of range; {allowed}")
    if isinstance(value, float) and value.is_integer() and 0 <= int(value) < len(labels):
        return int(value)
    lookup = {_key(k): v for k, v in names.items()}
    if isinstance(value, str) and _key(value) in lookup:
        return int(lookup[_key(value)].index)
    raise CrmInputError(field, f"{value!r} is not allowed; {allowed}")


def _brand(catalog: Catalog, value: Any) -> str:
    allowed = ", ".join(f"{b.id} ({b.name})" for b in catalog.brands.values())
    if value is None or str(value).strip() == "":
        raise CrmInputError("brand", f"required; allowed: {allowed}")
    key = _key(value)
    for brand in catalog.brands.values():
        if key in {_key(brand.id), _key(brand.name), _key(brand.name_en)}:
            return brand.id
    raise CrmInputError("brand", f"{value!r} is not a known brand; allowed: {allowed}")


def _product(catalog: Catalog, brand_id: str, value: Any) -> str:
    products = catalog.brand_products(brand_id)
    allowed = ", ".join(f"{p.id} ({p.name})" for p in products)
    if value is None or str(value).strip() == "":
        raise CrmInputError("product", f"required; allowed for brand {brand_id}: {allowed}")
    key = _key(value)
    for product in products:
        if key in {_key(product.id), _key(product.name), _key(product.name_en)}:
            return product.id
    # A number picks the brand's n-th product (0-based), like the other index fields.
    if key.isdigit() and int(key) < len(products):
        return products[int(key)].id
    raise CrmInputError("product", f"{value!r} is not a product of brand {brand_id}; allowed: {allowed}")


def _flag(value: Any) -> int:
    mapping = {"0": 0, "1": 1, "false": 0, "true": 1, "no": 0, "yes": 1}
    key = _key(value)
    if key not in mapping:
        raise CrmInputError("is_event", f"{value!r} is not allowed; allowed: 0, 1")
    return mapping[key]


def _top_k(value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if not 1 <= number <= MAX_TOP_K:
        raise CrmInputError("top_k", f"{value!r} is not allowed; allowed: an integer from 1 to {MAX_TOP_K}")
    return number


def check_field_lengths(raw: Mapping[str, Any]) -> None:
    """CrmInputError naming the first field (or field name) longer than CRM_FIELD_MAX_CHARS."""
    limit = get_settings().crm_field_max_chars
    for key, value in raw.items():
        if key is None:  # csv.DictReader keeps the values past the header's columns under None
            raise CrmInputError("row", "has more values than the header has columns")
        if len(str(key)) > limit:
            raise CrmInputError("row", f"a field name is {len(str(key))} characters; the maximum is {limit} "
                                       "(CRM_FIELD_MAX_CHARS)")  # fmt: skip
        if isinstance(value, str) and len(value) > limit:
            raise CrmInputError(
                str(key), f"is {len(value)} characters; the maximum is {limit} (CRM_FIELD_MAX_CHARS)"
            )
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise CrmInputError(str(key), f"must be a number or a short text; got {type(value).__name__}")


def parse_request(raw: Mapping[str, Any], catalog: Catalog | None = None) -> CrmRequest:
    """Validate a raw request (indices or names; strings from a CSV are fine) into a `CrmRequest`."""
    check_field_lengths(raw)
    name = str(raw.get("catalog") or "").strip().lower()
    name = "" if name == "default" else name
    if catalog is None:
        try:
            catalog = load_catalog(catalog_folder(name))
        except CatalogError as exc:
            raise CrmInputError("catalog", str(exc).removeprefix("catalog: ")) from None
    unknown = sorted(set(raw) - set(FIELDS) - {"row", "id"})
    if unknown:
        raise CrmInputError(unknown[0], f"unknown field; allowed fields: {', '.join(FIELDS)}")
    persona = _index("persona", raw.get("persona"), PERSONA_BY_NAME, [p.name for p in PERSONAS])
    brand = _brand(catalog, raw.get("brand"))
    product = _product(catalog, brand, raw.get("product"))
    stage = _index("stage_index", raw.get("stage_index"), STAGE_BY_NAME, [s.name for s in STAGES])
    style = _index("style_index", raw.get("style_index"), STYLE_BY_NAME, [s.name for s in STYLES])
    is_event = _flag(raw.get("is_event", 0) if raw.get("is_event") not in (None, "") else 0)
    channel = str(raw.get("channel") or "sms").strip().lower()
    if channel not in catalog.channels:
        raise CrmInputError("channel", f"{channel!r} is not allowed; allowed: {', '.join(catalog.channels)}")
    top_k = _top_k(raw["top_k"]) if raw.get("top_k") not in (None, "") else 3
    lang = str(raw.get("lang") or "ko").strip().lower()
    if lang not in ("ko", "en"):
        raise CrmInputError("lang", f"{lang!r} is not allowed; allowed: ko, en")
    hook = 0
    if raw.get("hook") not in (None, ""):
        hook = _index("hook", raw["hook"], {h.name.lower(): h for h in HOOKS}, [h.name for h in HOOKS])
    return CrmRequest(
        persona=persona, brand=brand, product=product, stage_index=stage, style_index=style,
        is_event=is_event, channel=channel, top_k=top_k, lang=lang, hook=hook, catalog=name,  # type: ignore[arg-type]
    )  # fmt: skip
