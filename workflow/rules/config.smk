# The config: defaults from the schema, validation, and the checks that stop a run before its first job
# (layout, frame sizes, weights). Every key is described in ../schemas/config.schema.yaml.
import os
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

# the repository this file belongs to, wherever snakemake runs (-s from another folder, or as a module)
ROOT = Path(workflow.current_basedir).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCHEMA = yaml.safe_load(Path(workflow.source_path("../schemas/config.schema.yaml")).read_text())

from bdl.defaults import merged, schema_defaults  # noqa: E402


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
    for i, folder in enumerate(full["import_translated"]):
        if i >= full["rounds"]:
            config_error(f"config key 'import_translated': {len(full['import_translated'])} folders for "
                         f"{full['rounds']} round(s)")
        if folder is not None and not Path(folder).is_dir():
            config_error(f"config key 'import_translated[{i}]': folder '{folder}' not found")
    if full["target"]["report_split"] == full["target"]["val_split"]:
        config_error("config key 'target.report_split': the split settings are chosen on (target.val_split); "
                     "report on another (stages/hold_out.py cuts one in two)")
    if full["m0_target_bn"] and full["segmenter"]["backbone"].startswith("vgg"):
        config_error(f"config key 'm0_target_bn': segmenter.backbone {full['segmenter']['backbone']} (FCN-8s) has no "
                     "BatchNorm statistics to re-estimate")
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
    Returns the header size of each training domain's first image, domain -> ((w, h), file), and the number
    of frames of each listing, (domain, split) -> n."""
    from bdl.data.readers import DataError, DatasetSpec, image_size

    first, counts = {}, {}
    try:
        splits = [("source", cfg["source"]["split"], True), ("target", cfg["target"]["train_split"], cfg["oracle"]),
                  ("target", cfg["target"]["val_split"], True)]
        splits += [("target", cfg["target"]["report_split"], True)] if cfg["target"]["report_split"] else []
        for domain, split, labelled in splits:
            d = cfg[domain]
            spec = DatasetSpec(d["format"], d["root"], split, d["list_file"], d["label_map"])
            samples = spec.samples(with_labels=labelled)
            for sample in samples:
                if sample.label is not None and not sample.label.is_file():
                    raise DataError(f"{sample.label}: label file not found for image {sample.image.name}")
            first.setdefault(domain, (image_size(samples[0].image), str(samples[0].image)))
            counts[(domain, split)] = len(samples)
    except DataError as exc:
        config_error(f"{domain} data: {exc}")
    return first, counts


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
    return {domain: tuple(size) for domain, (size, _) in frames.items()}


def plan_disk(cfg, counts, frames):
    """Print what the run will write and stop, in one line, if the results' file system cannot hold it."""
    from bdl.plan import disk_check, disk_plan

    if counts is None:  # the demo pair: its own sizes
        counts = {"source": cfg["demo"]["n_source"], "target_train": cfg["demo"]["n_target_train"]}
    else:
        counts = {"source": counts[("source", cfg["source"]["split"])],
                  "target_train": counts[("target", cfg["target"]["train_split"])]}
    line, refusal = disk_check(disk_plan(cfg, counts, frames), cfg["results"], cfg["runtime"]["disk_check"])
    print(line, file=sys.stderr)
    if refusal:
        config_error(refusal)


def plan_time(cfg):
    """With runtime.rates: each training stage's hours and the submissions its time limit makes it need, from the
    limits Snakemake resolved (a profile's set-resources, else default-resources: runtime)."""
    from bdl.plan import read_rates, time_lines, training_jobs

    try:
        rates = read_rates(cfg["runtime"]["rates"])
    except ValueError as exc:
        config_error(f"runtime.rates: {exc}")
    settings = workflow.resource_settings
    default = dict(getattr(settings, "default_resources", None) or {})
    limits = {}
    for stage in training_jobs(cfg):
        res = {**default, **dict((getattr(settings, "overwrite_resources", None) or {}).get(stage) or {})}
        runtime = getattr(res.get("runtime"), "raw", res.get("runtime"))
        limits[stage] = runtime if isinstance(runtime, (int, float)) else None
    print("\n".join(time_lines(cfg, rates, limits)), file=sys.stderr)


_full = validate_config(config)
config.clear()
config.update(_full)
_first, _counts = validate_layout(config) if config["source"]["root"] is not None else (None, None)
_frames = validate_sizes(config, _first)
if str(getattr(workflow, "exec_mode", "default")).lower().endswith("default"):
    # once, where the run starts, not in each job's parse: the fit check builds the model (~2 s with torch)
    plan_disk(config, _counts, _frames)
    if config["runtime"]["rates"]:
        plan_time(config)
    validate_weights(config)
