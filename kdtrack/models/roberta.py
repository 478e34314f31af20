"""RoBERTa sequence classifiers through transformers (paper §C.1, text settings).

Sizes (hidden, layers): Base is RoBERTa-Base (768, 12); the paper does not define Small and
Medium, so we take the widely used compact BERT sizes of Turc et al. (2019): Medium (512, 8) and
Small (512, 4). Heads are hidden / 64 and the feed-forward width is 4 x hidden, as in Base.
The sizes live in kdtrack.models.SIZES; `width` and `depth` override them (tests use tiny ones).
A `pretrained` checkpoint must have the sizes its run's params name, so that the params tell what
was trained (a Base checkpoint is refused for a Small student).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from kdtrack.errors import UserError


class SequenceClassifier(nn.Module):
    """Token ids (n, length), padded with `pad_id`, to class logits: the attention mask is derived
    from the padding, so the training loop handles text exactly like image tensors."""

    def __init__(self, num_classes: int, max_length: int, vocab_size: int, pad_id: int, hidden: int,
                 layers: int, pretrained: str = ""):
        super().__init__()
        from transformers import RobertaConfig, RobertaForSequenceClassification

        self.pad_id = pad_id
        if pretrained:  # a local checkout of a pretrained model: its own sizes, a new head
            self.net = _from_pretrained(pretrained, num_classes)
            sizes = (self.net.config.hidden_size, self.net.config.num_hidden_layers)
            if sizes != (hidden, layers):  # the run's params must say what was trained
                raise UserError(f"pretrained={pretrained!r} is a RoBERTa of hidden size {sizes[0]} and {sizes[1]} "
                                f"layers, not {hidden} and {layers}: pass width={sizes[0]} depth={sizes[1]}, "
                                "or the checkpoint of this architecture")
            positions = self.net.config.max_position_embeddings - pad_id - 1  # RoBERTa counts from pad_id + 1
            if max_length > positions or vocab_size > self.net.config.vocab_size:
                raise UserError(f"pretrained={pretrained!r} takes up to {positions} tokens of a "
                                f"{self.net.config.vocab_size}"
                                f"-token vocabulary; got max_length={max_length} and a tokenizer of {vocab_size}")
            return
        config = RobertaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                               max_position_embeddings=max_length + pad_id + 2, pad_token_id=pad_id,
                               num_labels=num_classes, type_vocab_size=1)
        self.net = RobertaForSequenceClassification(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits


def _from_pretrained(folder: str, num_classes: int) -> nn.Module:
    from transformers import RobertaForSequenceClassification

    if not (Path(folder) / "config.json").is_file():  # else transformers takes it for a hub name
        raise UserError(f"pretrained={folder!r} is not a local model folder: expected config.json and weights "
                        "as written by save_pretrained (nothing is downloaded)")
    try:  # a concrete class: a folder's own modelling code (auto_map) is never imported here
        return RobertaForSequenceClassification.from_pretrained(folder, num_labels=num_classes,
                                                                ignore_mismatched_sizes=True)
    except (OSError, ValueError, pickle.UnpicklingError) as error:  # weights that are a pickle of something else
        raise UserError(f"pretrained={folder!r} could not be loaded as a RoBERTa model: "
                        f"{str(error).strip().splitlines()[0]}") from None
