# The translator F_k (trained with M_{k-1} as perceptual judge) and the translated source set on disk.


rule train_translator:
    input:
        data_inputs(),
        cache_of("source"),
        cache_of("target"),
        segmenter=lambda w: [final_segmenter(int(w.k) - 1, run_root(w))] if uses_perceptual(w.k) else [],
        init=lambda w: previous_translator(w.k, run_root(w)),
    output:
        model=f"{RS}/round{{k}}/translator.pt",
        losses=f"{RS}/round{{k}}/translator_losses.tsv",
        curves=report(
            f"{RS}/round{{k}}/translator_curves.png",
            category="Loss curves",
            subcategory=f"{SEED_HEAD}round {{k}}",
            caption="../report/translator_curves.rst",
        ),
        samples=report(
            f"{RS}/round{{k}}/translator_samples.png",
            category="Translated source",
            subcategory=f"{SEED_HEAD}round {{k}}",
            caption="../report/translator_samples.rst",
        ),
    params:
        args=lambda w: " ".join(
            [translator_flags(w.k, seed_of(w)), data_flags("source"), data_flags("target"), cache_flags("source", "target")]
        ),
        segmenter=lambda w, input: flags(segmenter=input.segmenter[0]) if input.segmenter else "",
        init=lambda w, input: flags(init=input.init[0]) if input.init else "",
        runtime=f"{RUNTIME} {TRAIN_RUNTIME}",
        watch=lambda w, output: watch_flags(output.model),
    benchmark:
        f"{RS}/benchmarks/round{{k}}/translator_train.tsv"
    log:
        f"{RS}/logs/round{{k}}/translator_train.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    # exec: the stage replaces the job's shell, which a cluster's signal (sent to every process of the job step)
    # would otherwise kill before the stage has written its checkpoint (bdl.stopping)
    shell:
        "BDL_GPUS={resources.gpu} exec python \"$BDL_STAGES/train_translator.py\" {params.args} {params.segmenter} {params.init} {params.runtime}"
        " {params.watch} --threads {threads} --out {output.model:q} --losses {output.losses:q}"
        " --curves {output.curves:q} --samples {output.samples:q} > {log:q} 2>&1"


rule translate:
    wildcard_constraints:
        k=TRAINED_ROUNDS,
    input:
        data_inputs(),
        cache_of("source"),
        translator=f"{RS}/round{{k}}/translator.pt",
    output:
        # keep_translated: false deletes it once every job reading it is done (the models stay valid)
        f"{RS}/round{{k}}/translated.h5" if config["keep_translated"] else temp(f"{RS}/round{{k}}/translated.h5"),
    params:
        args=lambda w: " ".join(
            [data_flags("source"), cache_flags("source"), flags(batch_size=RT["inference_batch_size"])]
        ),
        runtime=RUNTIME,
    benchmark:
        f"{RS}/benchmarks/round{{k}}/translate.tsv"
    log:
        f"{RS}/logs/round{{k}}/translate.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    shell:
        "BDL_GPUS={resources.gpu} python \"$BDL_STAGES/translate.py\" --translator {input.translator:q} {params.args} {params.runtime} --threads {threads}"
        " --out {output:q} > {log:q} 2>&1"


rule gallery_translated:
    input:
        f"{RS}/round{{k}}/translated.h5",
    output:
        report(
            f"{RS}/round{{k}}/gallery.png",
            category="Translated source",
            subcategory=f"{SEED_HEAD}round {{k}}",
            caption="../report/gallery_translated.rst",
        ),
    params:
        set=lambda w, input: flags(translated=input[0]),
        args=lambda w: data_flags("source"),
    log:
        f"{RS}/logs/round{{k}}/gallery.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python \"$BDL_STAGES/gallery.py\" {params.set} {params.args} --out {output:q} > {log:q} 2>&1"


# A round whose translated set comes from elsewhere (import_translated): no F_k is trained for it.
rule import_translated:
    wildcard_constraints:
        k=IMPORTED_ROUNDS,
    input:
        data_inputs(),
        cache_of("source"),
    output:
        f"{RS}/round{{k}}/translated.h5" if config["keep_translated"] else temp(f"{RS}/round{{k}}/translated.h5"),
    params:
        images=lambda w: flags(images=config["import_translated"][int(w.k) - 1]),
        args=lambda w: " ".join([data_flags("source"), cache_flags("source")] + ([PROTOCOL] if PROTOCOL else [])),
    log:
        f"{RS}/logs/round{{k}}/import_translated.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=RT["mem_mb"],
        runtime=RT["runtime_min"],
    shell:
        "python \"$BDL_STAGES/import_translated.py\" {params.images} {params.args} --out {output:q} > {log:q} 2>&1"
