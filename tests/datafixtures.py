"""Tiny data sets written in the real published on-disk formats, for the loaders' tests."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = "good bad great awful fine poor nice terrible movie film plot acting news sport world business".split()


def write_cifar(root: Path, classes: int, per_class: int = 4, seed: int = 0) -> Path:
    """The python pickle layout torchvision downloads: cifar-10-batches-py/ or cifar-100-python/."""
    rng = np.random.default_rng(seed)
    if classes == 10:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        folder, key = root / "cifar-10-batches-py", b"labels"
    else:
        folder, names, key = root / "cifar-100-python", ["train", "test"], b"fine_labels"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        labels = np.repeat(np.arange(classes), per_class)
        batch = {b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), key: labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    return root


def _jpeg(path: Path, rng, size: tuple[int, int], gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size[1], size[0]) if gray else (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")


def write_tinyimagenet(root: Path, wnids=("n01443537", "n01629819", "n01641577"), per_class: int = 6,
                       val_per_class: int = 2, seed: int = 0) -> Path:
    """tiny-imagenet-200/: wnids.txt, train/<wnid>/images/<wnid>_<k>.JPEG (+ boxes file),
    val/images/val_<k>.JPEG and val/val_annotations.txt; one grayscale image, as in the real set."""
    rng = np.random.default_rng(seed)
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        for k in range(per_class):
            _jpeg(base / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", rng, (64, 64), gray=k == 0)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for k in range(val_per_class * len(wnids)):
        _jpeg(base / "val" / "images" / f"val_{k}.JPEG", rng, (64, 64))
        lines.append(f"val_{k}.JPEG\t{wnids[k % len(wnids)]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    _jpeg(base / "test" / "images" / "test_0.JPEG", rng, (64, 64))
    return root


def write_imagenet(root: Path, classes=("n01440764", "n01443537"), per_class: int = 5, seed: int = 0) -> Path:
    """imagenet/train/<wnid>/*.JPEG and imagenet/val/<wnid>/*.JPEG of assorted sizes."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", 2)):
        for wnid in classes:
            for k in range(count):
                _jpeg(root / "imagenet" / split / wnid / f"{wnid}_{k}.JPEG", rng, (40 + 7 * k, 36))
    return root


def text_rows(name: str, n: int, seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    from kdtrack.data.text import NUM_CLASSES, TEXT_COLUMNS

    def sentence():
        return " ".join(rng.choice(WORDS, rng.integers(3, 12)))
    rows = {column: [sentence() for _ in range(n)] for column in TEXT_COLUMNS[name]}
    rows["label"] = [k % NUM_CLASSES[name] for k in range(n)]
    return rows


def write_text_files(root: Path, name: str, n_train: int = 24, n_val: int = 9, fmt: str = "csv") -> Path:
    """<root>/<name>/train.<fmt> and validation.<fmt>, plus an unlabelled test split (label -1)."""
    import polars as pl

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    write = {"csv": "write_csv", "jsonl": "write_ndjson", "parquet": "write_parquet"}[fmt]
    for split, n in (("train", n_train), ("validation", n_val)):
        getattr(pl.DataFrame(text_rows(name, n, seed=n)), write)(folder / f"{split}.{fmt}")
    test = pl.DataFrame(text_rows(name, 4)).with_columns(pl.lit(-1).alias("label"))
    getattr(test, write)(folder / f"test.{fmt}")
    return root


def write_saved_dataset(root: Path, name: str, n_train: int = 24, n_val: int = 9) -> Path:
    """A Hugging Face DatasetDict written by `save_to_disk`, GLUE-style: validation_matched for MNLI."""
    from datasets import Dataset, DatasetDict

    val = "validation_matched" if name == "mnli" else "validation"
    DatasetDict({"train": Dataset.from_dict(text_rows(name, n_train, 1)),
                 val: Dataset.from_dict(text_rows(name, n_val, 2))}).save_to_disk(str(root / name))
    return root


def write_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer trained offline with `tokenizers`, saved as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=special))
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", pad_token="<pad>", unk_token="<unk>")
    fast.save_pretrained(str(folder))
    return folder


def write_pretrained(folder: Path, positions: int = 18) -> Path:
    """A tiny RoBERTa "pretrained" on nothing, saved with `save_pretrained` next to the tokenizer, as
    a local checkout of a hub model is; `positions` = max_position_embeddings."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(str(write_tokenizer(folder)))
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=1,
                           intermediate_size=64, max_position_embeddings=positions, pad_token_id=tokenizer.pad_token_id,
                           type_vocab_size=1)
    RobertaForMaskedLM(config).save_pretrained(str(folder))
    return folder
