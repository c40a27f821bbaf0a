# Config loading, validation and the input functions that wire round k to round k-1.
import os
import shlex
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

sys.path.insert(0, str(Path(workflow.basedir)))
from bdl.cli import option_args  # noqa: E402  (the stages' own flag spelling; light: no torch)

SCHEMA = yaml.safe_load(Path(workflow.source_path("../schemas/config.schema.yaml")).read_text())

# Jobs call `python stages/<stage>.py`: make `python` the interpreter running this workflow (a venv's,
# say), also inside cluster jobs, which load this file again.
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\"; ")


def schema_defaults(schema):
    """The full default config: each object's properties filled from their 'default'."""
    if schema.get("type") == "object" and "properties" in schema:
        return {k: schema_defaults(v) for k, v in schema["properties"].items()}
    return schema.get("default")


def merged(defaults, user):
    out = dict(defaults)
    for k, v in user.items():
        out[k] = merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
    return out


def config_error(message):
    # one line, before any job runs; snakemake would otherwise print a long validation dump
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def is_dry_run():
    # snakemake 9 knows -n at parse time through its output settings; workflow.dryrun only once it executes
    return bool(getattr(getattr(workflow, "output_settings", None), "dryrun", False) or workflow.dryrun)


def validate_config(cfg):
    full = merged(schema_defaults(SCHEMA), cfg)
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(full), key=lambda e: list(e.absolute_path))
    for err in errors:
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            where = f"{key}." if err.absolute_path else ""
            config_error(f"config key '{where}{extra[0]}' is not a known key (see config/README.md)")
        config_error(f"config key '{key}': {err.message}")
    if (full["source"]["root"] is None) != (full["target"]["root"] is None):
        config_error("config keys 'source.root' and 'target.root': give both (real data) or neither (demo pair)")
    results = Path(full["results"])
    if is_dry_run():  # a dry run leaves no trace: ask whether the folder could be made, make nothing
        nearest = next(p for p in (results, *results.absolute().parents) if p.exists())
        if not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
            why = "not a folder" if not nearest.is_dir() else "not writable"
            config_error(f"config key 'results': folder '{results}' is not writable ('{nearest}' is {why})")
        return full
    try:
        results.mkdir(parents=True, exist_ok=True)
        # a uniquely named probe: every SLURM job parses this file too, several at once in one folder
        with tempfile.TemporaryFile(dir=results):
            pass
    except OSError as exc:
        config_error(f"config key 'results': folder '{results}' is not writable ({exc.strerror})")
    return full


def validate_layout(cfg):
    """List the configured data before any job: missing roots, wrong layouts, empty splits and images
    without labels stop the workflow here, in one line. Pixels are checked by the check_data job.
    Returns the header size of each training domain's first image: domain -> ((w, h), file)."""
    from bdl.data.readers import DataError, DatasetSpec, image_size

    first = {}
    try:
        for domain, split, labelled in (("source", cfg["source"]["split"], True),
                                        ("target", cfg["target"]["train_split"], cfg["oracle"]),
                                        ("target", cfg["target"]["val_split"], True)):
            d = cfg[domain]
            spec = DatasetSpec(d["format"], d["root"], split, d["list_file"], d["label_map"])
            samples = spec.samples(with_labels=labelled)
            for sample in samples:
                if sample.label is not None and not sample.label.is_file():
                    raise DataError(f"{sample.label}: label file not found for image {sample.image.name}")
            first.setdefault(domain, (image_size(samples[0].image), str(samples[0].image)))
    except DataError as exc:
        config_error(f"{domain} data: {exc}")
    return first


def validate_weights(cfg):
    """segmenter.weights that is missing (torchvision's cache offline, a path) or does not fit stops here."""
    from bdl.preflight import weights_refusal

    refusal = weights_refusal(cfg["segmenter"])
    if refusal:
        config_error(refusal)


def validate_sizes(cfg, first_frames):
    """Frames or crops too small for a discriminator stop here, naming the key (bdl.sizes)."""
    from bdl.sizes import size_refusal

    frames = {}
    for domain in ("source", "target"):
        if cfg[domain]["size"] is not None:
            frames[domain] = (cfg[domain]["size"], None)
        elif first_frames:
            frames[domain] = first_frames[domain]
        else:
            frames[domain] = ((cfg["demo"]["width"], cfg["demo"]["height"]), "demo.width/demo.height")
    refusal = size_refusal(cfg, frames)
    if refusal:
        config_error(refusal)


_full = validate_config(config)
config.clear()
config.update(_full)
validate_sizes(config, validate_layout(config) if config["source"]["root"] is not None else None)
if str(getattr(workflow, "exec_mode", "default")).lower().endswith("default"):
    # the fit check builds the model (~2 s with torch): once, where the run starts, not in each job's parse
    validate_weights(config)

R = config["results"]
K = config["rounds"]
N = config["ssl_steps"]
DEMO = config["source"]["root"] is None
DEMO_DIR = f"{R}/data"
SEG = config["segmenter"]
TRANS = config["translator"]
RT = config["runtime"]


wildcard_constraints:
    k=r"\d+",
    n=r"\d+",
    model=r"m0|oracle|round\d+/(adv|ssl\d+)",


def flags(**options):
    """'--key value' pairs for a shell command, every item shell-quoted (``bdl.cli.option_args``)."""
    return shlex.join(option_args(options))


