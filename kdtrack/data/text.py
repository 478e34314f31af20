"""Text classification data (paper §C.1: MNLI, AG News, QQP, IMDB), read from local files and
tokenized by a transformers tokenizer from a local directory: these machines have no internet.

`<data_dir>/<dataset>/` holds either a Hugging Face `datasets` DatasetDict written by
`save_to_disk`, or files `train.<ext>` and `validation.<ext>` (or `test.<ext>`), ext one of csv,
json, jsonl, parquet. Columns are those of the Hugging Face hub copies (TEXT_COLUMNS) plus an
integer `label`. The evaluation split is the first of EVAL_SPLITS whose labels are all known
(GLUE's test splits are unlabelled, -1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from kdtrack.data.splits import Pool
from kdtrack.errors import UserError

TEXT_COLUMNS = {"mnli": ("premise", "hypothesis"), "qqp": ("question1", "question2"),
                "agnews": ("text",), "imdb": ("text",)}
NUM_CLASSES = {"mnli": 3, "qqp": 2, "agnews": 4, "imdb": 2}
EVAL_SPLITS = ("validation_matched", "validation", "test")
EXTENSIONS = {".csv": pl.read_csv, ".json": pl.read_json, ".jsonl": pl.read_ndjson, ".parquet": pl.read_parquet}


def _read_splits(folder: Path) -> dict[str, pl.DataFrame]:
    if (folder / "dataset_dict.json").exists():
        from datasets import load_from_disk

        saved = load_from_disk(str(folder))
        return {name: pl.from_arrow(split.data.table) for name, split in saved.items()}
    found = {}
    for path in sorted(folder.glob("*")):
        if path.suffix in EXTENSIONS and path.stem in ("train",) + EVAL_SPLITS and path.stem not in found:
            try:
                found[path.stem] = EXTENSIONS[path.suffix](path)
            except Exception as error:  # polars raises several types for unreadable files
                raise UserError(f"malformed data file {path}: {str(error).splitlines()[0]}") from None
    return found


def _check_columns(table: pl.DataFrame, name: str, where: str, classes: int) -> None:
    needed = TEXT_COLUMNS[name] + ("label",)
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise UserError(f"{where} lacks column {missing[0]!r}; {name} needs columns {', '.join(needed)}, "
                        f"found {', '.join(table.columns)}")
    labels = table["label"]
    if not labels.dtype.is_integer() or labels.min() < 0 or labels.max() >= classes:
        raise UserError(f"{where}: column 'label' must hold integers 0..{classes - 1} for {name}")


def load_text(name: str, data_dir: Path, tokenizer: str, max_length: int) -> Pool:
    folder = data_dir / name
    layout = (f"{folder}/ holding a datasets.save_to_disk DatasetDict, or train.<csv|json|jsonl|parquet> "
              f"and validation.<ext> (or test.<ext>) with columns {', '.join(TEXT_COLUMNS[name] + ('label',))}")
    splits = _read_splits(folder) if folder.is_dir() else {}
    classes = NUM_CLASSES[name]
    labelled = [s for s in EVAL_SPLITS if s in splits and "label" in splits[s].columns
                and splits[s].height and splits[s]["label"].min() >= 0]
    if "train" not in splits or not labelled:
        raise UserError(f"{name} not found under {folder}: expected {layout}")
    if not tokenizer:
        raise UserError(f"dataset={name!r} needs tokenizer=<a local directory with a transformers tokenizer> "
                        "(or pretrained=<a local model directory that has one>)")
    from transformers import AutoTokenizer

    if not Path(tokenizer).is_dir():  # else transformers takes it for a hub name
        raise UserError(f"tokenizer={tokenizer!r} is not a local folder (nothing is downloaded): expected the files "
                        "a transformers tokenizer's save_pretrained writes")
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise UserError(f"tokenizer={tokenizer!r} could not be loaded: {str(error).splitlines()[0]}") from None
    arrays = []
    for split in ("train", labelled[0]):
        table = splits[split]
        _check_columns(table, name, f"{folder} split {split!r}", classes)
        texts = [table[c].cast(pl.String).fill_null("").to_list() for c in TEXT_COLUMNS[name]]
        ids = tok(*texts, truncation=True, max_length=max_length, padding="max_length",
                  return_tensors="np")["input_ids"]
        arrays += [ids.astype(np.int64), table["label"].to_numpy().astype(np.int64)]
    extras = {"vocab_size": len(tok), "pad_id": tok.pad_token_id if tok.pad_token_id is not None else 1}
    return Pool(*arrays, classes, f"{folder} ({labelled[0]} as test)", extras)


def text_loader(name: str):
    def load(data_dir: Path, download: bool, tokenizer: str = "", max_length: int = 128, **_) -> Pool:
        return load_text(name, data_dir, tokenizer, max_length)
    load.__doc__ = f"{name}: see kdtrack.data.text."
    return load


# The readers kdtrack.data.DATASETS names, one per data set of TEXT_COLUMNS.
load_mnli, load_qqp, load_agnews, load_imdb = (text_loader(name) for name in ("mnli", "qqp", "agnews", "imdb"))
