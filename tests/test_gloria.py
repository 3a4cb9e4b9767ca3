"""GLoRIA: losses on hand-checkable tensors (attention, local score, global loss; settings both
ways), captions and word slots, the model, the recipe, and the checkpoint loaders (our folders and
a Lightning-like published .ckpt with the real key names)."""
import math
from types import SimpleNamespace

import pytest
import torch

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.gloria.captions import SentenceSampler, full_caption, report_sentences, word_slots
from g2d_bench.methods.gloria.config import GLoRIAConfig, training_profile
from g2d_bench.methods.gloria.losses import (attention_fn, global_loss, global_loss_terms, local_loss, local_loss_terms,
                                             local_max_scores, local_scores, word_masks)
from g2d_bench.methods.gloria.recipe import RECIPE

REPORTS = ["Small right pneumothorax. No effusion.", "No effusion. Heart size is normal.",
           "Left lower lobe opacity. Findings suggest pneumonia.", "The heart is enlarged. Mild edema."]
TINY = GLoRIAConfig(scale="cpu", **RECIPE.tiny)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def softmax(xs):
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def ce(logits, target):
    """Cross-entropy of one row of logits, by hand."""
    return -math.log(softmax(logits)[target])


def images(n=2, size=64, seed=0):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# -- attention ------------------------------------------------------------------------------------------
def test_attention_two_softmaxes_by_hand_and_masked_words_take_no_part():
    words = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # W×D
    regions = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # R×D; scores s = [[1, 0], [0, 2]]
    e = math.e
    over_words = [[e / (e + 1), 1 / (1 + e**2)], [1 / (e + 1), e**2 / (1 + e**2)]]  # softmax over words per region
    expected = [softmax([4 * v for v in row]) for row in over_words]  # ×temp1, softmax over regions per word
    context, attention = attention_fn(words, regions, 4.0)
    torch.testing.assert_close(attention, torch.tensor(expected))
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(2))
    torch.testing.assert_close(context, torch.tensor(expected) @ regions)
    # a third, masked word changes nothing for the other two (it is out of the softmax over words)
    padded = torch.cat([words, torch.tensor([[5.0, 5.0]])])
    ctx3, att3 = attention_fn(padded, regions, 4.0, torch.tensor([True, True, False]))
    torch.testing.assert_close(att3[:2], attention)
    torch.testing.assert_close(ctx3[:2], context)
    # …but unmasked it does
    assert not torch.allclose(attention_fn(padded, regions, 4.0)[1][:2], attention)


def test_attention_one_softmax_by_hand():
    words = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    regions = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    _, attention = attention_fn(words, regions, 4.0, mode="one-softmax")
    torch.testing.assert_close(attention, torch.tensor([softmax([4.0, 0.0]), softmax([0.0, 8.0])]))
    with pytest.raises(G2DBenchError):
        attention_fn(words, regions, 4.0, mode="three")


def test_word_masks_training_includes_cls_inference_skips_it():
    n = torch.tensor([1, 2, 0])
    assert word_masks(n, 4, "training").tolist() == [[True, True, False, False], [True, True, True, False],
                                                     [True, False, False, False]]
    # inference: words only; a caption without words falls back to [CLS]
    assert word_masks(n, 4, "inference").tolist() == [[False, True, False, False], [False, True, True, False],
                                                      [True, False, False, False]]


# -- local score and loss on one-region images (attention = 1: context = the region) ----------------------
V = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)  # images N×D×1×1
WORDS = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [7.0, 7.0]],  # caption 0: [CLS], 1 word, junk slot
                      [[0.0, 1.0], [0.0, 3.0], [-1.0, 0.0]]])  # caption 1: [CLS], 2 words
NUM = torch.tensor([1, 2])
S = 1 / math.sqrt(2)
#: Z[j][i] = log Σ_{[CLS]+words} exp(5 cos): image j (row), caption i (column)
Z = [[math.log(math.exp(5 * S) + math.exp(5)), math.log(1 + 1 + math.exp(-5))],
     [math.log(math.exp(5 * S) + 1), math.log(2 * math.exp(5) + 1)]]


