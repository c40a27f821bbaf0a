# The wiring: how jobs run, their flags, and the input functions that connect round k to round k-1.
import shlex
import sys
from pathlib import Path

from bdl.cli import option_args  # noqa: E402  (the stages' own flag spelling; light: no torch)
from bdl.defaults import default, on_off  # noqa: E402
from bdl.gpu_slots import visible_gpus  # noqa: E402
from bdl.jobs import shell_prefix, uses_conda  # noqa: E402

# Jobs call `python "$BDL_STAGES"/<stage>.py` with the interpreter running this workflow, or under
# --software-deployment-method conda the rule env's (bdl.jobs); cluster jobs load this file again.
deployment = getattr(getattr(workflow, "deployment_settings", None), "deployment_method", None)
shell.prefix(shell_prefix(ROOT, sys.executable, uses_conda(deployment)))

# One GPU job per GPU on a workstation: the gpu resource is capped at the GPUs this machine shows, unless
# --resources gpu=N says otherwise; each GPU job then locks one device (bdl.gpu_slots). A SLURM submit host
# usually shows none, and SLURM hands each job its own.
if config["runtime"]["gpu"] and workflow.is_main_process and "gpu" not in workflow.global_resources:
    gpus = visible_gpus()
    if gpus:
        workflow.register_resource("gpu", len(gpus))

R = config["results"]
# One seed: the loop in <results> itself, as always. Several: once per seed in <results>/seed<s>, a wildcard
# of every job that depends on the seed (RS); the demo data, the data check and the image caches stay in R,
# shared. Input functions build concrete paths (Snakemake fills no wildcards in what they return): run_root(w).
SEEDS = config["seeds"] or [config["seed"]]
SEEDED = len(SEEDS) > 1
RS = f"{R}/seed{{seed}}" if SEEDED else R
# the report's subcategory of a seed's outputs ("" with one seed: the headings it always had)
SEED_HEAD = "seed {seed}, " if SEEDED else ""
SEED_LABEL = {"seed": "{seed}"} if SEEDED else {}
GPJ = config["runtime"]["gpus_per_job"]  # processes per model job, one GPU each (bdl.distributed)
K = config["rounds"]
N = config["ssl_steps"]
DEMO = config["source"]["root"] is None
DEMO_DIR = f"{R}/data"
SEG = config["segmenter"]
TRANS = config["translator"]
RT = config["runtime"]
REPORT = config["target"]["report_split"]  # a second labelled split every model is also scored on (or None)


# rounds whose translated set is imported (import_translated) and rounds whose F_k is trained; a regex that
# matches nothing where a kind has no round
_IMPORTED = [str(i + 1) for i, folder in enumerate(config["import_translated"]) if folder]
IMPORTED_ROUNDS = "|".join(_IMPORTED) or "(?!)"
TRAINED_ROUNDS = rf"(?!(?:{'|'.join(_IMPORTED)})(?!\d))\d+" if _IMPORTED else r"\d+"


wildcard_constraints:
    seed=r"\d+",
    k=r"\d+",
    n=r"\d+",
    model=r"m0|oracle|m0_target_bn|round\d+/(adv|ssl\d+)",


def run_root(w):
    """The results folder of a job's seed."""
    return f"{R}/seed{w.seed}" if SEEDED else R


def seed_of(w):
    """The seed a job trains with."""
    return int(w.seed) if SEEDED else SEEDS[0]


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


# The protocol of resizing, scoring and pseudo-labelling (bdl/protocol.py), for every stage that resizes images
# or runs M; only where it leaves the default, so the default's commands are the ones they always were.
PROTOCOL = flags(protocol=config["protocol"] if config["protocol"] != default("protocol") else None)

# How a job runs. Passed as params, so a change reruns the jobs (device and logging can change results).
# --procs only where it leaves 1: a 1-process job's command is the one it always was (no rerun). Every model
# stage also takes the protocol.
RUNTIME = " ".join(filter(None, [flags(device=config["device"], workers=RT["workers"], bf16=on_off(RT["bf16"]),
                                       channels_last=on_off(RT["channels_last"]), procs=GPJ if GPJ > 1 else None),
                                 PROTOCOL]))
# --stop-before-limit only where it is not the stages' default, likewise (it never changes results)
TRAIN_RUNTIME = flags(checkpoint_every=RT["checkpoint_every"], log_every=RT["log_every"],
                      stop_before_limit=None if RT["stop_before_limit"] == default("runtime.stop_before_limit")
                      else RT["stop_before_limit"])


