# %% [markdown]
# # 5. MSAD: relations between regions
#
# After the local CNN, the $C \times G \times G$ feature map is weighted by where the LANets
# looked. A 1 x 1 convolution projects each of its $N = G^2 = 196$ positions to a
# $D = 768$-dimensional **token**, and a transformer {cite:p}`vaswani2017attention` lets every
# token look at every other: this is where TransFER models *relations* between parts of the face.
# Its blocks are those of the Vision Transformer {cite:p}`dosovitskiy2021vit`, with one addition.
# The paper's abstract introduces it as Multi-head Self-Attention Dropping (MSAD); in our
# paraphrase, MSAD randomly drops one self-attention module, so that the model must learn rich
# relations among diverse local patches {cite:p}`xue2021transfer`.
#
# This chapter writes attention from scratch, then MSAD in both of its forms (the paper drops a
# *head*; the authors' code drops a *token*, see below) and a transformer block that uses it.
# Each piece is checked against the library's (`transfer_lib.models.msad`): the same weights
# give the same outputs, and the same random draws give the same masks. From then on the
# chapter uses the library.

# %% [setup]

# %%
import math
from collections import OrderedDict

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from PIL import Image
from torch import nn

from transfer_lib import build_model
from transfer_lib.book import viz
from transfer_lib.cli.summary import count_parameters
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.models.config import make_config
from transfer_lib.models.msad import MSADAttention, MSADBlock, MultiHeadSelfAttentionDropping
from transfer_lib.train.profiles import active_profile, find_rafdb
from transfer_lib.weights.convert import load_vit_small

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
print(viz.describe_setup(profile, find_rafdb()))
config = make_config(size="paper")
D, h, N, p2 = config.embed_dim, config.num_heads, config.num_tokens, config.msad_p
d_h = D // h
print(f"N = {N} tokens + cls, D = {D}, L = {config.depth} blocks of h = {h} heads "
      f"(d_h = {d_h}), MSAD p2 = {p2}, library default mode {config.msad_mode!r}")

# %% [markdown]
# ## Attention from scratch
#
# Write the $N+1$ tokens of one image (the cls token first) as the rows of
# $Z \in \mathbb{R}^{(N+1)\times D}$. Each head $j = 1..h$ maps them to queries, keys and values
# $Q_j, K_j, V_j \in \mathbb{R}^{(N+1)\times d_h}$, $d_h = D/h$, and returns, for each token, a
# weighted mean of the values, the weights being how well its query matches each key:
#
# $$
# [Q_j \; K_j \; V_j] = Z\,W^{qkv}_j, \qquad
# \mathrm{head}_j = \mathrm{softmax}\!\left(\frac{Q_j K_j^\top}{\sqrt{d_h}}\right) V_j
# $$ (eq-msad-attention)
#
# with the softmax taken over each row. Multi-head self-attention puts the $h$ heads side by
# side and mixes them with one linear layer:
#
# $$
# \mathrm{MHSA}(Z) = [\mathrm{head}_1 \; \cdots \; \mathrm{head}_h]\, W^{o} + b^{o}
# $$ (eq-msad-mhsa)
#
# $W^{qkv} \in \mathbb{R}^{D \times 3D}$ has no bias in TransFER (as in ViT-Small);
# $W^{o} \in \mathbb{R}^{D\times D}$ and $b^o$ are the `proj` layer. Written out with the
# weights of the library's `MSADAttention` (evaluation mode, so MSAD does nothing):

# %%
attn = MSADAttention(D, h, qkv_bias=config.qkv_bias).eval()
z = torch.randn(2, N + 1, D)  # (n, N+1, D): 196 tokens + cls, a batch of n = 2 images
n = z.shape[0]
qkv = (z @ attn.qkv.weight.T).reshape(n, N + 1, 3, h, d_h)  # (n, N+1, 3, h, d_h)
q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (n, h, N+1, d_h)
scores = q @ k.transpose(-2, -1) / math.sqrt(d_h)  # (n, h, N+1, N+1)
weights = torch.softmax(scores, dim=-1)  # each row sums to 1
heads = weights @ v  # (n, h, N+1, d_h): head_j of (eq-msad-attention)
out = attn.proj(heads.transpose(1, 2).reshape(n, N + 1, D))  # (eq-msad-mhsa)
with torch.no_grad():
    lib_out, lib_weights = attn(z, return_attention=True)
    fast_out, _ = attn(z)  # scaled_dot_product_attention, the path used in training
