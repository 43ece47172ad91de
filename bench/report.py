"""The markdown tables of docs/benchmarks.md, made from bench/results.json.

Only the part between the `bench:begin` and `bench:end` markers is rewritten; the prose
around it (what limits each number, what was profiled) is kept."""

from __future__ import annotations

from pathlib import Path



def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def summary_rows(m: dict) -> list[tuple[str, str, str, bool | None]]:
    """(measurement, result, target, met) per measurement present."""
    rows = []
    if "e2e" in m:
        e = m["e2e"]
        rows.append((f"1. `flywheel run`, {e['generations']} generation{'s' if e['generations'] > 1 else ''}",
                     f"{e['seconds'] / 60:.1f} min; peak {e['peak_tree_rss_mib']:,} MiB (process tree), "
                     f"{e['peak_process_rss_mib']:,} MiB (largest process)", "< 10 min", e["seconds"] < 600))
    if "overhead" in m:
        o = m["overhead"]
        rows.append(("2. orchestration overhead", f"{o['ratio']:.2f}x ({o['e2e_seconds']:.0f} s vs "
                     f"{o['direct_seconds']:.0f} s in one process; same accuracy: {o['same_accuracy']})",
                     "<= 1.15x", o["ratio"] <= 1.15))
    if "client" in m:
        for r in m["client"]["runs"]:
            rows.append((f"3. client, C={r['concurrency']}, {r['latency_s'] * 1000:.0f} ms latency",
                         f"{r['requests_per_s']:.0f} req/s of {r['limit_requests_per_s']:.0f} = "
                         f"{r['share_of_limit']:.2f}; warm cache: {r['warm_requests']} requests, "
                         f"{r['warm_rows_per_s']:,} rows/s", ">= 0.9; 0 requests",
                         r["share_of_limit"] >= 0.9 and r["warm_requests"] == 0))
    if "scale" in m:
        sizes = sorted(int(n) for n in m["scale"]["sizes"])
        at = 1_000_000 if 1_000_000 in sizes else sizes[-1]  # the target's size, else the largest run
        for op, by_n in m["scale"]["ops"].items():
            one, two = by_n[str(at)], by_n.get("2000000")
            growth = by_n.get("growth_2m_over_1m")
            ok = None if at != 1_000_000 else (one["seconds"] < 30 and one["peak_rss_mib"] < 2048
                                                and (growth is None or growth["time"] <= 2.2))
            rows.append((f"4. {op}, {at:,} rows", f"{one['seconds']} s, {one['peak_rss_mib']:,} MiB"
                         + (f"; 2M: {two['seconds']} s ({growth['time']}x), {two['peak_rss_mib']:,} MiB "
                            f"({growth['memory']}x)" if two and growth else ""),
                         "1M: < 30 s, < 2 GiB; 2M <= 2.2x", ok))
    if "dvc" in m:
        d = m["dvc"]
        lr = d["after_train_key_change"].get("train.lr", {})
        rows.append((f"5. no-op `dvc repro`, {d['generations']} generations ({d['stages']} stages)",
                     f"{d['noop_repro_best']} s (best of {len(d['noop_repro_seconds'])}); after `train.lr` "
                     f"changed {lr.get('stages_rerun')} stages reran", "< 2 s", d["noop_repro_best"] < 2))
    if "efficiency" in m:
        e = m["efficiency"]
        if "error" in e:
            rows.append(("6. sample efficiency", e["error"], "<= 0.6", None))
        else:
            for arm, a in e["arms"].items():
                res = f"{a['ratio_mean']}" if a["ratio_mean"] is not None else \
                    f"not reached (static's `user` accuracy reached in {a['reached_in_seeds']} of {a['seeds']} seeds)"
                rows.append((f"6. sample efficiency ({arm} / static rows)", res, "<= 0.6",
                             a["ratio_mean"] is not None and a["ratio_mean"] <= 0.6))
    if "train" in m:
        t = m["train"]
        limit = t.get("matmul_limit", {}).get("openblas", {}).get("tokens_per_s")
        share = f"; {t['share_of_matmul_limit']:.0%} of the matmul limit ({limit:,} tokens/s)" if limit else ""
        rows.append(("7. training throughput", f"{t['flywheel_tokens_per_s']:,} tokens/s vs "
                     f"{t['bare_torch_tokens_per_s']:,} in a bare torch loop = {t['ratio']:.2f}{share}", ">= 0.9",
                     t["ratio"] >= 0.9))
    if "train_hf" in m:
        t = m["train_hf"]
        for mode in ("full", "lora"):
            rows.append((f"8. own-student training throughput ({mode}, Trainer)",
                         f"{t[mode]['trainer_tokens_per_s']:,} tokens/s vs {t[mode]['bare_torch_tokens_per_s']:,} "
                         f"in a bare torch loop = {t[mode]['ratio']:.2f}", ">= 0.9", t[mode]["ratio"] >= 0.9))
    return rows


