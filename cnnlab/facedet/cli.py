"""``cnnlab eval widerface``, ``cnnlab train facedet`` and ``cnnlab detect``: the §5 face detector's commands."""

import json
from pathlib import Path

from cnnlab.nn.resnet_weights import add_pretrained_arguments
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
    predictions = args.predictions
    if args.checkpoint is not None:
        from cnnlab.facedet.detect import predict_widerface
        from cnnlab.facedet.evaluation import load_ground_truth
        from cnnlab.facedet.train import load_trained

        if args.images is None or args.out is None:
            raise SystemExit("cnnlab eval widerface --checkpoint needs --images (WIDER_val/images) and --out")
        cfg, variables = load_trained(args.checkpoint)
        predictions = args.out / "predictions"
        predict_widerface(variables, cfg, load_ground_truth(gt_dir), args.images, predictions)
    elif predictions is None:
        raise SystemExit("cnnlab eval widerface: pass --predictions DIR or --checkpoint C --images DIR")
    summary = evaluate_folder(predictions, gt_dir, args.out)
    print(json.dumps(summary, indent=2))
    return 0


def add_eval_parser(evaluate_subparsers) -> None:
    p = evaluate_subparsers.add_parser("widerface", help="score detections with the official WIDER FACE protocol")
    p.add_argument("--predictions", type=Path, default=None,
                   help="folder of submission files <event>/<image>.txt (name, count, 'x y w h score' lines)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="instead: a run folder of cnnlab train facedet; detects on --images, writes OUT/predictions")
    p.add_argument("--images", type=Path, default=None, help="WIDER_val/images (with --checkpoint)")
    p.add_argument("--ground-truth", type=Path, default=None,
                   help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat "
                        "(default: $CNNLAB_DATA_DIR/widerface/eval_tools/ground_truth)")
    p.add_argument("--out", type=Path, default=None, help="write results.json and pr_curves.png here")
    p.set_defaults(func=run_eval)


def run_train(args) -> int:
    import dataclasses

    from cnnlab.facedet.train import load_config, train_facedet
    from cnnlab.nn.resnet_weights import pretrained_weights

    cfg = load_config(args.config)
    overrides = {"steps": args.steps, "image_size": args.image_size, "batch_size": args.batch_size,
                 "learning_rate": args.learning_rate, "channels": args.channels, "depth": args.depth, "grad": args.grad}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.steps is not None and args.learning_rate is not None:
        overrides.update(lr_boundaries=(), lr_scales=())  # a short run with its own rate: constant
    elif args.steps is not None:
        # keep the paper's decays at the same fractions of the run (50k and 60k of 70k)
        overrides.update(lr_boundaries=tuple(max(1, round(b * args.steps / cfg.steps)) for b in cfg.lr_boundaries))
    cfg = dataclasses.replace(cfg, **overrides)
    weights = pretrained_weights(args.backbone_weights, cfg.depth, from_scratch=args.from_scratch,
                                 flag="--backbone-weights")
    results = train_facedet(cfg, args.out, data=args.data, num_images=args.num_images, seed=args.seed,
                            eval_every=args.eval_every, backbone_weights=weights)
    print(json.dumps(results, indent=2))
    return 0


def add_train_parser(train_subparsers) -> None:
    p = train_subparsers.add_parser("facedet", help="train FaceNet (§5), one config per row of Table 4")
    p.add_argument("--config", required=True, help="v1_0 … v2_5 (experiments/facedet_<config>.py) or a .py path")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs, results.json); resumes")
    p.add_argument("--data", default="synthetic",
                   help="'synthetic' (LFW faces on photographs), an official WIDER FACE folder "
                        "(wider_face_split/, WIDER_train/, WIDER_val/), or 'tfds' / 'tfds:train[:2000]' "
                        "(tensorflow-datasets' wider_face, online; the decoded images are held in memory: "
                        "slice the train split on small machines)")
    p.add_argument("--num-images", type=int, default=64, help="synthetic training images")
    for name, kind in (("steps", int), ("image-size", int), ("batch-size", int), ("learning-rate", float),
                       ("channels", int), ("depth", int), ("eval-every", int)):
        p.add_argument(f"--{name}", type=kind, default=None, help="override the config's value")
    p.add_argument("--grad", choices=("custom", "autodiff"), default=None,
                   help="backward pass: the paper's equations (custom) or JAX autodiff; default: the config's (custom)")
    p.add_argument("--seed", type=int, default=0)
    add_pretrained_arguments(p, "--backbone-weights")
    p.set_defaults(func=run_train)


def run_detect(args) -> int:
    from cnnlab.facedet.detect import detect_files, time_detect
    from cnnlab.facedet.train import load_trained

    cfg, variables = load_trained(args.checkpoint)
    if args.paths:
        results = detect_files(variables, cfg, args.paths, args.out, threshold=args.threshold,
                               max_frames=args.max_frames, every=args.every)
        images = [r for r in results if "image" in r]
        frames = [f for r in results if "video" in r for f in r["frames"]]
        faces = sum(len(r["faces_x1y1x2y2_score"]) for r in images + frames)
        print(f"{faces} faces in {len(images)} images and {len(frames)} detected frames of "
              f"{len(results) - len(images)} videos -> {args.out}")
    if args.benchmark:
        print(json.dumps({"ms_per_image": time_detect(variables, cfg), "image_size": cfg.image_size}))
    return 0


def add_detect_parser(commands) -> None:
    p = commands.add_parser("detect", help="detect faces in images and videos with a trained FaceNet")
    p.add_argument("paths", nargs="*", help="image files (.jpg .png .bmp), videos (.mp4 .avi .mov .mkv .webm) "
                                            "or folders of them")
    p.add_argument("--checkpoint", type=Path, required=True, help="run folder written by cnnlab train facedet")
    p.add_argument("--out", type=Path, default=Path("detections"),
                   help="annotated images and videos (<name>.mp4, same fps) + detections.json")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum face probability to report")
    p.add_argument("--max-frames", type=int, default=None, help="read at most this many frames of each video")
    p.add_argument("--every", type=int, default=1,
                   help="detect on every K-th video frame (the frames between are drawn with the last boxes)")
    p.add_argument("--benchmark", action="store_true", help="print ms per image at the model's input size")
    p.set_defaults(func=run_detect)