def test_local_scores_sum_and_mean_by_hand():
    mask = word_masks(NUM, 3, "training")
    torch.testing.assert_close(local_scores(V, WORDS, mask), torch.tensor(Z))
    counts = [2, 3]
    mean = [[z - math.log(counts[i]) for i, z in enumerate(row)] for row in Z]
    torch.testing.assert_close(local_scores(V, WORDS, mask, agg="mean"), torch.tensor(mean))


def test_local_loss_is_ce_of_temp3_times_z_both_directions():
    terms = local_loss_terms(V, WORDS, NUM)
    i2t = sum(ce([10 * z for z in Z[j]], j) for j in range(2)) / 2
    t2i = sum(ce([10 * Z[j][i] for j in range(2)], i) for i in range(2)) / 2
    torch.testing.assert_close(terms, torch.tensor([i2t, t2i]))
    torch.testing.assert_close(local_loss(V, WORDS, NUM, gather="local"), terms)
    torch.testing.assert_close(local_loss(V, WORDS, NUM, gather="all"), terms)  # one process: the same


def test_inference_local_similarity_skips_cls_and_takes_the_max():
    got = local_max_scores(V, WORDS, word_masks(NUM, 3, "inference"))
    torch.testing.assert_close(got, torch.tensor([[5.0, 0.0], [0.0, 5.0]]))  # max_w 5·cos over the words only
    assert not torch.allclose(got, torch.tensor(Z))


def test_global_loss_by_hand():
    img, txt = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    cos = [[1.0, S], [0.0, S]]
    i2t = (ce([10 * c for c in cos[0]], 0) + ce([10 * c for c in cos[1]], 1)) / 2
    t2i = (ce([10 * cos[0][0], 10 * cos[1][0]], 0) + ce([10 * cos[0][1], 10 * cos[1][1]], 1)) / 2
    torch.testing.assert_close(global_loss_terms(img, txt), torch.tensor([i2t, t2i]))
    torch.testing.assert_close(global_loss(img, txt, gather="all"), torch.tensor([i2t, t2i]))
    # collapsed image embeddings: every text sees equal logits, text→image scores ln(batch)
    collapsed = global_loss_terms(torch.ones(4, 3), torch.randn(4, 3, generator=torch.Generator().manual_seed(0)))
    assert float(collapsed[1]) == pytest.approx(math.log(4)) and float(collapsed[0]) != pytest.approx(math.log(4))


# -- captions and word slots ---------------------------------------------------------------------------------
def test_report_sentences_follow_the_official_cleaning():
    text = "1. Small right pneumothorax. 2. No effusion.\nHeart size is normal. Ok. Left-sided opacity, café!"
    assert report_sentences(text) == ["small right pneumothorax", "no effusion", "heart size is normal",
                                      "left sided opacity caf"]
    assert report_sentences("A 1.5 cm nodule.") == ["5 cm nodule"]  # the official numbered-list split
    # official quirk: stop when the running word count equals 5
    three = "No acute process. Small effusion. Mild edema."
    assert report_sentences(three, stop_words=5) == ["no acute process", "small effusion"]
    assert len(report_sentences(three)) == 3
    assert full_caption("Small left effusion. Ok") == "small left effusion"
    assert full_caption("Pneumothorax!") == "pneumothorax"  # no two-word sentence: its words (ours)


def test_sentence_sampler_draws_from_torchs_generator():
    sampler = SentenceSampler("sentence")
    sentences = report_sentences(REPORTS[2])
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        expected = sentences[int(torch.randint(len(sentences), ()))]
        torch.manual_seed(seed)
        got = sampler(REPORTS[2])
        assert got == expected
        seen.add(got)
    assert seen == set(sentences)
    assert SentenceSampler("report")(REPORTS[2]) == " ".join(sentences)
    assert SentenceSampler("sentence")("Ok.") == "ok"