def tables(results: dict) -> str:
    m, mach = results["measurements"], results.get("machine", {})
    lines = [f"Measured {results.get('date', '?')} on {mach.get('cpu', '?')}, {mach.get('cores', '?')} cores, "
             f"{mach.get('memory_gib', '?')} GiB, {mach.get('os', '?')}, Python {mach.get('python', '?')}, "
             f"torch {mach.get('torch', '?')} ({results.get('size', '?')} size; the whole benchmark took "
             f"{results.get('seconds', 0) / 60:.0f} min)."
             + "".join(f" Re-measured {r['date']}: {', '.join(r['only'])}." for r in results.get("partial_reruns", [])),
             "",
             "| measurement | result | target | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {_met(d)} |" for a, b, c, d in summary_rows(m)]
    if "e2e" in m:
        e = m["e2e"]
        direct = m.get("overhead", {}).get("direct", {}).get("stage_seconds", {})
        lines += ["", "Seconds per stage, summed over generations: the stage's own work (its `done in` line), "
                  "its whole Prefect task (DVC, the stage process with its imports, Prefect), and the same "
                  "function called in one process:", "",
                  "| stage | own work in `flywheel run` | whole task | in one process |", "|---|---|---|---|"]
        tasks = e.get("task_by_stage", {})
        for stage, sec in e["by_stage"].items():
            alone = sum(v for k, v in direct.items() if k.split("@")[0] == stage)
            lines.append(f"| {stage} | {sec:.1f} | {tasks.get(stage, 0):.1f} | {alone:.1f} |")
        other = e["seconds"] - sum(tasks.values()) if tasks else None
        lines.append(f"| **total** | {e['stage_seconds_total']:.1f} | {sum(tasks.values()):.1f} | "
                     f"{sum(direct.values()):.1f} |")
        if other is not None:
            lines.append(f"| outside the stage tasks (CLI start, Prefect's server, MLflow, git, push) | | "
                         f"{other:.1f} | |")
    if "scale" in m:
        sizes = [str(n) for n in m["scale"]["sizes"]]
        lines += ["", "Data stages: seconds / peak MiB of the process, by generated rows:", "",
                  "| operation | " + " | ".join(f"{int(n):,}" for n in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for op, by_n in m["scale"]["ops"].items():
            cells = [f"{by_n[n]['seconds']} s / {by_n[n]['peak_rss_mib']:,}" if n in by_n else "" for n in sizes]
            lines.append(f"| {op} | " + " | ".join(cells) + " |")
    if "dvc" in m:
        lines += ["", f"Stages `dvc repro` reran after one `train` key changed ({m['dvc']['generations']}-generation workspace):", "",
                  "| key changed | stages rerun | by stage | seconds |", "|---|---|---|---|"]
        for key, r in m["dvc"]["after_train_key_change"].items():
            by = ", ".join(f"{s} {n}" for s, n in r["by_stage"].items() if n)
            lines.append(f"| `{key}` | {r['stages_rerun']} | {by} | {r['seconds']} |")
    return "\n".join(lines)


def write_markdown(results: dict, path: Path) -> None:
    """docs/benchmarks.md's generated block `bench` (tools/docs.py keeps it current)."""
    import sys

    from bench import ROOT

    sys.path.insert(0, str(ROOT))
    from flywheel.store import atomic_file, replace_block

    old = path.read_text(encoding="utf-8") if path.exists() else \
        "# Benchmarks\n\n<!-- generated: bench -->\n<!-- end generated: bench -->\n"
    text = replace_block(old, "bench", tables(results), where=str(path))
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