print("q, k, v:", tuple(q.shape), " weights:", tuple(weights.shape), " output:", tuple(out.shape))
torch.testing.assert_close(out, lib_out, atol=1e-5, rtol=1e-4)
torch.testing.assert_close(out, fast_out, atol=1e-5, rtol=1e-4)
torch.testing.assert_close(weights, lib_weights, atol=1e-6, rtol=1e-5)
torch.testing.assert_close(weights.sum(-1), torch.ones(n, h, N + 1))  # rows: distributions

# %% [markdown]
# ## MSAD in the paper: drop one head
#
# MSAD acts on the $(n, N+1, 3, h, d_h)$ tensor of queries, keys and values of every block, in
# training only. For each sample and each block independently, a coin $\delta \sim
# \mathrm{Bernoulli}(p_2)$ decides whether the sample is hit, and a head $j^\star$ is drawn
# uniformly from $1..h$; the keep-mask of head $j$ is
#
# $$
# g_j = 1 - \delta\,[\,j = j^\star\,], \qquad
# (Q_j, K_j, V_j) \leftarrow (g_j Q_j,\; g_j K_j,\; g_j V_j)
# $$ (eq-msad-head)
#
# and nothing is rescaled (dropout would scale the rest by $1/(1-p_2)$). Why is zeroing a
# head's *inputs* the same as removing the head? With $Q_j = K_j = V_j = 0$, every score is $0$,
# the softmax of a row of zeros is uniform, and a uniform mean of zero values is zero:
#
# $$
# \mathrm{softmax}\!\left(\frac{0\,0^\top}{\sqrt{d_h}}\right) 0
# = \tfrac{1}{N+1}\,\mathbf{1}\mathbf{1}^\top\, 0 = 0 ,
# $$ (eq-msad-zero)
#
# so $\mathrm{head}_{j^\star} = 0$ and {eq}`eq-msad-mhsa` becomes the other $h-1$ heads' output
# (plus $b^o$): the block must carry the relations it found through the other heads. A small
# tensor shows it:

# %%
torch.manual_seed(1)
small = torch.randn(1, 5, 3, 2, 3)  # (n, N+1, 3, h, d_h): 5 tokens, 2 heads of 3


