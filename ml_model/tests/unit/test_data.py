"""Loading tables from files and SQL, with clear errors for what can go wrong."""

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy

from ml_model.config import DataConfig
from ml_model.data import file_format, load_data
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