def watch_flags(model, m0=False):
    """What a training job shows while it runs (bdl.training.Watch): TensorBoard events under
    <results>/tensorboard/, named like the model; for a segmenter with runtime.eval_every, a val score (M0
    reads no target data otherwise, so it gets the target's flags here)."""
    options = {}
    if RT["tensorboard"]:
        options["tensorboard"] = f"{R}/tensorboard/{Path(model).relative_to(R).with_suffix('')}"
    if Path(model).name == "segmenter.pt" and RT["eval_every"] > 0:
        options |= {"eval_every": RT["eval_every"], "eval_split": config["target"]["val_split"]}
        return " ".join([flags(**options), data_flags("target") if m0 else ""])
    return flags(**options)


def block_flags(block, skip=(), **given):
    """A config block's keys as the stage flags of the same name (``skip`` left out), ``given`` added."""
    return flags(**{key: value for key, value in block.items() if key not in skip} | given)


# A choice's own keys reach the stage only with that choice, and the choosing key only where it leaves the
# stage's default: the jobs that keep the default choice get no new flag, hence no rerun.
SEG_CHOICES = {"optimizer": {"adam": ("betas",)}, "lr_schedule": {"step": ("lr_step", "lr_gamma")}}


def unchosen():
    skip = []
    for key, keys_of in SEG_CHOICES.items():
        if SEG[key] == default(f"segmenter.{key}"):
            skip.append(key)
        skip += [k for value, keys in keys_of.items() if value != SEG[key] for k in keys]
    return tuple(skip)


def seg_train_flags(mode, seed):
    """Flags of a segmenter training, ``mode`` as the config names its iterations."""
    lr = SEG["ssl_lr"] if mode == "ssl" and SEG["ssl_lr"] is not None else SEG["lr"]
    skip = ("iterations", "flip", "ssl_lr", "init", *unchosen())
    return block_flags(SEG, skip, mode=mode, iterations=SEG["iterations"][mode], lr=lr, no_flip=not SEG["flip"],
                       seed=seed)


def translator_flags(k, seed):
    return block_flags(TRANS, ("perceptual_round1", "init"), seed=seed + 1000 * int(k))


def previous_translator(k, root):
    """F_{k-1}, which F_k starts from with translator.init: previous (none in round 1, or after an imported set)."""
    k = int(k)
    if TRANS["init"] != "previous" or k < 2 or config["import_translated"][k - 2: k - 1] not in ([], [None]):
        return []
    return [f"{root}/round{k - 1}/translator.pt"]


def horizon_refusal():
    """A schedule horizon shorter than a stage it schedules, as one line naming the key (the rate would pass zero)."""
    stages = {"source": True, "adversarial": True, "ssl": N > 0, "oracle": config["oracle"]}
    if SEG["lr_schedule"] == "poly" and SEG["lr_horizon"] is not None:
        for mode, used in stages.items():
            if used and SEG["iterations"][mode] > SEG["lr_horizon"]:
                return (f"config key 'segmenter.lr_horizon': {SEG['lr_horizon']} is shorter than "
                        f"segmenter.iterations.{mode} ({SEG['iterations'][mode]}); poly would pass zero before the stop")
    if TRANS["lr_horizon"] is not None and TRANS["iterations"] > TRANS["lr_horizon"]:
        return (f"config key 'translator.lr_horizon': {TRANS['lr_horizon']} is shorter than translator.iterations "
                f"({TRANS['iterations']})")
    return None


_refusal = horizon_refusal()
if _refusal:
    config_error(_refusal)
for _key, _batch in (("segmenter.batch_size", SEG["batch_size"]), ("translator.batch_size", TRANS["batch_size"])):
    if _batch % GPJ:  # each process takes an equal slice of the global batch
        config_error(f"config key '{_key}': {_batch} does not divide among runtime.gpus_per_job ({GPJ}) processes; "
                     f"use a multiple of {GPJ} (the global batch is split across them)")


def job_gpus(asked):
    """The GPUs of a model job that asks for any: one per process (runtime.gpus_per_job), or more if asked."""
    return max(int(asked), GPJ) if int(asked) else 0


def profile_gpus_per_job():
    """A profile's gpu per job (profiles/slurm sets 1 for each model job) wins over the one the workflow gives;
    with several processes per job it becomes gpus_per_job as well, so that sbatch asks for --gpus=N. Snakemake
    keeps --set-resources as Resources, parsed once when the first job type is declared (this runs before)."""
    from snakemake.resources import Resource, Resources

    given = workflow.resource_settings.overwrite_resources
    for name, resources in list(given.items()):
        gpu = dict(resources.items()).get("gpu")
        raw = getattr(gpu, "raw", gpu)
        if gpu is None or not str(raw).isdigit():
            continue
        given[name] = Resources({**dict(Resources.from_mapping(resources).items()),
                                 "gpu": Resource("gpu", job_gpus(raw))})
    workflow.resource_settings.__dict__.pop("_parsed_overwrite_resources", None)


