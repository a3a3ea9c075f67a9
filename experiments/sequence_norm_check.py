"""What a trained sequence TCN predicts at inference, per normalization: accuracy and the predicted classes on
the training and the test split of one UCR/UEA dataset bundled with aeon (docs/results.md, "A normalization
after every convolution"). A model whose running batch statistics do not fit its inputs predicts one class.

    python -m experiments.sequence_norm_check Covid3Month_disc batch layer none   # from the repository root
"""

import dataclasses
import sys
import tempfile

import numpy as np

from benchmarks.ucr import bundled_classification_datasets
from cnnlab.sequence import data, default, load_run, predict_sequences, train


def main(name, norms):
    path = bundled_classification_datasets()[name]
    for norm in norms:
        with tempfile.TemporaryDirectory() as workdir:
            results = train(dataclasses.replace(default(), data=str(path), norm=norm, progress=False), workdir)
            run = load_run(workdir)
            for split in ("train", "test"):
                seqs = data.read(str(path), split)
                labels, _ = predict_sequences(run, seqs)
                classes, counts = np.unique(labels, return_counts=True)
                accuracy = np.mean(labels.astype(str) == seqs.y.astype(str))
                print(f"norm={norm:5} {split:5} accuracy {accuracy:.3f}  predicted classes "
                      f"{dict(zip(classes.tolist(), counts.tolist()))}")
            print(f"norm={norm:5} training loss (last steps, training mode) {results['train_loss']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["batch", "layer", "none"])
