# Data: the generated demo pair (when no roots are configured) and the check that runs before training.


rule make_demo_data:
    output:
        directory(DEMO_DIR),
    params:
        args=flags(**config["demo"]),
    log:
        f"{R}/logs/make_demo_data.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python \"$BDL_STAGES/make_demo_data.py\" {params.args} --out {output:q} > {log:q} 2>&1"


rule check_data:
    input:
        [DEMO_DIR] if DEMO else [],
    output:
        f"{R}/data_check.json",
    params:
        args=lambda w: " ".join(
            [
                data_flags("source"),
                data_flags("target"),
                flags(
                    target_train_split=config["target"]["train_split"],
                    target_val_split=config["target"]["val_split"],
                    oracle=config["oracle"],
                ),
            ]
        ),
    log:
        f"{R}/logs/check_data.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "python \"$BDL_STAGES/check_data.py\" {params.args} --out {output:q} > {log:q} 2>&1"


rule cache_images:
    input:
        data_inputs(),
    output:
        f"{R}/cache/{{domain}}.h5",
    wildcard_constraints:
        domain="source|target",
    params:
        args=lambda w: " ".join(filter(None, [data_flags(w.domain), PROTOCOL])),
        workers=flags(workers=RT["workers"]),
    log:
        f"{R}/logs/cache_{{domain}}.log",
    conda:
        "../envs/bdl.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=RT["runtime_min"],
    shell:
        "python \"$BDL_STAGES/cache_images.py\" --domain {wildcards.domain} {params.args} {params.workers}"
        " --out {output:q} > {log:q} 2>&1"


# target.report_split, checked apart from the data check, so that setting it later reruns nothing of the loop
use rule check_data as check_report_split with:
    output:
        f"{R}/data_check_report.json",
    params:
        args=lambda w: " ".join([data_flags("target"), flags(target_val_split=REPORT, parts="target_val")]),
    log:
        f"{R}/logs/check_report_split.log",
