"""Statistics of the augmented datasets a set of runs trained on, for an augmentation report.

``python -m bench.augment_report --results results/grids/augment-hopper --out reports/augment-hopper``
reads every record under ``--results`` that names an augmentation, opens the augmented file it
names (built by ``bench.augment`` / ``bench.run``; a file no longer on this machine is listed as
missing, never rebuilt here) and writes:

* ``augmentation.csv``: per (task, augmentation) the source transitions, generated and accepted
  transitions, the acceptance rate, the added share of the augmented data and the transform's
  own statistics (DiffStitch: rejected attempts by reason);
* ``plots/augmented_returns.png``: per (task, augmentation), how the added data compares with
  the original: DiffStitch's accepted stitches as windows (the backed-up return each stitch
  leads to, and its source's return-to-go, against the returns-to-go of the original data's
  states); SynthER's transitions, which have no windows, by their rewards against the
  original rewards. A panel with nothing added says so instead of drawing an empty histogram.

The leaderboard (``python -m bench.leaderboard``) keeps the scores; this keeps the data side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from bench.data import discounted_returns_to_go
from bench.leaderboard.plots import save_figure
from tasks.hdf5 import read_d4rl_hdf5, read_hdf5_attrs


def augmented_files(results: Path) -> pd.DataFrame:
    """One row per (task, augmentation, file) named by the records under ``results``."""
    rows = []
    for path in sorted(results.rglob("record.json")):
        record = json.loads(path.read_text())
        augment = record.get("augment")
        if augment:
            rows.append(
                {"task": record["task"], "augment": augment["name"], "path": augment["path"]}
            )
    return pd.DataFrame(rows, columns=["task", "augment", "path"]).drop_duplicates()


def file_statistics(task: str, augment: str, path: str) -> dict:
    """Counts and the transform's statistics of one augmented file (``missing`` if absent)."""
    row = {"task": task, "augment": augment, "file": Path(path).name}
    if not Path(path).exists():
        return {**row, "missing": True}
    attrs = read_hdf5_attrs(Path(path))
    generated, accepted = int(attrs["generated"]), int(attrs["accepted"])
    source = int(attrs["source"]["n_transitions"])
    row.update(
        source_transitions=source,
        generated=generated,
        accepted=accepted,
        acceptance_rate=accepted / generated if generated else float("nan"),
        added_share=accepted / (source + accepted),
        budget=attrs["augment_budget"],
        missing=False,
    )
    for key, value in attrs["statistics"].items():
        if isinstance(value, dict):
            row.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            row[key] = value
    return row


def added_statistics(path: str) -> dict[str, np.ndarray]:
    """The transform's per-row statistics of the added rows (the file's ``augment/*`` group)."""
    with h5py.File(path, "r") as f:
        group = f.get("augment")
        return {k: group[k][()] for k in group} if group is not None else {}


def return_samples(path: str) -> dict[str, np.ndarray]:
    """What the plot compares for one augmented file: ``original`` and ``added`` values, plus
    ``source`` for DiffStitch (its stitches' sources' returns-to-go)."""
    arrays = read_d4rl_hdf5(Path(path))
    added = arrays["infos/augmented"].astype(bool)
    extra = added_statistics(path)
    if "backed_up_return" in extra:
        done = (arrays["terminals"] | arrays["timeouts"])[~added]
        done[-1] = True
        ends = np.flatnonzero(done) + 1  # exclusive episode ends
        discount = read_hdf5_attrs(Path(path))["augment_config"]["discount"]  # the stitcher's
        original = discounted_returns_to_go(arrays["rewards"][~added], ends, discount)
        stitch_ends = arrays["timeouts"][added]  # one value per stitch: its last row
        return {
            "original": original,
            "added": extra["backed_up_return"][stitch_ends],
            "source": extra["source_return"][stitch_ends],
        }
    return {"original": arrays["rewards"][~added], "added": arrays["rewards"][added]}


def plot_returns(files: pd.DataFrame, out: Path) -> Path | None:
    """``plots/augmented_returns.png``: one panel per augmented file present on this machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = files[[Path(p).exists() for p in files["path"]]]
    if present.empty:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3.4), squeeze=False)
    for ax, row in zip(axes[0], present.itertuples(), strict=True):
        samples = return_samples(row.path)
        windows = "source" in samples
        ax.set_title(f"{row.task}\naugment={row.augment}", fontsize=9)
        ax.set_xlabel("discounted return-to-go" if windows else "reward per transition")
        bins = np.histogram_bin_edges(np.concatenate(list(samples.values())), bins=40)
        original = "original states" if windows else "original transitions"
        ax.hist(samples["original"], bins=bins, density=True, alpha=0.5, label=original)
        if not len(samples["added"]):
            ax.text(0.5, 0.5, "nothing accepted", transform=ax.transAxes, ha="center")
        elif windows:
            ax.hist(
                samples["source"], bins=bins, density=True, histtype="step", label="stitch sources"
            )
            ax.hist(
                samples["added"],
                bins=bins,
                density=True,
                histtype="step",
                label="stitches (backed up)",
            )
        else:
            ax.hist(samples["added"], bins=bins, density=True, histtype="step", label="synthetic")
        ax.legend(fontsize=7)
    path = out / "plots" / "augmented_returns.png"
    save_figure(fig, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="records to read")
    parser.add_argument("--out", type=Path, required=True, help="report folder to write into")
    args = parser.parse_args(argv)
    files = augmented_files(args.results)
    if files.empty:
        print(f"no record under {args.results} names an augmentation")
        return 1
    table = pd.DataFrame([file_statistics(*row) for row in files.itertuples(index=False)])
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "augmentation.csv", index=False, float_format="%.4g")
    print(table.drop(columns="file").to_string(index=False))
    plot = plot_returns(files, args.out)
    print(f"wrote {args.out / 'augmentation.csv'}" + (f" and {plot}" if plot else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