def test_word_slots_sum_pieces_and_count_like_the_official_cap_lens():
    tokens = ["[CLS]", "pneu", "##mo", "##thorax", "is", "[UNK]", "small", "[SEP]", "[PAD]"]
    assert word_slots(tokens, 8) == ([0, 1, 1, 1, 2, 3, 4, 5, -1], 3)  # [CLS], [UNK], [SEP] do not count
    assert word_slots(tokens, 8, aggregate=False) == ([0, 1, 2, 3, 4, 5, 6, 7, -1], 5)


def test_tokenize_gives_word_index_and_counts(tmp_path):
    from g2d_bench.methods.common.text import train_wordpiece
    from g2d_bench.methods.gloria.model import GLoRIA

    tokenizer = train_wordpiece(["small effusion", "no effusion"], 40, tmp_path)  # "fusion" is not a vocabulary word
    fake = SimpleNamespace(tokenizer=tokenizer, cfg=TINY)
    tok = GLoRIA.tokenize(fake, ["small fusion", "no effusion"])
    pieces = tokenizer.convert_ids_to_tokens(tok["input_ids"][0])
    assert pieces == ["[CLS]", "small", "f", "##u", "##s", "##i", "##o", "##n", "[SEP]"]
    assert tok["word_index"][0].tolist() == [0, 1, 2, 2, 2, 2, 2, 2, 3]
    assert tok["word_index"][1].tolist() == [0, 1, 2, 3, -1, -1, -1, -1, -1]
    assert tok["num_words"].tolist() == [2, 2]


# -- model ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return RECIPE.build(TINY, REPORTS * 4)


def test_aggregate_words_by_hand():
    from g2d_bench.methods.gloria.model import aggregate_words

    hidden = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    assert aggregate_words(hidden, torch.tensor([[0, 1, 1, -1]])).view(-1).tolist() == [1.0, 5.0, 0.0, 0.0]


def test_text_features_sum_the_last_layers_and_pieces(tiny_model):
    model = tiny_model.eval()
    tok = model.tokenize(["small right pneumothorax", "no effusion"])
    with torch.no_grad():
        words, report = model.encode_text(tok["input_ids"], tok["attention_mask"], tok["word_index"])
        hidden = model.text_encoder.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                                          output_hidden_states=True).hidden_states
    summed = torch.stack(hidden[-4:]).sum(0)  # a 1-layer BERT has 2 hidden states: both
    assert len(hidden) == 2
    for b in range(2):
        for slot in range(words.shape[1]):
            positions = (tok["word_index"][b] == slot).nonzero().view(-1)
            torch.testing.assert_close(words[b, slot], summed[b, positions].sum(0) if len(positions) else torch.zeros(32))
    torch.testing.assert_close(report, words.mean(dim=1))


def test_forward_weights_the_two_losses(tiny_model):
    model = tiny_model.train()
    tok = model.tokenize(["small right pneumothorax", "no effusion", "mild edema", "heart is enlarged"])
    x = images(4)
    torch.manual_seed(1)
    out = model(x, **tok)
    assert out["loss"].requires_grad
    torch.testing.assert_close(out["loss"].detach(), out["local_i2t"] + out["local_t2i"] + out["global_i2t"] + out["global_t2i"])
    torch.testing.assert_close(out["global"], (out["global_i2t"] + out["global_t2i"]) / 2)
    model.cfg = TINY.with_overrides({"local_loss_weight": 0.0, "global_loss_weight": 2.0})
    try:
        torch.manual_seed(1)
        out2 = model(x, **tok)
    finally:
        model.cfg = TINY
    torch.testing.assert_close(out2["loss"].detach(), 2 * (out["global_i2t"] + out["global_t2i"]))


