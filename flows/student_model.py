"""The student as an MLflow pyfunc model: requests in, calls (canonical JSON) out.

Logged as code ("models from code"), not as a pickled object: loading the model runs
this file and reads the weights from safetensors, nothing is unpickled.

Logged with its safetensors checkpoint and tokenizer as artifacts and explicit pip
requirements (requirement inference would import and probe the model: slow, and not
needed since the versions are pinned).
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import pandas as pd


class StudentModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from flywheel import student

        self._codec = student.Codec(student.load_tokenizer(context.artifacts["tokenizer"]))
        self._model = student.load(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        from flywheel import student
        from flywheel.toolcall import calls as C

        requests = list(model_input["request"])
        outputs = student.answer(self._model, self._codec, requests, batch_size=256)
        parsed = [C.parse(o) for o in outputs]
        return [C.dumps(p) if p is not None else "" for p in parsed]


def requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "tokenizers", "pandas", "safetensors")]


mlflow.models.set_model(StudentModel())
