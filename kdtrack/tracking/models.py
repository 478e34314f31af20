"""Models logged in MLflow by anyone (`runs:/<id>/<path>`, `models:/<name>/<version>`), loaded by
URI for `analyze` on a pair kdtrack did not train (kdtrack.pipeline.outside)."""
from __future__ import annotations

import logging

from mlflow.exceptions import MlflowException

from kdtrack.errors import UserError
from kdtrack.tracking.store import tracking_uri


def load_logged_model(uri: str, param: str):
    """The torch module MLflow logged at `uri`, on the CPU; a URI that names nothing, or a model
    of another flavour than MLflow's PyTorch one, is refused in one line naming `param`."""
    import mlflow.pytorch

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its warnings about pip versions are not the user's problem
    try:
        model = mlflow.pytorch.load_model(uri, map_location="cpu")
    except MlflowException as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "flavor" in first.lower() or "pytorch" in first.lower():
            raise UserError(f"{param}={uri!r} is not an MLflow PyTorch model (mlflow.pytorch.log_model); "
                            "allowed: a PyTorch model's URI, a Hugging Face folder, or <arch>:<state dict>") from None
        raise UserError(f"{param}={uri!r} names no model in tracking store {tracking_uri()!r}: {first}") from None
    except OSError as error:
        raise UserError(f"{param}={uri!r} names no model in tracking store {tracking_uri()!r}: "
                        f"{type(error).__name__}: {error}") from None
    return model