def test_input_resize_sets_the_local_grid(tiny_model):
    from g2d_bench.methods.gloria.model import GLoRIA

    model = GLoRIA(TINY.with_overrides({"input_resize": 96}), tiny_model.img_encoder, tiny_model.text_encoder.model,
                   tiny_model.tokenizer).eval()
    with torch.no_grad():
        assert model.encode_image(images(1))["local"].shape == (1, 32, 6, 6)  # 96 px / 16
        assert tiny_model.eval().encode_image(images(1))["local"].shape == (1, 32, 4, 4)  # 64 px / 16


def test_paper_scale_forward_backward():
    """ResNet-50 at 224 px (upsampled to 299: 19×19 local grid) + a Bio_ClinicalBERT-sized BERT, batch 2."""
    from transformers import BertConfig, BertModel

    from g2d_bench.methods.common.text import prepare_text_model, train_wordpiece
    from g2d_bench.methods.gloria.model import GLoRIA, build_image_encoder

    import tempfile

    cfg = GLoRIAConfig(scale="paper", text_model="scratch")
    assert (cfg.arch, cfg.image_size, cfg.input_resize, cfg.text_max_length) == ("resnet50", 224, 299, 97)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072))
    prepare_text_model(bert, cfg.freeze_layers)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_wordpiece(REPORTS, 200, tmp)
    model = GLoRIA(cfg, build_image_encoder(cfg, 768), bert, tokenizer)
    with torch.no_grad():
        assert model.encode_image(images(1, 224))["local"].shape == (1, 768, 19, 19)
    out = model(images(2, 224), **model.tokenize(["small right pneumothorax", "no effusion"]))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    untouched = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not untouched, untouched[:5]


# -- config and recipe -------------------------------------------------------------------------------------
def test_profiles_and_scales():
    paper, official = GLoRIAConfig(), GLoRIAConfig(profile="official")
    assert (paper.gather, paper.zero_shot_local, paper.sentence_stop_words) == ("all", "training", 0)
    assert (official.gather, official.zero_shot_local, official.sentence_stop_words) == ("local", "inference", 5)
    assert (paper.temp1, paper.temp2, paper.temp3, paper.local_loss_weight, paper.global_loss_weight) == (4, 5, 10, 1, 1)
    cpu = RECIPE.make_config("official", "cpu", {"temp1": 2.0})
    assert (cpu.arch, cpu.image_size, cpu.input_resize, cpu.text_max_length, cpu.temp1, cpu.gather) == ("resnet18", 96, 0, 64, 2.0, "local")
    # a changed profile re-derives what it filled
    assert cpu.with_overrides({"profile": "paper"}).gather == "all"
    assert GLoRIAConfig.from_dict(cpu.to_dict()) == cpu
    with pytest.raises(G2DBenchError, match="unknown GLoRIA setting"):
        RECIPE.make_config("paper", "cpu", {"temperature": 1})
    with pytest.raises(G2DBenchError, match="attention"):
        GLoRIAConfig(attention="three-softmax")


def test_optimisation_and_hooks(tiny_model):
    opt = RECIPE.optimisation(GLoRIAConfig())
    assert (opt["lr"], opt["weight_decay"], opt["betas"], opt["schedule"], opt["batch_size"], opt["epochs"]) == \
        (5e-5, 1e-6, (0.5, 0.999), "constant", 48, 50)
    assert opt["cache_size"] == 256 and set(opt["sources"]) >= {"lr", "schedule", "betas", "batch_size"}
    assert training_profile(TINY)["batch_size"] == 64
    optimizer = RECIPE.optimizer(tiny_model, opt, 1e-3)
    assert isinstance(optimizer, torch.optim.Adam) and not isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999) and optimizer.param_groups[0]["weight_decay"] == 1e-6
    sampler = RECIPE.text_transform(GLoRIAConfig(profile="official"))
    assert (sampler.caption, sampler.stop_words) == ("sentence", 5)
    # after_backward clips the global gradient norm at 0.25, keeping its direction
    params = [p for p in tiny_model.parameters() if p.requires_grad]
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, float(i % 3 + 1))
    before = torch.cat([p.grad.flatten() for p in params])
    RECIPE.after_backward(tiny_model, 0, 0)
    after = torch.cat([p.grad.flatten() for p in params])
    assert float(after.double().norm()) == pytest.approx(0.25, rel=1e-3)
    torch.testing.assert_close(after / after.norm(), before / before.norm())
    tiny_model.zero_grad(set_to_none=True)


