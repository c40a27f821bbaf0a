# Every model of the loop is scored on the target val split; the scores form the ablation table.


rule evaluate:
    input:
        data_inputs(),
        segmenter=f"{RS}/{{model}}/segmenter.pt",
        pseudo=lambda w: pseudo_made_by(w.model, run_root(w)),
    output:
        metrics=f"{RS}/{{model}}/eval.json",
        predictions=report(
            directory(f"{RS}/{{model}}/predictions"),
            patterns=["{name,.+(?<!_pred)}.png"],
            category="Predictions",
            subcategory=f"{SEED_HEAD}{{model}}",
            caption="../report/predictions.rst",
        ),
    params:
        args=lambda w: " ".join(
            [
                data_flags("target", split=config["target"]["val_split"]),
                flags(split=config["target"]["val_split"], num_predictions=config["evaluate"]["num_predictions"]),
            ]
        ),
        runtime=RUNTIME,
        pseudo=lambda w, input: flags(pseudo=input.pseudo[0]) if input.pseudo else "",
    benchmark:
        f"{RS}/benchmarks/{{model}}/evaluate.tsv"
    log:
        f"{RS}/logs/{{model}}/evaluate.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    shell:
        "BDL_GPUS={resources.gpu} python \"$BDL_STAGES/evaluate.py\" --segmenter {input.segmenter:q} {params.args} {params.pseudo} {params.runtime}"
        " --threads {threads}"
        " --predictions {output.predictions:q} --out {output.metrics:q} > {log:q} 2>&1"


# target.report_split: the same models scored on a second labelled split, kept apart from the tuned-on one
rule evaluate_report:
    input:
        f"{R}/data_check_report.json",
        segmenter=f"{RS}/{{model}}/segmenter.pt",
        pseudo=lambda w: pseudo_made_by(w.model, run_root(w)),
    output:
        f"{RS}/{{model}}/eval_report.json",
    params:
        args=lambda w: " ".join(
            [
                data_flags("target", split=REPORT),
                flags(split=REPORT, num_predictions=0),
            ]
        ),
        runtime=RUNTIME,
        pseudo=lambda w, input: flags(pseudo=input.pseudo[0]) if input.pseudo else "",
    benchmark:
        f"{RS}/benchmarks/{{model}}/evaluate_report.tsv"
    log:
        f"{RS}/logs/{{model}}/evaluate_report.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    shell:
        "BDL_GPUS={resources.gpu} python \"$BDL_STAGES/evaluate.py\" --segmenter {input.segmenter:q} {params.args} {params.pseudo} {params.runtime}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"


# m0_target_bn: M0 with the target's BatchNorm statistics, the normalisation-only yardstick (a row after the oracle)
rule target_bn:
    input:
        data_inputs(),
        cache_of("target"),
        segmenter=f"{RS}/m0/segmenter.pt",
    output:
        f"{RS}/m0_target_bn/segmenter.pt",
    params:
        args=lambda w: " ".join(
            [data_flags("target"), cache_flags("target"), flags(batch_size=RT["inference_batch_size"])]
        ),
        runtime=RUNTIME,
    benchmark:
        f"{RS}/benchmarks/m0_target_bn/target_bn.tsv"
    log:
        f"{RS}/logs/m0_target_bn/target_bn.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    shell:
        "BDL_GPUS={resources.gpu} python \"$BDL_STAGES/target_bn.py\" --segmenter {input.segmenter:q} {params.args} {params.runtime}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"


rule collect_metrics:
    input:
        [f"{RS}/{folder}/eval.json" for folder in evaluated_models().values()],
    output:
        report(
            f"{RS}/metrics.tsv",
            category="Ablation table",
            labels={"table": "mIoU per model"} | SEED_LABEL,
            caption="../report/metrics.rst",
        ),
    params:
        pairs=lambda w, input: " ".join(shlex.quote(f"{m}={p}") for m, p in zip(evaluated_models(), input)),
    log:
        f"{RS}/logs/collect_metrics.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python \"$BDL_STAGES/collect_metrics.py\" --eval {params.pairs} --out {output:q} > {log:q} 2>&1"


use rule collect_metrics as collect_metrics_report with:
    input:
        [f"{RS}/{folder}/eval_report.json" for folder in evaluated_models().values()],
    output:
        report(
            f"{RS}/metrics_report.tsv",
            category="Ablation table",
            labels={"table": "mIoU per model, report split"} | SEED_LABEL,
            caption="../report/metrics.rst",
        ),
    log:
        f"{RS}/logs/collect_metrics_report.log",


rule diagnostics:
    input:
        evals=[f"{RS}/{folder}/eval.json" for folder in evaluated_models().values()],
        pseudo=list(pseudo_sets().values()),
    output:
        report(
            f"{RS}/diagnostics.tsv",
            category="Ablation table",
            labels={"table": "diagnostics"} | SEED_LABEL,
            caption="../report/diagnostics.rst",
        ),
    params:
        evals=lambda w, input: " ".join(
            shlex.quote(f"{m}={p}") for m, p in zip(evaluated_models(), input.evals)
        ),
        pseudo=lambda w, input: " ".join(shlex.quote(f"{m}={p}") for m, p in zip(pseudo_sets(), input.pseudo)),
    log:
        f"{RS}/logs/diagnostics.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python \"$BDL_STAGES/diagnostics.py\" --eval {params.evals} --pseudo {params.pseudo} --out {output:q} > {log:q} 2>&1"


# Several seeds (config key seeds): each seed's table into one summary, the seeds' mean and spread per row.
rule seed_summary:
    input:
        [f"{R}/seed{s}/metrics.tsv" for s in SEEDS],
    output:
        table=report(
            f"{R}/seed_summary.tsv",
            category="Ablation table",
            labels={"table": "mean and std over seeds", "seed": "all"},
            caption="../report/seed_summary.rst",
        ),
        checks=f"{R}/seed_summary.json",
        plot=report(
            f"{R}/seed_summary.png",
            category="Ablation table",
            labels={"table": "mIoU per step over seeds", "seed": "all"},
            caption="../report/seed_summary.rst",
        ),
    params:
        pairs=lambda w, input: " ".join(shlex.quote(f"{s}={p}") for s, p in zip(SEEDS, input)),
    log:
        f"{R}/logs/seed_summary.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python \"$BDL_STAGES/seed_summary.py\" --metrics {params.pairs} --out {output.table:q}"
        " --checks {output.checks:q} --plot {output.plot:q} > {log:q} 2>&1"


use rule seed_summary as seed_summary_report with:
    input:
        [f"{R}/seed{s}/metrics_report.tsv" for s in SEEDS],
    output:
        table=report(
            f"{R}/seed_summary_report.tsv",
            category="Ablation table",
            labels={"table": "mean and std over seeds, report split", "seed": "all"},
            caption="../report/seed_summary.rst",
        ),
        checks=f"{R}/seed_summary_report.json",
        plot=report(
            f"{R}/seed_summary_report.png",
            category="Ablation table",
            labels={"table": "mIoU per step over seeds, report split", "seed": "all"},
            caption="../report/seed_summary.rst",
        ),
    log:
        f"{R}/logs/seed_summary_report.log",
