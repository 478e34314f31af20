"""RoBERTa sequence classifiers through transformers (paper §C.1, text settings).

Sizes (hidden, layers): Base is RoBERTa-Base (768, 12); the paper does not define Small and
Medium, so we take the widely used compact BERT sizes of Turc et al. (2019): Medium (512, 8) and
Small (512, 4). Heads are hidden / 64 and the feed-forward width is 4 x hidden, as in Base.
The sizes live in kdtrack.models.SIZES; `width` and `depth` override them (tests use tiny ones).
"""
from __future__ import annotations

import torch
from torch import nn

class SequenceClassifier(nn.Module):
    """Token ids (n, length), padded with `pad_id`, to class logits: the attention mask is derived
    from the padding, so the training loop handles text exactly like image tensors."""

    def __init__(self, num_classes: int, max_length: int, vocab_size: int, pad_id: int, hidden: int,
                 layers: int, pretrained: str = ""):
        super().__init__()
        from transformers import RobertaConfig, RobertaForSequenceClassification

        self.pad_id = pad_id
        if pretrained:  # a local checkout of a pretrained model: its own sizes, a new head
            self.net = RobertaForSequenceClassification.from_pretrained(
                pretrained, num_labels=num_classes, ignore_mismatched_sizes=True)
            return
        config = RobertaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                               max_position_embeddings=max_length + pad_id + 2, pad_token_id=pad_id,
                               num_labels=num_classes, type_vocab_size=1)
        self.net = RobertaForSequenceClassification(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits
