# polyfuse: Fusion-of-N vs Best-of-N, per task and language. All logic lives in polyfuse/;
# the rules in workflow/rules/ only wire files to it.

# The default study, unless --configfile names another (Snakemake would merge the two).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/fuse.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/comet.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/analyses.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        report_outputs(),
        analysis_outputs(),
        zoo_outputs(),
        "results/README.md",
