"""Models kdtrack did not train, as modules that map kdtrack's inputs to logits: a local Hugging
Face folder (sequence or image classification, `trust_remote_code` off: nothing in the folder
runs), or an architecture's name and a state dict loaded with `weights_only=True` (no pickled
object is ever executed). MLflow models are loaded by kdtrack.tracking.models."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from kdtrack.errors import UserError
from kdtrack.models import SIZES


class HuggingFaceClassifier(nn.Module):
    """A transformers classifier on kdtrack's inputs: token ids (its attention mask from the padding
    id) or images in [0, 1], normalized as the folder's image processor says; returns its logits."""

    def __init__(self, model: nn.Module, pad_id: int | None = None, mean=None, std=None):
        super().__init__()
        self.model, self.pad_id = model, pad_id
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", None if std is None else torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        if self.pad_id is not None:
            return self.model(input_ids=x, attention_mask=(x != self.pad_id).long()).logits
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.model(pixel_values=x).logits


class Exported(nn.Module):
    """A module MLflow 3 loads in its exported (traced) format, which refuses `eval()`, `train()` and
    `to()`: kept out of this module's children so that those calls stop here. It is already in
    inference mode; inputs go to its device, outputs come back to theirs."""

    def __init__(self, module):
        super().__init__()
        object.__setattr__(self, "inner", module)  # not a registered child

    def forward(self, x):
        device = next(iter(self.inner.parameters()), x).device
        return self.inner(x.to(device)).to(x.device)


def hf_config(folder: str, param: str):
    """The folder's transformers config, read without running any code it ships."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError) as error:
        raise UserError(f"{param}={folder!r} is not a Hugging Face model folder (config.json): "
                        f"{str(error).splitlines()[0]}") from None


def hf_classifier(folder: str, param: str, text: bool, input_shape: tuple[int, ...], num_classes: int,
                  pad_id: int | None) -> nn.Module:
    """The folder's sequence (`text`) or image classifier; its class count and, for images, its input
    channels and side are checked against the data's before its weights load."""
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification
    from transformers.models.auto import modeling_auto

    config = hf_config(folder, param)
    kind, names = (("sequence", modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES) if text
                   else ("image", modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES))
    if config.model_type not in names:
        raise UserError(f"{param}={folder!r} is a {config.model_type!r} model, which transformers has no {kind} "
                        f"classifier for; this data set needs a {kind} classifier")
    if config.num_labels != num_classes:
        raise UserError(f"{param}={folder!r} has {config.num_labels} classes; the data set has {num_classes}")
    if not text:
        check_image_input(folder, param, config, input_shape)
    loader = AutoModelForSequenceClassification if text else AutoModelForImageClassification
    try:
        model = loader.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError) as error:  # no weights file, or weights of another shape
        raise UserError(f"{param}={folder!r}: its weights do not load: {str(error).splitlines()[0]}") from None
    mean, std = (None, None) if text else normalization(folder)
    return HuggingFaceClassifier(model, pad_id if text else None, mean, std).eval()


def check_image_input(folder: str, param: str, config, input_shape: tuple[int, ...]) -> None:
    channels, side = getattr(config, "num_channels", None), getattr(config, "image_size", None)
    height, width = side if isinstance(side, (list, tuple)) else (side, side)  # some configs give (h, w)
    wanted = (channels or input_shape[0], height or input_shape[1], width or input_shape[2])
    if tuple(input_shape) != wanted:
        raise UserError(f"{param}={folder!r} takes images of shape {wanted}; the data set's are {tuple(input_shape)} "
                        "(kdtrack does not resize)")


def normalization(folder: str) -> tuple[list | None, list | None]:
    """The image processor's mean and std where it normalizes (kdtrack's images are already in [0, 1])."""
    path = Path(folder) / "preprocessor_config.json"
    if not path.exists():
        return None, None
    spec = json.loads(path.read_text())
    if not spec.get("do_normalize", False):
        return None, None
    return spec.get("image_mean"), spec.get("image_std")


def tokenizer_vocabulary(folder: str, param: str) -> tuple[dict, int | None]:
    """The folder's tokenizer's vocabulary and padding id: two folders tokenize alike when both agree."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError) as error:
        raise UserError(f"{param}={folder!r} has no tokenizer a text data set can be tokenized with: "
                        f"{str(error).splitlines()[0]}") from None
    return tokenizer.get_vocab(), tokenizer.pad_token_id


def architecture(spec: str) -> tuple[str, dict[str, int]]:
    """'mlp,width=32,depth=2' -> ('mlp', {'width': 32, 'depth': 2}) (config._source checked the form)."""
    name, *sizes = spec.split(",")
    return name, {key: int(value) for key, _, value in (size.partition("=") for size in sizes)}


def state_dict_model(spec: str, path: str, param: str, input_shape: tuple[int, ...], num_classes: int,
                     extras: dict) -> nn.Module:
    """The architecture `spec` names (kdtrack's registry first, then torchvision's, also as
    `torchvision.<name>`) built for the data, with the state dict at `path` loaded strictly."""
    name, sizes = architecture(spec)
    if name in SIZES:
        from kdtrack.models.build import build_model

        model = build_model(name, input_shape, num_classes, sizes.get("width", 0), sizes.get("depth", 0),
                            seed=sizes.get("seed", 0), **extras)
    else:
        model = torchvision_model(name.removeprefix("torchvision."), param, num_classes)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{param}: {path!r} is not a state dict torch.load(weights_only=True) reads: "
                        f"{str(error).splitlines()[0]}") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, AttributeError, TypeError) as error:
        detail = " ".join(str(error).split())[:300]
        raise UserError(f"{param}: the state dict in {path!r} does not fit {spec!r} built for {num_classes} classes "
                        f"and inputs of shape {tuple(input_shape)}: {detail}") from None
    return model.eval()


def torchvision_model(name: str, param: str, num_classes: int) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models(torchvision.models)
    if name not in known:
        raise UserError(f"{param}: {name!r} is neither a kdtrack architecture ({', '.join(SIZES)}) nor a torchvision "
                        "classification model (torchvision.models.list_models())")
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