if GPJ > 1:
    profile_gpus_per_job()


def start_from(model):
    """The M a training job starts from (``--init``): the one before it with segmenter.init: previous; none with
    weights, so the job builds M from backbone and weights as the reference does and the DAG no longer chains
    one M to the next (the pseudo-labels and the translator's judge still do)."""
    return model if SEG["init"] == "previous" else []


def uses_perceptual(k):
    return int(k) > 1 or TRANS["perceptual_round1"]


def segmenter_after(k, n, root=RS):
    """M after SSL step n of round k (n = 0: the adversarial model); round 0 is M0. ``root``: the seed's
    results folder (a job's run_root), or the pattern RS in a rule's static input."""
    k, n = int(k), int(n)
    if k == 0:
        return f"{root}/m0/segmenter.pt"
    return f"{root}/round{k}/adv/segmenter.pt" if n == 0 else f"{root}/round{k}/ssl{n}/segmenter.pt"


def final_segmenter(k, root=RS):
    return segmenter_after(k, N if int(k) > 0 else 0, root)


def pseudo_labellers(k, n, root):
    """The M whose predictions label SSL step n of round k: the one before the step, or with
    pseudo_label.ensemble every M of the round so far (its adversarial model and earlier SSL steps)."""
    last = segmenter_after(k, int(n) - 1, root)
    if not config["pseudo_label"]["ensemble"] or int(n) < 2:
        return [last]
    return [segmenter_after(k, i, root) for i in range(int(n))]


def model_input_flags(input):
    """The named model inputs a training job was given (translated set, pseudo-labels, initial M) as flags."""
    named = {key: getattr(input, key, None) for key in ("translated", "pseudo", "init")}
    return flags(**{key: str(value) for key, value in named.items() if value})


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
    if config["m0_target_bn"]:
        models["m0_target_bn"] = "m0_target_bn"
    return models


def pseudo_made_by(model, root):
    """The pseudo-label set a model of the loop made for the next SSL step, if it made one."""
    for k in range(1, K + 1):
        for n in range(0, N):
            if model == (f"round{k}/adv" if n == 0 else f"round{k}/ssl{n}"):
                return [f"{root}/round{k}/ssl{n + 1}/pseudo.h5"]
    return []


def pseudo_sets():
    return {f"round{k}_ssl{n}": f"{RS}/round{k}/ssl{n}/pseudo.h5" for k in range(1, K + 1) for n in range(1, N + 1)}


def run_outputs(root):
    """One seed's table, and every on-disk set with its gallery: sets are targets themselves, so deleting one
    regenerates it (and, being newer, everything made from it)."""
    out = [f"{root}/metrics.tsv", f"{root}/diagnostics.tsv", f"{root}/final/segmenter.pt"]
    out += [f"{root}/metrics_report.tsv"] if REPORT else []
    for k in range(1, K + 1):
        out += [f"{root}/round{k}/gallery.png"]
        out += [f"{root}/round{k}/translated.h5"] if config["keep_translated"] else []
        for n in range(1, N + 1):
            out += [f"{root}/round{k}/ssl{n}/pseudo.h5", f"{root}/round{k}/ssl{n}/gallery.png"]
    return out


def seed_summary_outputs():
    """The summary over several seeds (none with one), and the report split's beside it."""
    names = ["seed_summary"] + (["seed_summary_report"] if REPORT else [])
    return [f"{R}/{name}.{ext}" for name in names for ext in ("tsv", "json", "png")] if SEEDED else []


def all_outputs():
    """Every seed's outputs and viewer, and with several seeds their summary."""
    roots = [f"{R}/seed{s}" for s in SEEDS] if SEEDED else [R]
    return [path for root in roots for path in run_outputs(root)] + [f"{root}/viewer" for root in roots] + (
        seed_summary_outputs())


def res(kind):
    """Resources of a job; GPU stages ask for runtime.gpu GPUs (a SLURM profile maps it to --gpus)."""
    return {"mem_mb": RT["mem_mb"], "runtime": RT["runtime_min"], "gpu": job_gpus(RT["gpu"]) if kind == "gpu" else 0}
