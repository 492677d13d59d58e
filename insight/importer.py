"""A shop's order export (CSV) in: validated row by row, segmented, kept as a named insight dataset.

The file has one row per order line (a product in an order), as most shop back offices export it;
the header names the columns, in English or Korean (COLUMNS), in any order; other columns are
ignored (and reported). An order's lines share its order_id, customer_id, ordered_at and channel.

    imported = read_orders(data, "orders.csv")           # OrdersFileError lists "row 7, column qty: ..."
    model = segment_history(imported.history)            # the GMM segments of these customers
    save_dataset("myshop", imported, model)              # PERSONAGRAPH_HOME/insight/datasets/myshop.sqlite
    source = DatasetSource("myshop")                     # what the insight graph reads

Each row is checked with the bounds the live stream applies (insight.orders: ids, quantity, price,
order total, item lines, order time), so an imported dataset holds nothing the live state would
refuse. Rows are numbered as a spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import ValidationError

from personagraph.insight.orders import (
    CHANNELS,
    CUSTOMER_ID,
    ORDER_ID,
    History,
    Order,
    OrderItem,
    insight_dir,
    read_history,
    save_history,
)
from personagraph.insight.segments import SegmentModel, fit_segment_model, rfm_raw
from personagraph.insight.settings import InsightSettings
from personagraph.insight.source import InsightSource
from personagraph.insight.store import Snapshot, snapshot_from_history
from personagraph.serving.settings import get_settings

# column -> (required, names accepted in a header, what it holds). The README documents the same.
COLUMNS: dict[str, tuple[bool, tuple[str, ...], str]] = {
    "order_id": (True, ("order_id", "주문번호", "주문id"), "the order's id; its lines share it"),
    "customer_id": (True, ("customer_id", "고객id", "회원id", "고객번호"), "who ordered"),
    "ordered_at": (
        True,
        ("ordered_at", "주문일시", "주문일"),
        "when: 2025-03-14, 2025-03-14 13:05 or ISO 8601 with an offset (no offset: the import's time zone)",
    ),
    "sku": (True, ("sku", "상품코드", "품번"), "the product's code"),
    "qty": (True, ("qty", "quantity", "수량"), "units, a whole number from 1"),
    "unit_price": (True, ("unit_price", "price", "단가", "판매가"), "price of one unit in KRW (18000, 18,000 or 18,000원)"),
    "channel": (False, ("channel", "채널", "주문경로"), "app, web or store (앱, 웹, 매장); blank or absent: web"),
}  # fmt: skip
CHANNEL_WORDS: dict[str, str] = {"app": "app", "web": "web", "store": "store", "앱": "app", "모바일": "app",
                                 "웹": "web", "온라인": "web", "pc": "web", "매장": "store", "오프라인": "store"}  # fmt: skip
DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
DATASET_NAME_RULE = "1-40 lowercase letters, digits, _ or -, starting with a letter or digit"
MAX_BYTES = 200 * 1024 * 1024  # a larger export is split (or filtered to the period that matters) first
MAX_ROWS = 2_000_000
MAX_PROBLEMS = 20  # problems listed in an error; the count says how many there were
MIN_CUSTOMERS = 10  # two segments of five customers: fewer cannot be segmented meaningfully
_PRICE = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)\s*(?:원|krw)?", re.IGNORECASE)


class OrdersFileError(ValueError):
    """A file that cannot be imported; `problems` are "row N, column C: ..." lines (the first few)."""

    field = "file"  # what an HTTP error names

    def __init__(self, summary: str, problems: Iterable[str] = (), total: int | None = None):
        self.problems = list(problems)
        self.total = len(self.problems) if total is None else total
        listed = "\n".join(f"  {p}" for p in self.problems)
        more = (
            f"\n  ... and {self.total - len(self.problems)} more" if self.total > len(self.problems) else ""
        )
        super().__init__(summary + (f":\n{listed}{more}" if listed else ""))


class DatasetNotFoundError(LookupError):
    """No imported dataset by that name."""


class DatasetExistsError(ValueError):
    """The name is taken and the import did not ask to replace it."""

    field = "dataset"


@dataclass(frozen=True)
class ImportedOrders:
    """What a file held: the history built from its good rows, and what was left out."""

    history: History
    rows: int  # data rows read
    skipped: list[str] = field(default_factory=list)  # "row N, column C: ..." for each bad row left out
    ignored_columns: list[str] = field(default_factory=list)


def template_path() -> Path:
    """The example export shipped with the app: every column, English headers, a few orders."""
    return get_settings().data_dir / "insight" / "orders_template.csv"


def check_dataset_name(name: object) -> str:
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise ValueError(f"dataset: {name!r} is not a valid name; use {DATASET_NAME_RULE}")
    return name


def _header_map(header: list[str]) -> tuple[dict[str, int], list[str]]:
    """Column -> index in the file, and the file's columns that are not used."""
    wanted = {alias.lower(): col for col, (_, aliases, _) in COLUMNS.items() for alias in aliases}
    found: dict[str, int] = {}
    ignored: list[str] = []
    for i, raw in enumerate(header):
        name = raw.strip().lower().replace(" ", "_")
        col = wanted.get(name) or wanted.get(name.replace("_", ""))
        if col is None:
            ignored.append(raw.strip())
        elif col in found:
            raise OrdersFileError(f"header: column {col} appears twice ({header[found[col]]!r} and {raw!r})")
        else:
            found[col] = i
    missing = [c for c, (required, _, _) in COLUMNS.items() if required and c not in found]
    if missing:
        allowed = "; ".join(f"{c} ({'/'.join(COLUMNS[c][1][1:])})" for c in missing)
        raise OrdersFileError(
            f"header: missing column(s) {', '.join(missing)}; name them {allowed}. "
            f"Columns found: {', '.join(h.strip() for h in header) or 'none'}"
        )
    return found, ignored


