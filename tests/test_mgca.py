"""MGCA: each loss term on hand-checkable tensors, the settings both ways, the model at CPU and paper
size, the recipe, our checkpoint folders and the released Lightning .ckpt layout (strict), and the
2-process gloo equivalence of the gathered instance loss and the distributed Sinkhorn."""
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from g2d_bench.adapter import Capability
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.common.text import save_text, train_wordpiece
from g2d_bench.methods.mgca.config import LOSS_WEIGHTS, MGCAConfig, training_profile
from g2d_bench.methods.mgca.losses import (clipped_weights, cross_attend, instance_loss, prototype_loss, sinkhorn,
                                           token_loss)
from g2d_bench.methods.mgca.model import MGCA, clean_report, word_slots
from g2d_bench.methods.mgca.recipe import RECIPE

REPORTS = ["FINDINGS: small right pneumothorax. IMPRESSION: pneumothorax.", "FINDINGS: no effusion. IMPRESSION: normal chest.",
           "FINDINGS: left lower lobe opacity. IMPRESSION: pneumonia.", "FINDINGS: heart is enlarged. IMPRESSION: cardiomegaly."]
E = math.e


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(n=4, size=64, seed=0):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# -- config ---------------------------------------------------------------------------------------------
def test_profiles_and_scales_fill_the_documented_values():
    paper = MGCAConfig()
    assert (paper.arch, paper.image_size, paper.encoder_input_size, paper.text_max_length) == ("resnet50", 224, 299, 112)
    assert (paper.gather, paper.word_weights, paper.text_positions, paper.text_layers) == ("all", "aligned", "absolute", 0)
    assert (paper.num_prototypes, paper.sinkhorn_iterations, paper.epsilon, paper.proto_temperature) == (500, 3, 0.05, 0.2)
    assert (paper.temperature, paper.local_temperature, paper.freeze_prototypes_epochs) == (0.07, 0.1, 1)
    assert paper.lambdas == (1.0, 1.0, 1.0) and paper.weight_quantiles == (0.1, 0.9)
    official = MGCAConfig(profile="official")
    assert (official.gather, official.word_weights, official.text_positions, official.text_layers) == ("local", "shifted", "zeros", 6)
    cpu = MGCAConfig(profile="official", scale="cpu")
    assert (cpu.arch, cpu.image_size, cpu.encoder_input_size, cpu.text_model, cpu.text_layers) == ("resnet18", 96, 0, "scratch", 0)
    assert cpu.num_prototypes == 500  # kept at CPU scale (docs/mgca.md)


def test_loss_weight_presets_both_ways_and_explicit_lambda_wins():
    assert MGCAConfig(loss_weights="constructor").lambdas == (1.0, 0.7, 0.5) == LOSS_WEIGHTS["constructor"]
    assert MGCAConfig(loss_weights="cli").lambdas == (1.0, 1.0, 1.0)
    cfg = MGCAConfig(loss_weights="constructor", lambda_token=0.3)
    assert cfg.lambdas == (1.0, 0.3, 0.5)
    # derived λ follow a changed preset; an explicit one stays
    assert cfg.with_overrides({"loss_weights": "cli"}).lambdas == (1.0, 0.3, 1.0)
    assert MGCAConfig().with_overrides({"profile": "official"}).gather == "local"


def test_config_round_trip_and_errors():
    cfg = MGCAConfig(profile="official", scale="cpu", num_prototypes=64)
    assert MGCAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(G2DBenchError, match="unknown MGCA setting"):
        MGCAConfig.from_dict({"prototypes": 3})
    with pytest.raises(G2DBenchError, match="word_weights"):
        MGCAConfig(word_weights="middle")
    with pytest.raises(G2DBenchError, match="weight_quantiles"):
        MGCAConfig(weight_quantiles=(0.9, 0.1))
    with pytest.raises(G2DBenchError, match="epsilon"):
        MGCAConfig(epsilon=0.0)


def test_training_profile_is_the_official_optimiser():
    opt = training_profile(MGCAConfig())
    assert (opt["lr"], opt["weight_decay"], opt["betas"], opt["schedule"]) == (2e-5, 0.05, (0.9, 0.999), "warmup-cosine")
    assert (opt["warmup_fraction"], opt["min_lr"], opt["epochs"], opt["batch_size"]) == (0.4, 1e-8, 50, 144)
    assert set(opt["sources"]) >= {"lr", "weight_decay", "schedule", "warmup_fraction", "batch_size"}
    cpu = training_profile(MGCAConfig(scale="cpu"))
    assert (cpu["lr"], cpu["batch_size"], cpu["warmup_fraction"], cpu["cache_size"]) == (1e-3, 64, 0.4, 110)


def test_report_cleaning_as_mgca_and_prompts_survive():
    assert clean_report("FINDINGS: Small right\nPneumothorax. 1. No effusion.  Normal.") == "findings small right pneumothorax no effusion"
    assert clean_report("Pneumothorax.") == "pneumothorax"  # one-word prompt kept (ours)


