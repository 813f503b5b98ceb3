"""The steps the rules call (polyfuse/steps.py), in-process with a stand-in for the `snakemake` object a script
gets: the paths through them that the test study's workflow does not take."""

from __future__ import annotations

from types import SimpleNamespace

from polyfuse import steps
from polyfuse.io import read_jsonl, write_jsonl
from tests.helpers.models import SMOL


class Named(SimpleNamespace):
    """Snakemake's named lists: attributes, and iterable over their values (as `smk.output` is)."""

    def __iter__(self):
        return iter(vars(self).values())


def test_a_reference_model_answers_each_item_once_greedily(tmp_path):
    # the default and test studies take their reference answers from a file; config/paper.yaml has a model answer
    items = [{"id": "q1", "task": "arena", "lang": "en", "input": "Name one colour.", "reference": None}]
    write_jsonl(tmp_path / "items.jsonl", items)
    write_jsonl(tmp_path / "shots.jsonl", [])
    smk = SimpleNamespace(
        rule="reference",
        log=[str(tmp_path / "reference.log")],
        threads=2,
        wildcards=Named(task="arena", lang="en"),
        input=Named(items_file=str(tmp_path / "items.jsonl"), shots=str(tmp_path / "shots.jsonl")),
        output=Named(reference=str(tmp_path / "reference.jsonl")),
        params=Named(
            kind="chat",
            reference={"model": "smol", "temperature": 0.0},
            models={"smol": SMOL},
            max_tokens=96,
            seed=1,
            cache=str(tmp_path / "cache"),
        ),
    )
    steps.reference(smk)
    (record,) = read_jsonl(tmp_path / "reference.jsonl")
    assert record["id"] == "q1" and record["system"] == "smol" and record["output"]
    assert record["candidate"]["params"]["temperature"] == 0.0 and record["candidate"]["params"]["max_tokens"] == 96
