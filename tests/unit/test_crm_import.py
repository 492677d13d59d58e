"""Importing a shop's catalog from the template CSV/Excel files (CLI and UI helper), refusals naming
file, row and column, and running a message on the imported catalog beside the shipped one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from personagraph.crm.catalog import catalog_folder, list_catalogs, load_catalog
from personagraph.crm.importer import CatalogImportError, import_catalog
from personagraph.crm.inputs import CrmInputError, parse_request

TEMPLATES = Path(__file__).resolve().parents[2] / "data" / "crm" / "templates"


@pytest.fixture
def home(isolated_home: Path) -> Path:
    load_catalog.cache_clear()  # type: ignore[attr-defined]
    return isolated_home


def test_the_templates_import_and_sit_beside_the_shipped_catalog(home: Path) -> None:
    counts = import_catalog("myshop", products=TEMPLATES / "products.csv", brands=TEMPLATES / "brands.csv",
                            reviews=TEMPLATES / "reviews.csv", promotions=TEMPLATES / "promotions.csv")  # fmt: skip
    assert (
        counts["brands"] == 1
        and counts["products"] == 2
        and counts["reviews"] == 2
        and counts["promotions"] == 1
    )
    assert list_catalogs() == ["myshop"]
    mine = load_catalog(catalog_folder("myshop"))
    assert mine.name == "myshop" and mine.products["haru-01"].price == 25000
    assert mine.brands["haru"].allowed_wording == {"최고의": "하루결다운", "최초": "새로운"}
    assert mine.promotion_for(mine.products["haru-01"]).discount_percent == 20  # type: ignore[union-attr]
    assert (
        "lumiere" in load_catalog().brands and "haru" not in load_catalog().brands
    )  # the shipped one is untouched
    request = parse_request({"persona": 0, "brand": "haru", "product": "haru-01", "stage_index": 0,
                             "style_index": 0, "catalog": "myshop"})  # fmt: skip
    assert request.catalog == "myshop" and request.product == "haru-01"
    with pytest.raises(
        CrmInputError, match="catalog: 'nope' is not an imported catalog; allowed: default, myshop"
    ):
        parse_request({"persona": 0, "brand": "haru", "product": "haru-01", "stage_index": 0, "style_index": 0,
                       "catalog": "nope"})  # fmt: skip


def test_excel_works_and_a_second_import_adds_rows(home: Path) -> None:
    import_catalog("xl", brands=TEMPLATES / "brands.csv", products=TEMPLATES / "products.xlsx")
    assert set(load_catalog(catalog_folder("xl")).products) == {"haru-01", "haru-02"}
    import_catalog("xl", reviews=TEMPLATES / "reviews.csv")
    catalog = load_catalog(catalog_folder("xl"))
    assert len(catalog.reviews) == 2 and len(catalog.products) == 2


def _broken(tmp_path: Path, name: str, edit: Any) -> Path:
    lines = (TEMPLATES / name).read_text(encoding="utf-8").splitlines()
    path = tmp_path / name
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")
    return path


def test_a_missing_column_or_a_bad_price_is_refused_naming_row_and_column(home: Path, tmp_path: Path) -> None:
    no_price = _broken(
        tmp_path, "products.csv", lambda ls: [",".join(c for c in line.split(",")[:9]) for line in ls]
    )
    with pytest.raises(CatalogImportError) as missing:
        import_catalog("bad", brands=TEMPLATES / "brands.csv", products=no_price)
    assert "products.csv: missing column 'price'" in str(missing.value)
    bad_price = _broken(
        tmp_path, "products.csv", lambda ls: [ls[0], ls[1], ls[2].replace(",18000,", ",abc,")]
    )
    with pytest.raises(CatalogImportError) as wrong:
        import_catalog("bad", brands=TEMPLATES / "brands.csv", products=bad_price)
    assert "products.csv row 3, column price: 'abc' is not a whole number of won above 0" in str(wrong.value)
    with pytest.raises(CatalogImportError, match="row 2, column brand_id: 'haru' is not a brand"):
        import_catalog("bad", products=TEMPLATES / "products.csv")
    assert list_catalogs() == []  # nothing written


def test_cli_import_catalog(home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from personagraph.cli.main import main

    code = main(["crm", "import-catalog", "--catalog", "cli-shop", "--brands", str(TEMPLATES / "brands.csv"),
                 "--products", str(TEMPLATES / "products.csv")])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["products"] == 2
    assert main(["crm", "catalogs"]) == 0 and "cli-shop" in capsys.readouterr().out
    bad = tmp_path / "p.csv"
    shutil.copy(TEMPLATES / "products.csv", bad)
    bad.write_text(bad.read_text(encoding="utf-8").replace(",25000,", ",-5,"), encoding="utf-8")
    assert main(["crm", "import-catalog", "--catalog", "x", "--brands", str(TEMPLATES / "brands.csv"),
                 "--products", str(bad)]) == 2  # fmt: skip
    assert "p.csv row 2, column price: '-5'" in capsys.readouterr().err


def test_ui_import_from_uploads_admin_only(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personagraph.accounts.identity import Caller
    from personagraph.ui.crm_tab import import_uploads, render_variants

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    uploads = tmp_path / "gradio" / "u1"
    uploads.mkdir(parents=True)
    for name in ("products.csv", "brands.csv"):
        shutil.copy(TEMPLATES / name, uploads / name)
    admin, user = Caller("boss", "admin"), Caller("mina")
    status = import_uploads(
        admin, "ui-shop", str(uploads / "products.csv"), str(uploads / "brands.csv"), None, None
    )
    assert status.startswith("catalog **ui-shop**: 1 brands, 2 products")
    assert import_uploads(user, "x", str(uploads / "products.csv"), None, None, None).startswith(
        "error: catalog: only an admin"
    )
    outside = tmp_path / "products.csv"
    shutil.copy(TEMPLATES / "products.csv", outside)
    assert import_uploads(admin, "x", str(outside), None, None, None).startswith("error: products:")
    table = render_variants({"variants": [
        {"rank": 1, "hook": "Question", "status": "passed", "brand_score": 0.5, "message": "a|b\nc", "reasons": []},
        {"rank": 2, "hook": "As asked", "status": "failed", "brand_score": 0.1, "message": "d", "reasons": ["x"]},
    ]})  # fmt: skip
    assert table.splitlines()[0] == "| #1 Question | #2 As asked |" and "a\\|b<br>c" in table


def test_the_http_api_imports_a_catalog_for_admins_only(home: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from personagraph.accounts.store import AccountStore
    from personagraph.api.app import create_app
    from personagraph.services.crm import CrmService

    password = "a long enough password"
    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    accounts.add("alice", password)
    accounts.add("boss", password, role="admin")
    app = create_app(accounts, None, crm=CrmService(), ready_checks={})  # type: ignore[arg-type]
    client = TestClient(app, raise_server_exceptions=False)

    def token(user: str) -> dict[str, str]:
        signed = client.post("/api/session", json={"user_id": user, "password": password})
        return {"Authorization": f"Bearer {signed.json()['token']}"}

    alice, boss = token("alice"), token("boss")
    files = {kind: (f"my_{kind}.csv", (TEMPLATES / f"{kind}.csv").read_bytes(), "text/csv")
             for kind in ("products", "brands", "reviews", "promotions")}  # fmt: skip
    refused = client.post("/api/crm/catalogs", files=files, data={"catalog": "webshop"}, headers=alice)
    assert refused.status_code == 403 and list_catalogs() == []
    made = client.post("/api/crm/catalogs", files=files, data={"catalog": "webshop"}, headers=boss)
    assert made.status_code == 201, made.text
    assert made.json()["products"] == 2 and made.json()["catalog"] == "webshop"
    assert client.get("/api/crm/catalogs", headers=alice).json() == {"catalogs": ["default", "webshop"]}
    # A bad cell is named by file, row and column; nothing is written.
    bad = (TEMPLATES / "products.csv").read_text(encoding="utf-8").splitlines()
    header = bad[0].split(",")
    row = bad[1].split(",")
    row[header.index("price")] = "abc"
    broken = {"products": ("p.csv", "\n".join([bad[0], ",".join(row)]).encode(), "text/csv")}
    answer = client.post("/api/crm/catalogs", files=broken, data={"catalog": "other"}, headers=boss)
    assert answer.status_code == 400
    assert "row 2, column price" in answer.text and "other" not in list_catalogs()
    wrong_kind = {"products": ("p.txt", b"id,name\n", "text/plain")}
    answer = client.post("/api/crm/catalogs", files=wrong_kind, data={"catalog": "other"}, headers=boss)
    assert answer.status_code == 400 and "products" in answer.text and ".xlsx" in answer.text
    assert client.post("/api/crm/catalogs", files=files, headers=boss).status_code == 400  # no name