# -- checkpoints: our folders ----------------------------------------------------------------------------------
def test_folder_round_trip_and_scoring_settings(tiny_model, tmp_path):
    from g2d_bench.methods.gloria.adapter import build
    from g2d_bench.pretrain import export_model

    model = tiny_model.eval()
    folder = export_model(model, RECIPE, TINY, tmp_path / "gloria")
    adapter = build(str(folder)).eval()
    prompts = ["Small right pneumothorax.", "no effusion"]
    x = images(2)
    with torch.no_grad():
        torch.testing.assert_close(adapter.project_image(x), torch.nn.functional.normalize(model.encode_image(x)["global"], dim=-1))
        torch.testing.assert_close(adapter.encode_text(prompts), adapter.encode_text(["small right pneumothorax", "No effusion!"]))
        enc = adapter.encode_prompts(prompts)
        image = model.encode_image(x)
        glob = torch.nn.functional.normalize(image["global"], dim=-1) @ enc["global"].T
        z = local_scores(image["local"], enc["words"], word_masks(enc["num_words"], enc["words"].shape[1], "training"))
        torch.testing.assert_close(adapter.similarity(x, enc), (glob + z) / 2)
        inference = build(str(folder), local_similarity="inference").eval()
        m = local_max_scores(image["local"], enc["words"], word_masks(enc["num_words"], enc["words"].shape[1], "inference"))
        torch.testing.assert_close(inference.similarity(x, prompts), (glob + m) / 2)
        maps = adapter.grounding_maps(x, enc)
        assert maps.shape == (2, 2, 4, 4)
        torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 2))
        cosine = build(str(folder), grounding="cosine").eval()
        torch.testing.assert_close(cosine.grounding_maps(x, enc), torch.einsum("behw,te->bthw", adapter.dense_embeddings(x), enc["global"]))
    with pytest.raises(G2DBenchError, match="needs --checkpoint"):
        build(None)


# -- checkpoints: the published Lightning layout ------------------------------------------------------------------
RAN = []


def _ran() -> None:
    RAN.append(True)


