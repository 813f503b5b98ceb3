"""The study's DAG from its config (polyfuse/dag.py), without Snakemake: expectations counted by hand from
config/config.yaml (three test tasks, a train task, two distill sets, one analysed cell)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from polyfuse.dag import StudyDag
from polyfuse.settings import load_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.fixture(scope="module")
def dag() -> StudyDag:
    return StudyDag(load_config(copy.deepcopy(DEFAULT)))


def test_each_sampler_gets_the_methods_its_kind_and_origin_allow(dag):
    bon = ["bon-loglik", "bon-mbr_chrf"]
    assert dag.methods_of("wmt24pp", "gemma270m") == ["single", "oracle", *bon, "fusion-gemma270m"]
    assert dag.methods_of("arena", "smol") == ["single", *bon, "fusion-smol"]  # judged: no metric oracle
    assert dag.methods_of("wmt24pp", "student-fusion") == ["single"]  # a student answers once
    assert dag.methods_of("wmt24pp", "gemma270m~n2s0") == [*bon, "fusion-gemma270m"]
    assert dag.methods_of("wmt24pp", "gemma270m~order-best-first") == ["fusion-gemma270m"]  # an order: fusion only


def test_the_comet_oracle_joins_translation_tasks_only_when_asked():
    config = copy.deepcopy(DEFAULT) | {"comet": {"model": "Unbabel/wmt22-comet-da", "oracle": True}}
    dag = StudyDag(load_config(config))
    assert dag.methods_of("wmt24pp", "gemma270m")[:3] == ["single", "oracle", "oracle-comet"]
    assert "oracle-comet" not in dag.methods_of("mgsm", "gemma270m")


def test_the_analysed_cell_gets_one_derived_pool_per_variant(dag):
    # sizes 2 and 3, two subsets each; garbage and fluent at k = 2; best-first and worst-first
    assert dag.derived_samplers("wmt24pp") == [
        "gemma270m~n2s0",
        "gemma270m~n2s1",
        "gemma270m~n3s0",
        "gemma270m~n3s1",
        "gemma270m~garbage2",
        "gemma270m~fluent2",
        "gemma270m~order-best-first",
        "gemma270m~order-worst-first",
    ]
    assert dag.derived_samplers("wmt24pp", "order") == ["gemma270m~order-best-first", "gemma270m~order-worst-first"]
    assert dag.derived_samplers("mgsm") == []  # not an analysed cell


def test_the_report_reads_every_methods_scores_the_students_and_the_head_to_heads(dag):
    files = dag.score_files(".jsonl")
    students = 3  # the base and one per set
    wmt = 3 * (5 + students)  # languages x (the sampler's five methods + each student's single answer)
    mgsm = 3 * 5  # no student answers it
    arena = 2 * (4 + students)
    head_to_head = 2 * 2  # fusion-smol against each BoN, in each language
    comet = 3 * (1 + students)  # one COMET file per translation cell, students included
    assert len(files) == len(set(files)) == wmt + mgsm + arena + head_to_head + comet
    assert "results/arena/de/scores/smol/h2h/fusion-smol__vs__bon-loglik.jsonl" in files
    assert "results/wmt24pp/ja/scores/student-base/comet.jsonl" in files
    assert "results/mgsm/en/scores/student-bon/single.jsonl" not in files


def test_setting_two_files_and_scorings(dag):
    assert dag.distill_files("card.json") == [
        f"results/distill/{name}/ufb/{lang}/card.json" for name in ("bon", "fusion") for lang in ("en", "de")
    ]
    assert dag.set_methods("teachers") == ["bon-loglik", "fusion-gemma270m"]
    assert dag.target_scorings("teachers") == [("fusion-gemma270m", "bon-loglik")]
    assert dag.student_file("student-bon") == ["results/distill/bon/student/student.gguf"]
    assert dag.student_file("smol") == []


def test_the_claims_test_the_studys_fusions_and_the_subsets(dag):
    fusions = dag.claim_fusions()
    study = 3 + 3 + 2  # each test task's languages, one fusor each
    subsets = 4  # the analysed cell's N-scaling pools
    assert len(fusions) == len(set(fusions)) == study + subsets
    assert "results/wmt24pp/de/outputs/gemma270m~n3s1/fusion-gemma270m.jsonl" in fusions


def test_every_asked_analysis_has_its_outputs(dag):
    names = {Path(path).stem for path in dag.analysis_outputs()}
    assert names == {"diagnostics", "nscaling", "compute", "robustness", "position", "fusors"}
    config = copy.deepcopy(DEFAULT)
    config["analyses"] = {"cells": {"wmt24pp": ["de"]}}  # nothing asked but the diagnostics
    assert [Path(p).name for p in StudyDag(load_config(config)).analysis_outputs()] == [
        "diagnostics.csv",
        "diagnostics.png",
    ]


def test_the_fusor_choice_compares_each_model_as_fusor_and_as_scorer(dag):
    files = dag.fusor_choice_files("outputs")
    assert [Path(path).stem for path in files] == [
        "fusion-smol",
        "bon-loglik@smol",
        "fusion-gemma270m",
        "bon-loglik@gemma270m",
    ]
    assert [Path(path).stem for path in dag.fusor_choice_files("outputs", ["fusion"])] == [
        "fusion-smol",
        "fusion-gemma270m",
    ]
