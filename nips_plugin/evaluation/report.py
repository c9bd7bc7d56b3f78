"""The benchmark's report: aggregation over seeds, the Markdown table and its notes."""

import numpy as np

from ..training.trainer import write_json
from .evaluate import BASELINES
from .protocol import QUADRATIC_MAX_POINTS


COLUMNS = [("model", "model"), ("params", "params"), ("id_rel_l2", "unseen rel L2"),
           ("vs_floor", "x best floor"), ("vs_lstsq", "x lstsq"), ("ood_rel_l2", "OOD rel L2"), ("ctx_rel_l2", "context rel L2"),
           ("kernel_rel_err", "kernel err"), ("log_correlation", "field log-corr"),
           ("recovery_rel_err", "field err"), ("epochs", "epochs"), ("train_seconds", "train s"), ("peak_mem_mb", "peak MB")]


#: a best no-learning error below this is float32 round-off: the floor solves the data exactly
EXACT_FLOOR = 1e-5


#: columns shown with fewer decimals than the errors
_DECIMALS = {"vs_lstsq": 2, "vs_floor": 2, "train_seconds": 1, "peak_mem_mb": 1}


def fmt(v, key=None):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1e4:  # a ratio over a floor at round-off
            return f"{v:.1e}"
        return f"{v:.{_DECIMALS.get(key, 4 if abs(v) < 10 else 1)}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _cell(row, key, sub=None):
    """A table cell: the value, with ``± std`` when the row is a mean over seeds."""
    value, spread = row.get(key), row.get(f"{key}_std")
    if sub is not None:
        value, spread = (value or {}).get(sub), (spread or {}).get(sub)
    if spread and isinstance(value, float):
        return f"{fmt(value, key)} ± {fmt(float(spread), key)}"
    return fmt(value, key)


def best_floor(rows):
    """The best no-learning row (:data:`~.evaluate.BASELINES`) by unseen error: ``(name, error)``."""
    name, error = min(((row["model"], row["id_rel_l2"]) for row in rows if row["model"] in BASELINES),
                      key=lambda pair: pair[1])
    return name, error


def gap_exceeds_spread(a, b, key="id_rel_l2"):
    """Whether two rows' means differ by more than their two standard deviations summed."""
    return abs(a[key] - b[key]) > (a.get(f"{key}_std") or 0.0) + (b.get(f"{key}_std") or 0.0)


def comparison_notes(results):
    """What the rows say against each other: which gaps to NIPS exceed the spread over
    seeds, and the papers' configurations compared (the NIPS paper reports NIPS 26%
    more accurate than the best NAO variant)."""
    rows = {row["model"]: row for row in results["rows"] if row.get("id_rel_l2") is not None}
    notes = []
    if "seeds" in results and "nips" in rows:
        beyond = [name for name in rows if name != "nips" and gap_exceeds_spread(rows["nips"], rows[name])]
        within = [name for name in rows if name not in beyond and name != "nips"]
        notes.append(f"Over seeds {results['seeds']}: the gap to nips exceeds the two spreads summed for "
                     f"{', '.join(beyond) or 'no row'}; within the spread: {', '.join(within) or 'no row'}.")
    for suffix, what in (("", "papers' models"), ("_enhanced", "enhanced models"), ("_hybrid", "hybrid models")):
        naos = [name + suffix for name in ("nao", "linear_nao") if name + suffix in rows]
        if "nips" + suffix in rows and naos:
            best = min(naos, key=lambda name: rows[name]["id_rel_l2"])
            gain = 1 - rows["nips" + suffix]["id_rel_l2"] / rows[best]["id_rel_l2"]
            notes.append(f"{what.capitalize()}: nips{suffix} is {abs(gain):.0%} "
                         f"{'more' if gain >= 0 else 'less'} accurate than the best NAO variant "
                         f"({best}){'; the gap exceeds the spread' if 'seeds' in results and gap_exceeds_spread(rows['nips' + suffix], rows[best]) else ''}.")
    return notes


