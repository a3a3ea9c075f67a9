"""``cnnlab train caption``, ``cnnlab eval caption`` and ``cnnlab caption IMAGE...`` (§7, Table 7)."""

import base64
import dataclasses
import html
import io
import json
from pathlib import Path

from cnnlab.nn.resnet_weights import add_pretrained_arguments
from cnnlab.paths import DATA_DIR_ENV, data_dir


def _coco_root(args):
    if args.data_dir:
        return Path(args.data_dir)
    root = data_dir("coco")
    if root is None:
        raise SystemExit(f"cnnlab caption: give --data-dir (a COCO-layout folder) or set {DATA_DIR_ENV}")
    return root / "mini"


def add_train_parser(train):
    p = train.add_parser("caption", help="train a captioner: ResNet-18 + TCN or GRU decoder (§7)")
    p.add_argument("--config", help="an experiments/caption_*.py file (get_config() -> (CaptionConfig, "
                   "TrainConfig)); replaces the settings below except --decoder, --data-dir, --out")
    p.add_argument("--decoder", choices=("tcn", "gru", "tcn-concat"), default=None, help="default tcn")
    p.add_argument("--grad", choices=("custom", "autodiff"), default=None,
                   help="backward pass: the paper's equations (custom) or JAX autodiff; default custom")
    p.add_argument("--data-dir", help="COCO layout: annotations/captions_{train,val}2017.json + {train,val}2017/ "
                   f"(default: ${DATA_DIR_ENV}/coco/mini, COCO-MINI)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, vocab.json, results.json)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=2, help="§7.3: 2")
    p.add_argument("--lr", type=float, default=0.1, help="§7.3: 0.1, divided by 10 at --lr-boundaries")
    p.add_argument("--lr-boundaries", type=int, nargs="*", default=[], help="§7.3: 1000000 1500000")
    p.add_argument("--image-size", type=int, default=224, help="§7.3: 224; smaller for CPU smoke runs")
    p.add_argument("--max-length", type=int, default=20, help="tokens per caption including <EOS>")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--score-images", type=int, default=500, help="images captioned per split for the metrics")
    p.add_argument("--train-images", type=int, default=None, help="first N training images only")
    p.add_argument("--val-images", type=int, default=None, help="first N validation images only")
    p.add_argument("--score-untrained", action="store_true", help="also score the initial weights")
    p.add_argument("--seed", type=int, default=0)
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


def _load_config(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("caption_experiment", path)
    if spec is None or not Path(path).is_file():
        raise SystemExit(f"cnnlab train caption: no experiment file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def train_main(args):
    from cnnlab import train as engine
    from cnnlab.caption.train import CaptionConfig, train_and_evaluate
    from cnnlab.nn.resnet_weights import pretrained_weights

    # §7.2.3: the encoder is an ImageNet ResNet-18 (the author's torchvision resnet18(pretrained=True)).
    weights = pretrained_weights(args.encoder_weights, 18, from_scratch=args.from_scratch, flag="--encoder-weights")
    if args.config:
        config, train_config = _load_config(args.config)
        if args.decoder:
            config = dataclasses.replace(config, decoder=args.decoder)
        if args.grad:
            config = dataclasses.replace(config, grad=args.grad)
        results = train_and_evaluate(config, train_config, args.out, _coco_root(args),
                                     score_untrained=args.score_untrained, encoder_weights=weights)
        print(json.dumps(results, indent=2))
        return
    config = CaptionConfig(decoder=args.decoder or "tcn", image_size=args.image_size, max_length=args.max_length,
                           score_images=args.score_images, train_images=args.train_images,
                           val_images=args.val_images, grad=args.grad or "custom")
    boundaries = tuple(args.lr_boundaries)
    train_config = engine.TrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                                      lr_boundaries=boundaries, lr_scales=(0.1,) * len(boundaries),
                                      eval_every=min(args.eval_every, args.steps),
                                      checkpoint_every=min(args.eval_every, args.steps),
                                      eval_batch_size=args.batch_size * 8, seed=args.seed)
    results = train_and_evaluate(config, train_config, args.out, _coco_root(args), score_untrained=args.score_untrained,
                                 encoder_weights=weights)
    print(json.dumps(results, indent=2))


def eval_main(args):
    from cnnlab.caption import metrics

    out = Path(args.out)
    if args.checkpoint:
        scores = _eval_checkpoint(args, out)
    elif args.predictions and args.references:
        scores = metrics.evaluate_files(args.predictions, args.references)
    else:
        raise SystemExit("cnnlab eval caption: give --checkpoint RUN, or --predictions FILE --references FILE")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores, indent=2))
    print(f"wrote {out / 'results.json'}")


def _eval_checkpoint(args, out):
    from cnnlab.caption import metrics
    from cnnlab.caption.train import caption_images, load_captioner, load_source

    model, variables, vocab, config = load_captioner(args.checkpoint, args.weights)
    source, paths, ids, refs = load_source(_coco_root(args), args.split, vocab, config, args.limit)
    generated = caption_images(model, variables, vocab, source.images, beam=args.beam, max_length=config.max_length)
    scores = metrics.score_captions(dict(zip(ids, generated)), dict(zip(ids, refs)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(
        [{"image_id": i, "caption": c} for i, c in zip(ids, generated)], indent=1) + "\n")
    name = (f"{config.decoder} ({Path(args.checkpoint).name}, {args.weights} weights, {len(ids)} {args.split} "
            f"images, beam {args.beam})")
    (out / "table.md").write_text(table_markdown({name: scores}))
    (out / "captions.html").write_text(captions_html(paths, generated, refs, name))
    print(table_markdown({name: scores}))
    return {**scores, "images": len(ids), "split": args.split, "weights": args.weights, "beam": args.beam,
            "decoder": config.decoder}


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
    from cnnlab.caption.train import caption_images, load_captioner

    model, variables, vocab, config = load_captioner(args.checkpoint)
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"cnnlab caption: no such image file {missing[0]}")
    images = np.stack([data.load_image(p, config.image_size) for p in args.images])
    for path, caption in zip(args.images, caption_images(model, variables, vocab, images, beam=args.beam,
                                                         max_length=config.max_length)):
        print(f"{path}\t{caption}")
