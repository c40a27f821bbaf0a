# bdl: Bidirectional Learning (Li, Yuan & Vasconcelos, CVPR 2019) as a Snakemake workflow.
# The rules live in workflow/rules/, one file per step of the loop; config/README.md is the manual.

from snakemake.utils import min_version

min_version("9.0")


configfile: workflow.source_path("config/config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/config.smk"
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/segmenter.smk"
include: "workflow/rules/translator.smk"
include: "workflow/rules/pseudo.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/viewer.smk"


# seconds of work each: on a cluster they run on the submit host instead of waiting in the queue
localrules:
    collect_metrics,
    collect_metrics_report,
    seed_summary,
    seed_summary_report,
    diagnostics,
    gallery_translated,
    gallery_pseudo,
    viewer,
    sample_translated,


rule all:
    input:
        all_outputs(),
    default_target: True
