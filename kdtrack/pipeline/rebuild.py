"""Data and models from parameters: what a config names, and what a finished run trained on and
trained, built again from its params. Shared by the pipeline (which trains) and the analysis
(which reads finished runs), so neither imports the other."""
from __future__ import annotations

import hashlib
from dataclasses import fields

import torch
from torch import nn

from kdtrack import tracking
from kdtrack.config import TrainConfig, from_params
from kdtrack.contract import INIT_DIGEST
from kdtrack.data import Splits, load_dataset
from kdtrack.errors import UserError
from kdtrack.models import build_model
from kdtrack.training.loop import pick_device, place


def load_data(config: TrainConfig) -> Splits:
    data = load_dataset(config.dataset, config.data_dir, config.download, config.train_size,
                        config.label_noise, config.seed, image_size=config.image_size, workers=config.workers,
                        tokenizer=config.tokenizer_folder, max_length=config.max_length)
    return data.to(pick_device())


def new_model(params: dict[str, str], data: Splits) -> nn.Module:
    """The architecture `params` (a run's or a config's, as strings) name, for `data`, on its device."""
    model = build_model(params["arch"], data.input_shape, data.num_classes, int(params["width"]),
                        int(params["depth"]), pretrained=params.get("pretrained", ""), seed=int(params["seed"]),
                        **data.extras)
    return place(model, data.y_train.device)


INIT = "checkpoints/init.pt"


def seeded_model(params: dict[str, str], data: Splits) -> nn.Module:
    """A training run's initial model: drawn after seeding torch with the run's seed."""
    torch.manual_seed(int(params["seed"]))
    return new_model(params, data)


def state_digest(state: dict) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values: equal exactly when two states are."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        values = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{values.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(values.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def initial_state(run, data: Splits) -> dict | None:
    """The weights training run `run` started from: its `checkpoints/init.pt`, or, where it kept
    only their digest (keep_checkpoints=last), drawn again from its params and seed and checked
    against it; None for a run that recorded neither (a student: it starts from its teacher's)."""
    if tracking.has_artifact(run.info.run_id, INIT):
        return tracking.load_state(run.info.run_id, INIT)
    expected = run.data.tags.get(INIT_DIGEST)
    if not expected:
        return None
    with torch.random.fork_rng(devices=[]):  # the caller's random stream goes on as if nothing was drawn
        state = {k: v.cpu() for k, v in seeded_model(run.data.params, data).state_dict().items()}
    if state_digest(state) != expected:
        raise UserError(f"run {run.info.run_id}'s initial weights, drawn again from its seed "
                        f"{run.data.params['seed']}, differ from those it trained from (tag {INIT_DIGEST}): "
                        "another torch version or data? Retrain it with keep_checkpoints=switch, which stores init.pt")
    return state


def rebuild_model(run, data: Splits) -> nn.Module:
    """A finished run's model, from its params and `checkpoints/final.pt`."""
    model = new_model(run.data.params, data)
    model.load_state_dict(tracking.load_state(run.info.run_id, "checkpoints/final.pt"))
    return model.eval()


def data_of(run) -> Splits:
    """The data a run trained on, loaded again from its params."""
    names = {f.name for f in fields(TrainConfig)}
    return load_data(from_params(TrainConfig, {k: v for k, v in run.data.params.items() if k in names}))
