"""MGCA's three losses (paper §3.1–3.3; official ``mgca/models/mgca/mgca_module.py`` ``forward``).

- **Instance-wise alignment** (:func:`instance_loss`): CE(s) + CE(sᵀ) with
  s = norm(img)·norm(report)ᵀ / 0.07 — the *sum* of both directions (module ``loss_ita``);
  negatives from every rank (``gather="all"``, DDP-exact through
  :func:`g2d_bench.methods.common.contrastive.global_batch`) or the local batch (official).
- **Token-wise alignment** (:func:`token_loss`): each word attends to the patches of its own image
  (and, bidirectionally, each patch to the words of its own report, [PAD] words masked with −inf);
  the attended output is L2-normalised and a CE over the *same sample's* tokens (τ = 0.1) asks each
  token to match its own attended output, in both directions. Words are weighted by their [CLS]
  attention (:func:`clipped_weights`: 10th–90th percentile clip of the non-zero entries, normalised
  per sample; padded words weigh 0 but stay negatives); patches uniformly (ResNet variant) or by
  the ViT's [CLS] attention (ViT variant: ``patch_weights`` given, ``normalize_patch_output=False``).
  Per-sample terms: exact under DDP's gradient average without any gathering.
- **Prototype alignment** (:func:`prototype_loss`): Sinkhorn-Knopp codes (:func:`sinkhorn`, no
  gradient) of one modality are the targets of the other's softmax over prototypes (τ = 0.2),
  averaged over the two directions. Under ``torch.distributed`` the Sinkhorn sums are all-reduced
  (module ``distributed_sinkhorn``), so W ranks compute the codes of the union batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from g2d_bench.methods.common.contrastive import global_batch, info_nce, world


def instance_loss(img: torch.Tensor, txt: torch.Tensor, temperature: float = 0.07, gather: str = "all") -> torch.Tensor:
    """CE(image→report) + CE(report→image) of the local ``img``/``txt`` rows (``b×E``; L2-normalised
    here), each a mean over the (global) batch. Collapsed towers give 2·ln(N)."""
    return global_batch(lambda i, t: info_nce(i, t, temperature, "sum"), img, txt, gather=gather)


def clipped_weights(attention: torch.Tensor, quantiles: tuple[float, float] = (0.1, 0.9),
                    nonzero_only: bool = True) -> torch.Tensor:
    """Token weights from attention: per row, the entries are clipped to the ``quantiles`` (torch's
    linear interpolation) of the row's non-zero entries (module: word weights) — or of all entries
    (``nonzero_only=False``: the ViT patch weights) — and the row is divided by its sum. Zero entries
    (padded words) stay 0. ``attention``: B×N, ≥ 0 → B×N, rows summing to 1 (a row of zeros stays
    zeros). No gradient."""
    with torch.no_grad():
        a = attention.detach().float()
        keep = a != 0 if nonzero_only else torch.ones_like(a, dtype=torch.bool)
        masked = a.masked_fill(~keep, float("nan"))
        q = torch.tensor(quantiles, dtype=a.dtype, device=a.device)
        low, high = torch.nanquantile(masked, q, dim=1, keepdim=True)  # 2×B×1
        clipped = torch.where(keep, torch.minimum(torch.maximum(a, low), high), a)
        clipped = torch.nan_to_num(clipped, nan=0.0)
        return clipped / clipped.sum(dim=1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)


def cross_attend(query: torch.Tensor, keys: torch.Tensor, temperature: float,
                 key_padding: torch.Tensor | None = None) -> torch.Tensor:
    """Parameter-free cross-attention of the module (``use_local_atten=False``): softmax over the
    keys of ⟨query, key⟩ / τ, then the weighted sum of the keys. ``query``: B×Q×E, ``keys``: B×K×E,
    ``key_padding``: B×K bool (True = ignore, score −inf) → B×Q×E."""
    scores = torch.bmm(query, keys.transpose(1, 2)) / temperature
    if key_padding is not None:
        scores = scores.masked_fill(key_padding[:, None, :], float("-inf"))
    return torch.bmm(scores.softmax(dim=-1), keys)


def weighted_token_ce(tokens: torch.Tensor, attended: torch.Tensor, weights: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """½ (Σ_b,i w_bi·CE_i(row) + Σ_b,j w_bj·CE_j(column)) / B over s_b = tokens_b·attended_bᵀ/τ
    (N×N per sample, target = the diagonal): token i must match its own attended output among the
    sample's N outputs, and output j its own token among the N tokens. ``tokens``, ``attended``:
    B×N×E; ``weights``: B×N (rows summing to 1)."""
    b, n, _ = tokens.shape
    sim = torch.bmm(tokens, attended.transpose(1, 2)) / temperature  # B×N×N
    target = torch.arange(n, device=sim.device).repeat(b)
    rows = F.cross_entropy(sim.reshape(b * n, n), target, reduction="none")
    cols = F.cross_entropy(sim.transpose(1, 2).reshape(b * n, n), target, reduction="none")
    w = weights.reshape(-1).to(rows.dtype)
    return ((rows * w).sum() / b + (cols * w).sum() / b) / 2


def token_loss(words: torch.Tensor, patches: torch.Tensor, word_weights: torch.Tensor, word_padding: torch.Tensor,
               temperature: float = 0.1, bidirectional: bool = True, patch_weights: torch.Tensor | None = None,
               normalize_patch_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(word-side loss, patch-side loss) of the token-wise alignment; the module's ``loss_local`` is
    their sum (the patch side is 0 without ``bidirectional``).

    ``words``: B×W×E and ``patches``: B×P×E, L2-normalised local embeddings; ``word_weights``: B×W
    (:func:`clipped_weights`, 0 at padded words); ``word_padding``: B×W bool (True at [PAD] word
    slots: masked with −inf where patches attend to words; they still enter the word side as
    negatives, with weight 0). ``patch_weights``: B×P (None: uniform 1/P, the ResNet variant);
    ``normalize_patch_output``: L2-normalise the words attended by each patch (ResNet variant: True;
    ViT variant: False). The words' attended patches are always normalised (module)."""
    word_out = F.normalize(cross_attend(words, patches, temperature), dim=-1)
    word_side = weighted_token_ce(words, word_out, word_weights, temperature)
    if not bidirectional:
        return word_side, word_side.new_zeros(())
    patch_out = cross_attend(patches, words, temperature, word_padding)
    if normalize_patch_output:
        patch_out = F.normalize(patch_out, dim=-1)
    if patch_weights is None:
        b, p, _ = patches.shape
        patch_weights = patches.new_full((b, p), 1.0 / p)
    return word_side, weighted_token_ce(patches, patch_out, patch_weights, temperature)