def _decode(data: bytes) -> str:
    """UTF-8 (with or without a BOM), else CP949, which Korean Excel saves CSV in."""
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise OrdersFileError("file: not UTF-8 or CP949 text; save it as CSV UTF-8")


_DATE_PART = re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})\.?")


def _timestamp(value: str, zone: ZoneInfo) -> float:
    """Unix seconds of 2025-03-14, 2025.3.14, 2025/03/14 13:05, or ISO 8601 with an offset or Z."""
    text = value.strip()
    match = _DATE_PART.match(text)
    if match:  # the date part written the ISO way, so spreadsheet styles parse too
        year, month, day = match.groups()
        text = f"{year}-{int(month):02d}-{int(day):02d}" + text[match.end() :]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a date or time: {value.strip()[:40]!r}; use 2025-03-14 or 2025-03-14 13:05"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when.timestamp()


def _whole_number(value: str, what: str) -> int:
    text = value.strip()
    match = _PRICE.fullmatch(text)
    if not match:
        raise ValueError(f"{what}: a whole number is needed; got {text[:40]!r}")
    return int(match.group(1).replace(",", ""))


@dataclass
class _Line:
    row: int
    order_id: str
    customer_id: str
    ts: float
    channel: str
    item: OrderItem


def _line(row: int, cells: list[str], cols: dict[str, int], zone: ZoneInfo) -> _Line:
    """One row as an order line; ValueError("column: problem") for the first bad cell."""

    def cell(col: str) -> str:
        i = cols.get(col)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    values: dict[str, Any] = {}
    for col, pattern in (("order_id", ORDER_ID), ("customer_id", CUSTOMER_ID)):
        text = cell(col)
        if not pattern.fullmatch(text) or ".." in text:
            what = "empty" if not text else repr(text[:40])
            raise ValueError(f"{col}: {what}; use letters, digits, _ . - (starting with a letter or digit)")
        values[col] = text
    try:
        values["ts"] = _timestamp(cell("ordered_at"), zone)
    except ValueError as exc:
        raise ValueError(f"ordered_at: {exc}") from None
    channel = cell("channel").lower() or "web"
    if channel not in CHANNEL_WORDS:
        raise ValueError(f"channel: {cell('channel')[:20]!r}; use {', '.join(CHANNELS)} (앱, 웹, 매장)")
    raw = {"sku": cell("sku")}
    for col, key in (("qty", "qty"), ("unit_price", "price")):
        try:
            raw[key] = str(_whole_number(cell(col), col))
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    try:
        item = OrderItem.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        col = {"sku": "sku", "qty": "qty", "price": "unit_price"}.get(str(err["loc"][0]), "sku")
        raise ValueError(f"{col}: {str(err['msg']).removeprefix('Value error, ')}") from None
    return _Line(row, values["order_id"], values["customer_id"], values["ts"], CHANNEL_WORDS[channel], item)


