# %% [markdown]
# # 5. MSAD: relations between regions
#
# After the local CNN, the 14 x 14 feature map is weighted by where the LANets looked. A 1 x 1
# convolution projects each of its 196 positions to a 768-dimensional **token**, and a
# transformer {cite:p}`vaswani2017attention` lets every token look at every other: this is where
# TransFER models *relations* between parts of the face. Its blocks are those of the Vision
# Transformer {cite:p}`dosovitskiy2021vit`, with one addition.
#
# > "we propose Multi-head Self-Attention Dropping (MSAD) to randomly drop one self-attention
# > module, forcing the model to learn rich relations among diverse local patches"
# > {cite:p}`xue2021transfer` (abstract, paraphrased)
#
# This chapter builds attention from scratch, checks it against the library, splits it into
# heads, stacks the blocks, and then looks closely at what "drop one head" means in the paper
# and in the authors' code, which do not agree.

# %% [setup]

# %%
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
from PIL import Image

from transfer_lib import build_model, viz
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.models.config import make_config
from transfer_lib.models.msad import MSADAttention, MSADBlock, MultiHeadSelfAttentionDropping
from transfer_lib.pretrained import load_vit_small
from transfer_lib.profiles import active_profile, find_rafdb
from transfer_lib.summary import count_parameters

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
print(viz.describe_setup(profile, find_rafdb()))
config = make_config(size="paper")
D, H = config.embed_dim, config.num_heads
print(f"tokens {config.num_tokens} + cls, dim {D}, {config.depth} blocks of {H} heads "
      f"(head dim {D // H}), MSAD p2 = {config.msad_p}, mode {config.msad_mode!r}")

# %% [markdown]
# ## Attention from scratch
#
# Each token x_i is mapped to a query q_i, a key k_i and a value v_i. Token i's output is a
# weighted mean of all values, the weights being how well its query matches each key:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V .$$
#
# With several **heads**, the 768 dimensions are split into 8 groups of d = 96, each head attends
# on its own, and a final linear layer mixes the heads' outputs. Written out with the weights of
# the library's `MSADAttention` (evaluation mode, so MSAD does nothing):

# %%
attn = MSADAttention(D, H, qkv_bias=config.qkv_bias).eval()
x = torch.randn(2, config.num_tokens + 1, D)  # (B, N, C): 196 tokens + cls
B, N, C = x.shape
d = C // H
qkv = (x @ attn.qkv.weight.T).reshape(B, N, 3, H, d)  # (B, N, 3, heads, head_dim); no qkv bias
q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)  # (B, heads, N, N)
out = (weights @ v).transpose(1, 2).reshape(B, N, C)  # heads side by side: (B, N, C)
out = attn.proj(out)
with torch.no_grad():
    lib_out, lib_weights = attn(x, return_attention=True)
    fast_out, _ = attn(x)  # scaled_dot_product_attention, the path used in training
print("q, k, v:", tuple(q.shape), " weights:", tuple(weights.shape), " output:", tuple(out.shape))
assert torch.allclose(out, lib_out, atol=1e-5) and torch.allclose(out, fast_out, atol=1e-5)
assert torch.allclose(weights, lib_weights, atol=1e-6)
assert torch.allclose(weights.sum(-1), torch.ones(B, H, N), atol=1e-5)  # rows are distributions

# %% [markdown]
# ## The block and the stack
#
# A block is pre-norm: `x + Attn(LN(x))`, then `x + MLP(LN(x))`, with an MLP 768 -> 2304 -> 768
# (mlp_ratio 3) and no bias on the qkv projection, as in the authors' configuration. Eight blocks
# follow a learned cls token and position embedding; the cls token's final state is what the
# classifier reads.

# %%
block = MSADBlock(D, H, config.mlp_ratio, config.qkv_bias, config.qk_scale, config.layer_norm_eps,
                  config.msad_p, config.msad_mode)
print(block)
y, _ = block(x)
assert y.shape == x.shape
print(f"one block: {count_parameters(block) / 1e6:.2f} M parameters; "
      f"{config.depth} blocks: {config.depth * count_parameters(block) / 1e6:.1f} M")

# %% [markdown]
# Here is the whole paper-size model on a synthetic face, with every block's attention. The
# picture shows, for each of the 8 heads of the first block, how much the cls token attends to
# each of the 196 positions (as a 14 x 14 grid).

# %%
model = build_model("transfer", size="paper").eval()
face = Image.fromarray(render_face("Fear", seed=11))
xf = eval_transform(config)(face)[None]
with torch.no_grad():
    details = model.forward_with_details(xf)
attentions = details.attentions
g = config.token_grid
cls_rows = attentions[0][0, :, 0, 1:].reshape(H, g, g)  # (heads, 14, 14)
fig = viz.show_grid(list(cls_rows), titles=[f"head {h + 1}" for h in range(H)], cmap="viridis",
                    ncols=8, size=1.2, suptitle="block 1, cls token -> 196 positions "
                    "(random initialisation, synthetic face)")
plt.show()
print(len(attentions), "blocks, each", tuple(attentions[0].shape))
row = attentions[0][0, :, 0, :]  # (heads, N): the cls token's weights in block 1
entropy = -(row * row.log()).sum(-1) / math.log(N)  # 1 = perfectly uniform
print("entropy of the cls row per head, as a share of the uniform's:",
      [round(e, 3) for e in entropy.tolist()])
assert len(attentions) == config.depth and attentions[0].shape == (1, H, N, N)
assert (entropy > 0.98).all()

# %% [markdown]
# At initialisation the queries and keys are small, the weights stay close to 1/197 (the
# entropy of each row is over 98 % of the uniform distribution's), and the attention means
# "average everything". That is one reason TransFER does not train its
# transformer from scratch (see the last section).

