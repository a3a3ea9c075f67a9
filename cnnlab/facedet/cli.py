"""``cnnlab eval widerface``, ``cnnlab train facedet`` and ``cnnlab detect``: the §5 face detector's commands."""

import json
from pathlib import Path

from cnnlab.paths import data_dir


def _default_ground_truth():
    root = data_dir("widerface")
    return None if root is None else root / "eval_tools" / "ground_truth"


def run_eval(args) -> int:
    from cnnlab.facedet.evaluation import evaluate_folder

    gt_dir = args.ground_truth or _default_ground_truth()
    if gt_dir is None:
        raise SystemExit("cnnlab eval widerface: no ground truth: pass --ground-truth DIR or set CNNLAB_DATA_DIR "
                         "to a folder holding widerface/eval_tools/ground_truth/")
    summary = evaluate_folder(args.predictions, gt_dir, args.out)
    print(json.dumps(summary, indent=2))
    return 0


def add_eval_parser(evaluate_subparsers) -> None:
    p = evaluate_subparsers.add_parser("widerface", help="score detections with the official WIDER FACE protocol")
    p.add_argument("--predictions", type=Path, required=True,
                   help="folder of submission files <event>/<image>.txt (name, count, 'x y w h score' lines)")
    p.add_argument("--ground-truth", type=Path, default=None,
                   help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat "
                        "(default: $CNNLAB_DATA_DIR/widerface/eval_tools/ground_truth)")
    p.add_argument("--out", type=Path, default=None, help="write results.json and pr_curves.png here")
    p.set_defaults(func=run_eval)
