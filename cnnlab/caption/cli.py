"""``cnnlab train caption``, ``cnnlab eval caption`` and ``cnnlab caption IMAGE...`` (§7, Table 7)."""

import base64
import html
import io
import json
from pathlib import Path

from cnnlab import configs
from cnnlab.caption.model import DECODERS
from cnnlab.errors import CnnlabError
from cnnlab.nn.resnet_weights import add_pretrained_arguments
from cnnlab.paths import DATA_DIR_ENV


def add_train_parser(train):
    p = train.add_parser("caption", help="train a captioner: ResNet-18 + TCN or GRU decoder (§7)")
    configs.add_arguments(p, "caption")
    p.add_argument("--decoder", choices=DECODERS, default=None, help="the config's decoder (default tcn)")
    p.add_argument("--data-dir", help="COCO layout: annotations/captions_{train,val}2017.json + {train,val}2017/ "
                   f"(default: ${DATA_DIR_ENV}/coco/mini, COCO-MINI)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, vocab.json, results.json)")
    configs.add_common_flags(p)
    p.add_argument("--lr-boundaries", type=int, nargs="*", default=None,
                   help="steps where the learning rate is divided by 10 (§7.3: 1000000 1500000)")
    p.add_argument("--image-size", type=int, default=None, help="§7.3: 224; smaller for CPU smoke runs")
    p.add_argument("--max-length", type=int, default=None, help="tokens per caption including <EOS> (default 20)")
    p.add_argument("--score-images", type=int, default=None, help="images captioned per split for the metrics")
    p.add_argument("--train-images", type=int, default=None, help="first N training images only")
    p.add_argument("--val-images", type=int, default=None, help="first N validation images only")
    p.add_argument("--score-untrained", action="store_true", help="also score the initial weights")
    add_pretrained_arguments(p, "--encoder-weights")
    p.set_defaults(func=train_main)


def add_eval_parser(evaluate):
    p = evaluate.add_parser("caption", help="score captions with BLEU/METEOR/ROUGE-L/CIDEr-D (Table 7)")
    p.add_argument("--predictions", help="COCO results file [{\"image_id\", \"caption\"}]")
    p.add_argument("--references", help="official caption annotations (captions_val2017.json)")
    p.add_argument("--checkpoint", help="a `cnnlab train caption` run folder: caption the val split and score it")
    p.add_argument("--data-dir", help=f"COCO layout for --checkpoint (default: ${DATA_DIR_ENV}/coco/mini)")
    p.add_argument("--split", choices=("val", "train"), default="val", help="images to caption for --checkpoint")
    p.add_argument("--weights", choices=("best", "last"), default="best",
                   help="best-on-validation weights, or the last training state (over-fitting runs)")
    p.add_argument("--beam", type=int, default=1, help="beam width (1: greedy)")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--out", default=".", help="folder for results.json (default: current folder)")
    p.set_defaults(func=eval_main)


def add_caption_parser(commands):
    p = commands.add_parser("caption", help="caption image files with a trained captioner")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--checkpoint", required=True, help="a `cnnlab train caption` run folder")
    p.add_argument("--beam", type=int, default=1, help="beam width (1: greedy)")
    p.set_defaults(func=caption_main)


def config_from_args(args):
    shorthands = {**configs.common_shorthands(args), "decoder": args.decoder, "image_size": args.image_size,
                  "max_length": args.max_length, "score_images": args.score_images,
                  "train_images": args.train_images, "val_images": args.val_images,
                  "score_untrained": True if args.score_untrained else None}
    if args.lr_boundaries is not None:
        shorthands.update(lr_boundaries=tuple(args.lr_boundaries), lr_scales=(0.1,) * len(args.lr_boundaries))
    return configs.from_args("caption", args, shorthands)


def train_main(args):
    from cnnlab.caption.train import train
    from cnnlab.nn.resnet_weights import pretrained_weights

    config = config_from_args(args)
    # §7.2.3: the encoder is an ImageNet ResNet-18 (the author's torchvision resnet18(pretrained=True)).
    weights = pretrained_weights(args.encoder_weights, 18, from_scratch=args.from_scratch, flag="--encoder-weights")
    print(json.dumps(train(config, args.out, data_dir=args.data_dir, encoder_weights=weights), indent=2))


def eval_main(args):
    from cnnlab.caption import metrics

    out = Path(args.out)
    if args.checkpoint:
        scores = _eval_checkpoint(args, out)
    elif args.predictions and args.references:
        scores = metrics.evaluate_files(args.predictions, args.references)
    else:
        raise CnnlabError("cnnlab eval caption: give --checkpoint RUN, or --predictions FILE --references FILE")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores, indent=2))
    print(f"wrote {out / 'results.json'}")


def _eval_checkpoint(args, out):
    from cnnlab.caption.train import evaluate

    scores = evaluate(args.checkpoint, data_dir=args.data_dir, split=args.split, weights=args.weights,
                      beam=args.beam, limit=args.limit)
    predictions, paths, refs = scores.pop("predictions"), scores.pop("paths"), scores.pop("references")
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    name = (f"{scores['decoder']} ({Path(args.checkpoint).name}, {args.weights} weights, {scores['images']} "
            f"{args.split} images, beam {args.beam})")
    (out / "table.md").write_text(table_markdown({name: scores}))
    (out / "captions.html").write_text(captions_html(paths, [p["caption"] for p in predictions], refs, name))
    print(table_markdown({name: scores}))
    return scores


def table_markdown(rows: dict) -> str:
    """Table 7's columns: CIDEr-D, METEOR, ROUGE-L, BLEU-1..4, one row per model."""
    cols = [("CIDEr-D", "cider"), ("METEOR", "meteor"), ("ROUGE-L", "rouge_l"), ("BLEU-1", "bleu_1"),
            ("BLEU-2", "bleu_2"), ("BLEU-3", "bleu_3"), ("BLEU-4", "bleu_4")]
    lines = ["| Model | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, s in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{s[k]:.3f}" for _, k in cols) + " |")
    return "\n".join(lines) + "\n"


def captions_html(paths, generated, references, title, limit: int = 40) -> str:
    """A page like Figure 23: each image (embedded JPEG thumbnail), its generated and reference captions."""
    from PIL import Image

    cells = []
    for path, gen, refs in list(zip(paths, generated, references))[:limit]:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((256, 256))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
        src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        ref_items = "".join(f"<li>{html.escape(r)}</li>" for r in refs)
        cells.append(f'<div class="c"><img src="{src}"><p><b>{html.escape(gen)}</b></p><ul>{ref_items}</ul></div>')
    style = ("body{font-family:sans-serif}.c{display:inline-block;width:270px;vertical-align:top;margin:6px}"
             "ul{font-size:12px;color:#555;padding-left:16px}")
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"<h2>{html.escape(title)}</h2><p>Bold: generated; list: reference captions.</p>" + "".join(cells))


def caption_main(args):
    import numpy as np

    from cnnlab.caption import data
    from cnnlab.caption.train import caption_images, load_trained, load_vocab

    model, variables, config = load_trained(args.checkpoint)
    vocab = load_vocab(args.checkpoint)
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise CnnlabError(f"cnnlab caption: no such image file {missing[0]}")
    images = np.stack([data.load_image(p, config.image_size) for p in args.images])
    for path, caption in zip(args.images, caption_images(model, variables, vocab, images, beam=args.beam,
                                                         max_length=config.max_length)):
        print(f"{path}\t{caption}")
