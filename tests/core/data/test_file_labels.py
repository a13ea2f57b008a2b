"""File-level labels (``data.file_labels``): rule order, validation, shard metadata, identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from efm.data import prepare
from efm.data.pipeline import check_file_labels, file_labels
from efm.errors import ConfigError
from tests.core.data.test_prepare import FAST, samples

EEGMAT = {"arithmetic": {r"_2\.edf$": 1, r"_1\.edf$": 0}}


def test_first_matching_rule_wins_and_unmatched_files_get_no_label() -> None:
    assert file_labels("Subject00_2.edf", EEGMAT) == {"arithmetic": 1}
    assert file_labels("sub/Subject17_1.edf", EEGMAT) == {"arithmetic": 0}
    assert file_labels("Subject00_3.edf", EEGMAT) == {}
    assert file_labels("x.edf", {}) == {} and file_labels("x.edf", None) == {}
    rules = {"group": {"a": 1, "ab": 2, "b": 3}}  # searched in order, not the longest match
    assert file_labels("ab.edf", rules) == {"group": 1}
    assert file_labels("b.edf", rules) == {"group": 3}
    both = {**EEGMAT, "site": {"^site-b/": 1}}
    assert file_labels("site-b/S_2.edf", both) == {"arithmetic": 1, "site": 1}
    assert file_labels("site-a/S_2.edf", both) == {"arithmetic": 1}


def test_bad_rules_are_reported_together() -> None:
    assert check_file_labels(EEGMAT) == [] and check_file_labels(None) == []
    problems = check_file_labels({"t": {"(unclosed": 1, "ok": -1}, "events": {"x": 0}})
    assert len(problems) == 3
    assert "bad regex '(unclosed'" in problems[0] and "data.file_labels.t" in problems[0]
    assert "integer >= 0" in problems[1] and "reserved" in problems[2]


def test_a_bad_regex_is_one_config_error_before_the_run(small_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid config: data.file_labels.t: bad regex '\[ab'"):
        prepare.cli(
            [
                "recipe=epi250k",
                *FAST,
                f"data.root={small_corpus}",
                f"out={tmp_path}",
                "data.file_labels={t: {'[ab': 1}}",
            ]
        )
    assert not (tmp_path / "config.json").exists()
    with pytest.raises(ConfigError, match="data.file_labels.*'rest'.*Integer"):  # labels are ints
        prepare.compose_data(["recipe=epi250k", "data.file_labels={t: {a: rest}}"])


def test_labels_reach_every_epoch_and_the_manifest(small_corpus: Path, tmp_path: Path) -> None:
    rules = (
        "data.file_labels={cohort: {'patient-0[01]/': 1, 'patient-02/': 0}, "
        "seizure: {'patient-00/': 1}, odd: {'patient-01/': 1}}"
    )
    code = prepare.cli(
        ["recipe=epi250k", *FAST, f"data.root={small_corpus}", f"out={tmp_path}", rules]
    )
    assert code == 0
    got = samples(tmp_path)
    assert len(got) == 33
    for _, _, meta in got:
        patient, lab = meta["patient_id"], meta["labels"]
        assert lab["cohort"] == (0 if patient == "patient-02" else 1)
        assert ("odd" in lab) == (patient == "patient-01")
        if patient == "patient-00":  # a file label overrides the annotated one of its task
            assert lab["seizure"] == 1
        assert "events" in lab  # annotation-derived entries are kept
    counts = json.loads((tmp_path / "manifest.json").read_text())["label_counts"]
    assert counts["cohort"] == {"0": 11, "1": 22} and counts["odd"] == {"1": 11}
    assert json.loads((tmp_path / "config.json").read_text())["data"]["file_labels"] == {
        "cohort": [["patient-0[01]/", 1], ["patient-02/", 0]],
        "odd": [["patient-01/", 1]],
        "seizure": [["patient-00/", 1]],
    }


def test_file_labels_are_part_of_the_identity() -> None:
    base = prepare.compose_data(["recipe=epi250k", "data.root=/data"])
    h0 = prepare.config_hash(base)
    assert "file_labels" not in prepare.identity(base)["data"]  # unchanged hash without rules
    one = {**base, "data": {**base["data"], "file_labels": EEGMAT}}
    swapped = {r"_1\.edf$": 0, r"_2\.edf$": 1}
    two = {**base, "data": {**base["data"], "file_labels": {"arithmetic": swapped}}}
    # rule order decides which rule wins, so it is part of the identity
    assert len({h0, prepare.config_hash(one), prepare.config_hash(two)}) == 3
