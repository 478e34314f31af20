"""Tiny models kdtrack did not train, written as their makers write them (no download): a Hugging
Face ViT folder (`save_pretrained`) and a BERT folder with a tokenizer built from a word list."""
from pathlib import Path


def tiny_vit(folder: Path, num_labels: int = 10, image_size: int = 28, seed: int = 0) -> str:
    """A one-layer ViT image classifier for MNIST-sized images, with an image processor that normalizes."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(image_size=image_size, patch_size=7, num_channels=1, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=32, num_labels=num_labels)
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(do_resize=False, image_mean=[0.5], image_std=[0.5]).save_pretrained(folder)
    return str(folder)


def tiny_bert(folder: Path, words: list[str], num_labels: int = 2) -> str:
    """A one-layer BERT sequence classifier whose tokenizer knows `words` and BERT's special tokens."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = folder / "vocab.txt"
    vocabulary.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocabulary))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
