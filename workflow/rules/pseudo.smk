# Pseudo-labels of the target train set for SSL step n of round k, made by the model before that step.


rule pseudo_label:
    input:
        data_inputs(),
        cache_of("target"),
        segmenter=lambda w: pseudo_labellers(w.k, w.n, run_root(w)),
    output:
        f"{RS}/round{{k}}/ssl{{n}}/pseudo.h5",
    params:
        args=lambda w: " ".join(
            [
                data_flags("target"),
                cache_flags("target"),
                flags(
                    mode=config["pseudo_label"]["mode"],
                    threshold=config["pseudo_label"]["threshold"],
                    batch_size=RT["inference_batch_size"],
                ),
            ]
        ),
        runtime=RUNTIME,
    benchmark:
        f"{RS}/benchmarks/round{{k}}/ssl{{n}}_pseudo.tsv"
    log:
        f"{RS}/logs/round{{k}}/ssl{{n}}_pseudo.log",
    conda:
        "../envs/bdl.yaml"
    threads: RT["threads"]
    resources:
        **res("gpu"),
    shell:
        "BDL_GPUS={resources.gpu} python \"$BDL_STAGES/pseudo_label.py\" --segmenter {input.segmenter:q} {params.args} {params.runtime} --threads {threads}"
        " --out {output:q} > {log:q} 2>&1"


use rule gallery_translated as gallery_pseudo with:
    input:
        f"{RS}/round{{k}}/ssl{{n}}/pseudo.h5",
    output:
        report(
            f"{RS}/round{{k}}/ssl{{n}}/gallery.png",
            category="Pseudo-labels",
            subcategory=f"{SEED_HEAD}round {{k}}",
            caption="../report/gallery_pseudo.rst",
        ),
    params:
        set=lambda w, input: flags(pseudo=input[0]),
        args=lambda w: data_flags("target"),
    log:
        f"{RS}/logs/round{{k}}/ssl{{n}}_gallery.log",
