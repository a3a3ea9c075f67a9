"""``cnnlab export --checkpoint RUN --format stablehlo|onnx --out FILE [--batch N | --dynamic-batch]``."""

import json


def add_parser(commands) -> None:
    p = commands.add_parser("export", help="export a trained run to StableHLO or ONNX (runs without cnnlab)")
    p.add_argument("--checkpoint", required=True, help="a run folder of `cnnlab train mnist|seqmnist|facedet|caption`")
    p.add_argument("--format", required=True, choices=("stablehlo", "onnx"),
                   help="stablehlo: serialised jax.export (CPU and CUDA); "
                        "onnx: jax2onnx (pip install 'cnnlab[export]')")
    p.add_argument("--out", required=True, help="the file to write; companions (TCN step, captioner decoder step) "
                   "go beside it as <stem>.<part><suffix>, and a <file>.json beside each")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=1, help="fixed batch size of the inputs (default 1)")
    batch.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch dimension N")
    p.add_argument("--no-nms", action="store_true", help="FaceNet: every anchor's box and score, without NMS "
                   "(then cnnlab.export.postprocess.nms, NumPy only)")
    p.set_defaults(func=main)


def main(args) -> int:
    from cnnlab.export import export_run

    written = export_run(args.checkpoint, args.format, args.out, batch=None if args.dynamic_batch else args.batch,
                         nms=not args.no_nms)
    for path in written:
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
            shapes = ", ".join(f"{t['name']} {t['dtype']}{t['shape']}" for t in doc["inputs"])
            outs = ", ".join(f"{t['name']} {t['dtype']}{t['shape']}" for t in doc["outputs"])
            print(f"{path.with_suffix('')}: ({shapes}) -> ({outs})")
    return 0
