"""Tables with named columns (a CSV: data=csv): numeric columns imputed and standardized, text
columns one-hot over the categories of the train rows (dlcli.data.preprocess.TableEncoding); new
rows for `dl predict` come as a CSV with the same columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.data.modalities.rows import RowsModality
from dlcli.data.modality import register
from dlcli.data.new_inputs import id_values
from dlcli.data.preprocess import TableEncoding, encoding_from_json
from dlcli.data.record import numbers, texts
from dlcli.data.split import listed
from dlcli.data.tables import check_numbers
from dlcli.errors import UserError


@register
class TableModality(RowsModality):
    kind = "table"

    def accepts(self, raw) -> bool:
        return super().accepts(raw) and not isinstance(raw.features, np.ndarray)  # a pandas table

    def encode(self, raw, train_rows: np.ndarray, standardize: bool):
        encoding = TableEncoding.fit(raw.features, train_rows, standardize)
        features, _ = encoding.transform(raw.features)
        return features, encoding

    def check_record(self, record: dict, size: int, bad) -> None:
        features = record.get("features")
        keys = {"kind", "numeric", "fill", "center", "scale", "categorical", "categories"}
        if not isinstance(features, dict) or features.get("kind") != "table" or set(features) - keys:
            raise bad(f"features must be a table encoding ({', '.join(sorted(keys))})")
        numeric, categorical, categories = features.get("numeric"), features.get("categorical"), features.get("categories", [])
        if not texts(numeric) or not texts(categorical) or not isinstance(categories, list):
            raise bad("features.numeric and features.categorical must be lists of column names")
        for key in ("fill", "center", "scale"):
            if not numbers(features.get(key), len(numeric)):
                raise bad(f"features.{key} must list one number per numeric column")
        if len(categories) != len(categorical) or not all(texts(c) for c in categories):
            raise bad("features.categories must list the categories of each categorical column")
        if len(numeric) + sum(len(c) for c in categories) != size:
            raise bad("the numeric columns and the categories must make up input_shape")

    def new_rows(self, record: dict, table, name: str, id_column: str | None):
        import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)

        encoding = encoding_from_json(record["features"])
        missing = [c for c in encoding.columns if c not in table.columns]
        if missing:
            raise UserError(f"{name} lacks {len(missing)} column(s) the run was trained on: {listed(missing, 8)} "
                            f"(it needs {listed(encoding.columns, 12)})")
        table = table.copy()
        for column in encoding.numeric:
            values = table[column]
            if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                as_numbers = pd.to_numeric(values, errors="coerce")
                bad = values.notna() & as_numbers.isna()
                if bad.any():
                    row = int(np.argmax(bad.to_numpy())) + 2  # the file's line: 1-based, after the header
                    raise UserError(f"column '{column}' of {name} holds {values[bad].iloc[0]!r} (line {row}), "
                                    "and the run learned it as a number: fix the value or leave the cell empty")
                table[column] = as_numbers
            check_numbers(table[column].to_numpy(dtype=np.float64, na_value=np.nan), column, name, "fix it or leave the cell empty")
        features, unseen = encoding.transform(table)
        notes = [f"{count} value(s) of '{column}' not seen in training (new categories, or blanks where training had none): "
                 "encoded as a missing value" for column, count in unseen.items()]
        ids = id_values(table, name, id_column, record.get("id_columns", []))
        target = record["target"]["name"]
        ignored = [c for c in table.columns if c not in encoding.columns and c != target and (ids is None or c != ids[0])]
        if ignored:
            notes.append(f"columns the run was not trained on are ignored: {listed(ignored)}")
        return features, ids, notes

    def new_array(self, record: dict, source: Path, given: str, id_column: str | None):
        raise UserError(f"{given} is a .npy array, but the run was trained on a table with named columns: give a CSV file")

    def export_takes(self, record: dict, shape: list) -> str:
        return ("float32 rows of the encoded features (columns in preprocessing.features order: numeric columns "
                "imputed with 'fill' and standardized with 'center'/'scale', then one 0/1 column per category); "
                "the encoding is not included")