def attend(qkv):
    """(eq-msad-attention) on qkv (n, N+1, 3, h, d_h) -> weights (n, h, N+1, N+1), heads."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(qkv.shape[-1]), dim=-1)
    return w, w @ v


g = torch.tensor([1.0, 0.0])  # keep head 1, drop head 2
w_dropped, heads_dropped = attend(small * g[None, None, None, :, None])
_, heads_full = attend(small)
print("weights of the dropped head (rows uniform):\n", w_dropped[0, 1], "\nits output:",
      heads_dropped[0, 1].abs().max().item())
torch.testing.assert_close(w_dropped[0, 1], torch.full((5, 5), 1 / 5))
# dropping the inputs = zeroing that head's output, and the kept head is untouched
torch.testing.assert_close(heads_dropped, heads_full * g[None, :, None, None])

# %% [markdown]
# Zeroing only the keys would *not* do it: the weights would still be uniform, but the head
# would return the mean of its values (exercise 1). MSAD zeroes all three.
#
# ## ... and in the authors' code: drop one token
#
# The authors' `HeadDropOut` (in `trans_fer.py` of the Paddle code, and in the PyTorch
# `mmcls/models/vit/vit.py` of the APViT repository {cite:p}`xue2022apvit`) does, for a sample i
# that is hit,
#
# ```python
# zero_index = random.choice(range(num_heads))
# x[i, zero_index, ...] = 0        # x: (batch, tokens, 3, heads, head_dim)
# ```
#
# Dimension 1 of `x` is the **tokens**, not the heads. The index is drawn from `range(heads)`,
# so the line zeroes q, k and v of one of the first $h = 8$ tokens (token 0 is the cls token),
# in every head. Here is that exact line on a tensor of ones:

# %%
ones = torch.ones(24, 20, 3, h, 4)  # (n, N+1, 3, h, d_h), small so it prints
authors = ones.clone()
i, zero_index = 0, 5
authors[i, zero_index, ...] = 0
zeroed_tokens = (authors[i] == 0).all(dim=(1, 2, 3)).nonzero().flatten().tolist()
zeroed_heads = (authors[i] == 0).all(dim=(0, 1, 3)).nonzero().flatten().tolist()
print(f"sample {i}: tokens entirely zeroed {zeroed_tokens}, heads entirely zeroed {zeroed_heads}")
assert zeroed_tokens == [zero_index] and zeroed_heads == []

# %% [markdown]
# With the same coin $\delta$ and the same draw, now read as a token $\tau \in \{0, \dots,
# h-1\}$ (0-based, 0 = cls), the token mode sets, in every head $j$,
#
# $$
# (Q_j[\tau],\; K_j[\tau],\; V_j[\tau]) \leftarrow (0,\; 0,\; 0)
# $$ (eq-msad-token)
#
# where $Q_j[\tau]$ is row $\tau$ of $Q_j$. Its effect is not the head mode's. Token $\tau$'s
# query is zero, so its own row of weights is uniform and its output is the plain mean of all
# values: not zero. Its key is zero, so every other token scores it $0$ (not $-\infty$): it
# still takes a share of their weight, and since its value is zero, that share is simply lost
# (the rest is not renormalised). On the small tensor, with $\tau = 1$:

# %%
tau = 1
token_keep = torch.ones(1, 5, 1, 1, 1)
token_keep[:, tau] = 0
w_tok, heads_tok = attend(small * token_keep)
v_small = (small * token_keep)[0, :, 2]  # (N+1, h, d_h): the values, row tau zero
print(f"row {tau} of head 1's weights (uniform): {w_tok[0, 0, tau].numpy().round(3)}\n"
      f"column {tau} (scores of 0 from the others): {w_tok[0, 0, :, tau].numpy().round(3)}")
torch.testing.assert_close(w_tok[0, :, tau], torch.full((2, 5), 1 / 5))
torch.testing.assert_close(heads_tok[0, :, tau], v_small.mean(0))  # the mean of the values
assert (heads_tok[0, :, tau].abs() > 0).any()  # token tau's output is not zero
assert (w_tok[0, :, :, tau] > 0).all()  # and it still takes a share of every row's weight

# %% [markdown]
# ## MSAD, written out
#
# Both modes draw the same two things per sample: the coin $\delta$ (`torch.rand(n) < p2`) and
# the index $j^\star$ (`torch.randint(h, (n,))`); they differ only in the axis the index hits.
# Here they are, in the order the library draws them, so that the same seed gives the same
# mask:

# %%
def msad_keep_mask(n, tokens, h, p2, mode):
    """The keep-mask of (eq-msad-head) or (eq-msad-token), broadcastable to qkv."""
    hit = torch.rand(n) < p2  # delta: one coin per sample
    chosen = torch.randint(h, (n,))  # j*, drawn from range(h) in both modes
    if mode == "head":
        g = 1.0 - hit[:, None] * F.one_hot(chosen, h)  # (n, h)
        return g[:, None, None, :, None]
    # the authors' x[i, zero_index, ...] = 0: the same index, on the token axis
    keep = 1.0 - hit[:, None] * F.one_hot(chosen, tokens)  # (n, N+1): 0..h-1 only
    return keep[:, :, None, None, None]


qkv_shape = (64, N + 1, 3, h, d_h)
for mode in ("head", "token"):
    torch.manual_seed(7)
    ours = msad_keep_mask(qkv_shape[0], N + 1, h, p2, mode)
    torch.manual_seed(7)
    lib = MultiHeadSelfAttentionDropping(p2, mode).keep_mask(torch.empty(qkv_shape))
    assert torch.equal(ours, lib), mode
    print(f"mode {mode!r}: mask {tuple(ours.shape)} equals the library's (same seed)")

# %% [markdown]
# ## A block with MSAD
#
# A TransFER block is pre-norm, as in ViT: with $Z_{\ell-1}$ the tokens entering block
# $\ell = 1..L$,
#
# $$
# Z'_\ell = Z_{\ell-1} + \mathrm{MHSA}\big(\mathrm{LN}(Z_{\ell-1})\big), \qquad
# Z_\ell = Z'_\ell + \mathrm{MLP}\big(\mathrm{LN}(Z'_\ell)\big)
# $$ (eq-msad-block)
#
# where MHSA carries MSAD on its queries, keys and values in training, and the MLP is
# $D \to 3D \to D$ with a GELU (mlp_ratio 3); the LayerNorms' epsilon is $10^{-6}$. Here it
# is in full, with the names of timm's ViT (`norm1`, `attn.qkv`, `attn.proj`, `norm2`,
# `mlp.fc1`, `mlp.fc2`), so that the library's weights load into it as they are:

# %%
class Attention(nn.Module):
    """(eq-msad-attention), (eq-msad-mhsa), MSAD in training: (n, N+1, D) -> (n, N+1, D)."""

    def __init__(self, D, h, p2, mode):
        super().__init__()
        self.h, self.p2, self.mode = h, p2, mode
        self.qkv = nn.Linear(D, 3 * D, bias=False)  # W^qkv
        self.proj = nn.Linear(D, D)  # W^o, b^o

    def forward(self, z):
        n, tokens, D = z.shape
        qkv = self.qkv(z).reshape(n, tokens, 3, self.h, D // self.h)  # (n, N+1, 3, h, d_h)
        if self.training and self.p2 > 0:
            qkv = qkv * msad_keep_mask(n, tokens, self.h, self.p2, self.mode)
        _, heads = attend(qkv)  # (n, h, N+1, d_h)
        return self.proj(heads.transpose(1, 2).reshape(n, tokens, D))


class Block(nn.Module):
    """(eq-msad-block): (n, N+1, D) -> (n, N+1, D)."""

    def __init__(self, D, h, p2, mode, mlp_ratio=3.0, eps=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=eps)
        self.attn = Attention(D, h, p2, mode)
        self.norm2 = nn.LayerNorm(D, eps=eps)
        hidden = int(D * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(
            fc1=nn.Linear(D, hidden), act=nn.GELU(), fc2=nn.Linear(hidden, D)))

    def forward(self, z):
        z = z + self.attn(self.norm1(z))
        return z + self.mlp(self.norm2(z))


# %% [markdown]
# The check: copy the weights of a library `MSADBlock` into ours, then compare the outputs in
# evaluation mode, and in training mode from the same seed (the same random draws, so the same
# heads or tokens dropped), for both modes:

# %%
z = torch.randn(8, N + 1, D)  # (n, N+1, D), n = 8 images
for mode in ("head", "token"):
    lib_block = MSADBlock(D, h, config.mlp_ratio, config.qkv_bias, config.qk_scale,
                          config.layer_norm_eps, p2, mode)
    ours = Block(D, h, p2, mode, config.mlp_ratio, config.layer_norm_eps)
    ours.load_state_dict(lib_block.state_dict())  # strict: every name and shape matches
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(z), lib_block.eval()(z)[0], atol=1e-5, rtol=1e-4)
        torch.manual_seed(3)
        lib_train = lib_block.train()(z)[0]
        torch.manual_seed(3)
        keep = msad_keep_mask(8, N + 1, h, p2, mode)  # the draws the block will make
        torch.manual_seed(3)
        our_train = ours.train()(z)
        our_eval = ours.eval()(z)
    torch.testing.assert_close(our_train, lib_train, atol=1e-5, rtol=1e-4)
    hit = (keep == 0).flatten(1).any(1)
    changed = (our_train - our_eval).abs().flatten(1).amax(1) > 1e-6
    print(f"mode {mode!r}: eval and train outputs equal the library's; samples hit "
          f"{hit.nonzero().flatten().tolist()}, and only those changed")
    assert hit.any() and torch.equal(changed, hit)  # MSAD acted, only on the samples it hit

# %% [markdown]
# A block's parameters: $3D^2$ for $W^{qkv}$ (no bias), $D^2 + D$ for the projection,
# $3D^2 + 3D$ and $3D^2 + D$ for the MLP, and $2D$ for each LayerNorm: $10D^2 + 9D$ in all.

# %%
per_block = count_parameters(lib_block)
print(f"one block: {per_block:,} = 10 D^2 + 9 D parameters ({per_block / 1e6:.2f} M); "
      f"L = {config.depth} blocks: {config.depth * per_block / 1e6:.1f} M")
assert per_block == 10 * D**2 + 9 * D

# %% [markdown]
# ## The stack, in the library
#
# From here on the chapter uses the library. $L = 8$ blocks follow a learned cls token and
# position embedding; the cls token's final state is what the classifier reads (chapter 6 writes
# the whole forward pass). Here is the paper-size model on a synthetic face, with every block's
# attention. The picture shows, for each of the 8 heads of the first block, how much the cls
# token attends to each of the 196 positions (as a 14 x 14 grid).

# %%
model = build_model("transfer", size="paper").eval()
face = Image.fromarray(render_face("Fear", seed=11))
xf = eval_transform(config)(face)[None]
with torch.no_grad():
    attentions = model.forward_with_details(xf).attentions
cls_rows = attentions[0][0, :, 0, 1:].reshape(h, config.token_grid, -1)  # (h, G, G)
viz.show_grid(list(cls_rows), [f"head {j + 1}" for j in range(h)], cmap="viridis", size=1.2,
              suptitle="block 1, cls token -> 196 positions (random weights, synthetic face)")
plt.show()
row = attentions[0][0, :, 0, :]  # (h, N+1): the cls token's weights in block 1
entropy = -(row * row.log()).sum(-1) / math.log(N + 1)  # 1 = perfectly uniform
assert len(attentions) == config.depth and attentions[0].shape == (1, h, N + 1, N + 1)
assert (entropy > 0.98).all()

# %% [markdown]
# At initialisation the queries and keys are small, the weights stay close to $1/197$ (the
# entropy of each row is over 98 % of the uniform distribution's, as the cell checks), and the
# attention means "average everything". A transformer must learn from there where to look,
# which may be one reason the authors start it from pretrained weights (the last section); the
# paper does not say, and comparing runs with and without those weights at one budget would
# test it.
#
# ## The two modes side by side
#
# The library offers both: `msad_mode="head"` (the paper, our default: it is what the paper
# describes and ablates) and `msad_mode="token"` (the authors' code). The released 90.91 %
# checkpoint was evaluated with the token code, but both modes do nothing at evaluation, so the
# checkpoint cannot tell which one it was trained with. The two masks, for the same 24
# samples (the same random draws: only the dimension they index differs):

# %%
zeroed = {}
for mode in ("head", "token"):
    torch.manual_seed(2)
    zeroed[mode] = MultiHeadSelfAttentionDropping(p=p2, mode=mode).train()(ones) == 0
head_zeroed = zeroed["head"].all(dim=(1, 2, 4))  # (n, h): head zeroed in every token
token_zeroed = zeroed["token"].all(dim=(2, 3, 4))  # (n, N+1): token zeroed in every head
assert torch.equal(zeroed["head"].any(dim=(1, 2, 4)), head_zeroed)  # a whole head or nothing
viz.plot_msad_modes(head_zeroed, token_zeroed)
plt.show()
print("samples hit:", head_zeroed.any(dim=1).nonzero().flatten().tolist())
assert torch.equal(head_zeroed.any(1), token_zeroed.any(1))  # the same coins
assert (head_zeroed.sum(dim=1) <= 1).all() and (token_zeroed.sum(dim=1) <= 1).all()
assert not token_zeroed[:, h:].any()  # only the first h tokens can be hit

# %% [markdown]
# Statistically both hit a sample with probability $p_2$ and never more than one head or token:

# %%
big = torch.ones(50_000, 16, 3, h, 1)  # (n, N+1, 3, h, d_h)
hit_rate = {mode: (MultiHeadSelfAttentionDropping(p2, mode).train().keep_mask(big) == 0)
            .flatten(1).any(dim=1).float().mean().item() for mode in ("head", "token")}
print(f"samples hit, of {len(big):,}:", {k: round(v, 4) for k, v in hit_rate.items()})
assert all(abs(v - p2) < 0.01 for v in hit_rate.values())

# %% [markdown]
# ## Starting from ViT-Small
#
# The authors initialise the transformer from timm's first ViT-Small (`vit_small_p16_224`,
# trained on ImageNet): depth 8, dim 768, 8 heads, mlp_ratio 3, no qkv bias, exactly TransFER's
# shapes, and a position embedding of $197 = 14 \times 14 + 1$ tokens, so nothing needs
# interpolating. Its patch embedding and 1000-class head are not used.
#
# One detail changes the weights' behaviour: timm scaled its attention logits with
# $D^{-1/2} = 768^{-1/2}$, TransFER's code (and ours, `qk_scale=None`) with
# $d_h^{-1/2} = 96^{-1/2}$, as in {eq}`eq-msad-attention`, so the pretrained attention starts
# $\sqrt{h} = \sqrt 8 = 2.8$ times sharper than it was trained. The config keeps this as the
# authors did; `make_config(qk_scale=768 ** -0.5)` gives timm's.

# %%
print(f"TransFER scale {attn.scale:.4f} = 96^-0.5; timm's {D ** -0.5:.4f} = 768^-0.5; "
      f"ratio {attn.scale / D ** -0.5:.2f}")
assert math.isclose(attn.scale, d_h ** -0.5)
assert math.isclose(MSADAttention(D, h, qk_scale=D ** -0.5).scale, D ** -0.5)
vit_path = viz.find_weights("vit_small_p16_224-15ec54c9.pth", "TRANSFER_VIT")
if vit_path is None:
    print("vit_small_p16_224-15ec54c9.pth not found: the transformer stays randomly initialised")
else:
    report = load_vit_small(model.transformer, vit_path)
    assert model.transformer.pos_embed.shape == (1, N + 1, D)

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* Attention written from {{eq}}`eq-msad-attention` and {{eq}}`eq-msad-mhsa` gave the library's
  outputs. At initialisation the cls token's weights in block 1 were close to uniform: their
  entropy was at least {entropy.min():.1%} of the uniform distribution's in every head.
* MSAD {{eq}}`eq-msad-head` hit {hit_rate["head"]:.1%} of {len(big):,} samples
  ($p_2 = {p2}$), one head each, and zeroing a head's queries, keys and values zeroed its output
  exactly {{eq}}`eq-msad-zero`. The authors' token mode {{eq}}`eq-msad-token` hit
  {hit_rate["token"]:.1%}, but a hit token's output became the mean of the values, not zero.
* The block {{eq}}`eq-msad-block`, written out, gave `MSADBlock`'s outputs, with the same masks
  from the same seed. It has {per_block:,} = $10D^2 + 9D$ parameters at $D = {D}$, and
  TransFER's logit scale is {attn.scale / D ** -0.5:.2f} ($\\sqrt h$) times ViT-Small's.
"""))