def data_flags(domain, split=None):
    d = config[domain]
    if DEMO:
        fmt, root = ("gta5", f"{DEMO_DIR}/source") if domain == "source" else ("cityscapes", f"{DEMO_DIR}/target")
    else:
        fmt, root = d["format"], d["root"]
    split = split or (d["split"] if domain == "source" else d["train_split"])
    return flags(**{f"{domain}_format": fmt, f"{domain}_root": root, f"{domain}_list": d["list_file"],
                    f"{domain}_label_map": d["label_map"], f"{domain}_size": d["size"],
                    f"{domain}_on_mismatch": d["on_mismatch"], f"{domain}_split": split})


# How a job runs. Passed as params, so a change reruns the jobs (device and logging can change results).
def _switch(value):
    return {True: "on", False: "off"}.get(value, value)


RUNTIME = flags(device=config["device"], workers=RT["workers"], bf16=_switch(RT["bf16"]),
                channels_last=_switch(RT["channels_last"]))
TRAIN_RUNTIME = flags(checkpoint_every=RT["checkpoint_every"], log_every=RT["log_every"])


def seg_train_flags(mode):
    it = SEG["iterations"]["adversarial" if mode == "adversarial" else mode]
    return flags(mode=mode, backbone=SEG["backbone"], width=SEG["width"], weights=SEG["weights"],
                 freeze_bn=SEG["freeze_bn"], aspp_dilations=SEG["aspp_dilations"], iterations=it,
                 batch_size=SEG["batch_size"], crop=SEG["crop"], no_flip=not SEG["flip"],
                 lr=SEG["ssl_lr"] if mode == "ssl" and SEG["ssl_lr"] is not None else SEG["lr"],
                 momentum=SEG["momentum"], weight_decay=SEG["weight_decay"], power=SEG["power"],
                 lambda_adv=SEG["lambda_adv"], lr_d=SEG["lr_d"], ndf=SEG["ndf"], seed=config["seed"])


def translator_flags(k):
    t = TRANS
    return flags(ngf=t["ngf"], n_blocks=t["n_blocks"], ndf=t["ndf"], iterations=t["iterations"],
                 decay_start=t["decay_start"], batch_size=t["batch_size"], crop=t["crop"], lr=t["lr"],
                 beta1=t["beta1"], pool_size=t["pool_size"], lambda_gan=t["lambda_gan"],
                 lambda_cycle=t["lambda_cycle"], lambda_idt=t["lambda_idt"], lambda_per=t["lambda_per"],
                 lambda_per_recon=t["lambda_per_recon"], seed=config["seed"] + 1000 * int(k))


def uses_perceptual(k):
    return int(k) > 1 or TRANS["perceptual_round1"]


def segmenter_after(k, n):
    """M after SSL step n of round k (n = 0: the adversarial model); round 0 is M0."""
    k, n = int(k), int(n)
    if k == 0:
        return f"{R}/m0/segmenter.pt"
    return f"{R}/round{k}/adv/segmenter.pt" if n == 0 else f"{R}/round{k}/ssl{n}/segmenter.pt"


def final_segmenter(k):
    return segmenter_after(k, N if int(k) > 0 else 0)


def cache_of(domain):
    """The domain's decoded image cache as a list of one input, or none when the config turns it off."""
    return [f"{R}/cache/{domain}.h5"] if config[domain]["cache"] else []


def cache_flags(*domains):
    return " ".join(flags(**{f"{d}_cache": path}) for d in domains for path in cache_of(d))


def data_inputs():
    """Every job that reads data waits for the data check, so bad data fails before training."""
    return [f"{R}/data_check.json"]


def evaluated_models():
    """Row name in metrics.tsv -> folder of the model under results, in the order of the loop."""
    models = {"m0": "m0"}
    for k in range(1, K + 1):
        models[f"round{k}_adv"] = f"round{k}/adv"
        models.update({f"round{k}_ssl{n}": f"round{k}/ssl{n}" for n in range(1, N + 1)})
    if config["oracle"]:
        models["oracle"] = "oracle"
    return models


def pseudo_made_by(model):
    """The pseudo-label set a model of the loop made for the next SSL step, if it made one."""
    for k in range(1, K + 1):
        for n in range(0, N):
            if model == (f"round{k}/adv" if n == 0 else f"round{k}/ssl{n}"):
                return [f"{R}/round{k}/ssl{n + 1}/pseudo.h5"]
    return []


def pseudo_sets():
    return {f"round{k}_ssl{n}": f"{R}/round{k}/ssl{n}/pseudo.h5" for k in range(1, K + 1) for n in range(1, N + 1)}


def all_outputs():
    """The table, and every on-disk set with its gallery: sets are targets themselves, so deleting one
    regenerates it (and, being newer, everything made from it)."""
    out = [f"{R}/metrics.tsv", f"{R}/diagnostics.tsv"]
    for k in range(1, K + 1):
        out += [f"{R}/round{k}/translated.h5", f"{R}/round{k}/gallery.png"]
        for n in range(1, N + 1):
            out += [f"{R}/round{k}/ssl{n}/pseudo.h5", f"{R}/round{k}/ssl{n}/gallery.png"]
    return out


def res(kind):
    """Resources of a job; GPU stages ask for runtime.gpu GPUs (a SLURM profile maps it to --gpus)."""
    return {"mem_mb": RT["mem_mb"], "runtime": RT["runtime_min"], "gpu": RT["gpu"] if kind == "gpu" else 0}