# %% [markdown]
# ## MSAD: dropping one head, in the paper
#
# MSAD acts on the (B, N, 3, heads, head_dim) tensor of queries, keys and values of every block,
# in training only: for each sample, with probability p2 = 0.3, one head, chosen uniformly, has
# its q, k and v set to zero. That head's output is then the mean of zero values, so the block
# must carry the relations it found through the other seven heads.

# %%
msad = MultiHeadSelfAttentionDropping(p=config.msad_p, mode="head").train()
ones = torch.ones(24, 20, 3, H, 4)  # (B, N, 3, heads, head_dim), small so it prints
torch.manual_seed(2)
head_out = msad(ones)
head_zeroed = (head_out == 0).all(dim=(1, 2, 4))  # (B, heads): head zeroed in every token
print("samples hit:", head_zeroed.any(dim=1).nonzero().flatten().tolist())
assert (head_zeroed.sum(dim=1) <= 1).all()
assert torch.equal((head_out == 0).any(dim=(1, 2, 4)), head_zeroed)  # a whole head or nothing

# %% [markdown]
# ## ... and in the authors' code
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
# Dimension 1 of `x` is the **tokens**, not the heads. The index is drawn from `range(heads)`, so
# the line zeroes q, k and v of one of the first 8 tokens (token 0 is the cls token), in every
# head. Here is that exact line on our tensor:

# %%
authors = ones.clone()
i, zero_index = 0, 5
authors[i, zero_index, ...] = 0
zeroed_tokens = (authors[i] == 0).all(dim=(1, 2, 3)).nonzero().flatten().tolist()
zeroed_heads = (authors[i] == 0).all(dim=(0, 1, 3)).nonzero().flatten().tolist()
print(f"sample {i}: tokens entirely zeroed {zeroed_tokens}, heads entirely zeroed {zeroed_heads}")
assert zeroed_tokens == [zero_index] and zeroed_heads == []

# %% [markdown]
# The library offers both: `msad_mode="head"` (the paper, our default: it is what the paper
# describes and ablates) and `msad_mode="token"` (the authors' code). The released 90.91 %
# checkpoint was evaluated with the token code, but both modes do nothing at evaluation, so the
# checkpoint cannot tell which one it was trained with. The two masks, for the same 24
# samples (the same random draws: only the dimension they index differs):

# %%
token_msad = MultiHeadSelfAttentionDropping(p=config.msad_p, mode="token").train()
torch.manual_seed(2)
token_out = token_msad(ones)
token_zeroed = (token_out == 0).all(dim=(2, 3, 4))  # (B, N): token zeroed in every head
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), gridspec_kw={"width_ratios": [H, 20]})
viz.plot_mask(~head_zeroed.T, title='mode="head" (the paper): one head of a sample',
              xlabel="sample", ylabel="head", ax=axes[0])
viz.plot_mask(~token_zeroed.T, title='mode="token" (authors\' code): one of tokens 0-7',
              xlabel="sample", ylabel="token (0 = cls)", ax=axes[1])
axes[1].axhline(H - 0.5, color="0.4", lw=0.8, ls="--")
fig.tight_layout()
plt.show()
assert (token_zeroed.sum(dim=1) <= 1).all()
assert not token_zeroed[:, H:].any()  # only the first `heads` tokens can be hit

# %% [markdown]
# Statistically both hit a sample with probability p2 and never more than one head or token:

# %%
big = torch.ones(50_000, 16, 3, H, 1)
rows = []
for mode in ("head", "token"):
    m = MultiHeadSelfAttentionDropping(config.msad_p, mode).train()
    keep = m.keep_mask(big)
    hit = (keep == 0).flatten(1).any(dim=1).float().mean().item()
    rows.append(dict(mode=mode, mask_shape=tuple(keep.shape[1:]), samples_hit=round(hit, 3)))
display(pd.DataFrame(rows).set_index("mode"))
assert all(abs(r["samples_hit"] - config.msad_p) < 0.01 for r in rows)

# %% [markdown]
# ## Starting from ViT-Small
#
# The authors initialise the transformer from timm's first ViT-Small (`vit_small_p16_224`,
# trained on ImageNet): depth 8, dim 768, 8 heads, mlp_ratio 3, no qkv bias, exactly TransFER's
# shapes, and a position embedding of 197 = 14 x 14 + 1 tokens, so nothing needs interpolating.
# Its patch embedding and 1000-class head are not used.
#
# One detail changes the weights' behaviour: timm scaled its attention logits with
# 768^-1/2, TransFER's code (and ours, `qk_scale=None`) with head_dim^-1/2 = 96^-1/2, so the
# pretrained attention starts sqrt(8) = 2.8 times sharper than it was trained. The config keeps
# this as the authors did; `make_config(qk_scale=768 ** -0.5)` gives timm's.

# %%
print(f"TransFER scale {attn.scale:.4f} = 96^-0.5; timm's {D ** -0.5:.4f} = 768^-0.5; "
      f"ratio {attn.scale / D ** -0.5:.2f}")
assert math.isclose(attn.scale, (D // H) ** -0.5)
assert math.isclose(MSADAttention(D, H, qk_scale=D ** -0.5).scale, D ** -0.5)
vit_path = viz.find_weights("vit_small_p16_224-15ec54c9.pth", "TRANSFER_VIT")
if vit_path is None:
    print("vit_small_p16_224-15ec54c9.pth not found: the transformer stays randomly initialised")
else:
    report = load_vit_small(model.transformer, vit_path)
    assert model.transformer.pos_embed.shape == (1, N, D)
