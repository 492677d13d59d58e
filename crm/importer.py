"""Import a shop's own catalog from CSV or Excel: products, reviews, brand tone copy, promotions.

    personagraph crm import-catalog --catalog myshop --products products.xlsx [--brands brands.csv]
                                    [--reviews reviews.csv] [--promotions promotions.csv]

Templates with every column: data/crm/templates/*.csv. Lists inside a cell are separated by `;`
(brand copy lines by `|`, since copy may hold a `;`). Rows are numbered as a spreadsheet shows them
(the header is row 1). Every problem is reported at once, each naming the file, the row and the
column, e.g. `products.csv row 3, column price: 'abc' is not a whole number of won above 0`.

The catalog is written to PERSONAGRAPH_HOME/crm/catalogs/<name>/ in the shipped catalog's files; a
second import into the same name adds and replaces rows by id (the other rows stay), so a team can
send its reviews or a new promotion later. Brands must exist (in this import or an earlier one) for
every product, and products for every review and promotion. Channels and the ingredient glossary
come from the shipped catalog; an ingredient it does not know is added under its own name. The
Chroma index of the catalog is rebuilt on its next use (its collections carry the catalog's name).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from personagraph.crm.catalog import (
    CATALOG_NAME,
    CatalogError,
    catalogs_dir,
    crm_data_dir,
    load_catalog,
)

# Columns per table: (name, required). Optional columns may be absent or empty.
COLUMNS: dict[str, tuple[tuple[str, bool], ...]] = {
    "brands": (("id", True), ("name", True), ("name_en", False), ("positioning", False), ("introduction", True),
               ("tone", True), ("words_used", False), ("words_avoided", False), ("copy", True),
               ("allowed_wording", False)),
    "products": (("id", True), ("brand_id", True), ("name", True), ("name_en", False), ("category_ko", True),
                 ("category_en", False), ("key_ingredients", False), ("benefits", False), ("volume", True),
                 ("price", True), ("skin_types", False), ("usage", False)),
    "reviews": (("id", True), ("product_id", True), ("rating", True), ("skin_type", False), ("text", True)),
    "promotions": (("id", True), ("brand_id", True), ("title", True), ("product_ids", False),
                   ("discount_percent", False), ("offer", True), ("start", True), ("end", True), ("terms", False)),
}  # fmt: skip
MAX_ROWS = 20000
MAX_ERRORS = 30


class CatalogImportError(ValueError):
    """The files cannot be imported; `problems` name the file, row and column of each."""

    def __init__(self, problems: list[str]):
        shown = problems[:MAX_ERRORS]
        more = f"\n... and {len(problems) - MAX_ERRORS} more" if len(problems) > MAX_ERRORS else ""
        super().__init__("catalog import refused:\n" + "\n".join(shown) + more)
        self.problems = problems


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV (UTF-8, a BOM is fine) or Excel (.xlsx, first sheet) file as text cells."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CatalogImportError(
                [f"{path.name}: not UTF-8 text ({exc.reason}); save it as CSV UTF-8"]
            ) from None
        return [{str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
                for row in csv.DictReader(io.StringIO(text))]  # fmt: skip
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            sheet = load_workbook(path, read_only=True, data_only=True).worksheets[0]
        except Exception as exc:  # noqa: BLE001 - any unreadable workbook is the same answer
            raise CatalogImportError(
                [f"{path.name}: not a readable Excel workbook ({type(exc).__name__})"]
            ) from None
        rows = list(sheet.iter_rows(values_only=True))
        if not rows:
            return []
        header = [str(c).strip() if c is not None else "" for c in rows[0]]
        return [{h: _cell(v) for h, v in zip(header, row, strict=False) if h} for row in rows[1:]
                if any(v is not None and str(v).strip() for v in row)]  # fmt: skip
    raise CatalogImportError([f"{path.name}: unsupported file type {suffix!r}; allowed: .csv, .xlsx"])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()[:10]
    return str(value).strip()


def _items(text: str, separator: str = ";") -> list[str]:
    return [part.strip() for part in text.split(separator) if part.strip()]


class _Table:
    """One file being read: collects problems naming file, row and column."""

    def __init__(self, path: Path, kind: str, problems: list[str]):
        self.path, self.kind, self.problems = path, kind, problems
        self.rows = read_table(path)
        if len(self.rows) > MAX_ROWS:
            problems.append(f"{path.name}: {len(self.rows)} rows; the maximum is {MAX_ROWS}")
            self.rows = []
        columns = set(self.rows[0]) if self.rows else set()
        if not self.rows:
            problems.append(f"{path.name}: no data rows (a header row and at least one row)")
        allowed = [name for name, _ in COLUMNS[kind]]
        missing = [name for name, required in COLUMNS[kind] if required and name not in columns]
        for name in missing:
            problems.append(
                f"{path.name}: missing column {name!r} (columns of a {kind} file: {', '.join(allowed)})"
            )
        unknown = sorted(columns - set(allowed))
        for name in unknown:
            problems.append(f"{path.name}: unknown column {name!r}; allowed: {', '.join(allowed)}")
        if missing or unknown:
            self.rows = []

    def error(self, number: int, column: str, message: str) -> None:
        self.problems.append(f"{self.path.name} row {number}, column {column}: {message}")

    def each(self) -> list[tuple[int, dict[str, str]]]:
        """(spreadsheet row number, row) with the required cells present (a missing one is reported)."""
        out = []
        for number, row in enumerate(self.rows, start=2):
            empty = [name for name, required in COLUMNS[self.kind] if required and not row.get(name)]
            for name in empty:
                self.error(number, name, "required; the cell is empty")
            if not empty:
                out.append((number, row))
        return out

    def number(
        self, number: int, row: Mapping[str, str], column: str, low: int, high: int, what: str
    ) -> int | None:
        text = row.get(column, "").replace(",", "").replace("원", "").replace("%", "").strip()
        try:
            value = int(float(text)) if text and float(text).is_integer() else None
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            self.error(number, column, f"{row.get(column, '')!r} is not {what}")
            return None
        return value


def _load_existing(folder: Path) -> dict[str, Any]:
    if not (folder / "products.json").is_file():
        return {"brands": {}, "products": {}, "reviews": {}, "promotions": {}}
    catalog = load_catalog(folder)
    return {
        "brands": {b.id: b.model_dump(by_alias=True) for b in catalog.brands.values()},
        "products": {p.id: p.model_dump() for p in catalog.products.values()},
        "reviews": {r.id: r.model_dump() for r in catalog.reviews},
        "promotions": {p.id: p.model_dump(mode="json") for p in catalog.promotions},
    }


def import_catalog(
    name: str,
    *,
    products: Path | None = None,
    brands: Path | None = None,
    reviews: Path | None = None,
    promotions: Path | None = None,
) -> dict[str, Any]:
    """Validate the files and write (or update) the catalog `name`; returns the counts per table.
    CatalogImportError listing every problem (nothing is written then)."""
    if not CATALOG_NAME.match(name) or name == "default":
        raise CatalogImportError([f"catalog: {name!r} is not allowed; allowed: 1-40 of a-z, 0-9, _ and -, "
                                  "starting with a letter or digit, not 'default'"])  # fmt: skip
    if not any((products, brands, reviews, promotions)):
        raise CatalogImportError(
            ["files: give at least one of --products, --brands, --reviews, --promotions"]
        )
    folder = catalogs_dir() / name
    data = _load_existing(folder)
    shipped = load_catalog(crm_data_dir())
    ingredients = {k: v.model_dump() for k, v in shipped.ingredients.items()}
    by_name = {n.lower(): k for k, v in shipped.ingredients.items() for n in (v.name, *v.aliases)}
    problems: list[str] = []
    tables = {kind: _Table(path, kind, problems) for kind, path in
              (("brands", brands), ("products", products), ("reviews", reviews), ("promotions", promotions)) if path}  # fmt: skip
    if "brands" in tables:
        for number, row in tables["brands"].each():
            data["brands"][row["id"]] = {
                "id": row["id"], "name": row["name"], "name_en": row.get("name_en") or row["name"],
                "positioning": row.get("positioning", ""), "introduction": row["introduction"], "tone": row["tone"],
                "words_used": _items(row.get("words_used", "")), "words_avoided": _items(row.get("words_avoided", "")),
                "copy": _items(row["copy"], "|"),
                "allowed_wording": dict(_pair(tables["brands"], number, p) for p in _items(row.get("allowed_wording", ""))
                                        if "=" in p),
            }  # fmt: skip
    if "products" in tables:
        table = tables["products"]
        for number, row in table.each():
            price = table.number(number, row, "price", 1, 100_000_000, "a whole number of won above 0")
            if row["brand_id"] not in data["brands"]:
                table.error(number, "brand_id", f"{row['brand_id']!r} is not a brand of this catalog; "
                                                f"allowed: {', '.join(data['brands']) or '(none: import --brands)'}")  # fmt: skip
                continue
            if price is None:
                continue
            keys = []
            for item in _items(row.get("key_ingredients", "")):
                key = by_name.get(item.lower(), item)
                if key not in ingredients:
                    ingredients[key] = {"name": item, "aliases": [], "benefit": "", "benefit_en": ""}
                keys.append(key)
            data["products"][row["id"]] = {
                "id": row["id"], "brand_id": row["brand_id"], "name": row["name"],
                "name_en": row.get("name_en") or row["name"], "category": row.get("category_en") or row["category_ko"],
                "category_ko": row["category_ko"], "category_en": row.get("category_en") or row["category_ko"],
                "key_ingredients": keys, "benefits": _items(row.get("benefits", "")), "volume": row["volume"],
                "price": price, "skin_types": _items(row.get("skin_types", "")), "usage": row.get("usage", ""),
            }  # fmt: skip
    if "reviews" in tables:
        table = tables["reviews"]
        for number, row in table.each():
            rating = table.number(number, row, "rating", 1, 5, "a whole number from 1 to 5")
            product = data["products"].get(row["product_id"])
            if product is None:
                table.error(number, "product_id", f"{row['product_id']!r} is not a product of this catalog")
                continue
            if rating is not None:
                data["reviews"][row["id"]] = {"id": row["id"], "product_id": product["id"], "brand_id": product["brand_id"],
                                              "rating": rating, "skin_type": row.get("skin_type", ""), "text": row["text"]}  # fmt: skip
    if "promotions" in tables:
        table = tables["promotions"]
        for number, row in table.each():
            percent = None
            if row.get("discount_percent"):
                percent = table.number(
                    number, row, "discount_percent", 1, 99, "a whole percentage from 1 to 99"
                )
            days = [_date(table, number, row, column) for column in ("start", "end")]
            if row["brand_id"] not in data["brands"]:
                table.error(number, "brand_id", f"{row['brand_id']!r} is not a brand of this catalog")
                continue
            ids = _items(row.get("product_ids", ""))
            for pid in ids:
                if pid not in data["products"]:
                    table.error(number, "product_ids", f"{pid!r} is not a product of this catalog")
            if None in days or (row.get("discount_percent") and percent is None):
                continue
            if days[0] > days[1]:  # type: ignore[operator]
                table.error(number, "end", f"{row['end']!r} is before the start {row['start']!r}")
                continue
            data["promotions"][row["id"]] = {"id": row["id"], "brand_id": row["brand_id"], "title": row["title"],
                                             "product_ids": ids, "discount_percent": percent, "offer": row["offer"],
                                             "start": row["start"], "end": row["end"], "terms": row.get("terms", "")}  # fmt: skip
    if not data["products"] and not problems:
        problems.append("products: the catalog has no products; import --products")
    if problems:
        raise CatalogImportError(problems)
    staging = catalogs_dir() / f".{name}.importing"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    _write(staging, data, ingredients)
    try:
        load_catalog(staging)  # the catalog's own validation, before it replaces anything
    except CatalogError as exc:
        shutil.rmtree(staging)
        raise CatalogImportError([str(exc)]) from None
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    load_catalog.cache_clear()  # type: ignore[attr-defined]
    return {"catalog": name, "folder": str(folder), **{k: len(v) for k, v in data.items()}}


def _pair(table: _Table, number: int, text: str) -> tuple[str, str]:
    banned, _, allowed = text.partition("=")
    return banned.strip(), allowed.strip()


def _date(table: _Table, number: int, row: Mapping[str, str], column: str) -> date | None:
    try:
        return date.fromisoformat(row[column][:10])
    except ValueError:
        table.error(number, column, f"{row[column]!r} is not a date (YYYY-MM-DD)")
        return None


def _write(folder: Path, data: Mapping[str, Any], ingredients: Mapping[str, Any]) -> None:
    dump: Callable[[Any], str] = lambda value: yaml.safe_dump(value, allow_unicode=True, sort_keys=False)  # noqa: E731
    (folder / "brands.yaml").write_text(dump({"brands": list(data["brands"].values())}), encoding="utf-8")
    (folder / "products.json").write_text(json.dumps(list(data["products"].values()), ensure_ascii=False, indent=1),
                                          encoding="utf-8")  # fmt: skip
    (folder / "reviews.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                  for r in data["reviews"].values()), encoding="utf-8")  # fmt: skip
    (folder / "promotions.json").write_text(json.dumps(list(data["promotions"].values()), ensure_ascii=False,
                                                       indent=1), encoding="utf-8")  # fmt: skip
    (folder / "ingredients.yaml").write_text(dump({"ingredients": dict(ingredients)}), encoding="utf-8")
    shutil.copy(crm_data_dir() / "channels.yaml", folder / "channels.yaml")
