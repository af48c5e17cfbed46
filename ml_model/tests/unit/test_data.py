"""Loading tables from files and SQL, with clear errors for what can go wrong."""

import io
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy

from ml_model.config import CsvConfig, DataConfig
from ml_model.data import CSV_SEP, CSV_SEP_ORIGIN, file_format, load_data
from ml_model.errors import UserError


def test_penguins_csv_loads_without_unlabelled_rows(penguins_csv: Path) -> None:
    frame = load_data(DataConfig(source=str(penguins_csv), target="body_mass_g"))
    assert len(frame) == 342  # 344 penguins, 2 without any measurement
    assert frame["body_mass_g"].notna().all()
    assert frame["sex"].isna().sum() > 0  # missing values stay for the pipeline to impute


def test_parquet_and_declared_format(tmp_path: Path, penguins_csv: Path) -> None:
    frame = pd.read_csv(penguins_csv)
    frame.to_parquet(tmp_path / "p.parquet")
    frame.to_parquet(tmp_path / "p.data")
    loaded = load_data(DataConfig(source=str(tmp_path / "p.parquet"), target="species"))
    declared = load_data(
        DataConfig(source=str(tmp_path / "p.data"), format="parquet", target="species")
    )
    assert loaded.equals(declared)
    assert len(loaded) == 344


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("s3://b/k/a.csv.gz", "csv"),
        ("https://h/x.parquet?sig=1", "parquet"),
        ("a.PQ", "parquet"),
    ],
)
def test_format_from_name(name: str, fmt: str) -> None:
    assert file_format(name) == fmt


def test_errors_name_the_problem(tmp_path: Path, penguins_csv: Path) -> None:
    with pytest.raises(UserError, match="data file not found"):
        load_data(DataConfig(source=str(tmp_path / "none.csv"), target="y"))
    with pytest.raises(UserError, match="cannot tell the format"):
        load_data(DataConfig(source=str(tmp_path / "data.txt"), target="y"))
    with pytest.raises(UserError, match="target column 'weight' not in"):
        load_data(DataConfig(source=str(penguins_csv), target="weight"))
    with pytest.raises(UserError, match=r"columns not in .*\['colour'\]"):
        load_data(DataConfig(source=str(penguins_csv), target="species", drop_columns=["colour"]))
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(UserError, match="cannot read parquet"):
        load_data(DataConfig(source=str(broken), target="y"))


def test_sql_query(tmp_path: Path, penguins_csv: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = sqlalchemy.create_engine(url)
    pd.read_csv(penguins_csv).to_sql("penguins", engine)
    engine.dispose()
    frame = load_data(
        DataConfig(
            query="select * from penguins where island = 'Dream'", sql_url=url, target="species"
        )
    )
    assert set(frame["island"]) == {"Dream"}
    assert len(frame) == 124
    with pytest.raises(UserError, match=r"data\.query failed"):
        load_data(DataConfig(query="select * from nowhere", sql_url=url, target="species"))
    with pytest.raises(UserError, match=r"invalid data\.sql_url"):
        load_data(DataConfig(query="select 1", sql_url="notadb://x", target="species"))


def test_sql_query_with_the_url_in_an_environment_variable(
    tmp_path: Path, penguins_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = sqlalchemy.create_engine(url)
    pd.read_csv(penguins_csv).to_sql("penguins", engine)
    engine.dispose()
    monkeypatch.setenv("PENGUINS_DB_URL", url)
    config = DataConfig(
        query="select * from penguins", sql_url_env="PENGUINS_DB_URL", target="species"
    )
    frame = load_data(config)
    assert len(frame) == 344


@pytest.mark.parametrize(
    "url",
    ["notadb://u:s3cret@x/db", "postgresql//u:s3cret@x/db", "postgresql://u:s3cret@127.0.0.1:1/db"],
)
def test_sql_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(UserError) as caught:
        load_data(DataConfig(query="select 1", sql_url=url, target="y"))
    assert "s3cret" not in str(caught.value)


SEMICOLON_CSV = "id;weight;colour;y\n1;3,5;red;10\n2;n/a;blue;20\n3;4,25;NA;30\n"


def test_csv_dialect_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "eu.csv"
    path.write_text(SEMICOLON_CSV)
    csv = CsvConfig(sep=";", decimal=",", na_values=["n/a"])
    frame = load_data(DataConfig(source=str(path), target="y", csv=csv))
    assert list(frame.columns) == ["id", "weight", "colour", "y"]
    assert frame["weight"].dtype == "float64"
    assert frame["weight"].tolist()[::2] == [3.5, 4.25]
    assert frame["weight"].isna().sum() == 1  # the extra marker "n/a"
    assert frame["colour"].isna().sum() == 1  # pandas' own "NA"
    assert frame.attrs[CSV_SEP] == ";" and frame.attrs[CSV_SEP_ORIGIN] == "given"


@pytest.mark.parametrize("name", ["eu.csv", "eu.csv.gz"])
def test_separator_is_sniffed_when_not_given(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    pd.read_csv(io.StringIO(SEMICOLON_CSV), sep=";", dtype=str).to_csv(path, sep=";", index=False)
    frame = load_data(DataConfig(source=str(path), target="y"))
    assert list(frame.columns) == ["id", "weight", "colour", "y"]
    assert frame.attrs[CSV_SEP] == ";" and frame.attrs[CSV_SEP_ORIGIN] == "sniffed"


def test_tab_and_pipe_separators_are_sniffed(tmp_path: Path, penguins_csv: Path) -> None:
    penguins = pd.read_csv(penguins_csv)
    for sep in ("\t", "|"):
        path = tmp_path / "p.csv"
        penguins.to_csv(path, sep=sep, index=False)
        frame = load_data(DataConfig(source=str(path), target="species"))
        assert frame.attrs[CSV_SEP] == sep
        assert frame.shape == (344, 8)


def test_one_column_csv_blames_the_separator(tmp_path: Path) -> None:
    path = tmp_path / "colon.csv"
    path.write_text("id:weight:y\n1:3.5:10\n2:4.0:20\n")
    config = DataConfig(source=str(path), target="y", drop_columns=["id"])
    with pytest.raises(UserError) as caught:
        load_data(config)
    assert str(caught.value) == (
        f"{path} has one column (read with separator ',', the default, none sniffed) but the "
        "config names 2; "
        "set data.csv.sep to the file's separator (its header: 'id:weight:y')"
    )
    frame = load_data(config.model_copy(update={"csv": CsvConfig(sep=":")}))
    assert list(frame.columns) == ["id", "weight", "y"]


def test_wrong_encoding_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("city,y\nMálaga,1\nZürich,2\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"is not utf-8 text .*set data\.csv\.encoding"):
        load_data(DataConfig(source=str(path), target="y"))
    frame = load_data(DataConfig(source=str(path), target="y", csv=CsvConfig(encoding="latin-1")))
    assert frame["city"].tolist() == ["Málaga", "Zürich"]


def test_csv_options_only_go_with_csv(tmp_path: Path, penguins_csv: Path) -> None:
    pd.read_csv(penguins_csv).to_parquet(tmp_path / "p.parquet")
    config = DataConfig(source=str(tmp_path / "p.parquet"), target="species", csv=CsvConfig())
    with pytest.raises(UserError, match=r"data\.csv only applies to CSV sources"):
        load_data(config)
