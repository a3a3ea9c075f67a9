"""The CPU over-fitting run of docs/results.md: 16 COCO-MINI training images at 32×32, 600 steps of 8.

Proves the pipeline learns (loss falls, BLEU on the memorised images far above the untrained model); it
says nothing about COCO accuracy. It validates once, at the end, so that the weights the engine keeps and
scores are the memorised (last) ones: validation loss on unseen images only rises in such a run. Run:
`cnnlab train caption --config experiments/caption_overfit_mini.py --decoder tcn --from-scratch --out D`
(``--decoder`` overrides the decoder; the rest comes from here).
"""

from cnnlab.caption.train import CaptionConfig
from cnnlab.train import TrainConfig


def get_config() -> tuple[CaptionConfig, TrainConfig]:
    return (CaptionConfig(decoder="tcn", image_size=32, train_images=16, val_images=16, score_images=16),
            TrainConfig(steps=600, batch_size=8, learning_rate=0.1, momentum=0.9,
                        eval_every=600, checkpoint_every=600, eval_batch_size=64))