def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp codes of prototype scores (module ``sinkhorn`` / ``distributed_sinkhorn``, no
    gradient). ``scores``: B×K (this rank's rows) → codes B×K float32, each row summing to 1.

    Q = exp(scores / ε) laid out K×B and divided by its total; each iteration scales the rows to
    1/K, then the columns to 1/N (N = the global batch); a last column renormalisation makes each
    sample's code a distribution. Under ``torch.distributed`` the total and the row sums are
    all-reduced (columns are per-sample), so every rank gets its rows of the union batch's codes."""
    import torch.distributed as dist

    _, size = world()
    with torch.no_grad():
        q = torch.exp(scores.detach().float() / epsilon).t().contiguous()  # K×B
        k, b = q.shape
        total = q.sum()
        if size > 1:
            dist.all_reduce(total)
        q /= total
        n = b * size
        for _ in range(iterations):
            rows = q.sum(dim=1)
            if size > 1:
                dist.all_reduce(rows)
            q *= (1.0 / k / rows).unsqueeze(1)
            q *= (1.0 / n / q.sum(dim=0)).unsqueeze(0)
        return (q / q.sum(dim=0, keepdim=True)).t().float()


def prototype_loss(img_scores: torch.Tensor, txt_scores: torch.Tensor, temperature: float = 0.2,
                   epsilon: float = 0.05, iterations: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, image codes, report codes): ½(−mean Σ_k q_img·log p_txt − mean Σ_k q_txt·log p_img) with
    q = :func:`sinkhorn` codes and p = softmax(scores / τ). ``img_scores``, ``txt_scores``: B×K
    prototype scores of the L2-normalised embeddings (module ``prototype_layer`` output)."""
    img_codes = sinkhorn(img_scores, epsilon, iterations)
    txt_codes = sinkhorn(txt_scores, epsilon, iterations)
    log_p_img = F.log_softmax(img_scores.float() / temperature, dim=1)
    log_p_txt = F.log_softmax(txt_scores.float() / temperature, dim=1)
    i2t = -(img_codes * log_p_txt).sum(dim=1).mean()
    t2i = -(txt_codes * log_p_img).sum(dim=1).mean()
    return (i2t + t2i) / 2, img_codes, txt_codes