def results_table(results):
    """The results as a Markdown table with a header line naming data, device and machine."""
    seeds = f"seeds {', '.join(map(str, results['seeds']))} (mean ± std)" if "seeds" in results \
        else f"seed {results['seed']}"
    where = "on this machine" if results.get("calibrated_here") else "on a 2-core CPU"
    rule = (f"{results['rule']} (epochs per model calibrated to about {results['budget_seconds']:g} s {where}; "
            "the same draws for every model)") if results["rule"] == "equal training time" else results["rule"]
    head = (f"Benchmark `{results['preset']}` on {results['device']} ({results['machine']}), "
            f"{seeds}, grid {'x'.join(map(str, results['grid_shape']))}, "
            f"d={results['settings']['n_pairs']} context pairs, q={results['settings']['n_queries']} queries.\n"
            f"Rule: {rule}.\n"
            "Errors: mean relative L2 per query function on unseen systems (physical units); "
            f"x best floor: unseen error over the best no-learning row's (`{results.get('best_floor', 'lstsq')}`, "
            "same draws; below 1: learning helped); "
            "x lstsq: over in-context least squares'.\n\n")
    resolutions = list(results["rows"][0].get("superres_rel_l2") or {}) if results["rows"] else []
    columns = COLUMNS + ([("clean_rel_l2", "unseen vs clean")] if "noise_rel_l2" in results else [])
    titles = [title for _, title in columns] + [f"unseen @{n}x{n}" for n in resolutions]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in results["rows"]:
        cells = [_cell(row, key) for key, _ in columns]
        cells += [_cell(row, "superres_rel_l2", n) for n in resolutions]
        lines.append("| " + " | ".join(cells) + " |")
    table = head + "\n".join(lines) + "\n"
    notes = comparison_notes(results)
    floor = next((row["id_rel_l2"] for row in results["rows"] if row["model"] == results.get("best_floor")), None)
    if floor is not None and floor < EXACT_FLOOR:
        notes.append(f"The best no-learning row (`{results['best_floor']}`, {floor:.1e}) is exact to float32 "
                     "round-off on these data: nothing is left to learn, and x best floor only says how "
                     "far a row is from round-off.")
    if "noise_rel_l2" in results:
        level = results["noise_level"]
        what = "Noisy responses" if level is None else f"{level:.0%} relative Gaussian noise on every response"
        notes.append(f"{what}; unseen vs clean: "
                     f"noisy contexts, noise-free query responses; one noisy measurement's error: "
                     f"{results['noise_rel_l2']:.4f}.")
    if resolutions:
        notes.append("Super-resolution '-': rows tied to their training grid (per-token affine) and models "
                     f"in the quadratic attention order above {QUADRATIC_MAX_POINTS} grid points.")
    if results.get("interpretation"):
        notes.append(f"Kernels and hidden fields: {results['interpretation']}.")
    classical = results.get("classical_recovery")
    if classical:
        shown = ", ".join(f"{float(k):.0%}: {v:.4f}" for k, v in classical["rel_err"].items())
        carried = results.get("noise_level") or 0.0
        on_top = (f" (on top of the data's {carried:.0%}; the fit is regularised for both)"
                  if carried else "")
        notes.append(f"Hidden field recovered with the PDE known (least squares on the discretised "
                     f"equation, same {results['settings']['n_pairs']} context pairs, no learning): "
                     f"relative error with noise added to the responses{on_top}: {shown}.")
    if results.get("wall_seconds"):
        notes.append(f"Wall time: {results['wall_seconds'] / 60:.1f} min.")
    return table + "".join(f"\n{note}\n" for note in notes)


def _mean_std(values):
    """Mean and sample standard deviation over seeds of numbers, or of dicts of them
    (recursively); equal values (and strings) are kept with spread 0 (None for strings), and
    a value missing (None) in any seed gives None."""
    first = values[0]
    if isinstance(first, dict):
        pairs = {k: _mean_std([v.get(k) if v else None for v in values]) for k in first}
        return {k: m for k, (m, _) in pairs.items()}, {k: sd for k, (_, sd) in pairs.items()}
    if any(v is None for v in values):
        return None, None
    if all(v == first for v in values):
        return first, (None if isinstance(first, (str, bool)) else 0.0)
    if isinstance(first, (str, bool)):
        return None, None
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1))


def aggregate_seeds(per_seed):
    """One result from the results of several seeds: every row's numbers are the mean over
    the seeds, with their sample standard deviation under ``<key>_std``; ``per_seed`` keeps
    each seed's rows."""
    rows = []
    for model in (row["model"] for row in per_seed[0]["rows"]):
        seed_rows = [next(r for r in res["rows"] if r["model"] == model) for res in per_seed]
        row = {"model": model}
        for key in seed_rows[0]:
            if key != "model":
                row[key], spread = _mean_std([r.get(key) for r in seed_rows])
                row[f"{key}_std"] = spread
        rows.append(row)
    results = {key: value for key, value in per_seed[0].items() if key not in ("seed", "rows", "wall_seconds")}
    if per_seed[0].get("classical_recovery"):
        results["classical_recovery"], _ = _mean_std([res.get("classical_recovery") for res in per_seed])
    results.update(seeds=[res["seed"] for res in per_seed], rows=rows,
                   wall_seconds=float(sum(res["wall_seconds"] for res in per_seed)),
                   per_seed=[{"seed": res["seed"], "rows": res["rows"], "wall_seconds": res["wall_seconds"]}
                             for res in per_seed])
    return results


def write_results(results, out):
    write_json(results, out / "results.json")
    (out / "results.md").write_text(results_table(results))
