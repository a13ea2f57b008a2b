"""The bilingual event taxonomy and the per-epoch labels it produces."""

from __future__ import annotations

import pytest

from efm.data import taxonomy
from efm.errors import ConfigError
from efm.interfaces import Annotation


def test_shipped_taxonomy_size() -> None:
    tax = taxonomy.load()
    assert tax.categories == ["artefact", "interictal", "procedure", "seizure", "state"]
    assert 50 <= len(tax.subcategories) <= 62
    assert len(tax.keywords) >= 200
    assert tax.labels == ["artefact", "interictal", "seizure"]


@pytest.mark.parametrize(
    "text, sub",
    [
        ("Anfallsbeginn", "seizure_onset"),
        ("seizure onset", "seizure_onset"),
        ("Anfallsende", "seizure_offset"),
        ("END OF SEIZURE", "seizure_offset"),
        ("+Anfallsmuster D-?", "electrographic_seizure"),
        ("Anfall", "seizure"),
        ("Komplex-fokaler Anfall", "focal_impaired"),
        ("high amp RDA F4, C4", "rhythmic_delta"),
        ("Spitze li temporal", "spike"),
        ("Spike-Wave-Komplex", "spike_wave"),
        ("Muskelartefakt", "muscle"),
        ("Lidschläge", "eye_blink"),
        ("Zähneputzen", "chewing"),
        ("starts turning head", "movement"),
        ("Schlafstadium N2", "sleep_n2"),
        ("Sleep stage 4", "sleep_n3"),
        ("Sleep stage R", "sleep_rem"),
        ("Augen zu", "eyes_closed"),
        ("Hyperventilation", "hyperventilation"),
        ("Fotostimulation 10 Hz", "photic_stimulation"),
        ("A1+A2 OFF", "montage_change"),
        ("Segment: REC START LTM+6 EEG", "recording"),
    ],
)
def test_classify(text: str, sub: str) -> None:
    hit = taxonomy.load().classify(text)
    assert hit is not None and hit.name == sub, (text, hit)


@pytest.mark.parametrize("text", ["+1.000000", "0", "", "xyzzy"])
def test_no_match(text: str) -> None:
    assert taxonomy.load().classify(text) is None


def test_conflicting_keywords_are_an_error(tmp_path) -> None:
    bad = tmp_path / "tax.yaml"
    bad.write_text(
        "categories:\n  a:\n    subcategories:\n      x: {en: [foo]}\n      y: {de: [Foo]}\n"
    )
    with pytest.raises(ConfigError, match="(?i)keyword .foo. is in both x and y"):
        taxonomy.load(str(bad))


def test_seizure_onset_offset_pairs_label_epochs() -> None:
    anns = [
        Annotation(35.0, 0, "Anfallsbeginn", "AB"),
        Annotation(100.0, 0, "Anfallsende", "AB"),
        Annotation(200.0, 0, "seizure onset"),
        Annotation(205.0, 0, "seizure end"),
        Annotation(250.0, 0, "Muskelartefakt"),
        Annotation(3.0, 0, "+3.000000"),
    ]
    labels = taxonomy.epoch_labels(anns, taxonomy.load(), 10, 30.0, 10.0)
    # 35-100 s overlaps epochs 1 (25 s), 2 (30 s), 3 (10 s); the 5 s seizure lies inside epoch 6
    assert [lab["seizure"] for lab in labels] == [0, 1, 1, 1, 0, 0, 1, 0, 1, 0][:6] + [1, 0, 0, 0]
    assert labels[8]["artefact"] == 1 and "muscle" in labels[8]["events"]
    assert labels[1]["annotations"][0]["annotator"] == "AB"
    assert all("sleep_stage" not in lab for lab in labels)


def test_unpaired_onset_is_capped() -> None:
    labels = taxonomy.epoch_labels(
        [Annotation(0.0, 0, "Anfallsbeginn")], taxonomy.load(), 10, 30.0, 10.0
    )
    n = int(taxonomy.UNPAIRED_ONSET_S // 30)
    assert [lab["seizure"] for lab in labels] == [1] * n + [0] * (10 - n)


def test_sleep_stages_hold_until_next() -> None:
    anns = [
        Annotation(0.0, 0, "Schlafstadium W"),
        Annotation(60.0, 0, "Sleep stage 2"),
        Annotation(120.0, 30.0, "Sleep stage R"),
    ]
    labels = taxonomy.epoch_labels(anns, taxonomy.load(), 6, 30.0, 10.0)
    assert [lab["sleep_stage"] for lab in labels] == [0, 0, 2, 2, 4, -1]


def test_ambiguous_short_words_do_not_match() -> None:
    tax = taxonomy.load()
    assert tax.classify("Art des Anfalls unklar").name == "seizure"  # German "Art" = kind
    assert tax.classify("bad") is None
