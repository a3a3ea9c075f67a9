"""Table 7 (§7.3), The fix §7.4 proposes: the TCN with the image feature concatenated to the word embedding at every step. Not trained in the paper.

Full MS-COCO 2017 (115k/5k), 224×224 images, batch 2, SGD with learning rate 0.1 divided by 10 after 1M
and 1.5M of 1.75M iterations (§7.3). Run: `cnnlab train caption --config experiments/caption_tcn_concat.py --data-dir COCO --out D`.
What cnnlab reached is in docs/results.md.
"""

from cnnlab.caption.train import CaptionConfig
from cnnlab.train import TrainConfig


def get_config() -> tuple[CaptionConfig, TrainConfig]:
    return (CaptionConfig(decoder="tcn-concat", image_size=224),
            TrainConfig(steps=1_750_000, batch_size=2, learning_rate=0.1, momentum=0.9,
                        lr_boundaries=(1_000_000, 1_500_000), lr_scales=(0.1, 0.1),
                        eval_every=50_000, checkpoint_every=10_000, eval_batch_size=64))