_ORDER_FIELDS = {"ts": "ordered_at", "amount": "unit_price", "items": "sku", "channel": "channel",
                 "order_id": "order_id", "customer_id": "customer_id"}  # fmt: skip


def read_orders(
    data: bytes, filename: str = "file", *, timezone: str = "Asia/Seoul", skip_bad_rows: bool = False
) -> ImportedOrders:
    """The orders of a CSV export. OrdersFileError names the file, or each bad row and column.

    A bad row refuses the whole file unless `skip_bad_rows`, when it (and the rest of its order) is
    left out and listed in `skipped`. Naive times are in `timezone` (shop exports are local time).
    """
    if len(data) > MAX_BYTES:
        raise OrdersFileError(f"{filename}: {len(data):,} bytes; at most {MAX_BYTES:,} (split the export)")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise OrdersFileError(f"timezone: unknown time zone {timezone!r}; e.g. Asia/Seoul or UTC") from None
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise OrdersFileError(f"{filename}: empty; the first row must name the columns")
    cols, ignored = _header_map(header)
    problems: list[str] = []
    bad_orders: set[str] = set()
    lines: list[_Line] = []
    first: dict[str, _Line] = {}  # order_id -> its first line (the fields its other lines must repeat)
    rows = 0
    for row, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line (spreadsheets end with some)
        rows += 1
        if rows > MAX_ROWS:
            raise OrdersFileError(f"{filename}: more than {MAX_ROWS:,} rows (split the export)")
        try:
            line = _line(row, cells, cols, zone)
            head = first.setdefault(line.order_id, line)
            for col, mine, theirs in (("customer_id", line.customer_id, head.customer_id),
                                      ("ordered_at", line.ts, head.ts), ("channel", line.channel, head.channel)):  # fmt: skip
                if mine != theirs:
                    raise ValueError(f"{col}: differs from row {head.row} of the same order {line.order_id}")
        except ValueError as exc:
            problems.append(f"row {row}, column {exc}")
            order_id = cells[cols["order_id"]].strip() if cols["order_id"] < len(cells) else ""
            bad_orders.add(order_id)
            continue
        lines.append(line)
    orders = _orders(lines, bad_orders, problems)
    if problems and not skip_bad_rows:
        raise OrdersFileError(
            f"{filename}: {len(problems)} bad row(s), nothing imported (fix them, or import with "
            "--skip-bad-rows to leave them out)",
            problems[:MAX_PROBLEMS],
            len(problems),
        )
    if not orders:
        raise OrdersFileError(f"{filename}: no orders in it")
    return ImportedOrders(_history(orders), rows, problems, ignored)


def _orders(lines: list[_Line], bad_orders: set[str], problems: list[str]) -> list[Order]:
    """The orders of the good lines, each checked as the live stream checks it (total, lines, time)."""
    by_order: dict[str, list[_Line]] = {}
    for line in lines:
        if line.order_id not in bad_orders:
            by_order.setdefault(line.order_id, []).append(line)
    orders: list[Order] = []
    for order_id, group in by_order.items():
        head = group[0]
        try:
            orders.append(Order.model_validate({
                "order_id": order_id, "customer_id": head.customer_id, "channel": head.channel, "ts": head.ts,
                "items": [g.item.model_dump() for g in group],
                "amount": sum(g.item.qty * g.item.price for g in group),
            }))  # fmt: skip
        except ValidationError as exc:
            err = exc.errors()[0]
            col = _ORDER_FIELDS.get(str(err["loc"][0]), "order_id")
            what = (
                "order total"
                if err["loc"][0] == "amount"
                else ("item lines" if err["loc"][0] == "items" else "")
            )
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(
                f"row {head.row}, column {col}: {what + ' ' if what else ''}{msg} (order {order_id})"
            )
    return orders


