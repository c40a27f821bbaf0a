# Every model of the loop is scored on the target val split; the scores form the ablation table.


rule evaluate:
    input:
        data_inputs(),
        segmenter=f"{R}/{{model}}/segmenter.pt",
    output:
        metrics=f"{R}/{{model}}/eval.json",
        predictions=directory(f"{R}/{{model}}/predictions"),
    params:
        args=lambda w: " ".join(
            [
                data_flags("target", split=config["target"]["val_split"]),
                flags(split=config["target"]["val_split"], num_predictions=config["evaluate"]["num_predictions"]),
            ]
        ),
        runtime=RUNTIME,
    log:
        f"{R}/logs/{{model}}/evaluate.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    shell:
        "python stages/evaluate.py --segmenter {input.segmenter:q} {params.args} {params.runtime} --threads {threads}"
        " --predictions {output.predictions:q} --out {output.metrics:q} > {log:q} 2>&1"


rule collect_metrics:
    input:
        [f"{R}/{folder}/eval.json" for folder in evaluated_models().values()],
    output:
        report(f"{R}/metrics.tsv", category="Ablation table", labels={"table": "mIoU per model"}),
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
        "python stages/collect_metrics.py --eval {params.pairs} --out {output:q} > {log:q} 2>&1"