# -- instance loss ------------------------------------------------------------------------------------
def test_instance_loss_sums_both_directions_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised inside
    txt = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    one = math.log(1 + math.exp(-1 / 0.5))  # CE of logits (1/τ, 0) with τ = 0.5
    assert instance_loss(img, txt, 0.5).item() == pytest.approx(2 * one, rel=1e-6)
    assert instance_loss(img, txt, 0.5, gather="local").item() == pytest.approx(2 * one, rel=1e-6)
    same = torch.ones(3, 2)  # collapsed towers: 2·ln(N)
    assert instance_loss(same, same, 0.07).item() == pytest.approx(2 * math.log(3), rel=1e-6)


# -- word weights -------------------------------------------------------------------------------------
def test_word_weights_clip_to_percentiles_of_nonzero_entries_and_normalise():
    a = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0],
                      [0.0, 0.2, 0.0, 0.6, 0.2]])
    w = clipped_weights(a)
    # row 0: non-zero 0.1..0.4 → q10 = 0.13, q90 = 0.37; the clipped row sums to 1.0 already
    torch.testing.assert_close(w[0], torch.tensor([0.13, 0.2, 0.3, 0.37, 0.0]))
    # row 1: non-zero (0.2, 0.2, 0.6) → q10 = 0.2, q90 = 0.2 + 0.8·0.4 = 0.52; sum 0.92
    torch.testing.assert_close(w[1], torch.tensor([0.0, 0.2, 0.0, 0.52, 0.2]) / 0.92)
    # all entries (the ViT patch weights): zeros take part in the percentiles
    all_entries = clipped_weights(a, nonzero_only=False)
    lo, hi = torch.quantile(a[1], 0.1).item(), torch.quantile(a[1], 0.9).item()
    torch.testing.assert_close(all_entries[1], a[1].clamp(lo, hi) / a[1].clamp(lo, hi).sum())
    assert torch.equal(clipped_weights(torch.zeros(1, 3)), torch.zeros(1, 3))


def test_word_weights_match_the_per_sample_quantile_loop():
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(5, 12, generator=gen) * (torch.rand(5, 12, generator=gen) > 0.3)
    expected = []
    for row in a.clone():
        nz = row.nonzero().squeeze(1)
        row[nz] = row[nz].clip(torch.quantile(row[nz], 0.1), torch.quantile(row[nz], 0.9))
        expected.append(row / row.sum())
    torch.testing.assert_close(clipped_weights(a), torch.stack(expected))
    torch.testing.assert_close(clipped_weights(a, (0.2, 0.5)).sum(dim=1), torch.ones(5))


# -- token loss ---------------------------------------------------------------------------------------
def test_patch_to_word_attention_masks_pad_with_minus_inf():
    q = torch.tensor([[[1.0, 0.0]]])
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 0.0]]])  # the last key is a [PAD] word
    out = cross_attend(q, keys, 1.0, torch.tensor([[False, False, True]]))
    torch.testing.assert_close(out[0, 0], torch.tensor([E, 1.0]) / (E + 1))
    unmasked = cross_attend(q, keys, 1.0)
    assert unmasked[0, 0, 0] > 4  # without the mask the pad word dominates


def test_token_loss_by_hand_on_orthogonal_tokens():
    eye = torch.eye(2)[None]
    n = math.sqrt(E * E + 1)
    expected = math.log(1 + math.exp((1 - E) / n))  # each token's CE against its own attended output, τ = 1
    word, patch = token_loss(eye, eye, torch.full((1, 2), 0.5), torch.zeros(1, 2, dtype=torch.bool), temperature=1.0)
    assert word.item() == pytest.approx(expected, rel=1e-6) and patch.item() == pytest.approx(expected, rel=1e-6)
    word, patch = token_loss(eye, eye, torch.full((1, 2), 0.5), torch.zeros(1, 2, dtype=torch.bool), 1.0, bidirectional=False)
    assert patch.item() == 0.0 and word.item() == pytest.approx(expected, rel=1e-6)


def _reference_word_side(words, patches, weights, tau):
    """The module's word side written with loops: for each sample, words attend to patches, and a
    weighted CE in both directions over the sample's word slots (pads included as negatives)."""
    total = 0.0
    b, n, _ = words.shape
    for s in range(b):
        attended = F.normalize(torch.softmax(words[s] @ patches[s].T / tau, dim=1) @ patches[s], dim=1)
        sim = words[s] @ attended.T / tau
        for i in range(n):
            total += weights[s, i] * (-torch.log_softmax(sim[i], 0)[i]) / 2
            total += weights[s, i] * (-torch.log_softmax(sim[:, i], 0)[i]) / 2
    return total / b


