"""Stage `compose`: this generation's training set under the data policy.

`accumulate` (default): the previous training set plus this generation's verified rows,
so real and all synthetic data build up (which avoids model collapse); `replace`: the
seed set plus this generation's rows; `accumulate-subsample`: accumulate, then sample a
fixed budget keeping at least `min_seed_share` seed rows. Rows are deduplicated by
request (the older row wins), and a request equal to an evaluation request is an error:
decontamination is checked here, not assumed.

Reads data/<prev>/train.parquet, data/seed/train.parquet, data/<gen>/verdicts.parquet,
data/eval.parquet; writes data/<gen>/train.parquet.
"""

from __future__ import annotations

import pandas as pd

from flywheel import layout, stage, store
from flywheel.config import ComposeConfig, Config
from flywheel.toolcall.judge import LABEL_WRONG, BOTH_WRONG


def verified(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The rows the judge kept, with their final labels."""
    kept = verdicts[verdicts["final_label"].notna()].copy()
    corrected = kept["verdict"].isin([LABEL_WRONG, BOTH_WRONG]) & (kept["final_label"] != kept["label"])
    kept.loc[corrected, "source"] = "corrected"
    kept["label"] = kept["final_label"]
    kept["id"] = [store.row_id(r, l) for r, l in zip(kept["request"], kept["label"])]
    return kept[store.TRAINSET.names]


def compose(prev: pd.DataFrame, seed: pd.DataFrame, new: pd.DataFrame, cfg: ComposeConfig, *,
            seed_value: int) -> pd.DataFrame:
    base = seed if cfg.policy == "replace" else prev
    pool = pd.concat([base, new], ignore_index=True)
    pool = pool[~pool["request"].str.lower().str.split().str.join(" ").duplicated()]
    if cfg.policy == "accumulate-subsample" and len(pool) > cfg.budget > 0:
        is_seed = pool["source"] == "seed"
        n_seed = min(int(is_seed.sum()), max(round(cfg.min_seed_share * cfg.budget), 0))
        seed_part = pool[is_seed].sample(n=n_seed, random_state=seed_value)
        rest = pool.drop(seed_part.index)
        pool = pd.concat([seed_part, rest.sample(n=cfg.budget - n_seed, random_state=seed_value)])
        pool = pool.sort_index()
    return pool.reset_index(drop=True)


def check_decontaminated(train: pd.DataFrame, evals: pd.DataFrame, where: str) -> None:
    norm = lambda s: s.str.lower().str.split().str.join(" ")  # noqa: E731
    overlap = norm(train["request"]).isin(set(norm(evals["request"])))
    if overlap.any():
        first = train.loc[overlap.idxmax()]
        raise store.DataError(f"{where}: {int(overlap.sum())} training request(s) equal evaluation requests, "
                              f"first id {first['id']}: {first['request']!r}")


def main(cfg: Config, generation: str) -> None:
    prev_name = cfg.generation(generation).prev
    prev = store.read_table(layout.path(prev_name, layout.TRAIN), store.TRAINSET)
    seed = store.read_table(layout.path(layout.SEED, layout.TRAIN), store.TRAINSET)
    verdicts = store.read_table(layout.path(generation, layout.VERDICTS), store.VERDICTS)
    evals = store.read_table(layout.EVAL, store.EVALSET)
    new = verified(verdicts)
    check_decontaminated(new, evals, str(layout.path(generation, layout.VERDICTS)))
    train = compose(prev, seed, new, cfg.compose, seed_value=stage.stage_seed(cfg.seed, generation, "compose"))
    check_decontaminated(train, evals, str(layout.path(generation, layout.TRAIN)))
    store.write_table(train, layout.path(generation, layout.TRAIN), store.TRAINSET)
    stage.log("compose", f"{cfg.compose.policy}: {len(train)} rows {train['source'].value_counts().to_dict()} "
              f"({len(new)} verified rows new)")


if __name__ == "__main__":
    stage.run("compose", main)