def _history(orders: list[Order]) -> History:
    order_rows = [(o.order_id, o.customer_id, o.ts, o.amount, o.channel, len(o.items)) for o in orders]
    item_rows = [(o.order_id, i.sku, i.qty, i.price) for o in orders for i in o.items]
    frame = pd.DataFrame(
        order_rows, columns=["order_id", "customer_id", "ts", "amount", "channel", "n_items"]
    )
    customers = sorted(frame["customer_id"].unique())
    return History(
        customers=pd.DataFrame({"customer_id": customers, "archetype": [""] * len(customers)}),
        orders=frame,
        items=pd.DataFrame(item_rows, columns=["order_id", "sku", "qty", "price"]),
        anchor=float(frame["ts"].max()),  # recency is counted from the export's last order
        seed=0,
    )


def segment_history(history: History, components: int = 7, seed: int = 0) -> SegmentModel:
    """GMM segments of the history's customers (fewer components for a small shop: five customers
    each at least). OrdersFileError when there are too few customers to segment."""
    agg = history.orders.groupby("customer_id").agg(last=("ts", "max"), f=("ts", "size"), m=("amount", "sum"))
    if len(agg) < MIN_CUSTOMERS:
        raise OrdersFileError(f"file: {len(agg)} customers; segmenting needs at least {MIN_CUSTOMERS}")
    raw = rfm_raw(agg["last"].to_numpy(), agg["f"].to_numpy(), agg["m"].to_numpy(), history.anchor)
    return fit_segment_model(raw, components=min(components, len(agg) // 5), seed=seed)


def datasets_dir() -> Path:
    path = insight_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def dataset_path(name: str) -> Path:
    return datasets_dir() / f"{check_dataset_name(name)}.sqlite"


def save_dataset(
    name: str, imported: ImportedOrders, model: SegmentModel, *, source_file: str = "", replace: bool = False
) -> Path:
    """Write the dataset (tables, the model, where it came from); FileExistsError unless `replace`."""
    path = dataset_path(name)
    if path.exists() and not replace:
        raise DatasetExistsError(f"dataset: {name!r} exists; choose another name or replace it")
    tmp = path.with_name(f".{path.name}.importing")
    tmp.unlink(missing_ok=True)
    save_history(imported.history, tmp)
    with sqlite3.connect(tmp) as conn:
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("model", model.to_json()), ("source_file", Path(source_file).name), ("rows", str(imported.rows)),
            ("imported_at", datetime.now(UTC).isoformat(timespec="seconds")),
        ])  # fmt: skip
    conn.close()
    tmp.replace(path)
    return path


def dataset_meta(name: str) -> dict[str, str]:
    path = dataset_path(name)
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset: no imported dataset {name!r}")
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()


def list_datasets() -> list[dict[str, Any]]:
    """Every imported dataset: name, customers, orders, as_of (its last order), imported_at, source_file."""
    out = []
    for path in sorted(datasets_dir().glob("*.sqlite")):
        if not DATASET_NAME.fullmatch(path.stem):
            continue
        conn = sqlite3.connect(path)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            customers = conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
            orders = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        finally:
            conn.close()
        out.append({"name": path.stem, "customers": int(customers), "orders": int(orders),
                    "as_of": datetime.fromtimestamp(float(meta["anchor"]), UTC).isoformat(timespec="seconds"),
                    "imported_at": meta.get("imported_at", ""), "source_file": meta.get("source_file", "")})  # fmt: skip
    return out


class DatasetSource(InsightSource):
    """An imported dataset, read once and segmented with the model stored at import."""

    mode = "dataset"

    def __init__(self, name: str, settings: InsightSettings | None = None):
        super().__init__(settings)
        self.name = check_dataset_name(name)
        self.meta = dataset_meta(name)  # DatasetNotFoundError now, not at the first question
        self._model = SegmentModel.from_json(self.meta["model"])
        self._snap: Snapshot | None = None

    def read(self) -> Snapshot:
        if self._snap is None:
            snap = snapshot_from_history(read_history(dataset_path(self.name)), self._model)
            self._snap = dataclasses.replace(snap, source=f"dataset:{self.name}")
        return self._snap

    def model(self) -> SegmentModel | None:
        return self._model

    def describe(self) -> str:
        snap = self.read()
        as_of = datetime.fromtimestamp(snap.as_of, UTC).strftime("%Y-%m-%d")
        return f"imported dataset {self.name} ({len(snap.customers):,} customers, as of {as_of})"
