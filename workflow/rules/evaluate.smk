# Every model of the loop is scored on the target val split; the scores form the ablation table.


rule evaluate:
    input:
        data_inputs(),
        segmenter=f"{R}/{{model}}/segmenter.pt",
        pseudo=lambda w: pseudo_made_by(w.model),
    output:
        metrics=f"{R}/{{model}}/eval.json",
        predictions=report(
            directory(f"{R}/{{model}}/predictions"),
            patterns=["{name,.+(?<!_pred)}.png"],
            category="Predictions",
            subcategory="{model}",
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
        f"{R}/benchmarks/{{model}}/evaluate.tsv"
    log:
        f"{R}/logs/{{model}}/evaluate.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    shell:
        "BDL_GPUS={resources.gpu} python \"$BDL_STAGES/evaluate.py\" --segmenter {input.segmenter:q} {params.args} {params.pseudo} {params.runtime}"
        " --threads {threads}"
        " --predictions {output.predictions:q} --out {output.metrics:q} > {log:q} 2>&1"


rule collect_metrics:
    input:
        [f"{R}/{folder}/eval.json" for folder in evaluated_models().values()],
    output:
        report(
            f"{R}/metrics.tsv",
            category="Ablation table",
            labels={"table": "mIoU per model"},
            caption="../report/metrics.rst",
        ),
    params:
        pairs=lambda w, input: " ".join(shlex.quote(f"{m}={p}") for m, p in zip(evaluated_models(), input)),
    log:
        f"{R}/logs/collect_metrics.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python \"$BDL_STAGES/collect_metrics.py\" --eval {params.pairs} --out {output:q} > {log:q} 2>&1"


rule diagnostics:
    input:
        evals=[f"{R}/{folder}/eval.json" for folder in evaluated_models().values()],
        pseudo=list(pseudo_sets().values()),
    output:
        report(
            f"{R}/diagnostics.tsv",
            category="Ablation table",
            labels={"table": "diagnostics"},
            caption="../report/diagnostics.rst",
        ),
    params:
        evals=lambda w, input: " ".join(
            shlex.quote(f"{m}={p}") for m, p in zip(evaluated_models(), input.evals)
        ),
        pseudo=lambda w, input: " ".join(shlex.quote(f"{m}={p}") for m, p in zip(pseudo_sets(), input.pseudo)),
    log:
        f"{R}/logs/diagnostics.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python \"$BDL_STAGES/diagnostics.py\" --eval {params.evals} --pseudo {params.pseudo} --out {output:q} > {log:q} 2>&1"
