# One static HTML page of the run's sets (stages/viewer.py): opened from disk, and part of the report.

# the viewer reads a sample of each translated set, taken as soon as the set exists: with keep_translated:
# false the set itself is then dropped after its round, not kept until the viewer's turn at the end
VIEWER_TRANSLATED = {f"round{k}": f"{RS}/round{k}/viewer_sample.h5" for k in range(1, K + 1)}
VIEWER_PREDICTIONS = {model: f"{RS}/{folder}/predictions" for model, folder in evaluated_models().items()}


rule viewer:
    input:
        translated=list(VIEWER_TRANSLATED.values()),
        pseudo=list(pseudo_sets().values()),
        predictions=list(VIEWER_PREDICTIONS.values()),
        scores=[f"{RS}/{folder}/eval.json" for folder in evaluated_models().values()],
        # several seeds: each seed's page opens with the summary of them all
        summary=seed_summary_outputs(),
    output:
        report(
            directory(f"{RS}/viewer"),
            htmlindex="index.html",
            category="Viewer",
            subcategory="seed {seed}" if SEEDED else None,
            caption="../report/viewer.rst",
        ),
    params:
        # NAME=PATH items in the loop's order; a kind with no set (ssl_steps: 0) gives no flag at all
        # and the summary's three files with several seeds (none with one: the command it always was)
        sets=lambda w, input: flags(
            translated=[f"{name}={path}" for name, path in zip(VIEWER_TRANSLATED, input.translated)] or None,
            pseudo=[f"{name}={path}" for name, path in zip(pseudo_sets(), input.pseudo)] or None,
            predictions=[f"{name}={path}" for name, path in zip(VIEWER_PREDICTIONS, input.predictions)] or None,
            **dict(zip(("seed_summary", "seed_checks", "seed_plot"), input.summary)),
        ),
        args=lambda w: " ".join(
            [
                data_flags("source"),
                data_flags("target"),
                flags(val_split=config["target"]["val_split"]),
                block_flags(config["viewer"]),
            ]
        ),
    benchmark:
        f"{RS}/benchmarks/viewer.tsv"
    log:
        f"{RS}/logs/viewer.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python \"$BDL_STAGES/viewer.py\" {params.sets} {params.args} --out {output:q} > {log:q} 2>&1"


rule sample_translated:
    input:
        f"{RS}/round{{k}}/translated.h5",
    output:
        f"{RS}/round{{k}}/viewer_sample.h5",
    params:
        sample=flags(sample=config["viewer"]["sample"]),
    log:
        f"{RS}/logs/round{{k}}/viewer_sample.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python \"$BDL_STAGES/sample_set.py\" {input:q} {params.sample} --out {output:q} > {log:q} 2>&1"
