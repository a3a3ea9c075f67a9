"""cnnlab's sequence TCN against aeon's MiniRocket and 1-NN DTW on the UCR/UEA classification datasets that
ship inside aeon, in one run: test accuracy and wall time (training + test prediction) per dataset.

    python -m benchmarks.ucr [--datasets GunPoint,BasicMotions] [--set key=value ...] [--no-peers] [--seeds 1]

The TCN uses ``cnnlab.sequence.default()`` for every dataset (``--set`` overrides it for all of them alike,
to develop a default); the peers use aeon's defaults (MiniRocket: 10 000 kernels and a ridge classifier;
1-NN with full-window DTW). Unequal-length datasets: the TCN and DTW read the series as they are; MiniRocket
cannot, so it reads aeon's bundled equal-length versions (``NAME_eq_TRAIN.ts``). Single-threaded (n_jobs=1)
so that the three share the CPU alike. Prints the CPU model and the load average before and after. The
"(val)" column is the TCN's validation accuracy with ``--set val_fraction=...`` (nan without a validation
split, the default), for choosing defaults on training data alone. With ``--seeds N > 1`` each dataset also
reports the accuracy of the N seeds' TCNs as an ensemble (``cnnlab.sequence.evaluate`` of their run folders:
their test class probabilities averaged).
"""

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_model


def bundled_classification_datasets() -> dict[str, Path]:
    """``{name: NAME_TRAIN.ts}`` for every dataset folder in aeon's package data with a labelled .ts pair."""
    import aeon.datasets
    root = Path(aeon.datasets.__file__).parent / "data"
    found = {}
    for folder in sorted(root.iterdir()):
        train, test = folder / f"{folder.name}_TRAIN.ts", folder / f"{folder.name}_TEST.ts"
        if train.is_file() and test.is_file():
            header = train.read_text(errors="replace").split("@data", 1)[0].lower()
            if "@classlabel true" in header:
                found[folder.name] = train
    return found


def load(path: Path):
    from aeon.datasets import load_from_ts_file
    x, y = load_from_ts_file(str(path))
    return x, np.asarray(y)


def run_peer(make, train_path):
    x, y = load(train_path)
    xt, yt = load(train_path.with_name(train_path.name.replace("_TRAIN", "_TEST")))
    began = time.perf_counter()
    clf = make().fit(x, y)
    accuracy = float(np.mean(clf.predict(xt) == yt))
    return accuracy, time.perf_counter() - began


def run_tcn(config, train_path, seed, workdir):
    from cnnlab.sequence import train
    began = time.perf_counter()
    results = train(dataclasses.replace(config, data=str(train_path), seed=seed, progress=False), workdir)
    return results["test_accuracy"], time.perf_counter() - began, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", help="comma-separated names (default: every bundled one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a SequenceConfig field for every dataset (development only)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="TCN seeds per dataset, counting from --set seed=S (default 0); mean reported")
    parser.add_argument("--no-peers", action="store_true", help="TCN only")
    args = parser.parse_args(argv)

    from aeon.classification.convolution_based import MiniRocketClassifier
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
    from cnnlab import configs
    from cnnlab.sequence import default, evaluate

    config = configs.override(default(), args.set)
    datasets = bundled_classification_datasets()
    # Smallest training file first, so that a run cut short still has most rows.
    names = args.datasets.split(",") if args.datasets else sorted(datasets, key=lambda n: datasets[n].stat().st_size)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"CPU: {os.cpu_count()}-core {cpu_model()}; load average before: {os.getloadavg()}; {when}")
    changed = {k: v for k, v in dataclasses.asdict(config).items() if v != getattr(default(), k) and k != "progress"}
    print(f"TCN: cnnlab.sequence.default(){' with ' + str(changed) if changed else ''}, {args.seeds} seed(s)")
    header = f"{'dataset':24s} {'TCN':>7s} {'(val)':>7s} {'s':>6s}" + ("" if args.no_peers else
                                                       f" {'MiniRocket':>10s} {'s':>6s} {'1NN-DTW':>7s} {'s':>6s}")
    print(header)
    rows = []
    for name in names:
        path = datasets[name]
        with tempfile.TemporaryDirectory() as root:
            workdirs = [f"{root}/seed{seed}" for seed in range(config.seed, config.seed + args.seeds)]
            runs = [run_tcn(config, path, config.seed + i, w) for i, w in enumerate(workdirs)]
            ensemble = evaluate(workdirs, path)["accuracy"]  # = cnnlab eval sequence with every seed's run
        row = {"dataset": name, "tcn": float(np.mean([r[0] for r in runs])),
               "tcn_val": float(np.mean([r[2].get("val_accuracy", np.nan) for r in runs])),
               "tcn_s": float(np.mean([r[1] for r in runs])), "tcn_ensemble": ensemble}
        if not args.no_peers:
            eq = path.with_name(f"{name}_eq_TRAIN.ts")
            row["minirocket"], row["minirocket_s"] = run_peer(
                lambda: MiniRocketClassifier(n_jobs=1, random_state=0), eq if eq.is_file() else path)
            row["dtw"], row["dtw_s"] = run_peer(
                lambda: KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1, n_jobs=1), path)
        rows.append(row)
        line = f"{name:24s} {row['tcn']:7.3f} {row['tcn_val']:7.3f} {row['tcn_s']:6.0f}"
        if not args.no_peers:
            line += f" {row['minirocket']:10.3f} {row['minirocket_s']:6.0f} {row['dtw']:7.3f} {row['dtw_s']:6.0f}"
        print(line + (f"   (TCN seeds: {[round(r[0], 3) for r in runs]}, ensemble of the seeds "
                      f"{row['tcn_ensemble']:.3f})" if args.seeds > 1 else ""), flush=True)
    keys = ["tcn", "tcn_val", "tcn_s", "tcn_ensemble"] + ([] if args.no_peers else
                                                          ["minirocket", "minirocket_s", "dtw", "dtw_s"])
    means = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    line = f"{'mean':24s} {means['tcn']:7.3f} {means['tcn_val']:7.3f} {means['tcn_s']:6.0f}"
    if not args.no_peers:
        line += (f" {means['minirocket']:10.3f} {means['minirocket_s']:6.0f} {means['dtw']:7.3f} "
                 f"{means['dtw_s']:6.0f}")
    print(line + (f"   (ensemble of the seeds {means['tcn_ensemble']:.3f})" if args.seeds > 1 else ""))
    print(f"load average after: {os.getloadavg()}")
    return rows


if __name__ == "__main__":
    main()