class HyperParameters:
    """Stands for the pickled OmegaConf config of a Lightning checkpoint; unpickling it normally
    would call :func:`_ran`."""

    def __reduce__(self):
        return (_ran, ())


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A GLoRIA with the published layout's names and image-side shapes (ResNet-50, 2048→768,
    1024→768) and a 1-layer 768-wide BERT, saved as a Lightning-like .ckpt, plus its text folder."""
    from transformers import BertConfig, BertModel

    from g2d_bench.methods.common.text import save_text, train_wordpiece
    from g2d_bench.methods.gloria.model import GLoRIA, ImageEncoder

    root = tmp_path_factory.mktemp("published")
    tokenizer = train_wordpiece(REPORTS, 120, root / "vocab")
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                                intermediate_size=3072))
    save_text(bert, tokenizer, root / "bert")
    cfg = GLoRIAConfig(profile="official", arch="resnet50", text_model=str(root / "bert"))
    model = GLoRIA(cfg, ImageEncoder("resnet50", 768), bert, tokenizer).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, so a lost buffer would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = {"gloria." + k: v for k, v in model.state_dict().items()}
    assert state["gloria.img_encoder.global_embedder.weight"].shape == (768, 2048)
    assert state["gloria.img_encoder.local_embedder.weight"].shape == (768, 1024, 1, 1)
    state["gloria.text_encoder.model.embeddings.position_ids"] = torch.arange(512)[None]  # saved by transformers 4.x
    path = root / "gloria_resnet50.ckpt"
    torch.save({"epoch": 3, "global_step": 100, "state_dict": state, "hyper_parameters": HyperParameters(),
                "optimizer_states": [{"state": {}, "param_groups": []}]}, path)
    return SimpleNamespace(path=path, model=model, state=state, text=root / "bert")


def test_published_ckpt_reads_without_running_pickled_code(published):
    from g2d_bench.methods.common.lightning import read_lightning

    read = read_lightning(published.path)
    assert read.loader == "restricted" and not RAN
    assert set(read.state_dict) == set(published.state)


def test_published_image_side_every_tensor_lands(published):
    import torchvision

    from g2d_bench.methods.gloria.adapter import build

    adapter = build(str(published.path)).eval()
    assert adapter.capabilities == frozenset() and adapter.arch == "resnet50"
    source = published.model.img_encoder.model.state_dict()
    got = adapter.backbone.state_dict()
    assert set(got) == set(source) and all(torch.equal(got[k], source[k]) for k in source)
    # features equal those of a torchvision ResNet-50 built directly from the same tensors
    direct = torchvision.models.resnet50(weights=None)
    direct.fc = torch.nn.Identity()
    direct.load_state_dict({k.removeprefix("gloria.img_encoder.model."): v for k, v in published.state.items()
                            if k.startswith("gloria.img_encoder.model.")})
    x = images(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(adapter.pooled_features(x), direct.eval()((x.expand(-1, 3, -1, -1) - 0.5) / 0.5))


def test_published_full_model_equals_the_source(published):
    from g2d_bench.methods.gloria.adapter import adapter_from_model, build

    adapter = build(str(published.path), text_model=str(published.text)).eval()
    got, source = adapter.model.state_dict(), published.model.state_dict()
    assert set(got) == set(source) and all(torch.equal(got[k], source[k]) for k in source)
    direct = adapter_from_model(published.model, "0" * 64).eval()
    assert adapter.local_similarity == "inference"  # the official profile's zero-shot score
    x, prompts = images(2, 64), ["small right pneumothorax", "no effusion"]
    with torch.no_grad():
        torch.testing.assert_close(adapter.encode_text(prompts), direct.encode_text(prompts))
        torch.testing.assert_close(adapter.dense_embeddings(x), direct.dense_embeddings(x))
        torch.testing.assert_close(adapter.similarity(x, prompts), direct.similarity(x, prompts))


def test_published_key_maps_are_strict(published):
    from g2d_bench.methods.gloria.checkpoint import load_official_image, model_from_official

    state = {k.removeprefix("gloria."): v for k, v in published.state.items()}
    missing = {k: v for k, v in state.items() if k != "img_encoder.local_embedder.weight"}
    with pytest.raises(G2DBenchError, match=r"missing: img_encoder\.local_embedder\.weight") as info:
        load_official_image(missing, "x.ckpt")
    assert "\n" not in str(info.value)
    with pytest.raises(G2DBenchError, match=r"unexpected: img_encoder\.extra"):
        load_official_image({**state, "img_encoder.extra": torch.zeros(1)}, "x.ckpt")
    with pytest.raises(G2DBenchError, match=r"unexpected: head\.weight"):
        load_official_image({**state, "head.weight": torch.zeros(1)}, "x.ckpt")
    no_text = {k: v for k, v in state.items() if k != "text_encoder.model.pooler.dense.bias"}
    with pytest.raises(G2DBenchError, match=r"missing: text_encoder\.model\.pooler\.dense\.bias"):
        model_from_official(no_text, str(published.text), "x.ckpt")
    wrong = {**state, "img_encoder.global_embedder.bias": torch.zeros(5)}
    with pytest.raises(G2DBenchError, match="shapes differ"):
        load_official_image(wrong, "x.ckpt")
