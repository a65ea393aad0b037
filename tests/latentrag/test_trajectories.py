"""Tests for hf_latent.latentrag.trajectories: builders, format round trips, rendering and the §7.1 label mask."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from datasets import Dataset

from hf_latent.data import MultiHopQA, load_demo_corpus, load_ircot_hotpotqa
from hf_latent.latentrag.losses import GenerationLoss
from hf_latent.latentrag.trajectories import (
    DEFAULT_FINAL_THOUGHT,
    LATENTRAG_INSTRUCTION,
    LatentTrajectoryTokens,
    Trajectory,
    TrajectoryStep,
    attach_pseudo_relevant_ids,
    encode_explicit_text,
    explicit_trajectory_segments,
    latent_prompt,
    latent_special_tokens,
    render_explicit_trajectory,
    render_latent_trajectory_segments,
    tokenize_latent_trajectory,
    tokens_from_config,
    trajectories_from_dataset,
    trajectories_from_multihop,
    trajectories_to_dataset,
)
from hf_latent.testing_utils import build_tiny_encoder_tokenizer, build_tiny_tokenizer


def hand_trajectory() -> Trajectory:
    return Trajectory(
        question_id="q1",
        question="Which river flows through Tarnwick?",
        steps=[
            TrajectoryStep(
                thought="Find Tarnwick.",
                sub_query="Tarnwick",
                retrieved_ids=["p1", "p2"],
                retrieved_titles=["Tarnwick", "Ostbridge"],
                retrieved_texts=["Tarnwick lies on the Selwen.", "Ostbridge is a port."],
                pseudo_relevant_ids=["p1", "p3"],
            ),
            TrajectoryStep(
                thought="Check the river.",
                sub_query="Selwen River",
                retrieved_ids=["p4"],
                retrieved_titles=["Selwen River"],
                retrieved_texts=["The Selwen flows south."],
            ),
            TrajectoryStep(thought="Done."),
        ],
        answer="Selwen River",
        answers=["Selwen River", "the Selwen"],
        split="train",
        source="hand",
    )


# ---------------------------------------------------------------------------------------------------------- builders


def test_hotpotqa_train_yields_two_hop_trajectories_over_supporting_paragraphs(hotpotqa):
    train = hotpotqa.split("train")
    trajectories, skipped = trajectories_from_multihop(hotpotqa, split="train")
    assert skipped == []
    assert len(trajectories) == train.num_rows == 300
    passages = hotpotqa.passages_by_id()
    for trajectory, row in zip(trajectories, train):
        assert trajectory.question_id == row["id"] and trajectory.split == "train"
        assert trajectory.num_retrievals == 2 and len(trajectory.steps) == 3
        # Documented position: the hop's supporting paragraph is the first retrieved document, in hop order.
        assert [step.retrieved_ids[0] for step in trajectory.retrieval_steps] == row["supporting_ids"]
        for step in trajectory.retrieval_steps:
            assert len(step.retrieved_ids) == 3 and len(set(step.retrieved_ids)) == 3
            assert not set(step.retrieved_ids[1:]) & set(row["supporting_ids"])
            if len(row["negative_ids"]) >= 2:  # otherwise topped up from the corpus (documented)
                assert set(step.retrieved_ids[1:]) <= set(row["negative_ids"])
            assert step.retrieved_titles == [passages[pid]["title"] for pid in step.retrieved_ids]
            assert step.retrieved_texts == [passages[pid]["text"] for pid in step.retrieved_ids]
        first_title, second_title = (passages[pid]["title"] for pid in row["supporting_ids"])
        assert trajectory.steps[0].sub_query == first_title
        assert trajectory.steps[1].sub_query.startswith(second_title)
        assert trajectory.steps[0].thought == f"I need to find information about {first_title}."
        assert trajectory.final_step.thought == DEFAULT_FINAL_THOUGHT
        assert trajectory.answer == row["answers"][0] and trajectory.answers == row["answers"]
    again, _ = trajectories_from_multihop(hotpotqa, split="train")
    assert [t.to_dict() for t in again] == [t.to_dict() for t in trajectories]
    # Sampling is per question, so building all splits gives the same train trajectories.
    everything, _ = trajectories_from_multihop(hotpotqa)
    assert len(everything) == 500
    by_id = {t.question_id: t for t in everything}
    assert all(by_id[t.question_id] == t for t in trajectories)


def test_demo_and_ircot_build_from_hops():
    demo = load_demo_corpus()
    trajectories, skipped = trajectories_from_multihop(demo)
    assert skipped == [] and len(trajectories) == 24
    for trajectory, row in zip(trajectories, demo.questions):
        assert [step.thought for step in trajectory.retrieval_steps] == [hop["thought"] for hop in row["hops"]]
        assert [step.sub_query for step in trajectory.retrieval_steps] == [hop["sub_query"] for hop in row["hops"]]
        assert [step.retrieved_ids[0] for step in trajectory.retrieval_steps] == row["supporting_ids"]

    ircot = load_ircot_hotpotqa()
    trajectories, skipped = trajectories_from_multihop(ircot)
    assert skipped == [] and len(trajectories) == 29
    for trajectory, row in zip(trajectories, ircot.questions):
        hops = row["hops"]
        assert [step.retrieved_ids[0] for step in trajectory.retrieval_steps] == row["supporting_ids"]
        assert [step.sub_query for step in trajectory.retrieval_steps] == [hop["sub_query"] for hop in hops]
        # IRCoT's CoT sentence of hop t is written after reading hop t, so it opens the next thought.
        assert trajectory.steps[0].thought == f"I need to find information about {hops[0]['sub_query']}."
        assert trajectory.steps[1].thought.startswith(hops[0]["thought"])
        assert trajectory.final_step.thought.startswith(hops[1]["thought"])
        assert "So the answer is" not in trajectory.final_step.thought
    first = trajectories[0]
    assert first.final_step.thought == "Unsane is a trio of 3 members. Thus, The Border Surrender has more members."

    before, _ = trajectories_from_multihop(ircot, hop_thoughts="before_search")
    assert before[0].steps[0].thought == ircot.questions[0]["hops"][0]["thought"]
    with pytest.raises(ValueError, match="hop_thoughts"):
        trajectories_from_multihop(ircot, hop_thoughts="sideways")


def tiny_multihop() -> MultiHopQA:
    corpus = Dataset.from_list(
        [{"id": f"p{i}", "title": f"Title {i}", "text": f"Text of passage {i}."} for i in range(6)]
    )
    good = {
        "id": "good",
        "question": "Who founded the company that makes the widget?",
        "answers": ["Ada", "Ada L."],
        "supporting_ids": ["p0", "p1"],
        "negative_ids": ["p2", "p3", "p4", "missing-negative"],
        "reasoning": "",
        "split": "train",
    }
    rows = [
        good,
        {**good, "id": "no-support", "supporting_ids": []},
        {**good, "id": "bad-id", "supporting_ids": ["p0", "p99"]},
        {**good, "id": "no-answer", "answers": ["  "]},
        {**good, "id": "empty-question", "question": " "},
        {**good, "id": "good"},
        {**good, "id": "dup-support", "supporting_ids": ["p1", "p1"]},
        {**good, "id": "too-many", "supporting_ids": ["p0", "p1", "p2", "p3", "p4"]},
        {**good, "id": "dev-row", "split": "dev"},
    ]
    return MultiHopQA(corpus=corpus, questions=Dataset.from_list(rows), name="tiny")


def test_malformed_rows_are_reported_and_skipped(caplog):
    with caplog.at_level(logging.WARNING, logger="hf_latent.latentrag.trajectories"):
        trajectories, skipped = trajectories_from_multihop(tiny_multihop(), split="train")
    assert [t.question_id for t in trajectories] == ["good"]
    assert [qid for qid, _ in skipped] == [
        "no-support",
        "bad-id",
        "no-answer",
        "empty-question",
        "good",
        "dup-support",
        "too-many",
    ]
    reasons = dict(skipped[:4])
    assert reasons["no-support"] == "missing supporting_ids"
    assert reasons["bad-id"] == "supporting ids not in corpus: ['p99']"
    assert reasons["no-answer"] == "no answers"
    assert reasons["empty-question"] == "empty question"
    assert skipped[4] == ("good", "duplicate question id")
    assert "exceed max_retrievals=4" in skipped[6][1]
    for qid, reason in skipped:
        assert f"Skipping question {qid}: {reason}" in caplog.text
    # Distractors come only from negatives in the corpus ("missing-negative" is dropped), two per step.
    (good,) = trajectories
    assert [step.retrieved_ids[0] for step in good.retrieval_steps] == ["p0", "p1"]
    for step in good.retrieval_steps:
        assert len(set(step.retrieved_ids[1:])) == 2 and set(step.retrieved_ids[1:]) <= {"p2", "p3", "p4"}


def test_distractors_differ_across_steps_while_enough_remain():
    qa = tiny_multihop()
    row = {**qa.questions[0], "negative_ids": ["p2", "p3", "p4", "p5"]}
    (trajectory,), _ = trajectories_from_multihop(MultiHopQA(qa.corpus, Dataset.from_list([row]), "tiny"))
    first, second = (set(step.retrieved_ids[1:]) for step in trajectory.retrieval_steps)
    assert first.isdisjoint(second) and first | second == {"p2", "p3", "p4", "p5"}
    few_qa = MultiHopQA(qa.corpus, Dataset.from_list([{**row, "negative_ids": ["p2"]}]), "tiny")
    (few,), _ = trajectories_from_multihop(few_qa, fill_from_corpus=False)
    assert [step.retrieved_ids for step in few.retrieval_steps] == [["p0", "p2"], ["p1", "p2"]]
    (filled,), _ = trajectories_from_multihop(few_qa)
    for step in filled.retrieval_steps:
        assert step.retrieved_ids[1] == "p2" and step.retrieved_ids[2] in {"p3", "p4", "p5"}


def test_hops_mismatch_is_skipped():
    qa = tiny_multihop()
    rows = [
        {**qa.questions[0], "id": "short-hops", "hops": [{"thought": "t", "sub_query": "s"}]},
        {
            **qa.questions[0],
            "id": "empty-hop",
            "hops": [{"thought": "t", "sub_query": "s"}, {"thought": "", "sub_query": "x"}],
        },
        {
            **qa.questions[0],
            "id": "ok",
            "hops": [{"thought": "t1", "sub_query": "s1"}, {"thought": "t2", "sub_query": "s2"}],
        },
    ]
    trajectories, skipped = trajectories_from_multihop(MultiHopQA(qa.corpus, Dataset.from_list(rows), "tiny"))
    assert skipped == [
        ("short-hops", "1 annotated hops but 2 supporting_ids"),
        ("empty-hop", "hop 1 has an empty thought"),
    ]
    assert [step.sub_query for step in trajectories[0].retrieval_steps] == ["s1", "s2"]


def test_templated_text_for_sources_without_hops():
    (trajectory,), _ = trajectories_from_multihop(tiny_multihop(), split="dev")
    assert [step.thought for step in trajectory.steps] == [
        "I need to find information about Title 0.",
        "Title 0 is related to Title 1; next I need details about Title 1.",
        DEFAULT_FINAL_THOUGHT,
    ]
    assert [step.sub_query for step in trajectory.retrieval_steps] == ["Title 0", "Title 1 founded company makes"]
    assert trajectory.answer == "Ada" and trajectory.answers == ["Ada", "Ada L."]


# ------------------------------------------------------------------------------------------------------------ format


def test_round_trip_dict_json_and_dataset():
    trajectory = hand_trajectory()
    data = json.loads(json.dumps(trajectory.to_dict()))
    assert Trajectory.from_dict(data) == trajectory
    demo_trajectories, _ = trajectories_from_multihop(load_demo_corpus())
    dataset = trajectories_to_dataset([trajectory, *demo_trajectories])
    assert dataset.num_rows == 25
    assert trajectories_from_dataset(dataset) == [trajectory, *demo_trajectories]
    assert dataset[0]["steps"][-1]["sub_query"] is None


def test_trajectory_validation():
    with pytest.raises(ValueError, match="last step must be the answer step"):
        Trajectory("q", "Q?", [TrajectoryStep("t", "s")], "a")
    with pytest.raises(ValueError, match="is not last but has no sub_query"):
        Trajectory("q", "Q?", [TrajectoryStep("t"), TrajectoryStep("t")], "a")
    with pytest.raises(ValueError, match="aligned"):
        TrajectoryStep("t", "s", retrieved_ids=["a"], retrieved_titles=[], retrieved_texts=[])
    assert Trajectory("q", "Q?", [TrajectoryStep("t")], "a").answers == ["a"]


def test_attach_pseudo_relevant_ids_with_fake_search():
    trajectories = [hand_trajectory(), hand_trajectory()]
    calls = []

    def search_fn(queries: list[str]) -> list[list[str]]:
        calls.append(list(queries))
        return [[f"{query}-{rank}" for rank in range(12)] for query in queries]

    filled = attach_pseudo_relevant_ids(trajectories, search_fn, k=10, batch_size=3)
    assert calls == [["Tarnwick", "Selwen River", "Tarnwick"], ["Selwen River"]]
    for trajectory in filled:
        for step in trajectory.retrieval_steps:
            assert step.pseudo_relevant_ids == [f"{step.sub_query}-{rank}" for rank in range(10)]
        assert trajectory.final_step.pseudo_relevant_ids == []
    assert trajectories[0].steps[0].pseudo_relevant_ids == ["p1", "p3"]  # inputs untouched
    with pytest.raises(ValueError, match="returned 1 result lists for 4 sub-queries"):
        attach_pseudo_relevant_ids(trajectories, lambda queries: [["x"]])
    with pytest.raises(ValueError, match="lists of string ids"):
        attach_pseudo_relevant_ids(trajectories, lambda queries: ["abc" for _ in queries])


# --------------------------------------------------------------------------------------------------------- rendering


def test_render_explicit_trajectory_exact_string():
    """The layout of `ExplicitAgenticRAG`: it stops generating at `</search>` and inserts
    `\\n\\n<information>{docs}</information>\\n\\n` (Search-R1's block, no newline after the last document)."""
    assert render_explicit_trajectory(hand_trajectory()) == (
        "<think>Find Tarnwick.</think>\n"
        "<search>Tarnwick</search>"
        "\n\n<information>Doc 1 (Title: Tarnwick) Tarnwick lies on the Selwen.\n"
        "Doc 2 (Title: Ostbridge) Ostbridge is a port.</information>\n\n"
        "<think>Check the river.</think>\n"
        "<search>Selwen River</search>"
        "\n\n<information>Doc 1 (Title: Selwen River) The Selwen flows south.</information>\n\n"
        "<think>Done.</think>\n"
        "<answer>Selwen River</answer>"
    )
    segments = explicit_trajectory_segments(hand_trajectory())
    assert [written for _, written in segments] == [True, False, True, False, True]
    assert "".join(text for text, _ in segments) == render_explicit_trajectory(hand_trajectory())


def test_encode_explicit_text_reads_latent_tags_as_text_and_keeps_chat_markers():
    """The explicit baseline's tags are subwords (as the tokenizer without LatentRAG's tokens encodes them), while the
    tokenizer's own special tokens (chat markers) stay single tokens."""
    latent = latent_special_tokens()
    base = build_tiny_tokenizer()
    shared = build_tiny_tokenizer(extra_special_tokens=latent)
    text = (
        "<|im_start|>user\nCall <search> q </search>, read <information> Doc 1 </information>, then <answer> x "
        "</answer>.<|im_end|>\n<|im_start|>assistant\n<think>a</think><think_1>"
    )
    ids = encode_explicit_text(shared, text, latent)
    assert ids == base(text, add_special_tokens=False)["input_ids"]
    assert ids.count(shared.convert_tokens_to_ids("<|im_start|>")) == 2
    assert not set(ids) & set(shared.convert_tokens_to_ids(latent))
    assert shared.decode(ids) == text
    # The default token set is LatentRAG's default one.
    assert encode_explicit_text(shared, text) == ids
    # The tokenizer's own BOS/EOS wrapping on request (a BERT-style [CLS] … [SEP] here).
    encoder = build_tiny_encoder_tokenizer()
    encoder.add_special_tokens({"additional_special_tokens": ["<answer>"]})
    wrapped = encode_explicit_text(encoder, "<answer> x", ["<answer>"], add_special_tokens=True)
    cls_id, sep_id = encoder.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    assert wrapped == [
        cls_id,
        *encoder("<answer> x", add_special_tokens=False, split_special_tokens=True)["input_ids"],
        sep_id,
    ]


def test_render_latent_segments_layout():
    segments = render_latent_trajectory_segments(hand_trajectory(), num_thought_tokens=2, num_subquery_tokens=3)
    assert segments == [
        (f"{LATENTRAG_INSTRUCTION}\n\nQuestion: Which river flows through Tarnwick?\n", False),
        ("<think_1><think_2>", False),
        ("<query_1>", True),
        ("<query_2><query_3>", False),
        (
            "\n<information>\nDoc 1 (Title: Tarnwick) Tarnwick lies on the Selwen.\n"
            "Doc 2 (Title: Ostbridge) Ostbridge is a port.\n</information>\n",
            False,
        ),
        ("<think_1><think_2>", False),
        ("<query_1>", True),
        ("<query_2><query_3>", False),
        ("\n<information>\nDoc 1 (Title: Selwen River) The Selwen flows south.\n</information>\n", False),
        ("<think_1><think_2>", False),
        ("<answer>", True),
        (" Selwen River ", True),
        ("</answer>", True),
    ]
    custom = render_latent_trajectory_segments(
        hand_trajectory(), 1, 1, tokens={"thought": ["<t>"], "subquery": "<q{index}>"}, instruction=None
    )
    assert custom[:3] == [("Question: Which river flows through Tarnwick?\n", False), ("<t>", False), ("<q1>", True)]
    assert ("<q2>", False) not in custom
    with pytest.raises(ValueError, match="lists 2 tokens, expected 1"):
        render_latent_trajectory_segments(hand_trajectory(), 1, 1, tokens={"thought": ["<a>", "<b>"]})


@pytest.fixture(scope="module")
def latent_tokenizer():
    return build_tiny_tokenizer(extra_special_tokens=latent_special_tokens(4, 16))


def test_tokenized_label_mask_matches_spec_token_by_token(latent_tokenizer):
    """specs/latentrag.md §13.7: targets are the token after every think_4 and the answer tokens plus </answer>."""
    tokenizer = latent_tokenizer
    trajectory = hand_trajectory()
    encoded = tokenize_latent_trajectory(trajectory, tokenizer, {"num_thought_tokens": 4, "num_subquery_tokens": 16})
    input_ids, labels = encoded["input_ids"], encoded["labels"]
    assert len(input_ids) == len(labels) == len(encoded["attention_mask"])
    token = tokenizer.convert_tokens_to_ids
    think = [token(f"<think_{i}>") for i in range(1, 5)]
    query = [token(f"<query_{i}>") for i in range(1, 17)]
    answer_start, answer_end, eos = token("<answer>"), token("</answer>"), tokenizer.eos_token_id

    # Independent walk over the ids: which positions must be targets?
    inside_answer = False
    expected = []
    for position, token_id in enumerate(input_ids):
        if token_id == answer_start:
            inside_answer = True
        is_action = position > 0 and input_ids[position - 1] == think[-1]
        is_eos = token_id == eos and input_ids[position - 1] == answer_end
        expected.append(is_action or inside_answer or is_eos)
        if token_id == answer_end:
            inside_answer = False
    for position, (token_id, label, target) in enumerate(zip(input_ids, labels, expected)):
        assert label == (token_id if target else -100), (position, tokenizer.convert_ids_to_tokens(token_id))

    # The targets are exactly: <query_1> of each retrieval step, <answer>, the answer text, </answer>, EOS.
    target_ids = [label for label in labels if label != -100]
    answer_text_ids = tokenizer(" Selwen River ", add_special_tokens=False)["input_ids"]
    assert target_ids == [query[0], query[0], answer_start, *answer_text_ids, answer_end, eos]
    assert tokenizer.decode(answer_text_ids) == " Selwen River "

    # Placeholder positions.
    assert len(encoded["thought_positions"]) == 3 and len(encoded["subquery_positions"]) == 2
    for positions in encoded["thought_positions"]:
        assert [input_ids[p] for p in positions] == think
    for positions in encoded["subquery_positions"]:
        assert [input_ids[p] for p in positions] == query
    actions = encoded["action_positions"]
    assert [labels[p + 1] for p in actions] == [query[0], query[0], answer_start]
    assert input_ids[encoded["answer_start_position"]] == answer_start
    assert input_ids[-2:] == [answer_end, eos]
    # Prompt, placeholders other than the action, tags and document text are never targets.
    for text in (" Tarnwick lies on the Selwen.", "<information>", "</information>", " Which river", "Question:"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        starts = [i for i in range(len(input_ids)) if input_ids[i : i + len(ids)] == ids]
        assert starts and all(labels[s + j] == -100 for s in starts for j in range(len(ids)))
    assert encoded["thoughts"] == ["Find Tarnwick.", "Check the river.", "Done."]
    assert encoded["sub_queries"] == ["Tarnwick", "Selwen River"]
    assert encoded["pseudo_relevant_ids"] == [["p1", "p3"], []]

    # The ids are the concatenation of the segments' ids, the instruction included.
    segments = render_latent_trajectory_segments(trajectory)
    assert input_ids[:-1] == [
        i for text, _ in segments for i in tokenizer(text, add_special_tokens=False)["input_ids"]
    ]
    without_eos = tokenize_latent_trajectory(trajectory, tokenizer, append_eos=False)
    assert without_eos["input_ids"] == input_ids[:-1] and without_eos["labels"] == labels[:-1]


def test_tokenized_labels_feed_the_generation_loss(latent_tokenizer):
    import torch

    encoded = tokenize_latent_trajectory(hand_trajectory(), latent_tokenizer)
    assert encoded["input_ids"][-1] == encoded["labels"][-1] == latent_tokenizer.eos_token_id
    labels = torch.tensor([encoded["labels"]])
    vocab = len(latent_tokenizer)
    logits = torch.zeros(1, labels.shape[1], vocab)
    # A model that puts all mass on the right action at every think_4 position and on the answer tokens.
    for position in range(labels.shape[1] - 1):
        if labels[0, position + 1] != -100:
            logits[0, position, labels[0, position + 1]] = 50.0
    assert GenerationLoss()(logits, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_tokenize_checks_tokens_and_reads_config(latent_tokenizer):
    plain = build_tiny_tokenizer()
    with pytest.raises(ValueError, match="is not a single token of the tokenizer"):
        tokenize_latent_trajectory(hand_trajectory(), plain)
    # Attribute names of LatentRAGConfig.
    config = SimpleNamespace(
        num_thought_tokens=2,
        num_subquery_tokens=3,
        thought_token_format="<think_{index}>",
        subquery_token_format="<query_{index}>",
        instruction="Solve it.",
        use_chat_template=False,
        document_template="[{index}] {title}: {text}",
    )
    tokens = tokens_from_config(config)
    assert tokens == LatentTrajectoryTokens(("<think_1>", "<think_2>"), ("<query_1>", "<query_2>", "<query_3>"))
    encoded = tokenize_latent_trajectory(hand_trajectory(), latent_tokenizer, config)
    text = latent_tokenizer.decode(encoded["input_ids"])
    assert text.startswith("Solve it.\n\nQuestion: Which river flows through Tarnwick?\n<think_1><think_2><query_1>")
    assert "<information>\n[1] Tarnwick: Tarnwick lies on the Selwen.\n[2] Ostbridge" in text
    assert [len(p) for p in encoded["thought_positions"]] == [2, 2, 2]
    assert [len(p) for p in encoded["subquery_positions"]] == [3, 3]
    without = tokenize_latent_trajectory(hand_trajectory(), latent_tokenizer, config, instruction="")
    assert latent_tokenizer.decode(without["input_ids"]).startswith("Question: Which river")
    # An instruct backbone: instruction + question as one user turn (the tiny tokenizer has a ChatML template).
    chat = tokenize_latent_trajectory(hand_trajectory(), latent_tokenizer, config, use_chat_template=True)
    assert latent_tokenizer.decode(chat["input_ids"]).startswith(
        "<|im_start|>user\nSolve it.\n\nQuestion: Which river flows through Tarnwick?<|im_end|>\n"
        "<|im_start|>assistant\n<think_1>"
    )
    assert [label for label in chat["labels"] if label != -100] == [
        label for label in encoded["labels"] if label != -100
    ]
    assert latent_prompt("Q?", instruction=None) == "Question: Q?\n"


@pytest.mark.parametrize("use_chat_template", [False, True])
def test_matches_the_inference_encoding(use_chat_template):
    """The training sequence equals the context the model's inference code builds (spec §13.1)."""
    prompts = pytest.importorskip("hf_latent.latentrag.prompts")
    configuration = pytest.importorskip("hf_latent.latentrag.configuration_latentrag")
    config = configuration.LatentRAGConfig(use_chat_template=use_chat_template)
    tokenizer = build_tiny_tokenizer(extra_special_tokens=config.special_tokens)
    ids = dict(zip(config.special_tokens, tokenizer.convert_tokens_to_ids(config.special_tokens)))
    config.thought_token_ids = [ids[token] for token in config.thought_tokens]
    config.subquery_token_ids = [ids[token] for token in config.subquery_tokens]
    for name in ("answer_start", "answer_end", "information_start", "information_end"):
        setattr(config, f"{name}_token_id", ids[getattr(config, f"{name}_token")])
    trajectory = hand_trajectory()
    documents = [
        [{"title": title, "text": text} for title, text in zip(step.retrieved_titles, step.retrieved_texts)]
        for step in trajectory.retrieval_steps
    ]
    expected = prompts.encode_trajectory(tokenizer, config, trajectory.question, documents, trajectory.answer)
    encoded = tokenize_latent_trajectory(trajectory, tokenizer, config)
    assert encoded["input_ids"] == expected["input_ids"]
    assert encoded["labels"] == expected["labels"]
