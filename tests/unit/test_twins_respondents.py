"""Respondents: the shipped Twin-2K-500 copy, user personas, the Hugging Face layout, selections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personagraph.twins.respondents import (
    NumericRange,
    RespondentError,
    Selection,
    count,
    list_selections,
    load_hf_twin2k,
    load_respondents,
    load_selection,
    load_twin2k,
    load_user_personas,
    parse_select,
    save_selection,
    select,
)


@pytest.fixture(scope="module")
def pool():
    return load_twin2k()


def test_shipped_personas_load_with_kinds(pool) -> None:
    assert len(pool) == 2058
    first = pool.by_id["1"]
    assert first.profile.startswith("Female, age 30-49")
    assert first.attributes["region"] == "Midwest"
    assert first.attributes["big5_openness"] == 3.5
    assert first.attributes["loss_aversion"] is None  # missing stays missing
    assert pool.kinds["sex"] == "categorical" and pool.kinds["big5_openness"] == "numeric"
    assert pool.categories("age_band") == ["18-29", "30-49", "50-64", "65+"]


def test_filters_on_categories_and_ranges(pool) -> None:
    selection = Selection(
        where={"sex": ["female"], "age_band": ["18-29", "30-49"], "big5_openness": NumericRange(min=4)}
    )
    chosen = select(selection, pool)
    assert chosen and count(selection, pool) == len(chosen)
    for person in chosen:
        assert person.attributes["sex"] == "Female"
        assert person.attributes["age_band"] in ("18-29", "30-49")
        assert (person.attributes["big5_openness"] or 0) >= 4  # type: ignore[operator]
    # Counted by hand from the data.
    expected = sum(
        1
        for p in pool.respondents
        if p.attributes["sex"] == "Female" and p.attributes["age_band"] in ("18-29", "30-49")
        and (p.attributes["big5_openness"] or 0) >= 4  # type: ignore[operator]
    )  # fmt: skip
    assert len(chosen) == expected


def test_income_values_with_commas_and_politics(pool) -> None:
    selection = parse_select(["where:family_income=$100,000 or more;political_views=Very liberal|Liberal"])
    chosen = select(selection, pool)
    assert chosen
    assert {p.attributes["family_income"] for p in chosen} == {"$100,000 or more"}
    assert {p.attributes["political_views"] for p in chosen} <= {"Very liberal", "Liberal"}


def test_random_sample_is_reproducible_and_counted(pool) -> None:
    selection = parse_select(["where:region=South", "random:25:7"])
    first, second = select(selection, pool), select(selection, pool)
    assert [p.id for p in first] == [p.id for p in second]
    assert len(first) == 25 == count(selection, pool)
    assert {p.attributes["region"] for p in first} == {"South"}
    assert [p.id for p in select(parse_select(["where:region=South", "random:25:8"]), pool)] != [
        p.id for p in first
    ]


def test_by_ids_keeps_the_given_order(pool) -> None:
    chosen = select(parse_select(["ids:10,2,33"]), pool)
    assert [p.id for p in chosen] == ["10", "2", "33"]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["where:gender=Female"], "where: unknown attribute 'gender'; allowed: age_band"),
        (["where:sex=F"], "where.sex: unknown value(s) ['F']; allowed: Female, Male"),
        (["where:sex=1..2"], "where.sex: is categorical"),
        (["where:big5_openness=high"], "where.big5_openness: is numeric"),
        (["ids:1,99999"], "ids: unknown respondent ids 99999"),
        (["random:x"], "--select random: expected random:N[:SEED]"),
        (["random:0"], "n: Input should be greater than or equal to 1"),
        (["pick:3"], "--select: unknown kind 'pick'"),
    ],
)
def test_invalid_selections_name_the_field(pool, specs: list[str], message: str) -> None:
    with pytest.raises(RespondentError) as info:
        count(parse_select(specs), pool)
    assert message in str(info.value)


def test_selection_saves_and_reloads_as_json(pool, tmp_path: Path) -> None:
    folder = tmp_path / "selections" / "mina"
    selection = parse_select(["where:sex=Male;big5_neuroticism=..2.5", "random:10:3"])
    path = save_selection(selection, "young-men", folder)
    assert path.parent == folder.resolve() and json.loads(path.read_text())["n"] == 10
    assert list_selections(folder) == ["young-men"]
    again = load_selection("young-men", folder)
    assert again == selection
    assert [p.id for p in select(again, pool)] == [p.id for p in select(selection, pool)]
    assert parse_select(["saved:young-men"], saved_dir=folder) == selection
    with pytest.raises(RespondentError, match="saved: saved selections are not available"):
        parse_select(["saved:young-men"])
    for bad in ("../escape", "x\n", ".hidden"):
        with pytest.raises(ValueError, match="^selection name: "):
            save_selection(selection, bad, folder)
    with pytest.raises(RespondentError, match="saved selections: young-men"):
        load_selection("nope", folder)
    file_spec = parse_select([f"file:{path}", "random:3:1"])
    assert file_spec.n == 3 and file_spec.where == selection.where


def test_user_personas_csv_and_json(tmp_path: Path) -> None:
    csv = tmp_path / "mine.csv"
    csv.write_text('id,age,segment,profile\nu1,34,vip,"Loves hiking, 34."\nu2,51,new,Retired teacher.\n')
    pool = load_user_personas(csv)
    assert [p.id for p in pool.respondents] == ["u1", "u2"]
    assert pool.kinds == {"age": "numeric", "segment": "categorical"}
    assert [p.id for p in select(Selection(source=str(csv), where={"age": NumericRange(min=40)}), pool)] == [
        "u2"
    ]
    data = tmp_path / "mine.json"
    data.write_text(
        json.dumps({"personas": [{"person_id": 7, "profile": "Nurse in Busan.", "city": "Busan"}]})
    )
    loaded = load_respondents(str(data))
    assert loaded.by_id["7"].attributes == {"city": "Busan"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,profile\nA,hello\n", "no id column; expected one of id, twin_id"),
        ("id,bio\n1,hello\n", "missing the free-text 'profile' column"),
        ("id,profile\n1,\n", "row 1 (id 1): empty 'profile'"),
        ("id,profile\n1,a\n1,b\n", "duplicate respondent ids: 1"),
    ],
)
def test_user_personas_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(RespondentError) as info:
        load_user_personas(path)
    assert message in str(info.value)


def _hf_rows(pids: list[int], config: str) -> list[dict[str, object]]:
    if config == "wave_split":
        return [
            {"pid": pid, "wave1_3_persona_text": f"Waves 1-3 persona of {pid}.", "wave1_3_persona_json": "[]",
             "wave4_Q_wave1_3_A": "[]", "wave4_Q_wave4_A": "[]"}
            for pid in pids
        ]  # fmt: skip
    return [
        {
            "pid": pid,
            "persona_text": f"Full persona of {pid}.",
            "persona_summary": f"Summary {pid}.",
            "persona_json": "[]",
        }
        for pid in pids
    ]


def test_hf_parquet_snapshot_prefers_wave_split(tmp_path: Path) -> None:
    """Mimics the Hub layout `<config>/chunks/*.parquet` (columns as on the dataset card)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    for config in ("full_persona", "wave_split"):
        chunks = tmp_path / "Twin-2K-500" / config / "chunks"
        chunks.mkdir(parents=True)
        pd.DataFrame(_hf_rows([1, 2], config)).to_parquet(chunks / "chunk_000.parquet")
        pd.DataFrame(_hf_rows([3], config)).to_parquet(chunks / "chunk_001.parquet")
    pool = load_hf_twin2k(tmp_path / "Twin-2K-500")
    assert [p.id for p in pool.respondents] == ["1", "2", "3"]
    assert pool.by_id["1"].profile == "Waves 1-3 persona of 1."
    assert pool.by_id["1"].attributes["region"] == "Midwest"  # joined from the shipped copy by pid
    full = load_hf_twin2k(tmp_path / "Twin-2K-500", config="full_persona", text_field="persona_summary")
    assert full.by_id["2"].profile == "Summary 2."
    assert load_respondents(f"hf:{tmp_path / 'Twin-2K-500'}").by_id["3"].profile == "Waves 1-3 persona of 3."


def test_hf_jsonl_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "full.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _hf_rows([5, 6], "full_persona")) + "\n")
    pool = load_hf_twin2k(path, max_profile_chars=8)
    assert pool.by_id["5"].profile == "Full per"
    with pytest.raises(RespondentError, match="text_field: 'nope' not found; allowed: persona_json"):
        load_hf_twin2k(path, text_field="nope")
    with pytest.raises(RespondentError, match="config: 'waves' is not allowed"):
        load_hf_twin2k(path, config="waves")
    with pytest.raises(RespondentError, match="not found"):
        load_hf_twin2k(tmp_path / "missing")