def test_padded_words_weigh_zero_but_stay_negatives():
    gen = torch.Generator().manual_seed(0)
    words = F.normalize(torch.randn(2, 4, 3, generator=gen), dim=-1)
    patches = F.normalize(torch.randn(2, 5, 3, generator=gen), dim=-1)
    pad = torch.tensor([[False, False, True, True], [False, False, False, True]])
    weights = clipped_weights(torch.rand(2, 4, generator=gen) * ~pad)
    assert (weights[pad] == 0).all()
    word, patch = token_loss(words, patches, weights, pad, 0.1)
    assert word.item() == pytest.approx(_reference_word_side(words, patches, weights, 0.1).item(), rel=1e-5)
    moved = words.clone()
    moved[0, 2] = F.normalize(torch.tensor([1.0, -2.0, 0.5]), dim=0)  # a pad word's embedding changes …
    word2, patch2 = token_loss(moved, patches, weights, pad, 0.1)
    assert abs(word2.item() - word.item()) > 1e-4  # … the word side sees it (a negative)
    assert patch2.item() == pytest.approx(patch.item(), abs=1e-7)  # … patches never attend to it


def test_patch_variants_resnet_uniform_normalised_vs_vit_weighted_raw():
    gen = torch.Generator().manual_seed(1)
    words = F.normalize(torch.randn(2, 3, 4, generator=gen), dim=-1)
    patches = F.normalize(torch.randn(2, 6, 4, generator=gen), dim=-1)
    pad = torch.zeros(2, 3, dtype=torch.bool)
    weights = torch.full((2, 3), 1 / 3)
    _, resnet = token_loss(words, patches, weights, pad, 0.1)
    _, uniform = token_loss(words, patches, weights, pad, 0.1, patch_weights=torch.full((2, 6), 1 / 6))
    assert uniform.item() == pytest.approx(resnet.item(), rel=1e-6)
    vit_weights = clipped_weights(torch.rand(2, 6, generator=gen), nonzero_only=False)
    _, vit = token_loss(words, patches, weights, pad, 0.1, patch_weights=vit_weights, normalize_patch_output=False)
    assert abs(vit.item() - resnet.item()) > 1e-3


# -- Sinkhorn and the prototype loss ------------------------------------------------------------------
def test_sinkhorn_one_iteration_by_hand():
    scores = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # B×K; ε = 1 → Q (K×B) = [[3, 1], [1, 1]]
    codes = sinkhorn(scores, epsilon=1.0, iterations=1)
    torch.testing.assert_close(codes, torch.tensor([[0.6, 0.4], [1 / 3, 2 / 3]]))
    assert codes.dtype == torch.float32


def test_sinkhorn_marginals_rows_and_columns():
    gen = torch.Generator().manual_seed(0)
    b, k = 8, 5
    scores = F.normalize(torch.randn(b, 3, generator=gen), dim=1) @ F.normalize(torch.randn(k, 3, generator=gen), dim=1).T
    codes = sinkhorn(scores, 0.05, 3)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(b))  # every sample's code is a distribution
    converged = sinkhorn(scores, 0.05, 500)
    torch.testing.assert_close(converged.sum(dim=0), torch.full((k,), b / k), atol=1e-4, rtol=0)  # equipartition
    assert (codes.sum(dim=0) - b / k).abs().max() > (converged.sum(dim=0) - b / k).abs().max()
    # the module's loop, written out
    q = torch.exp(scores / 0.05).T
    q = q / q.sum()
    for _ in range(3):
        q = q * (1 / k / q.sum(dim=1, keepdim=True))
        q = q * (1 / b / q.sum(dim=0, keepdim=True))
    torch.testing.assert_close(codes, (q / q.sum(dim=0, keepdim=True)).T)


