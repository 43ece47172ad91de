"""What the MLflow registry stores per version of a LoRA student (SmolLM2-135M-Instruct),
and whether the registered versions load through MLflow pyfunc and answer.

    python -m bench.registry_size        # writes bench/registry_size.json

Two generations of a LoRA r 8 adapter (one training step each on 4 rows of the shipped
catalog; the weights' values do not matter here, their sizes do) are registered the way
`flywheel run` registers them (flows/lineage.py `log_student`), twice, each in its own
tracking store (SQLite + a local artifact folder):
- `by_digest`: the adapter only; the base is logged once per digest in a run of its own
  and each version names it (model_config `base_uri`), which is what the flow does;
- `copy`: each version carries the base beside its adapter, what it did before.
Then every registered version is loaded with `mlflow.pyfunc.load_model("models:/...")`
and asked two requests: the answers must be the ones the student gives when loaded by
the stages.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

from bench import ROOT, commit, cpu_model
from flywheel import store

OUT = ROOT / "bench" / "registry_size.json"
BASE = "models/smollm2-135m-instruct"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def measure() -> dict:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from flows.lineage import log_student
    from flywheel import domain
    from flywheel.config import DomainConfig, LoraConfig, StudentConfig, TrainConfig
    from flywheel.student import hf
    from flywheel.toolcall import calls, phrasings
    from tools.smollm2 import convert

    rng = random.Random(0)
    reqs = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, phrasings.SKILLS[i]))
            for i in range(4)]
    requests, labels = [r.text for r in reqs], [calls.dumps(r.calls) for r in reqs]
    dom = domain.get(DomainConfig())
    out: dict = {"commit": commit(), "cpu": cpu_model()}
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chdir(root)
        try:
            base = root / BASE
            if (ROOT / BASE).is_dir():
                base.parent.mkdir(parents=True)
                os.symlink(ROOT / BASE, base)
            else:
                convert(base)
            digest = json.loads((base / "SOURCE.json").read_text())["digest"]  # what tools.smollm2 recorded
            out["base_mb"] = round(_size(base.resolve()) / 2**20, 1)
            cfg = StudentConfig(model=BASE, max_length=2048,
                                lora=LoraConfig(r=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
            folders, expected = [], []
            for g in ("gen-000", "gen-001"):
                folder = root / "data" / g / "model"
                folder.mkdir(parents=True)
                hf.HFStudent.untrained(cfg, dom, folder)
                st = hf.HFStudent.load(folder, dom, trainable=True, seed=len(folders), threads=2)
                st.fit(requests, labels, student=cfg, seed=len(folders),
                       train=TrainConfig(steps=1, batch_size=4, lr=0.001, warmup_steps=0, log_every=1))
                st.save(folder)
                folders.append(folder)
                expected.append(hf.HFStudent.load(folder, dom).answer(requests[:2], batch_size=2))
            out["adapter_mb"] = round(_size(folders[0]) / 2**20, 2)
            for way in ("by_digest", "copy"):
                tracking = root / f"mlruns-{way}"
                mlflow.set_tracking_uri(f"sqlite:///{tracking}.db")
                exp = mlflow.create_experiment(way, artifact_location=(tracking / "artifacts").as_uri())
                mlflow.set_experiment(experiment_id=exp)
                client = MlflowClient()
                sizes, answers = [], []
                for g, folder in zip(("gen-000", "gen-001"), folders):
                    before = _size(tracking)
                    with mlflow.start_run(run_name=g):
                        info = log_student(client, exp, folder, root, domain=DomainConfig().model_dump(),
                                           base_md5=digest, registered_model=f"student-{way}",
                                           copy_base=way == "copy")
                    sizes.append(round((_size(tracking) - before) / 2**20, 1))
                    model = mlflow.pyfunc.load_model(f"models:/student-{way}/{info.registered_model_version}")
                    answers.append(list(model.predict(pd.DataFrame({"request": requests[:2]}))))
                out[way] = {"mb_added_per_version": sizes, "total_mb": round(_size(tracking) / 2**20, 1),
                            "answers": answers}
            deployed = [[dom.deployed_answer(a) for a in e] for e in expected]
            out["pyfunc_answers_match_the_stages"] = all(out[w]["answers"] == deployed for w in ("by_digest", "copy"))
        finally:
            os.chdir(home)
    return out


def main() -> int:
    result = measure()
    store.write_json(result, OUT)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
