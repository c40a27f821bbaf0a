#!/usr/bin/env python
"""Generate the offline demo domain pair: ``<out>/source`` (GTA5 layout) and ``<out>/target`` (Cityscapes
layout, train + val), deterministic in --seed. See bdl/data/demo.py for how the two looks differ."""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.cli import positive_int, run  # noqa: E402
from bdl.defaults import default  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="folder to create (replaced as a whole when complete)")
    for key in ("n_source", "n_target_train", "n_target_val", "width", "height"):
        p.add_argument("--" + key.replace("_", "-"), type=positive_int, default=default(f"demo.{key}"))
    p.add_argument("--seed", type=int, default=default("demo.seed"), help="seed of the scene generator")
    return p


def main(args):
    from bdl.artifacts import write_json
    from bdl.data.demo import generate

    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    facts = generate(tmp, args.n_source, args.n_target_train, args.n_target_val, args.width, args.height, args.seed)
    write_json(tmp / "demo.json", facts)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"demo pair in {out}: {facts}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
