"""The demo model's training code, its easy-VQA material, and the validation metrics."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from rap.rap_core.demo.model import Recipe, new_model, read_meta, save_model, training_examples
from rap.rap_core.demo.easy_vqa import (UNSEEN_HINTS, TRAIN_HINTS, Question, image_facts,
                                    load_split, response, stated_fact, with_hint)
from rap.rap_core.grading import grade
from rap.rap_core.demo.training import Encoder, Example, train
from rap.rap_core.demo.validation import (planted_pool, planted_report, precision_recall, roc_auc,
                                 stage_breakdown)

SMALL = Recipe(hidden_size=64, layers=1, vision_depth=1, lr=3e-3)


@pytest.fixture(scope="module")
def few_examples() -> list[Example]:
    questions = load_split("train")[:48]
    return training_examples(questions, SMALL)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_lowers_the_loss_and_is_reproducible(few_examples):
    model, processor = new_model(SMALL)
    stats = train(model, processor, few_examples, steps=20, batch_size=8, lr=1e-2,
                  log_every=4)
    assert stats.steps == 20 and stats.examples_seen == 160
    assert stats.losses[-1] < 0.5 * stats.losses[0], stats.losses
    again, processor2 = new_model(SMALL)
    train(again, processor2, few_examples, steps=20, batch_size=8, lr=1e-2, log_every=4)
    first, second = _weights(model), _weights(again)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_vision_pretraining_lowers_its_loss_and_ignores_unknown_labels():
    from rap.rap_core.demo.model import vision_targets
    from rap.rap_core.demo.training import pretrain_vision
    images, targets = vision_targets(load_split("train")[:200])
    assert len(images) == len(set(images)) and -1 in targets["shape"] + targets["color"]
    model, processor = new_model(SMALL)
    before = _weights(model)
    stats = pretrain_vision(model, processor, images[:16], {k: v[:16] for k, v in targets.items()},
                            steps=15, batch_size=8, lr=3e-3, log_every=5)
    assert stats.losses[-1] < stats.losses[0], stats.losses
    after = _weights(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".visual." in f".{k}" for k in changed)


def test_saved_weights_load_back_to_identical_outputs(tmp_path, few_examples):
    from rap.rap_core.engines.hf_loading import load_model_and_processor
    model, processor = new_model(SMALL)
    train(model, processor, few_examples, steps=3, batch_size=8)
    out = save_model(model, processor, tmp_path / "m", {"note": "test"})
    assert read_meta(out) == {"note": "test"}
    loaded, loaded_processor = load_model_and_processor(out, "cpu", "float32")
    batch = Encoder(processor).batch(few_examples[:4])
    batch.pop("labels")
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-5)
    again = Encoder(loaded_processor).batch(few_examples[:4])
    assert torch.equal(again["input_ids"], batch["input_ids"])


def test_labels_cover_the_response_only_and_text_only_rows_carry_no_pixels(few_examples):
    _, processor = new_model(SMALL)
    encoder = Encoder(processor)
    text_only = next(e for e in few_examples if e.image is None)
    with_image = next(e for e in few_examples if e.image is not None)
    batch = encoder.batch([text_only])
    assert "pixel_values" not in batch
    labelled = batch["input_ids"][0][batch["labels"][0] != -100].tolist()
    assert labelled == encoder.response_ids(text_only.response)
    batch = encoder.batch([with_image])
    assert batch["pixel_values"].shape[0] > 0
    assert int(batch["mm_token_type_ids"].sum()) == int(batch["image_grid_thw"].prod()) // 4


def test_training_mix_has_the_recipe_shares():
    questions = load_split("train")[:4000]
    examples = training_examples(questions, Recipe())
    text_only = np.mean([e.image is None for e in examples])
    hinted = np.array([e.question != q.question for e, q in zip(examples, questions)])
    no_image = np.array([e.image is None for e in examples])
    assert abs(text_only - 0.2) < 0.03
    assert abs(hinted[no_image].mean() - 0.5) < 0.06 and abs(hinted[~no_image].mean() - 0.1) < 0.03
    assert training_examples(questions, Recipe()) == examples


def test_responses_are_reasoning_then_a_gradable_answer():
    questions = load_split("train")[:300]
    facts = image_facts(questions)
    for q in questions:
        text = response(q, facts[q.image_id])
        assert text.startswith(("the shape is", "there is"))
        assert text.endswith(f"answer: {q.answer}")
        assert grade(q.answer, text)[1]


def test_image_facts_read_negated_yes_no_questions():
    qs = [Question("is there not a red shape?", "no", 1, "a.png"),
          Question("does the image contain a circle?", "yes", 1, "a.png"),
          Question("is there a blue shape?", "no", 2, "b.png"),
          Question("what color is the shape?", "teal", 3, "c.png")]
    facts = image_facts(qs)
    assert facts[1] == {"color": "red", "shape": "circle"}
    assert 2 not in facts and facts[3] == {"color": "teal"}
    assert response(qs[2], facts[2]) == "there is no blue shape. answer: no"
    assert response(qs[0], facts[1]) == ("the shape is a red circle, so there is a red shape. "
                                         "answer: no")


@pytest.mark.parametrize("question,answer,fact", [
    ("what color is the shape?", "blue", "the shape is blue"),
    ("what shape is present?", "circle", "the shape is a circle"),
    ("is there a red shape?", "no", "there is no red shape"),
    ("is there not a red shape?", "no", "there is a red shape"),
    ("does the image not contain a triangle?", "yes", "there is no triangle"),
])
def test_a_stated_fact_gives_the_answer_away(question, answer, fact):
    q = Question(question, answer, 0, "x.png")
    assert stated_fact(q) == fact
    assert not set(TRAIN_HINTS) & set(UNSEEN_HINTS)
    for template in TRAIN_HINTS + UNSEEN_HINTS:
        assert fact in with_hint(q, template) and question in with_hint(q, template)


def test_roc_auc_on_hand_made_scores():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    # positives 0.8, 0.4; negatives 0.6, 0.4, 0.2: pairs won 4, tied 1, lost 1 -> 4.5/6
    assert roc_auc([0.8, 0.4, 0.6, 0.4, 0.2], [1, 1, 0, 0, 0]) == pytest.approx(4.5 / 6)
    with pytest.raises(ValueError):
        roc_auc([0.1, 0.2], [1, 1])


def test_precision_recall_on_hand_made_predictions():
    assert precision_recall([1, 1, 0, 0], [1, 0, 1, 0]) == (0.5, 0.5)
    assert precision_recall([1, 0, 0, 0], [1, 1, 0, 0]) == (1.0, 0.5)
    p, r = precision_recall([0, 0], [1, 0])
    assert np.isnan(p) and r == 0.0


@pytest.mark.parametrize("phrasing", ["seen", "unseen"])
def test_planted_pool_writes_the_share_and_the_truth(tmp_path, phrasing):
    originals = {q.question for q in load_split("test")}
    path = tmp_path / "planted.jsonl"
    truth = planted_pool(path, n=200, share=0.3, seed=1, phrasing=phrasing)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == truth.height == 200
    assert 40 < truth["planted"].sum() < 80
    for row, t in zip(rows, truth.iter_rows(named=True)):
        q = Question(row["problem"], row["answer"], 0, row["images"][0])
        assert (row["problem"] not in originals) == t["planted"]
        assert t["question_type"] == q.qtype
        if t["planted"]:
            assert "the shape is" in row["problem"] or "there is" in row["problem"]
    again = planted_pool(tmp_path / "again.jsonl", n=200, share=0.3, seed=1, phrasing=phrasing)
    assert again.equals(truth)


def _decisions(rows):
    return pl.DataFrame(rows, schema={"source_row": pl.Int64, "state": pl.String,
                                      "reason": pl.String, "passed": pl.List(pl.String),
                                      "d": pl.Float64, "acc_mm": pl.Float64}, orient="row")


def test_planted_report_and_breakdown_on_hand_made_decisions():
    decisions = _decisions([
        (0, "dropped", "cde_language_prior", [], 0.0, 1.0),
        (1, "dropped", "cde_language_prior", [], 0.2, 0.6),
        (2, "selected", "kept", ["cde", "ace"], 0.8, 1.0),
        (3, "dropped", "ace_attention_bias", ["cde"], 1.0, 1.0),
        (4, "dropped", "cde_language_prior", [], 0.0, 0.2),
        (5, "error", "image_missing", [], None, None),
    ])
    truth = pl.DataFrame({"source_row": range(6),
                          "planted": [True, True, False, False, False, False],
                          "question_type": ["color", "shape", "color", "shape", "yes/no",
                                            "color"]})
    report = planted_report(decisions, truth, lambda_c=0.5)
    # planted D 0.0, 0.2 vs untouched 0.8, 1.0, 0.0: 4 wins, 1 tie, 1 loss of 6 pairs
    assert report["auroc"] == pytest.approx(4.5 / 6)
    assert report["precision"] == pytest.approx(2 / 3) and report["recall"] == 1.0
    assert report["unscored"] == 1 and report["samples"] == 5
    from rap.rap_core.demo.validation import with_groups
    table = stage_breakdown(with_groups(decisions, truth), "group")
    assert table["group"].to_list() == ["yes/no", "color", "shape", "planted"]
    planted = table.row(3, named=True)
    assert planted["rows"] == 2 and planted["after_cde"] == 0
    assert planted["cde_language_prior"] == 2
    color = table.row(1, named=True)
    assert (color["rows"], color["selected"], color["image_missing"]) == (2, 1, 1)
    assert table.row(2, named=True)["ace_attention_bias"] == 1
