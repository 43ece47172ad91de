"""Stage `compose`: this generation's training set under the data policy.

- `accumulate` (default): the previous training set plus this generation's verified
  rows, so real and all synthetic data build up (which avoids model collapse);
- `replace`: the seed set plus this generation's rows;
- `accumulate-subsample`: accumulate, then sample a fixed `budget`.
Under every policy `min_seed_share` is a floor on the share of seed (real) rows: synthetic
rows are dropped at random until it holds. Rows the previous probe found `mastered` can
be down-weighted (`mastered_weight`: the share of them kept; seed rows always stay);
`borderline` and failed rows are always kept. `dev_share` of the new verified rows (by a
hash of their id, so the same rows every time) go to a dev split the probe measures and
training never sees. Rows are deduplicated by request (the older row wins), and a request
equal to an evaluation request is an error: decontamination is checked, not assumed.

Reads data/<prev>/train.parquet, data/<prev>/probe.parquet, data/seed/train.parquet,
data/<gen>/verdicts.parquet, data/eval.parquet; writes data/<gen>/train.parquet and
data/<gen>/dev.parquet.
"""

from __future__ import annotations

import pandas as pd

from flywheel import decontam, layout, stage, store, tables
from flywheel.config import ComposeConfig, ConfigView
from flywheel.decontam import check_decontaminated
from flywheel.verdicts import WRONG


def verified(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The rows the judge kept, with their final labels."""
    kept = verdicts[verdicts["final_label"].notna()].copy()
    corrected = kept["verdict"].isin(WRONG) & (kept["final_label"] != kept["label"])
    kept.loc[corrected, "source"] = tables.CORRECTED
    kept["label"] = kept["final_label"]
    kept["id"] = [tables.row_id(r, lab) for r, lab in zip(kept["request"].tolist(), kept["label"].tolist())]
    return kept[tables.TRAINSET.names]


def split_dev(new: pd.DataFrame, share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to train on, dev rows): a stable share chosen by the row id's hash."""
    cut = share * 10_000
    dev = pd.Series([int(tables.row_id("dev", i)[:8], 16) % 10_000 < cut for i in new["id"].tolist()],
                    index=new.index, dtype=bool)
    return new[~dev], new[dev]


def compose(prev: pd.DataFrame, seed: pd.DataFrame, new: pd.DataFrame, cfg: ComposeConfig, *,
            seed_value: int, mastered: frozenset[str] = frozenset()) -> pd.DataFrame:
    base = seed if cfg.policy == "replace" else prev
    if cfg.mastered_weight < 1 and mastered:
        easy = base["id"].isin(mastered) & (base["source"] != "seed")
        keep = base[easy].sample(frac=cfg.mastered_weight, random_state=seed_value)
        base = base[~easy | base.index.isin(keep.index)]
    pool = pd.concat([base, new], ignore_index=True)
    pool = pool[~decontam.duplicated_requests(pool["request"])]
    if cfg.policy == "accumulate-subsample" and len(pool) > cfg.budget > 0:
        is_seed = pool["source"] == "seed"
        n_seed = min(int(is_seed.sum()), max(round(cfg.min_seed_share * cfg.budget), 0))
        seed_part = pool[is_seed].sample(n=n_seed, random_state=seed_value)
        rest = pool.drop(seed_part.index)
        pool = pd.concat([seed_part, rest.sample(n=cfg.budget - n_seed, random_state=seed_value)]).sort_index()
    return floor_seed_share(pool, cfg.min_seed_share, seed_value).reset_index(drop=True)


def floor_seed_share(pool: pd.DataFrame, floor: float, seed_value: int) -> pd.DataFrame:
    """Drop synthetic rows at random until seed rows are at least `floor` of the set."""
    is_seed = pool["source"] == "seed"
    n_seed = int(is_seed.sum())
    if floor <= 0 or n_seed == 0 or n_seed / len(pool) >= floor:
        return pool
    room = int(n_seed / floor) - n_seed
    kept = pool[~is_seed].sample(n=room, random_state=seed_value)
    return pool[is_seed | pool.index.isin(kept.index)]


def main(cfg: ConfigView, generation: str) -> None:
    cc = cfg.compose
    prev_name = cfg.generation(generation).prev
    prev = store.read_table(layout.path(prev_name, layout.TRAIN), tables.TRAINSET)
    probe = store.read_table(layout.path(prev_name, layout.PROBE), tables.PROBE)
    seed = store.read_table(layout.path(layout.SEED, layout.TRAIN), tables.TRAINSET)
    # Not the raw answers, student outputs and reasons: a verified row needs none of them.
    verdicts = store.read_table(layout.path(generation, layout.VERDICTS),
                                store.columns(tables.VERDICTS, *tables.TRAINSET.names, "verdict", "final_label"))
    evals = store.read_table(layout.EVAL, tables.EVALSET)
    new, dev = split_dev(verified(verdicts), cc.dev_share)
    check_decontaminated(pd.concat([new, dev]), evals, str(layout.path(generation, layout.VERDICTS)))
    mastered = frozenset(probe.loc[probe["category"] == tables.MASTERED, "id"])
    train = compose(prev, seed, new, cc, seed_value=stage.stage_seed(cfg.seed, generation, "compose"),
                    mastered=mastered)
    dev = dev[~decontam.request_keys(dev["request"]).isin(set(decontam.request_keys(train["request"])))]  # never trained on
    check_decontaminated(train, evals, str(layout.path(generation, layout.TRAIN)))
    store.write_table(train, layout.path(generation, layout.TRAIN), tables.TRAINSET)
    store.write_table(dev, layout.path(generation, layout.DEV), tables.TRAINSET)
    stage.log("compose", f"{cc.policy}: {len(train)} rows {train['source'].value_counts().to_dict()} "
              f"({len(new)} verified rows new, {len(dev)} held out as dev)")


if __name__ == "__main__":
    stage.run("compose", main)
