"""One default per setting: every stage flag that has a config key defaults to the schema's value, so a stage
run by hand trains what the workflow trains with that key left out; flags without a key are listed here."""

import argparse
import importlib.util
import sys

import pytest
from conftest import STAGES

from bdl.defaults import default, switch

RUNTIME = {"device": "device", "seed": "seed", "workers": "runtime.workers", "bf16": "runtime.bf16",
           "channels_last": "runtime.channels_last", "procs": "runtime.gpus_per_job", "protocol": "protocol"}
TRAINING = RUNTIME | {"checkpoint_every": "runtime.checkpoint_every", "log_every": "runtime.log_every",
                      "stop_before_limit": "runtime.stop_before_limit"}
SEGMENTER_WATCH = {"eval_every": "runtime.eval_every", "eval_split": "target.val_split"}
DATA = {f"{d}_{k}": f"{d}.{k}" for d in ("source", "target") for k in ("size", "on_mismatch")} | {
    "source_split": "source.split", "target_split": "target.train_split"}
KEYS = {
    "train_segmenter": TRAINING | DATA | SEGMENTER_WATCH | {k: f"segmenter.{k}" for k in (
        "backbone", "width", "weights", "aspp_dilations", "batch_size", "crop", "lr", "momentum", "weight_decay",
        "power", "lambda_adv", "lr_d", "ndf", "optimizer", "betas", "lr_schedule", "lr_horizon", "lr_step",
        "lr_gamma")},
    "train_translator": TRAINING | DATA | {k: f"translator.{k}" for k in (
        "ngf", "n_blocks", "ndf", "iterations", "decay_start", "lr_horizon", "batch_size", "crop", "lr", "beta1",
        "pool_size", "lambda_gan", "lambda_cycle", "lambda_idt", "lambda_per", "lambda_per_recon")},
    "pseudo_label": RUNTIME | DATA | {"mode": "pseudo_label.mode", "threshold": "pseudo_label.threshold",
                                      "batch_size": "runtime.inference_batch_size"},
    "translate": RUNTIME | DATA | {"batch_size": "runtime.inference_batch_size"},
    "evaluate": RUNTIME | DATA | {"num_predictions": "evaluate.num_predictions", "split": "target.val_split"},
    "cache_images": DATA | {"workers": "runtime.workers", "protocol": "protocol"},
    "check_data": DATA | {"target_train_split": "target.train_split", "target_val_split": "target.val_split"},
    "make_demo_data": {k: f"demo.{k}" for k in ("n_source", "n_target_train", "n_target_val", "width", "height",
                                                 "seed")},
    "gallery": DATA,
    "viewer": DATA | {"val_split": "target.val_split"} | {k: f"viewer.{k}" for k in ("sample", "thumb_width",
                                                                                     "per_page")},
}
# flags with no config key, and why they may keep a default of their own
OWN = {"gan_mode",  # CycleGAN's LSGAN, the paper's; no config key
       "count", "scale"}  # gallery layout


def parser_of(stage: str) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location(f"stage_{stage}", STAGES / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(STAGES))
    spec.loader.exec_module(module)
    return module.get_args_parser()


@pytest.mark.parametrize("stage", sorted(KEYS))
def test_every_stage_default_is_the_schema_s(stage):
    keys = KEYS[stage]
    for action in parser_of(stage)._actions:
        dest = action.dest
        if dest == "help" or action.required or isinstance(action, argparse._StoreTrueAction):
            continue
        if dest in keys:
            on_off = keys[dest] in ("runtime.bf16", "runtime.channels_last")
            want = switch(keys[dest]) if on_off else default(keys[dest])
            got = list(action.default) if isinstance(action.default, tuple) else action.default
            assert got == want, f"{stage} --{dest}: {action.default!r}, config {keys[dest]}: {want!r}"
        else:
            # a flag without a config key: an input/output path (no default) or a documented exception
            assert action.default is None or dest in OWN, f"{stage} --{dest} has its own default {action.default!r}"
