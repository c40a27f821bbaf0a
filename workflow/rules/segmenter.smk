# The segmenter M: M0 on the source, M_k adversarial on the translated source, SSL steps, the oracle.
# One rule body (train_m0's); the others change only their inputs, outputs, flags and log.
# M_k and the SSL steps take the model before them as --init, or none (segmenter.init: weights; start_from).


rule train_m0:
    input:
        data_inputs(),
        cache_of("source"),
    output:
        model=f"{RS}/m0/segmenter.pt",
        losses=f"{RS}/m0/losses.tsv",
        curves=report(f"{RS}/m0/curves.png", category="Loss curves", subcategory=f"{SEED_HEAD}M0", caption="../report/curves.rst"),
    params:
        args=lambda w: f"{seg_train_flags('source', seed_of(w))} {data_flags('source')} {cache_flags('source')}",
        inputs=lambda w, input: model_input_flags(input),
        runtime=f"{RUNTIME} {TRAIN_RUNTIME}",
        watch=lambda w, output: watch_flags(output.model, m0=True),
    benchmark:
        f"{RS}/benchmarks/m0/train.tsv"
    log:
        f"{RS}/logs/m0/train.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    # exec: the stage replaces the job's shell, which a cluster's signal (sent to every process of the job step)
    # would otherwise kill before the stage has written its checkpoint (bdl.stopping)
    shell:
        "BDL_GPUS={resources.gpu} exec python \"$BDL_STAGES/train_segmenter.py\" {params.args} {params.inputs} {params.runtime} {params.watch}"
        " --threads {threads}"
        " --out {output.model:q} --losses {output.losses:q} --curves {output.curves:q} > {log:q} 2>&1"


use rule train_m0 as train_oracle with:
    input:
        data_inputs(),
    output:
        model=f"{RS}/oracle/segmenter.pt",
        losses=f"{RS}/oracle/losses.tsv",
        curves=report(f"{RS}/oracle/curves.png", category="Loss curves", subcategory=f"{SEED_HEAD}oracle", caption="../report/curves.rst"),
    params:
        args=lambda w: f"{seg_train_flags('oracle', seed_of(w))} {data_flags('target')}",
        inputs="",
        runtime=f"{RUNTIME} {TRAIN_RUNTIME}",
        watch=lambda w, output: watch_flags(output.model),
    benchmark:
        f"{RS}/benchmarks/oracle/train.tsv"
    log:
        f"{RS}/logs/oracle/train.log",


use rule train_m0 as train_adversarial with:
    input:
        data_inputs(),
        cache_of("source"),
        cache_of("target"),
        translated=f"{RS}/round{{k}}/translated.h5",
        init=lambda w: start_from(final_segmenter(int(w.k) - 1, run_root(w))),
    output:
        model=f"{RS}/round{{k}}/adv/segmenter.pt",
        losses=f"{RS}/round{{k}}/adv/losses.tsv",
        curves=report(
            f"{RS}/round{{k}}/adv/curves.png",
            category="Loss curves",
            subcategory=f"{SEED_HEAD}round {{k}}",
            caption="../report/curves.rst",
        ),
    params:
        # the translated set holds images only: its labels come from the source (cache or files)
        args=lambda w: f"{seg_train_flags('adversarial', seed_of(w))} {data_flags('source')} {data_flags('target')} "
        f"{cache_flags('source', 'target')}",
        inputs=lambda w, input: model_input_flags(input),
        runtime=f"{RUNTIME} {TRAIN_RUNTIME}",
        watch=lambda w, output: watch_flags(output.model),
    benchmark:
        f"{RS}/benchmarks/round{{k}}/adv_train.tsv"
    log:
        f"{RS}/logs/round{{k}}/adv_train.log",


use rule train_m0 as train_ssl with:
    input:
        data_inputs(),
        cache_of("source"),
        cache_of("target"),
        translated=f"{RS}/round{{k}}/translated.h5",
        pseudo=f"{RS}/round{{k}}/ssl{{n}}/pseudo.h5",
        init=lambda w: start_from(segmenter_after(w.k, int(w.n) - 1, run_root(w))),
    output:
        model=f"{RS}/round{{k}}/ssl{{n}}/segmenter.pt",
        losses=f"{RS}/round{{k}}/ssl{{n}}/losses.tsv",
        curves=report(
            f"{RS}/round{{k}}/ssl{{n}}/curves.png",
            category="Loss curves",
            subcategory=f"{SEED_HEAD}round {{k}}",
            caption="../report/curves.rst",
        ),
    params:
        # the translated set holds images only: its labels come from the source (cache or files)
        args=lambda w: f"{seg_train_flags('ssl', seed_of(w))} {data_flags('source')} {data_flags('target')} "
        f"{cache_flags('source', 'target')}",
        inputs=lambda w, input: model_input_flags(input),
        runtime=f"{RUNTIME} {TRAIN_RUNTIME}",
        watch=lambda w, output: watch_flags(output.model),
    benchmark:
        f"{RS}/benchmarks/round{{k}}/ssl{{n}}_train.tsv"
    log:
        f"{RS}/logs/round{{k}}/ssl{{n}}_train.log",


# The loop's last model under one fixed name, for predict and bdl.load_segmenter: a copy (a link would break
# when the results folder moves), remade whenever that model is.
rule final_model:
    input:
        final_segmenter(K),
    output:
        f"{RS}/final/segmenter.pt",
    log:
        f"{RS}/logs/final_model.log",
    conda:
        "../envs/bdl.yaml"
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "cp {input:q} {output:q} && echo 'final model: {input}' > {log:q}"
