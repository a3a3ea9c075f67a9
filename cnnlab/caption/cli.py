"""``cnnlab eval caption``: score captions with the official COCO metrics (Table 7)."""

import json
from pathlib import Path


def add_eval_parser(evaluate):
    p = evaluate.add_parser("caption", help="score captions with BLEU/METEOR/ROUGE-L/CIDEr-D (Table 7)")
    p.add_argument("--predictions", help="COCO results file [{\"image_id\", \"caption\"}]")
    p.add_argument("--references", help="official caption annotations (captions_val2017.json)")
    p.add_argument("--out", default=".", help="folder for results.json (default: current folder)")
    p.set_defaults(func=eval_main)


def eval_main(args):
    from cnnlab.caption import metrics

    if not (args.predictions and args.references):
        raise SystemExit("cnnlab eval caption: give --predictions FILE --references FILE")
    scores = metrics.evaluate_files(args.predictions, args.references)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores, indent=2))
    print(f"wrote {out / 'results.json'}")
