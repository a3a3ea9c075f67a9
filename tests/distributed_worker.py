"""One process of a tiny training run on 1 or more processes (tests/test_distributed.py starts these):
``python tests/distributed_worker.py WORKDIR [ADDRESS NUM_PROCESSES PROCESS_ID] [--stop-at I:STEP:HOW]`` prints
the results and training losses as JSON. ``--stop-at 0:13:raise``: process 0 fails when asked for training
batch 13 (the engine saves what it has); ``1:13:exit``: process 1 ends at once there (``os._exit``, as if
killed). ``--fit 40,30``: a warm-up + cosine run with a time budget whose fit (``steps_within_budget``) gives
40 steps on process 0 and 30 on process 1, as different timings would."""

import argparse
import json
import os

from cnnlab.train import distributed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("cluster", nargs="*")
    parser.add_argument("--stop-at", default=None)
    parser.add_argument("--fit", default=None)
    args = parser.parse_args()
    if args.cluster:
        distributed.initialize(args.cluster[0], int(args.cluster[1]), int(args.cluster[2]),
                               heartbeat_timeout_seconds=10)  # a dead peer is noticed within the test's timeout
    import train_tiny
    from cnnlab import train

    class StopAt(train.ArraySource):
        def __init__(self, source, at, how):
            super().__init__(**source.arrays)
            self.at, self.how, self.calls = at, how, 0

        def __getitem__(self, indices):
            if len(indices) > 1:
                if self.calls == self.at:
                    if self.how == "exit":
                        os._exit(3)
                    raise RuntimeError(f"stopped at training batch {self.at}")
                self.calls += 1
            return super().__getitem__(indices)

    source = None
    process, at, how = (args.stop_at or "-1:0:").split(":")
    if int(process) == (int(args.cluster[2]) if args.cluster else 0):
        source = StopAt(train_tiny.sources()[0], int(at), how)
    overrides = {}
    if args.fit:
        from cnnlab.train import loop
        fitted = int(args.fit.split(",")[int(args.cluster[2]) if args.cluster else 0])
        loop.steps_within_budget = lambda *unused: fitted
        overrides = dict(schedule="cosine", warmup_steps=20, lr_boundaries=(), lr_scales=(), steps=60,
                         eval_every=10, checkpoint_every=25, time_budget=1.0)
    results = train_tiny.run(args.workdir, train_source=source, **overrides)
    losses = [r["loss"] for r in train.MetricsLog(f"{args.workdir}/metrics.jsonl").read() if r["split"] == "train"]
    print(json.dumps({"results": results, "losses": losses}))


if __name__ == "__main__":
    main()
