"""MLflow models-from-code entry point for a pushforward synthesizer.

MLflow executes this file (it is passed as ``python_model=<path of this file>`` to
``mlflow.pyfunc.log_model``) instead of unpickling a Python object, so loading a registered
model runs only this reviewed code plus ``Synthesizer.load``, which reads JSON and safetensors.
The weights, transform and schema travel as the ``synthesizer`` artifact directory.

Loading is always on CPU: a model trained on a GPU worker samples anywhere. The request and
response contract is documented in :mod:`pfcore.registry.frames`.
"""

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class SynthesizerModel(PythonModel):
    """pyfunc wrapper: ``predict(DataFrame[n_rows, seed(, where, rebalance,
    conditional_method)] or seed rows)``."""

    def load_context(self, context: Any) -> None:
        from pfcore.synthesizer import Synthesizer

        self.synthesizer = Synthesizer.load(context.artifacts["synthesizer"], device="cpu")

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        # pd.DataFrame is a hint MLflow accepts without inferring a schema from it, so the
        # explicit signature logged with the model (requests or seed rows) is the one enforced.
        from pfcore.registry.frames import predict_frame

        return predict_frame(self.synthesizer, model_input, params)


mlflow.models.set_model(SynthesizerModel())
