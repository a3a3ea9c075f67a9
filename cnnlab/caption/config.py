"""The captioning runs of §7.3 (Table 7) as named configs of ``CaptionConfig``.

§7.3: full MS-COCO 2017 (115k / 5k), 224×224 images, batch 2, SGD with learning rate 0.1 divided by 10 after
1M and 1.5M of 1.75M iterations. ``cnnlab train caption --config table7_gru --data-dir COCO --out D`` runs a
row; what cnnlab reached is in docs/results.md.
"""

import dataclasses

from cnnlab.caption import data
from cnnlab.caption.model import DECODERS, CaptionModel
from cnnlab.caption.vocab import MIN_COUNT
from cnnlab.nn import GRADS
from cnnlab.train.state import TrainConfig, compute_dtype

DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class CaptionConfig(TrainConfig):
    """One captioning run: the image encoder and decoder, the captions, the training and scoring settings."""
    decoder: str = "tcn"          # "tcn" (§7.2.3) | "gru" (§7.2.4) | "tcn-concat" (§7.4)
    grad: str = "custom"          # the paper's custom VJPs or JAX autodiff
    image_size: int = data.IMAGE_SIZE
    max_length: int = 20          # tokens per caption incl. <EOS>: COCO captions rarely exceed 15 words (§7.4)
    min_count: int = MIN_COUNT
    dropout: float = 0.0
    tcn_blocks: int = 18          # §7.2.3: 18 Single blocks of 256 channels (smaller ones for quick checks)
    tcn_channels: int = 256
    score_images: int = 500       # images captioned per split for the metrics after training (0: none)
    score_untrained: bool = False  # also score the initial weights
    train_images: int | None = None  # first N training / validation images only (over-fitting runs)
    val_images: int | None = None
    steps: int = 1_000
    batch_size: int = 2           # §7.3
    learning_rate: float = 0.1    # §7.3, divided by 10 at lr_boundaries
    eval_every: int = 500
    checkpoint_every: int = 500
    eval_batch_size: int = 16

    def __post_init__(self):
        super().__post_init__()
        if self.decoder not in DECODERS:
            raise ValueError(f"CaptionConfig: decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.grad not in GRADS:
            raise ValueError(f"CaptionConfig: grad must be one of {GRADS}, got {self.grad!r}")
        for name in ("image_size", "max_length", "min_count", "tcn_blocks", "tcn_channels"):
            if getattr(self, name) < (2 if name == "max_length" else 1):
                raise ValueError(f"CaptionConfig: {name} must be positive, got {getattr(self, name)}")

    def model(self, vocab_size: int) -> CaptionModel:
        return CaptionModel(vocab_size=vocab_size, decoder=self.decoder, tcn_blocks=self.tcn_blocks,
                            tcn_channels=self.tcn_channels, dropout=self.dropout, grad=self.grad,
                            dtype=compute_dtype(self.precision))


CONFIG_CLASS = CaptionConfig


def default() -> CaptionConfig:
    """Not in the paper: 1 000 steps of the TCN captioner on COCO-MINI, batch 2, lr 0.1 (a first run)."""
    return CaptionConfig()


def _table7(decoder: str) -> CaptionConfig:
    return CaptionConfig(decoder=decoder, image_size=224, steps=1_750_000, batch_size=2, learning_rate=0.1,
                         lr_boundaries=(1_000_000, 1_500_000), lr_scales=(0.1, 0.1), eval_every=50_000,
                         checkpoint_every=10_000, eval_batch_size=64)


def table7_tcn() -> CaptionConfig:
    """Table 7, TCN decoder (§7.2.3: 18 Single blocks, k 2, dilation 1, 256 channels): paper CIDEr-D 0.722,
    METEOR 0.219, ROUGE-L 0.482, BLEU-1..4 0.658 / 0.476 / 0.338 / 0.240 (C5)."""
    return _table7("tcn")


def table7_gru() -> CaptionConfig:
    """Table 7, GRU decoder (§7.2.4: 3 layers of 512, the image feature as initial hidden state and first
    token): paper CIDEr-D 0.741, METEOR 0.222, ROUGE-L 0.490, BLEU-1..4 0.668 / 0.488 / 0.347 / 0.248 (C5)."""
    return _table7("gru")


def table7_tcn_concat() -> CaptionConfig:
    """§7.4's proposed fix (not trained in the paper): the TCN with the image feature concatenated to the word
    embedding at every step, on Table 7's schedule."""
    return _table7("tcn-concat")


def overfit_mini() -> CaptionConfig:
    """Not in the paper: the CPU over-fitting run of docs/results.md, 16 COCO-MINI images at 32×32, 600 steps.

    It proves the pipeline learns (loss falls, BLEU on the memorised images far above the untrained model) and
    says nothing about COCO accuracy. It validates once, at the end, so that the weights the engine keeps and
    scores are the memorised (last) ones: validation loss on unseen images only rises in such a run.
    """
    return CaptionConfig(decoder="tcn", image_size=32, train_images=16, val_images=16, score_images=16, steps=600,
                         batch_size=8, eval_every=600, checkpoint_every=600, eval_batch_size=64)