def test_prototype_loss_by_hand():
    img = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    txt = torch.tensor([[0.0, 0.0], [0.0, math.log(2.0)]])
    loss, img_codes, txt_codes = prototype_loss(img, txt, temperature=1.0, epsilon=1.0, iterations=1)
    torch.testing.assert_close(img_codes, torch.tensor([[0.6, 0.4], [1 / 3, 2 / 3]]))
    log_p_txt = torch.log(torch.tensor([[0.5, 0.5], [1 / 3, 2 / 3]]))
    log_p_img = torch.log(torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    expected = (-(img_codes * log_p_txt).sum(1).mean() - (txt_codes * log_p_img).sum(1).mean()) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # codes carry no gradient; the softmax side does
    a, t = img.clone().requires_grad_(), txt.clone().requires_grad_()
    prototype_loss(a, t, 0.2, 0.05, 3)[0].backward()
    assert a.grad.abs().sum() > 0 and t.grad.abs().sum() > 0


# -- 2 processes (gloo) = one process on the union batch -----------------------------------------------
N, WORLD, K = 8, 2, 3


class _Tiny(nn.Module):
    def __init__(self, gather):
        super().__init__()
        self.img, self.txt = nn.Linear(6, 4), nn.Linear(5, 4)
        self.prototypes = nn.Linear(4, K, bias=False)
        self.gather = gather

    def forward(self, x, y):
        i, t = F.normalize(self.img(x), dim=-1), F.normalize(self.txt(y), dim=-1)
        instance = instance_loss(i, t, 0.07, self.gather)
        proto, codes, _ = prototype_loss(self.prototypes(i), self.prototypes(t), 0.2, 0.05, 3)
        return instance + proto, instance, proto, codes


def _data():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(N, 6, generator=gen), torch.randn(N, 5, generator=gen)


def _tiny(gather):
    torch.manual_seed(0)
    return _Tiny(gather)


def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    data = [t[rank * N // WORLD:(rank + 1) * N // WORLD] for t in _data()]
    results = {}
    for gather in ("all", "local"):
        model = _tiny(gather)
        ddp = nn.parallel.DistributedDataParallel(model)
        loss, instance, proto, codes = ddp(*data)
        loss.backward()
        results[gather] = {"instance": instance.detach(), "proto": proto.detach(), "codes": codes,
                           "grads": {n: p.grad.clone() for n, p in model.named_parameters()}}
    torch.save(results, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("mgca_ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_two_processes_equal_one_process_on_the_union_batch(ddp_results):
    model = _tiny("all")
    loss, instance, proto, codes = model(*_data())
    loss.backward()
    # Sinkhorn: all-reduced sums give each rank its rows of the union batch's codes
    torch.testing.assert_close(torch.cat([r["all"]["codes"] for r in ddp_results]), codes, atol=1e-6, rtol=1e-5)
    # instance loss: every rank reports the union value; prototype loss: the rank means average to it
    for rank in ddp_results:
        assert rank["all"]["instance"].item() == pytest.approx(instance.item(), abs=1e-5)
    assert sum(r["all"]["proto"].item() for r in ddp_results) / WORLD == pytest.approx(proto.item(), abs=1e-5)
    for rank in ddp_results:  # DDP's averaged gradient = the single-process gradient
        for name, p in model.named_parameters():
            torch.testing.assert_close(rank["all"]["grads"][name], p.grad, atol=1e-5, rtol=1e-5)


def test_local_gather_keeps_sinkhorn_global_but_negatives_local(ddp_results):
    union = _tiny("local")
    _, instance, _, codes = union(*_data())
    torch.testing.assert_close(torch.cat([r["local"]["codes"] for r in ddp_results]), codes, atol=1e-6, rtol=1e-5)
    halves = [_tiny("local")(*[t[r * N // WORLD:(r + 1) * N // WORLD] for t in _data()])[1] for r in range(WORLD)]
    for r, rank in enumerate(ddp_results):
        assert rank["local"]["instance"].item() == pytest.approx(halves[r].item(), abs=1e-5)
    assert abs(sum(h.item() for h in halves) / WORLD - instance.item()) > 1e-3


# -- text side: word slots, [CLS] attention, positions ---------------------------------------------------
@pytest.fixture(scope="module")
def char_tokenizer(tmp_path_factory):
    """A WordPiece vocabulary of single characters only: every word splits into ``a ##b ##c`` pieces."""
    return train_wordpiece(["pneumothorax is small", "no effusion"], 0, tmp_path_factory.mktemp("vocab"))


def test_word_slots_group_pieces_like_aggregate_tokens(char_tokenizer):
    from g2d_bench.methods.mgca.model import continuation_table

    enc = char_tokenizer(["is ax", "no"], padding="longest", return_tensors="pt")
    slots = word_slots(enc["input_ids"], enc["attention_mask"], continuation_table(char_tokenizer))
    # [CLS] i ##s a ##x [SEP] | [CLS] n ##o [SEP] [PAD] [PAD]
    assert slots.tolist() == [[0, 1, 1, 2, 2, 3], [0, 1, 1, 2, -1, -1]]


def _text_model(tokenizer, layers=2, hidden=32, heads=2, positions=64):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                                num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=positions))


@pytest.mark.parametrize("mode", ["aligned", "shifted"])
def test_text_encoder_sums_pieces_and_their_cls_attention(char_tokenizer, mode):
    from g2d_bench.methods.mgca.model import TextEncoder, continuation_table

    bert = _text_model(char_tokenizer).eval()
    encoder = TextEncoder(bert, 16, 32, "absolute", mode).eval()
    enc = char_tokenizer(["is ax", "no"], padding="max_length", max_length=8, return_tensors="pt")
    slots = word_slots(enc["input_ids"], enc["attention_mask"], continuation_table(char_tokenizer))
    with torch.no_grad():
        out = encoder(enc["input_ids"], enc["attention_mask"], slots)
        bert.set_attn_implementation("eager")
        ref = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_attentions=True)
    hidden, cls = ref.last_hidden_state, ref.attentions[-1][:, :, 0].mean(dim=1)  # B×L, [CLS] query
    torch.testing.assert_close(out["report"], hidden[:, 0])
    torch.testing.assert_close(out["words"][0, 0], hidden[0, 1] + hidden[0, 2])  # "is" = i + ##s
    torch.testing.assert_close(out["words"][0, 2], hidden[0, 5])  # [SEP] is a slot of its own
    assert out["words"][1, 2:].abs().sum() == 0 and out["word_padding"].tolist() == [
        [False, False, False, True, True, True, True], [False, False, True, True, True, True, True]]
    step = 1 if mode == "shifted" else 0  # official: token t carries token t+1's attention
    torch.testing.assert_close(out["word_attention"][0, 0], cls[0, 1 + step] + cls[0, 2 + step])
    torch.testing.assert_close(out["word_attention"][0, 1], cls[0, 3 + step] + cls[0, 4 + step])
    assert (out["word_attention"][out["word_padding"]] == 0).all()
    if mode == "shifted":  # [SEP]'s slot gets the attention of the first [PAD]: 0
        assert out["word_attention"][0, 2] == 0
    else:
        assert out["word_attention"][0, 2] == pytest.approx(cls[0, 5].item())


def test_text_positions_zeros_is_position_ids_zero(char_tokenizer):
    from g2d_bench.methods.mgca.model import TextEncoder, continuation_table

    bert = _text_model(char_tokenizer).eval()
    enc = char_tokenizer(["is ax"], return_tensors="pt")
    slots = word_slots(enc["input_ids"], enc["attention_mask"], continuation_table(char_tokenizer))
    with torch.no_grad():
        zeros = TextEncoder(bert, 16, 32, "zeros").eval()(enc["input_ids"], enc["attention_mask"], slots)["report"]
        absolute = TextEncoder(bert, 16, 32, "absolute").eval()(enc["input_ids"], enc["attention_mask"], slots)["report"]
        ref = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                   position_ids=torch.zeros_like(enc["input_ids"])).last_hidden_state[:, 0]
    torch.testing.assert_close(zeros, ref)
    assert (zeros - absolute).abs().max() > 1e-3


# -- model ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cpu_model():
    cfg = MGCAConfig(scale="cpu", scratch_mlm_steps=0, hidden_dim=128)
    torch.manual_seed(0)
    return RECIPE.build(cfg, REPORTS * 4)


def test_cpu_scale_forward_backward(cpu_model):
    model = cpu_model.train()
    tokens = model.tokenize(REPORTS)
    assert set(tokens) == {"input_ids", "attention_mask", "word_index"} and tokens["input_ids"].shape == (4, 64)
    with torch.no_grad():
        model.prototype_layer.weight.mul_(3.0)
    out = model(_images(4, 96), **tokens, step=0, epoch=0)
    torch.testing.assert_close(model.prototype_layer.weight.norm(dim=1), torch.ones(500))  # renormalised in forward
    with torch.no_grad():
        assert model.encode_image(_images(2, 96))["patches"].shape == (2, 36, 128)  # layer3: 6×6 at 96 px
    expected = out["instance"] + out["token"] + out["proto"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["instance_mean"].item() == pytest.approx(out["instance"].item() / 2)
    assert out["token"].item() == pytest.approx(out["token_word"].item() + out["token_patch"].item(), rel=1e-6)
    model.zero_grad()
    out["loss"].backward()
    assert all(p.grad is not None for p in model.prototype_layer.parameters())


def test_constructor_weights_change_the_total_only(cpu_model):
    model = cpu_model.train()
    tokens = model.tokenize(REPORTS)
    torch.manual_seed(1)
    a = model(_images(4, 96), **tokens)
    model.cfg = model.cfg.with_overrides({"loss_weights": "constructor"})
    try:
        torch.manual_seed(1)
        b = model(_images(4, 96), **tokens)
    finally:
        model.cfg = model.cfg.with_overrides({"loss_weights": "cli"})
    assert b["instance"].item() == pytest.approx(a["instance"].item(), rel=1e-5)
    assert b["loss"].item() == pytest.approx((b["instance"] + 0.7 * b["token"] + 0.5 * b["proto"]).item(), rel=1e-5)


def test_paper_scale_forward_backward(tmp_path):
    """ResNet-50 at 224 px (upsampled to 299 inside: 19×19 layer3 patches) and a BertConfig of
    Bio_ClinicalBERT's size (12 layers, hidden 768, 12 heads, vocab 28996); batch 2."""
    from transformers import BertConfig, BertModel

    from g2d_bench.methods.mgca.model import make_image_backbone

    cfg = MGCAConfig(text_model=str(tmp_path))
    tokenizer = train_wordpiece(REPORTS, 200, tmp_path / "vocab")
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072, max_position_embeddings=512))
    model = MGCA(cfg, make_image_backbone(cfg), bert, tokenizer).train()
    tokens = model.tokenize(REPORTS[:2])
    assert tokens["input_ids"].shape == (2, 112)
    out = model(_images(2, 224), **tokens)
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    for p in (model.img_encoder_q.model.conv1.weight, model.img_encoder_q.local_embed.head[0].weight,
              model.text_encoder_q.model.encoder.layer[11].output.dense.weight, model.prototype_layer.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


# -- recipe ---------------------------------------------------------------------------------------------
def test_recipe_prototype_freeze_hook_and_renormalisation(cpu_model):
    model = cpu_model.train()
    tokens = model.tokenize(REPORTS)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05)
    for epoch in (0, 1):
        before = model.prototype_layer.weight.detach().clone()
        opt.zero_grad()
        model(_images(4, 96), **tokens, step=epoch, epoch=epoch)["loss"].backward()
        after_forward = model.prototype_layer.weight.detach().clone()
        RECIPE.after_backward(model, epoch, epoch)
        opt.step()
        if epoch == 0:  # frozen: renormalised by the forward, never updated (no weight decay either)
            assert model.prototype_layer.weight.grad is None
            torch.testing.assert_close(model.prototype_layer.weight, F.normalize(before, dim=1))
        else:
            assert (model.prototype_layer.weight - after_forward).abs().max() > 1e-4


def test_recipe_contract_parts():
    cfg = RECIPE.make_config("official", "cpu", {"num_prototypes": 32})
    assert cfg.num_prototypes == 32 and cfg.gather == "local" and RECIPE.contrastive_loss == "instance_mean"
    assert RECIPE.quick.max_steps == 200 and RECIPE.quick.batch_size == 32
    aug = RECIPE.augmentations(cfg)
    torch.manual_seed(0)
    x = aug(torch.randint(0, 256, (1, 110, 110), dtype=torch.uint8))
    assert x.shape == (1, 96, 96) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    with pytest.raises(G2DBenchError, match="unknown MGCA setting"):
        RECIPE.make_config("paper", "cpu", {"heads": 3})


# -- checkpoints: our folder ------------------------------------------------------------------------------
def test_folder_round_trip_through_the_registry(cpu_model, tmp_path):
    from g2d_bench.methods import METHODS
    from g2d_bench.pretrain import export_model

    folder = export_model(cpu_model, RECIPE, cpu_model.cfg, tmp_path / "mgca")
    adapter = METHODS.get("mgca").build_adapter(str(folder))
    assert adapter.has(Capability.TEXT) and adapter.has(Capability.DENSE_TEXT) and adapter.arch == "resnet18"
    model = cpu_model.eval()
    x = _images(2, 96)
    with torch.no_grad():
        torch.testing.assert_close(adapter.project_image(x), model.encode_image(x)["global"])
        tok = model.tokenize(REPORTS[:2])
        torch.testing.assert_close(adapter.encode_text(REPORTS[:2]), model.encode_text(**tok)["global"])
        dense = adapter.dense_embeddings(x)
        assert dense.shape == (2, 128, 6, 6)
        torch.testing.assert_close(dense.flatten(2).transpose(1, 2), model.encode_image(x)["patches"])
        prompts = adapter.encode_prompts(["pneumothorax", "no effusion"])
        maps = adapter.grounding_maps(x, prompts)
        torch.testing.assert_close(maps, torch.einsum("behw,te->bthw", dense, prompts["local"]))
        torch.testing.assert_close(prompts["local"].norm(dim=1), torch.ones(2))
    with pytest.raises(G2DBenchError, match="needs --checkpoint"):
        METHODS.get("mgca").build_adapter(None)
    with pytest.raises(G2DBenchError, match="--arch resnet50"):
        METHODS.get("mgca").build_adapter(str(folder), arch="resnet50")


# -- checkpoints: the released Lightning .ckpt ---------------------------------------------------------------
class HyperParameters:
    """Stands for Lightning's AttributeDict / argparse.Namespace: a class weights_only refuses."""

    def __init__(self):
        self.img_encoder, self.num_prototypes = "resnet_50", 500


class Trap:
    """A pickled object whose loading would create a folder if pickled code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.makedirs, (self.path,)


def _head(prefix, c_in, hidden, out, conv):
    """encoder.py Global/LocalEmbedding keys: head.0 Linear/Conv1d, head.1 BN, head.3 Linear/Conv1d, head.4 BN(affine=False)."""
    shape = (lambda o, i: (o, i, 1)) if conv else (lambda o, i: (o, i))
    bn = lambda n, affine: ({"weight": (n,), "bias": (n,)} if affine else {}) | {  # noqa: E731
        "running_mean": (n,), "running_var": (n,), "num_batches_tracked": ()}
    keys = {f"{prefix}.head.0.weight": shape(hidden, c_in), f"{prefix}.head.0.bias": (hidden,),
            f"{prefix}.head.3.weight": shape(out, hidden), f"{prefix}.head.3.bias": (out,)}
    keys.update({f"{prefix}.head.1.{k}": v for k, v in bn(hidden, True).items()})
    keys.update({f"{prefix}.head.4.{k}": v for k, v in bn(out, False).items()})
    return keys


def official_layout(arch, layers, hidden, vocab, positions, emb=128, head_hidden=2048, prototypes=500):
    """{key: shape} of the released MGCA .ckpt's state_dict, written out from the official modules
    (torchvision ResNet without fc, encoder.py heads, med.py BertModel with cross-attention, two
    nn.MultiheadAttention, the prototype layer)."""
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    width, local = net.fc.in_features, net.fc.in_features // 2
    keys = {f"img_encoder_q.model.{k}": tuple(v.shape) for k, v in net.state_dict().items() if not k.startswith("fc.")}
    keys |= _head("img_encoder_q.global_embed", width, head_hidden, emb, False)
    keys |= _head("img_encoder_q.local_embed", local, head_hidden, emb, True)
    t = "text_encoder_q.model"
    keys |= {f"{t}.embeddings.word_embeddings.weight": (vocab, hidden), f"{t}.embeddings.position_embeddings.weight": (positions, hidden),
             f"{t}.embeddings.LayerNorm.weight": (hidden,), f"{t}.embeddings.LayerNorm.bias": (hidden,),
             f"{t}.embeddings.position_ids": (1, positions)}
    for i in range(layers):
        for block in ("attention", "crossattention"):
            for lin in ("self.query", "self.key", "self.value", "output.dense"):
                keys |= {f"{t}.encoder.layer.{i}.{block}.{lin}.weight": (hidden, hidden), f"{t}.encoder.layer.{i}.{block}.{lin}.bias": (hidden,)}
            keys |= {f"{t}.encoder.layer.{i}.{block}.output.LayerNorm.{p}": (hidden,) for p in ("weight", "bias")}
        keys |= {f"{t}.encoder.layer.{i}.intermediate.dense.weight": (4 * hidden, hidden), f"{t}.encoder.layer.{i}.intermediate.dense.bias": (4 * hidden,),
                 f"{t}.encoder.layer.{i}.output.dense.weight": (hidden, 4 * hidden), f"{t}.encoder.layer.{i}.output.dense.bias": (hidden,),
                 f"{t}.encoder.layer.{i}.output.LayerNorm.weight": (hidden,), f"{t}.encoder.layer.{i}.output.LayerNorm.bias": (hidden,)}
    keys |= _head("text_encoder_q.global_embed", hidden, head_hidden, emb, False)
    keys |= _head("text_encoder_q.local_embed", hidden, head_hidden, emb, True)
    for name in ("patch_local_atten_layer", "word_local_atten_layer"):
        keys |= {f"{name}.in_proj_weight": (3 * emb, emb), f"{name}.in_proj_bias": (3 * emb,),
                 f"{name}.out_proj.weight": (emb, emb), f"{name}.out_proj.bias": (emb,)}
    keys["prototype_layer.weight"] = (prototypes, emb)
    return keys


def test_released_layout_at_full_size_maps_onto_our_model_exactly():
    """Real names and shapes (ResNet-50, 6-layer 768-wide BERT, 2048-wide heads, 500 prototypes),
    checked on the meta device: the key map leaves nothing missing or unexpected."""
    from transformers import BertConfig, BertModel

    from g2d_bench.methods.mgca.checkpoint import config_for_official, official_to_ours
    from g2d_bench.methods.mgca.model import make_image_backbone

    layout = official_layout("resnet50", 6, 768, 28996, 512)
    with torch.device("meta"):
        state = {k: torch.empty(shape) for k, shape in layout.items()}
        cfg = config_for_official(state, "unused")
        assert (cfg.arch, cfg.text_layers, cfg.num_prototypes, cfg.hidden_dim, cfg.profile) == ("resnet50", 6, 500, 2048, "official")
        bert = BertModel(BertConfig(vocab_size=28996, hidden_size=768, num_hidden_layers=6, num_attention_heads=12,
                                    intermediate_size=3072), add_pooling_layer=False)

        class _Tok:  # only the vocabulary size matters here
            def __len__(self):
                return 3

            def convert_ids_to_tokens(self, ids):
                return ["[PAD]", "a", "##b"]

        model = MGCA(cfg, make_image_backbone(cfg), bert, _Tok())
    ours, mapped = model.state_dict(), official_to_ours(state)
    assert set(ours) == set(mapped)
    assert all(tuple(mapped[k].shape) == tuple(v.shape) for k, v in ours.items() if k in mapped)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A Lightning-like .ckpt with the released key names at a small size (ResNet-18, 2-layer BERT of
    width 32, heads 64 wide, 500 prototypes), random tensors; plus a text_model folder (config +
    tokenizer) standing in for Bio_ClinicalBERT."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("released")
    tokenizer = train_wordpiece(REPORTS, 120, root / "vocab")
    layout = official_layout("resnet18", 2, 32, len(tokenizer), 128, head_hidden=64)
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in layout.items():
        if key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("position_ids"):
            state[key] = torch.arange(shape[1])[None]
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    path = root / "mgca_resnet_50.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": HyperParameters(), "epoch": 40, "trap": Trap(str(root / "pwned"))}, path)
    text = root / "Bio_ClinicalBERT"
    save_text(BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                   intermediate_size=128, max_position_embeddings=128)), tokenizer, text)
    return {"root": root, "path": path, "state": state, "text": str(text), "tokenizer": tokenizer}


def _reference_head(state, prefix, x, conv=False):
    """encoder.py GlobalEmbedding / LocalEmbedding in eval mode, written with functional ops."""
    p = lambda n: state[f"{prefix}.head.{n}"]  # noqa: E731
    lin = (lambda t, w, b: F.conv1d(t, w, b)) if conv else F.linear
    x = lin(x, p("0.weight"), p("0.bias"))
    x = F.batch_norm(x, p("1.running_mean"), p("1.running_var"), p("1.weight"), p("1.bias"), False, 0.0, 1e-5).relu()
    x = lin(x, p("3.weight"), p("3.bias"))
    return F.batch_norm(x, p("4.running_mean"), p("4.running_var"), None, None, False, 0.0, 1e-5)


def test_released_ckpt_loads_strictly_without_running_pickled_code(released):
    import torchvision
    from transformers import BertConfig, BertModel

    from g2d_bench.methods.mgca.adapter import build

    state = released["state"]
    adapter = build(str(released["path"]), text_model=released["text"])
    assert not (released["root"] / "pwned").exists()
    assert adapter.has(Capability.TEXT) and adapter.arch == "resnet18" and adapter.model.cfg.text_layers == 2
    # every tensor lands
    landed = adapter.model.state_dict()
    for key, value in state.items():
        if "local_atten_layer" in key or ".crossattention." in key or key.endswith("position_ids"):
            assert key not in landed
        else:
            assert torch.equal(landed[key], value), key
    assert landed["text_encoder_q.model.embeddings.token_type_embeddings.weight"].abs().sum() == 0
    # features equal those of modules built directly from the same tensors
    x = _images(2, 64)
    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    net.load_state_dict({k.removeprefix("img_encoder_q.model."): v for k, v in state.items() if k.startswith("img_encoder_q.model.")})
    net.eval()
    adapter.prepare("cpu")
    with torch.no_grad():
        norm = (x.expand(-1, 3, -1, -1) - 0.5) / 0.5
        torch.testing.assert_close(adapter.pooled_features(x), net(norm), atol=1e-5, rtol=1e-4)
        up = F.interpolate(norm, size=(299, 299), mode="bilinear", align_corners=True)  # encoder.py resnet_forward
        expected = F.normalize(_reference_head(state, "img_encoder_q.global_embed", net(up)), dim=-1)
        torch.testing.assert_close(adapter.project_image(x), expected, atol=1e-5, rtol=1e-4)
        bert = BertModel(BertConfig(vocab_size=len(released["tokenizer"]), hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=128, max_position_embeddings=128),
                         add_pooling_layer=False).eval()
        text_state = {k.removeprefix("text_encoder_q.model."): v for k, v in state.items()
                      if k.startswith("text_encoder_q.model.") and ".crossattention." not in k and not k.endswith("position_ids")}
        text_state["embeddings.token_type_embeddings.weight"] = torch.zeros(2, 32)
        bert.load_state_dict(text_state)
        enc = released["tokenizer"](["findings small right pneumothorax"], return_tensors="pt")
        cls = bert(**{k: enc[k] for k in ("input_ids", "attention_mask")},
                   position_ids=torch.zeros_like(enc["input_ids"])).last_hidden_state[:, 0]  # official: positions all 0
        expected = F.normalize(_reference_head(state, "text_encoder_q.global_embed", cls), dim=-1)
        torch.testing.assert_close(adapter.encode_text(["FINDINGS: Small right pneumothorax."]), expected, atol=1e-5, rtol=1e-4)


def test_released_ckpt_image_side_only_without_text_model(released):
    from g2d_bench.methods.mgca.adapter import build

    adapter = build(str(released["path"]))
    assert adapter.capabilities == frozenset() and adapter.model is None
    state = released["state"]
    assert all(torch.equal(adapter.backbone.state_dict()[k.removeprefix("img_encoder_q.model.")], v)
               for k, v in state.items() if k.startswith("img_encoder_q.model."))
    with pytest.raises(NotImplementedError):
        adapter.encode_text(["pneumothorax"])


def test_released_ckpt_key_errors_are_one_line(released, tmp_path):
    from g2d_bench.methods.mgca.adapter import build

    state = dict(released["state"])
    state.pop("img_encoder_q.local_embed.head.3.bias")
    state["text_encoder_q.extra_head.weight"] = torch.zeros(2)
    path = tmp_path / "broken.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(G2DBenchError) as info:
        build(str(path), text_model=released["text"])
    message = str(info.value)
    assert "\n" not in message and "img_encoder_q.local_embed.head.3.bias" in message and "text_encoder_q.extra_head.weight" in message
    with pytest.raises(G2DBenchError, match="local_embed.head.3.bias"):
        build(str(path))  # the image side alone is strict too
    torch.save({"state_dict": {"gloria.img_encoder.model.conv1.weight": torch.zeros(1)}}, tmp_path / "gloria.ckpt")
    with pytest.raises(G2DBenchError, match="not an MGCA checkpoint"):
        build(str(tmp_path / "gloria.ckpt"))