# %% [markdown]
# ## Exercises
#
# 1. In the small demo of {eq}`eq-msad-zero`, zero only the keys of head 2
#    (`small[..., 1, 1, :] = 0` on a copy, that is component `k` of head 2). Are its weights
#    still uniform? Is its output zero? Which vector is it, and why does MSAD zero all three?
# 2. With $h = 4$ heads (the `tiny` size of the `cpu` profile) and $N + 1 = 10$ tokens, which
#    tokens can the token mode hit? Check with
#    `MultiHeadSelfAttentionDropping(0.3, "token").keep_mask(torch.ones(1000, 10, 3, 4, 1))`.
# 3. Give `msad_keep_mask` a `num_drop` argument that drops that many distinct heads (the
#    library's `_chosen` in `transfer_lib/models/local_cnn.py` shows one way), and check it
#    against `MultiHeadSelfAttentionDropping(0.3, "head", num_drop=2)` from the same seed.
# 4. Check $10D^2 + 9D$ at the tiny size: `python -m transfer_lib summary --size tiny`
#    prints the transformer's parameters; subtract the cls token, the position embedding and
#    the final LayerNorm, and divide by the number of blocks. (Mind the tiny size's mlp_ratio.)
# 5. Small experiment (a run takes as long as chapter 6's, which it prints): train TransFER
#    with the authors' token mode at the `cpu` profile,
#    `python -m transfer_lib train --profile cpu --msad-mode token --out runs/msad-token`,
#    and compare its `summary.json` with chapter 6's run (the head mode). One seed of each:
#    is the difference larger than the seed-to-seed spread of the `transfer` row in
#    `book/results/ablation-cpu-30ep.json` (appendix 12)?
# 6. Which row of the paper's ablation is TransFER with $p_2 = 0$? Read `VARIANT_PRESETS` in
#    `transfer_lib/models/config.py`, then confirm that
#    `build_model("transfer", size="tiny", msad_p=0.0).config` and
#    `build_model("local_mad", size="tiny").config` agree in every field but `variant`.
