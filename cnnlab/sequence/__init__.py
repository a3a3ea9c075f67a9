"""TCN classifiers for the user's own sequences (``.npz`` or UCR/UEA ``.ts``): ``cnnlab train|eval|predict
sequence``; built on ``cnnlab.tcn`` and trained by ``cnnlab.train``."""

from cnnlab.sequence.config import SequenceConfig, default
from cnnlab.sequence.model import SequenceClassifier, blocks_for, classifier
from cnnlab.sequence.evaluation import (evaluate, load_run, load_runs, predict, predict_sequences, stream_init,
                                       stream_step)
from cnnlab.sequence.train import train

__all__ = ["SequenceClassifier", "SequenceConfig", "blocks_for", "classifier", "default", "evaluate", "load_run",
           "load_runs", "predict", "predict_sequences", "stream_init", "stream_step", "train"]
