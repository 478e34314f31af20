"""Data and models from parameters: what a config names, and what a finished run trained on and
trained, built again from its params. Shared by the pipeline (which trains) and the analysis
(which reads finished runs), so neither imports the other."""
from __future__ import annotations

from dataclasses import fields

from torch import nn

from kdtrack import tracking
from kdtrack.config import TrainConfig, from_params
from kdtrack.data import Splits, load_dataset
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


def rebuild_model(run, data: Splits) -> nn.Module:
    """A finished run's model, from its params and `checkpoints/final.pt`."""
    model = new_model(run.data.params, data)
    model.load_state_dict(tracking.load_state(run.info.run_id, "checkpoints/final.pt"))
    return model.eval()


def data_of(run) -> Splits:
    """The data a run trained on, loaded again from its params."""
    names = {f.name for f in fields(TrainConfig)}
    return load_data(from_params(TrainConfig, {k: v for k, v in run.data.params.items() if k in names}))
