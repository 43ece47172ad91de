"""The student as an MLflow pyfunc model: requests in, the domain's answers out
(`toolcall`: calls as canonical JSON, "" when the answer is not a call list; `llm`: the
answer text). The student is either kind: the built-in one, or a Hugging Face model of
your own (its checkpoint with tokenizer and chat template; under LoRA, the adapter, and
the base model named by its digest and the artifact URI of the one copy the registry
holds of it).

Logged as code ("models from code"), not as a pickled object: loading the model runs
this file and reads the self-contained checkpoint (config, safetensors weights,
tokenizer) through `Student.load`, the same call the stages use; nothing is unpickled.
The domain's name and settings travel in the model's config. Explicit pip requirements:
requirement inference would import and probe the model, slow and not needed since the
versions are pinned.
"""

from __future__ import annotations

from flywheel import kernels

kernels.pin()  # a serving process answers on the stages' kernels (it loads torch after this)

import mlflow.models  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import pandas as pd  # noqa: E402


class StudentModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from flywheel import domain
        from flywheel.config import DomainConfig
        from flywheel.student import load

        self._domain = domain.get(DomainConfig.model_validate(context.model_config["domain"]))
        # A LoRA student is its adapter plus the base model, which the registry holds once
        # per digest (flows/lineage.py base_artifact) and the model's config names.
        base = context.artifacts.get("base")
        if base is None and context.model_config.get("base_uri"):
            from mlflow.artifacts import download_artifacts

            base = download_artifacts(artifact_uri=context.model_config["base_uri"])
        self._student = load(context.artifacts["model"], self._domain, base=base)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        outputs = self._student.answer(list(model_input["request"]), batch_size=256)
        return [self._domain.deployed_answer(o) for o in outputs]


def requirements(adapter: bool = False) -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "tokenizers", "pandas", "safetensors",
                                                  "pydantic", "httpx", "jinja2") + (("peft",) if adapter else ())]


mlflow.models.set_model(StudentModel())
